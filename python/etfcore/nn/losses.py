"""Losses of the fixed-ETF papers and their baselines, each a small `nn.Module` taking
`(outputs, target)` with int64 hard labels in `0..K-1`:

- [`CrossEntropy`][etfcore.nn.losses.CrossEntropy] (class weights, label smoothing, softmax
  temperature),
- [`MSELoss`][etfcore.nn.losses.MSELoss] (regression of the logits on one-hot targets),
- [`DotRegressionLoss`][etfcore.nn.losses.DotRegressionLoss] (Yang et al.),
- [`HingeCrossEntropy`][etfcore.nn.losses.HingeCrossEntropy] (maximal-separating cones;
  per-dataset defaults in [`HINGE_TAU_PLUS`][etfcore.nn.losses.HINGE_TAU_PLUS]),
- [`GeneralisedLabelsLoss`][etfcore.nn.losses.GeneralisedLabelsLoss] (Seddik & Tamaazousti),
- [`WithinClassCosineRegulariser`][etfcore.nn.losses.WithinClassCosineRegulariser] (a term on
  features added to any loss, Xu & Liu),

and [`mixup`][etfcore.nn.losses.mixup]. `uses_features` says whether a loss takes the head's
features (dot regression, hinge CE, the regulariser) or its logits. Labels are checked once per
call with one vectorised comparison: a label outside `0..K-1` raises `etfcore.LabelError`.
"""

from __future__ import annotations

import math
import warnings
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import LabelError, ParameterError, ShapeError

__all__ = [
    "CrossEntropy",
    "MSELoss",
    "DotRegressionLoss",
    "HingeCrossEntropy",
    "HINGE_TAU_PLUS",
    "GeneralisedLabelsLoss",
    "WithinClassCosineRegulariser",
    "mixup",
    "check_target",
]

HINGE_TAU_PLUS: Dict[str, float] = {
    "cifar100-lt": 2 * math.pi / 9,
    "cifar10-lt": math.pi / 3,
    "imagenet-lt": 5 * math.pi / 18,
    "imagenet": 13 * math.pi / 36,
}
"""`τ⁺` of hinge cross-entropy per training set, as used by the hinge-CE paper ("Do we need neural
collapse?"): on the long-tailed sets `τ⁺` goes to the minor classes (≤ 50 samples) only."""


def check_target(target: torch.Tensor, num_classes: int, batch: Optional[int] = None) -> None:
    """Check that `target` is a 1-D integer tensor of labels in `0..num_classes-1`.

    One vectorised comparison and one device synchronisation.

    Parameters
    ----------
    target
        The labels.
    num_classes
        The number of classes `K`.
    batch
        The expected number of labels (the batch size), or `None` for any.

    Raises
    ------
    ShapeError
        When `target` is not 1-D or does not hold `batch` labels.
    LabelError
        When `target` is not an integer tensor, or holds a label outside `0..num_classes-1`.

    Examples
    --------
    >>> check_target(torch.tensor([0, 2]), 3)
    >>> check_target(torch.tensor([0, -1]), 3)
    Traceback (most recent call last):
    ...
    etfcore.LabelError: labels must lie in 0..2, got values in [-1, 0]
    """
    if target.dim() != 1 or (batch is not None and target.shape[0] != batch):
        want = "(batch,)" if batch is None else f"({batch},)"
        raise ShapeError(f"target must have shape {want}, got {tuple(target.shape)}")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise LabelError(f"target must hold integer class labels, got dtype {target.dtype}")
    if target.numel() and bool(((target < 0) | (target >= num_classes)).any()):
        lo, hi = int(target.min()), int(target.max())
        raise LabelError(f"labels must lie in 0..{num_classes - 1}, got values in [{lo}, {hi}]")


def _check_outputs(outputs: torch.Tensor, width: Optional[int], what: str) -> None:
    if outputs.dim() != 2 or (width is not None and outputs.shape[1] != width):
        want = "(batch, K)" if width is None else f"(batch, {width})"
        raise ShapeError(f"{what} must have shape {want}, got {tuple(outputs.shape)}")


class CrossEntropy(nn.Module):
    r"""Cross-entropy on logits $z$ with softmax temperature $\tau$, optional class weights and
    label smoothing:

    $$
    L = -\frac{1}{\sum_i a_{y_i}} \sum_i a_{y_i} \log \mathrm{softmax}(z_i/\tau)_{y_i}
    $$

    ($a$ = class weights, 1 by default; with label smoothing $\varepsilon$ the target is
    $(1-\varepsilon) e_y + \varepsilon/K$, exactly as `torch.nn.functional.cross_entropy`).
    Xu & Liu vary $\tau$ in pretraining: a small $\tau$ lowers collapse.

    Parameters
    ----------
    class_weights
        Per-class weights $a$ (`K` entries); `None` weighs every class 1.
    label_smoothing
        The smoothing $\varepsilon$, in `[0, 1)`.
    temperature
        The softmax temperature $\tau > 0$.

    Raises
    ------
    ParameterError
        When `temperature` is not positive and finite or `label_smoothing` is outside `[0, 1)`.

    Examples
    --------
    >>> crit = CrossEntropy(temperature=0.5)
    >>> z, y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    >>> torch.allclose(crit(z, y), F.cross_entropy(2 * z, y))
    True
    """

    uses_features = False
    class_weights: Optional[torch.Tensor]

    def __init__(
        self,
        class_weights: Optional[torch.Tensor] = None,
        label_smoothing: float = 0.0,
        *,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ParameterError(f"temperature must be positive and finite, got {temperature}")
        if not (0.0 <= label_smoothing < 1.0):
            raise ParameterError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        cw = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", cw)
        self.label_smoothing = float(label_smoothing)
        self.temperature = float(temperature)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_outputs(logits, None, "logits")
        check_target(target, logits.shape[1], logits.shape[0])
        if logits.shape[0] == 0:
            return _empty_batch(logits)
        w = None if self.class_weights is None else self.class_weights.to(logits.dtype)
        return F.cross_entropy(
            logits / self.temperature, target, weight=w, label_smoothing=self.label_smoothing
        )


class MSELoss(nn.Module):
    r"""Squared error of the logits against one-hot targets, half the per-sample squared norm
    averaged over the batch:

    $$
    L = \frac{1}{2N} \sum_i \| z_i - e_{y_i} \|^2
    $$

    the same scaling as [`etfcore.CollapseStats.probe_mse`][etfcore.CollapseStats.probe_mse]
    (so a linear head trained to the optimum on frozen features reaches exactly that value). It
    is $K/2$ times `torch.nn.MSELoss()` on one-hot targets (which averages over the $N K$
    entries).

    Examples
    --------
    >>> z, y = torch.tensor([[1.0, 1.0]]), torch.tensor([0])
    >>> float(MSELoss()(z, y))
    0.5
    """

    uses_features = False

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_outputs(logits, None, "logits")
        check_target(target, logits.shape[1], logits.shape[0])
        if logits.shape[0] == 0:
            return _empty_batch(logits)
        onehot = F.one_hot(target, logits.shape[1]).to(logits.dtype)
        return 0.5 * (logits - onehot).pow(2).sum(1).mean()


class DotRegressionLoss(nn.Module):
    r"""Dot-regression loss of Yang et al. on the fixed class vectors `weight` ($K \times p$):

    $$
    L = \frac{(w^\top h - \|w\|\|h\|)^2}{2\,\|w\|\|h\|}
    $$

    with $w = w_y$ and the norms taken without gradient, so
    $\partial L/\partial h = -(1 - \cos\angle(h, w))\, w$ (a pure pull towards $w_y$, nothing
    pushes away from the other classes). Averaged over the batch.

    The loss only pulls directions: nothing controls $\|h\|$, which drifts unless the features
    are normalised (Yang et al. L2-normalise them: `FixedETFHead(normalize=True)`). The first
    call warns (`RuntimeWarning`, once) when the features are not unit vectors.

    Parameters
    ----------
    weight
        The fixed class vectors ($K \times p$), e.g. `FixedETFHead.weight`.
    parity
        Drop $\|w\|$ from the denominator as the authors' public code does (gradient
        $-(1 - \cos)\, \|w\|\, w$; identical for unit-norm rows).

    Examples
    --------
    >>> W = torch.eye(3)
    >>> float(DotRegressionLoss(W)(torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0])))
    0.0
    """

    uses_features = True
    weight: torch.Tensor

    def __init__(self, weight: torch.Tensor, *, parity: bool = False) -> None:
        super().__init__()
        # The fixed frame (e.g. ``FixedETFHead.weight``), a non-persistent buffer moved by .to().
        self.register_buffer("weight", weight.detach(), persistent=False)
        self.parity = bool(parity)
        self._norms_checked = False

    def forward(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_outputs(features, self.weight.shape[1], "features")
        check_target(target, self.weight.shape[0], features.shape[0])
        if features.shape[0] == 0:
            return _empty_batch(features)
        w = self.weight.to(features.dtype)[target]
        dot = (w * features).sum(1)
        with torch.no_grad():
            hn = features.norm(dim=1).clamp_min(1e-12)
            wn = w.norm(dim=1)
            if not self._norms_checked:
                self._norms_checked = True
                if bool(((hn - 1).abs() > 1e-3).any()):
                    warnings.warn(
                        "DotRegressionLoss on features that are not unit vectors: dot regression "
                        "does not control ‖h‖ (normalise the features, e.g. "
                        "FixedETFHead(normalize=True))",
                        RuntimeWarning,
                        stacklevel=4,  # the caller of the module
                    )
        denom = hn if self.parity else wn * hn
        return ((dot - wn * hn) ** 2 / (2 * denom)).mean()


def _empty_batch(x: torch.Tensor) -> torch.Tensor:
    """The loss of an empty batch: 0, with a zero gradient (a mean over no samples would be NaN
    and poison the parameters through the optimiser)."""
    return x.sum() * 0.0


def _per_class(value: Union[float, Sequence[float], torch.Tensor], k: int, name: str):
    t = torch.as_tensor(value, dtype=torch.float64)
    if t.dim() == 0:
        t = t.expand(k).clone()
    if t.shape != (k,):
        raise ParameterError(f"{name} must be a scalar or have {k} entries, got {tuple(t.shape)}")
    if not bool(((t >= 0) & (t <= math.pi)).all()):
        raise ParameterError(f"{name} must lie in [0, π], got {t.tolist()}")
    return t


class HingeCrossEntropy(nn.Module):
    r"""Hinge cross-entropy of "Do we need neural collapse?" on a fixed frame `weight`
    ($K \times p$), features $u$; logits

    - true class $y$: $\min(\langle w_y, u\rangle,\ \mathrm{sg}(\|u\|)\, \|w_y\| \cos\tau^+_y)$,
    - other classes $k$: $\max(\langle w_k, u\rangle,\ \mathrm{sg}(\|u\|)\, \|w_k\| \cos\tau^-_y)$,

    then cross-entropy ($\mathrm{sg}$ = stop-gradient). $\tau^+ = 0, \tau^- = \pi$ is plain
    cross-entropy on $W u$.

    Zero gradient inside the cones (the paper's Theorem 1) holds only with
    $\tau^-_y \le \theta - \tau^+_y$, $\theta$ the smallest angle between two rows of $W$
    ($\arccos(-1/(K-1))$ for a simplex ETF): a feature within $\tau^+_y$ of $w_y$ is then at
    least $\tau^-_y$ away from every other $w_k$, so every logit is clamped to a constant.
    [`theorem1`][etfcore.nn.losses.HingeCrossEntropy.theorem1] builds that loss. With the
    practical $\tau^- = \pi$ the other classes' logits stay $\langle w_k, u\rangle$ and keep a
    gradient.

    Parameters
    ----------
    weight
        The fixed frame ($K \times p$).
    tau_plus
        $\tau^+$: a scalar, or one angle per class indexed by the sample's true class (e.g.
        $\tau^+$ only on minor classes:
        [`for_minor_classes`][etfcore.nn.losses.HingeCrossEntropy.for_minor_classes]; per-dataset
        values in [`HINGE_TAU_PLUS`][etfcore.nn.losses.HINGE_TAU_PLUS]). Default $13\pi/36$ (the
        paper's practice).
    tau_minus
        $\tau^-$: a scalar or one angle per class, as `tau_plus`. Default $\pi$.

    Raises
    ------
    ParameterError
        When an angle lies outside $[0, \pi]$ or a sequence does not have `K` entries.

    Examples
    --------
    >>> import etfcore
    >>> W = torch.from_numpy(etfcore.etf(4, 6, seed=0)).float()
    >>> crit = HingeCrossEntropy.theorem1(W, tau_plus=0.3)
    >>> u = (3 * W[[1]]).requires_grad_()
    >>> crit(u, torch.tensor([1])).backward(); float(u.grad.abs().max())
    0.0
    """

    uses_features = True
    weight: torch.Tensor
    cos_tau_plus: torch.Tensor
    cos_tau_minus: torch.Tensor

    def __init__(
        self,
        weight: torch.Tensor,
        *,
        tau_plus: Union[float, Sequence[float]] = 13 * math.pi / 36,
        tau_minus: Union[float, Sequence[float]] = math.pi,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach(), persistent=False)
        k = weight.shape[0]
        tp = _per_class(tau_plus, k, "tau_plus")
        tm = _per_class(tau_minus, k, "tau_minus")
        self.register_buffer("cos_tau_plus", torch.cos(tp))
        self.register_buffer("cos_tau_minus", torch.cos(tm))
        self.tau_plus, self.tau_minus = tp.tolist(), tm.tolist()

    @staticmethod
    def frame_angle(weight: torch.Tensor) -> float:
        r"""$\theta$: the smallest angle between two rows of `weight` (in float64)."""
        w = F.normalize(weight.detach().double().cpu(), dim=1)
        g = (w @ w.T).clamp(-1, 1)
        g.fill_diagonal_(-1.0)
        return float(torch.arccos(g.max()))

    @classmethod
    def theorem1(
        cls, weight: torch.Tensor, *, tau_plus: Union[float, Sequence[float]]
    ) -> HingeCrossEntropy:
        r"""The loss with $\tau^-_y = \theta - \tau^+_y$, under which features inside their cones
        (angle to $w_y$ at most $\tau^+_y$) have exactly zero gradient.

        Parameters
        ----------
        weight
            The fixed frame ($K \times p$); $\theta$ is its
            [`frame_angle`][etfcore.nn.losses.HingeCrossEntropy.frame_angle].
        tau_plus
            $\tau^+$: a scalar or one angle per class, each at most $\theta$.

        Raises
        ------
        ParameterError
            When an angle of `tau_plus` exceeds $\theta$.
        """
        theta = cls.frame_angle(weight)
        tp = _per_class(tau_plus, weight.shape[0], "tau_plus")
        if bool((tp > theta).any()):
            raise ParameterError(f"tau_plus must not exceed the frame angle θ = {theta:.6f}")
        return cls(weight, tau_plus=tp.tolist(), tau_minus=(theta - tp).tolist())

    @classmethod
    def for_minor_classes(
        cls,
        weight: torch.Tensor,
        class_counts: Sequence[int],
        *,
        tau_plus: float = 13 * math.pi / 36,
        threshold: int = 50,
        tau_minus: float = math.pi,
    ) -> HingeCrossEntropy:
        r"""The loss with $\tau^+$ on the classes with at most `threshold` training samples and
        0 on the others.

        Parameters
        ----------
        weight
            The fixed frame ($K \times p$).
        class_counts
            The training samples of each class (`K` entries).
        tau_plus
            $\tau^+$ of the minor classes.
        threshold
            The largest count of a minor class.
        tau_minus
            $\tau^-$ of every class.
        """
        counts = np.asarray(class_counts)
        tp = np.where(counts <= threshold, float(tau_plus), 0.0)
        return cls(weight, tau_plus=tp.tolist(), tau_minus=tau_minus)

    def logits(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_outputs(features, self.weight.shape[1], "features")
        check_target(target, self.weight.shape[0], features.shape[0])
        w = self.weight.to(features.dtype)
        dots = features @ w.T
        scale = features.norm(dim=1, keepdim=True).detach() * w.norm(dim=1)[None, :]
        pos_cap = scale * self.cos_tau_plus.to(features.dtype)[target][:, None]
        neg_floor = scale * self.cos_tau_minus.to(features.dtype)[target][:, None]
        onehot = F.one_hot(target, w.shape[0]).bool()
        return torch.where(onehot, torch.minimum(dots, pos_cap), torch.maximum(dots, neg_floor))

    def forward(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = self.logits(features, target)
        if logits.shape[0] == 0:
            return _empty_batch(logits)
        return F.cross_entropy(logits, target)


class GeneralisedLabelsLoss(nn.Module):
    r"""Cross-entropy against Seddik & Tamaazousti's generalised labels.

    A sample of class $c$ has the target
    $t_\ell = \alpha_c\, |\delta_{\ell c} - \varepsilon| / (1 + (K-2)\varepsilon)$, with
    $\alpha_j = 1/(K \pi_j)$ from the training class proportions $\pi_j$ (so the optimal weights
    do not depend on the class proportions). Averaged over the batch.

    Parameters
    ----------
    class_counts
        The training samples of each class (`K` positive counts).
    epsilon
        The label parameter $\varepsilon$ (0: one-hot labels scaled by $\alpha_c$).

    Raises
    ------
    ParameterError
        When `class_counts` is not a 1-D sequence of positive counts.

    Examples
    --------
    >>> crit = GeneralisedLabelsLoss([30, 10])
    >>> crit.targets(torch.tensor([1])).tolist()
    [[0.0, 2.0]]
    """

    uses_features = False
    alpha: torch.Tensor

    def __init__(self, class_counts: Sequence[int], epsilon: float = 0.0) -> None:
        super().__init__()
        counts = torch.as_tensor(np.asarray(class_counts), dtype=torch.float64)
        if counts.dim() != 1 or bool((counts <= 0).any()):
            raise ParameterError("class_counts must be a 1-D sequence of positive counts")
        k = counts.numel()
        pi = counts / counts.sum()
        self.register_buffer("alpha", (1.0 / (k * pi)).float())
        self.epsilon = float(epsilon)
        self.k = k

    def targets(self, target: torch.Tensor) -> torch.Tensor:
        check_target(target, self.k)
        eps, k = self.epsilon, self.k
        onehot = F.one_hot(target, k).float()
        base = (onehot - eps).abs() / (1 + (k - 2) * eps)
        return self.alpha[target][:, None] * base

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_outputs(logits, self.k, "logits")
        if target.shape[:1] != logits.shape[:1]:
            want, got = logits.shape[0], tuple(target.shape)
            raise ShapeError(f"target must have shape ({want},), got {got}")
        if logits.shape[0] == 0:
            return _empty_batch(logits)
        t = self.targets(target).to(logits.dtype)
        return -(t * F.log_softmax(logits, dim=1)).sum(1).mean()


class WithinClassCosineRegulariser(nn.Module):
    r"""$\lambda$ times a within-class cosine similarity of a batch of features $h$.

    Xu & Liu's pretraining regulariser: a larger $\lambda$ keeps features of a class apart, i.e.
    less collapse. With $\hat h = h/\|h\|$, $C$ the classes present in the batch and $n_c$ their
    counts in it, the average within-class cosine of class $c$ (all ordered pairs, self-pairs
    included) is

    $$
    \bar s_c = \frac{1}{n_c^2} \sum_{i, j:\, y_i = y_j = c} \cos\angle(h_i, h_j)
             = \frac{\|\sum_{y_i = c} \hat h_i\|^2}{n_c^2}.
    $$

    Added by the training step to the loss: `loss + reg(features, y)`. Zero rows count as
    direction 0.

    Parameters
    ----------
    weight
        The factor $\lambda \ge 0$.
    normalization
        `"per_class_count"` (default), the paper's wording "the average within-class cosine
        similarity divided by the number of data points of each class in the batch":
        $R = \frac{\lambda}{|C|} \sum_{c \in C} \bar s_c / n_c$ ($\|\sum \hat h\|^2/n_c^3$ per
        class); or `"mean"`, the plain average
        $R = \frac{\lambda}{|C|} \sum_{c \in C} \bar s_c$, where $R/\lambda = 1 - d_\text{within}$
        of [`etfcore.CollapseStats.cosine_metrics`][etfcore.CollapseStats.cosine_metrics] on the
        batch.

    Raises
    ------
    ParameterError
        When `weight` is negative or not finite, or `normalization` is unknown.

    Examples
    --------
    >>> h = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    >>> y = torch.tensor([0, 0, 1])
    >>> float(WithinClassCosineRegulariser(weight=2.0)(h, y))  # 2·((2/4)/2 + 1/1)/2
    1.25
    >>> float(WithinClassCosineRegulariser(weight=2.0, normalization="mean")(h, y))
    1.5
    """

    uses_features = True
    NORMALIZATIONS = ("per_class_count", "mean")

    def __init__(self, weight: float = 1.0, *, normalization: str = "per_class_count") -> None:
        super().__init__()
        if not (weight >= 0 and math.isfinite(weight)):
            raise ParameterError(f"weight must be non-negative and finite, got {weight}")
        if normalization not in self.NORMALIZATIONS:
            raise ParameterError(
                f"normalization must be one of {self.NORMALIZATIONS}, got {normalization!r}"
            )
        self.weight = float(weight)
        self.normalization = normalization

    def forward(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_outputs(features, None, "features")
        check_target(target, torch.iinfo(torch.int64).max, features.shape[0])
        if features.shape[0] == 0:
            return _empty_batch(features)
        classes, inverse = torch.unique(target, return_inverse=True)
        unit = F.normalize(features, dim=1)
        sums = unit.new_zeros(classes.numel(), unit.shape[1]).index_add_(0, inverse, unit)
        counts = torch.bincount(inverse, minlength=classes.numel()).to(unit.dtype)
        power = 3 if self.normalization == "per_class_count" else 2
        return self.weight * (sums.pow(2).sum(1) / counts.pow(power)).mean()


def mixup(
    x: torch.Tensor,
    y: torch.Tensor,
    alpha: float,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor, float]:
    r"""Mixup (Zhang et al. 2018) of a batch.

    Draws $\lambda \sim \mathrm{Beta}(\alpha, \alpha)$ and a random permutation $\pi$ of the
    batch. The training loss is then $\lambda L(out, y) + (1-\lambda) L(out, y_\pi)$ for any loss
    $L$ (with class weights, label smoothing, dot regression or hinge CE alike).

    Parameters
    ----------
    x
        The inputs (batch first).
    y
        The labels, one per input.
    alpha
        $\alpha \ge 0$; $\alpha = 0$ returns the batch unchanged with $\lambda = 1$.
    generator
        The source of both $\lambda$ and $\pi$ (a CPU `torch.Generator`; the global torch RNG
        when `None`), so a seeded generator reproduces the mix.

    Returns
    -------
    tuple
        `(λ x + (1-λ) x[π], y[π], λ)`.

    Raises
    ------
    ParameterError
        When `alpha` is negative or not finite.
    ShapeError
        When `y` is not 1-D with one label per input.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> xm, yp, lam = mixup(torch.eye(4), torch.arange(4), alpha=0.4, generator=g)
    >>> torch.allclose(xm, lam * torch.eye(4) + (1 - lam) * torch.eye(4)[yp])
    True
    """
    if not (alpha >= 0 and math.isfinite(alpha)):
        raise ParameterError(f"mixup alpha must be non-negative and finite, got {alpha}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ShapeError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    if alpha == 0:
        return x, y, 1.0
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    return lam * x + (1 - lam) * x[perm], y[perm], lam
