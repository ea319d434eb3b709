r"""Linear probe: multinomial logistic regression on frozen features, L2 strength chosen on a
validation split (the protocol of Kornblith et al. 2019, used by Xu & Liu for VCI).

Objective, for one strength $\lambda$ (the bias is not penalised):

$$
\min_{W, b}\; \frac{1}{N} \sum_i \mathrm{CE}(W f_i + b,\, y_i) + \frac{\lambda}{2} \|W\|_F^2
$$

solved by full-batch L-BFGS (strong-Wolfe line search) in torch on the features' device, until
the largest absolute entry of the gradient of this objective is ``≤ tol`` (``tol = 1e-4`` is
scikit-learn's default; ``converged`` reports whether it was reached within ``max_iter``).
scikit-learn's ``LogisticRegression(C=1/(λN))`` minimises the same objective for ``K ≥ 3``;
for ``K = 2`` scikit-learn fits one binary logit ``w`` (softmax weights ``±w/2``), equal at
``C = 2/(λN)``.

Protocol: features are centred by the training mean (a reparametrisation of the unpenalised bias:
the solution is unchanged); ``standardize=True`` also divides each dimension by its training
standard deviation (this *does* change the problem). A stratified, seeded validation split
(``val_fraction`` of every class) is held out; the 97 strengths ``λ ∈ logspace(-6, 6, 97)`` are
fitted on the rest from strong to weak, each warm-started from the previous solution; the strength
with the best validation accuracy is refitted on all training data, warm-started from its split
solution, and evaluated on the test set. ``cv=k`` replaces the single split by stratified, seeded
k-fold cross-validation ([`etfcore.splits.stratified_folds`][etfcore.splits.stratified_folds]): the
sweep runs once per fold and the validation curve is the mean of the folds' accuracies (k times the
cost; the single split stays the default because it is the fast one).

**Ties.** Validation accuracy is a count over a few hundred samples, so whole plateaus of the grid
tie (20 or more of the 97 values on well-separated features). Among tied strengths the probe takes
the *weakest* regularisation (the smallest ``λ``). Reasons: the strong end of a plateau borders
underfitting, where accuracy falls steeply as ``λ`` grows, so a small change of data (the refit on
all training rows, another split) can put it over the edge, while the weak end borders
overfitting, where held-out accuracy declines slowly; and a probe is meant to measure how linearly
separable the features are, which the heaviest tied penalty hides. (The one-standard-error rule,
the other common choice, prefers the strongest ``λ`` within one standard error of the best; it
needs k-fold standard errors, is not defined for the single split, and is not offered.)

Memory-mapped or large inputs are streamed to the device in chunks of ``chunk_rows`` rows (the
loss and gradient are sums over chunks), so a feature file larger than the device memory works.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .._validation import as_count, as_index, torch_device
from ..errors import (
    LabelError,
    NonFiniteError,
    ParameterError,
    ShapeError,
    TooFewClassesError,
    require,
)
from ..splits import stratified_folds, stratified_validation_mask

DEFAULT_GRID = np.logspace(-6.0, 6.0, 97)


def _torch():
    return require("torch", "torch", "etfcore.transfer.linear_probe", package="PyTorch (torch)")


@dataclasses.dataclass
class ProbeResult:
    """The outcome of [`linear_probe`][etfcore.transfer.linear_probe].

    ``grid`` is increasing and ``validation_curve[i]`` is the validation accuracy (of the kind
    named by ``selection``) at ``grid[i]``; ``l2 = grid[l2_index]`` was chosen and refitted on
    all training data. ``iterations``/``converged`` are per grid point (split fits);
    ``refit_iterations``/``refit_converged`` for the final fit. ``per_class_accuracy[j]`` is the
    test accuracy of class ``classes[j]`` (NaN when the test set has none of it). ``cv`` is
    the number of folds (``None``: the single split); ``fold_curves`` (``cv × grid``) the
    folds' accuracies whose mean is ``validation_curve`` (``None`` for the single split), and
    ``num_val`` then counts every training row (each is held out once).
    ``weight`` (``K × p``) and ``bias`` act on features centred (and scaled) as in training:
    ``logits = ((f - feature_mean) / feature_scale) @ weight.T + bias``.
    """

    top1: float
    mean_per_class: float
    l2: float
    l2_index: int
    grid: np.ndarray
    validation_curve: np.ndarray
    selection: str
    per_class_accuracy: np.ndarray
    classes: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    refit_iterations: int
    refit_converged: bool
    num_train: int
    num_val: int
    num_test: int
    device: str
    dtype: str
    tol: float
    weight: np.ndarray
    bias: np.ndarray
    feature_mean: np.ndarray
    feature_scale: Optional[np.ndarray]
    cv: Optional[int] = None
    fold_curves: Optional[np.ndarray] = None

    def to_dict(self, arrays: bool = False) -> Dict[str, Any]:
        """A JSON-ready dict (``arrays=True`` also includes the weights)."""
        out: Dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("weight", "bias", "feature_mean", "feature_scale") and not arrays:
                continue
            if isinstance(v, np.ndarray) and v.ndim == 2:
                v = v.tolist()
            elif isinstance(v, np.ndarray):
                v = [None if isinstance(x, float) and math.isnan(x) else x for x in v.tolist()]
            elif isinstance(v, (np.floating, np.integer, np.bool_)):
                v = v.item()
            out[f.name] = v
        return out


# --------------------------------------------------------------------------- input handling
def _rows(x: Any) -> int:
    return int(x.shape[0])


def _check_features(x: Any, name: str) -> None:
    if x.ndim != 2:
        raise ShapeError(f"{name} must be 2-D (num_samples, dim), got shape {tuple(x.shape)}")
    kind = str(x.dtype)
    if not ("float" in kind or "half" in kind or "double" in kind):
        raise ParameterError(f"{name} must be floating point, got dtype {kind}")


def _labels(y: Any, n: int, name: str) -> np.ndarray:
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        raise ShapeError(f"{name} must be 1-D, got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise LabelError(f"{name} must be integers, got dtype {y.dtype}")
    if y.shape[0] != n:
        raise ShapeError(f"features have {n} rows but {name} have {y.shape[0]} entries")
    return y.astype(np.int64)


def stratified_split(labels: Any, val_fraction: float, seed: int) -> np.ndarray:
    """Alias of
    [`etfcore.splits.stratified_validation_mask`][etfcore.splits.stratified_validation_mask] (its
    name before the toolkit): the boolean mask of the probe's stratified, seeded validation split,
    ``round(val_fraction · n_k)`` samples of every class ``k``; a class left without a sample on one
    side raises [`LabelError`][etfcore.LabelError].

    Examples
    --------
    >>> m = stratified_split(np.repeat([0, 1], 10), 0.2, seed=0)
    >>> int(m.sum()), int(m[:10].sum())
    (4, 2)
    """
    return stratified_validation_mask(labels, val_fraction, seed)


class _Source:
    """Rows of a feature matrix delivered to the device as centred (and scaled) chunks."""

    def __init__(self, x, torch, device, dtype, chunk_rows, name):
        self.x, self.torch, self.device, self.dtype, self.name = x, torch, device, dtype, name
        self.n = _rows(x)
        self.chunk = max(1, int(chunk_rows)) if chunk_rows else self.n
        self.is_tensor = isinstance(x, torch.Tensor)

    def block(self, a: int, b: int):
        t = self.torch
        blk = self.x[a:b]
        if not self.is_tensor:
            blk = t.from_numpy(np.array(blk, order="C"))  # a private copy (memmaps are read-only)
        blk = blk.to(device=self.device)
        # finiteness in the features' own precision first, then after the cast: a finite
        # float64 value beyond float32's range is an overflow, not a NaN in the data
        if not bool(t.isfinite(blk).all()):
            bad = (~t.isfinite(blk)).nonzero()[0].tolist()
            raise NonFiniteError(
                f"{self.name} contains a non-finite value (NaN or Inf) at row {a + bad[0]}, "
                f"column {bad[1]}"
            )
        blk = blk.to(dtype=self.dtype)
        if not bool(t.isfinite(blk).all()):
            bad = (~t.isfinite(blk)).nonzero()[0].tolist()
            raise NonFiniteError(
                f"{self.name} at row {a + bad[0]}, column {bad[1]} overflows "
                f"{str(self.dtype).replace('torch.', '')} (|value| too large); "
                "rescale the features or use dtype='float64'"
            )
        return blk

    def blocks(self):
        for a in range(0, self.n, self.chunk):
            b = min(self.n, a + self.chunk)
            yield a, b, self.block(a, b)


class _Design:
    """A set of rows (a mask over a source) as centred chunks, resident or streamed."""

    def __init__(self, src: _Source, labels: np.ndarray, mask, mean, scale, resident: bool):
        t = src.torch
        self.src, self.mean, self.scale = src, mean, scale
        self.mask = mask
        self.src_labels = labels
        self.n = int(labels.shape[0] if mask is None else mask.sum())
        self.labels_np = labels if mask is None else labels[mask]
        self._resident = None
        self._y_blocks = []
        if resident:
            xs = [self._prep(blk, a, b) for a, b, blk in src.blocks()]
            x = xs[0] if len(xs) == 1 else t.cat(xs)
            y = t.from_numpy(self.labels_np).to(src.device)
            self._resident = [(x, y)]

    def _prep(self, blk, a, b):
        if self.mask is not None:
            m = self.mask[a:b]
            if not m.all():
                blk = blk[self.src.torch.from_numpy(m).to(blk.device)]
        blk = blk - self.mean
        if self.scale is not None:
            blk = blk / self.scale
        return blk

    def chunks(self):
        if self._resident is not None:
            yield from self._resident
            return
        t = self.src.torch
        lab = self.src_labels
        for a, b, blk in self.src.blocks():
            x = self._prep(blk, a, b)
            y = lab[a:b] if self.mask is None else lab[a:b][self.mask[a:b]]
            if x.shape[0]:
                yield x, t.from_numpy(np.ascontiguousarray(y)).to(self.src.device)


def _resolve_device(torch, device, x):
    if (device is None or device == "auto") and isinstance(x, torch.Tensor):
        return x.device
    return torch_device(device)


def _resolve_dtype(torch, dtype):
    table = {"float32": torch.float32, "float64": torch.float64}
    if isinstance(dtype, str):
        if dtype not in table:
            raise ParameterError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        return table[dtype]
    if dtype not in (torch.float32, torch.float64):
        raise ParameterError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _fits(torch, device, nbytes: int, limit: Optional[int]) -> bool:
    if limit is not None:
        return nbytes <= limit
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes <= free // 3
    try:
        import os

        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return True
    return nbytes <= avail // 3


# --------------------------------------------------------------------------- the solver
def _objective(torch, design: _Design, w, b, lam: float, want_grad: bool = True):
    """Loss ``(1/N) Σ CE + (λ/2)‖W‖²`` and its gradient, accumulated over chunks."""
    n = design.n
    loss = w.new_zeros((), dtype=torch.float64)  # accumulated in float64
    gw = torch.zeros_like(w) if want_grad else None
    gb = torch.zeros_like(b) if want_grad else None
    for x, y in design.chunks():
        z = torch.addmm(b, x, w.t())
        logp = torch.log_softmax(z, dim=1)
        rows = torch.arange(y.shape[0], device=y.device)
        loss -= logp[rows, y].sum(dtype=torch.float64)
        if want_grad:
            p = logp.exp_()
            p[rows, y] -= 1.0
            gw.addmm_(p.t(), x)
            gb += p.sum(0)
    loss = loss / n + 0.5 * lam * (w * w).sum(dtype=torch.float64)
    if want_grad:
        gw.div_(n).add_(w, alpha=lam)
        gb.div_(n)
    return loss, gw, gb


def _fit(torch, design, w, b, lam, tol, max_iter, history):
    """L-BFGS from ``(w, b)`` (updated in place); returns (iterations, converged)."""
    w.requires_grad_(False)
    b.requires_grad_(False)
    params = [w, b]
    eps = torch.finfo(w.dtype).eps
    opt = torch.optim.LBFGS(
        params, lr=1.0, max_iter=max_iter, max_eval=max_iter * 5 // 4 + 10,
        tolerance_grad=tol, tolerance_change=eps * eps, history_size=history,
        line_search_fn="strong_wolfe",
    )

    def closure():
        loss, gw, gb = _objective(torch, design, w, b, lam)
        w.grad, b.grad = gw, gb
        return loss

    opt.step(closure)
    iters = int(opt.state[opt._params[0]].get("n_iter", 0))
    _, gw, gb = _objective(torch, design, w, b, lam)
    gmax = max(float(gw.abs().max()), float(gb.abs().max()))
    w.grad = b.grad = None
    return iters, bool(gmax <= tol)


def _predict_counts(torch, design, w, b, k):
    """(correct per class, total per class) of argmax predictions."""
    correct = torch.zeros(k, dtype=torch.int64, device=w.device)
    total = torch.zeros(k, dtype=torch.int64, device=w.device)
    for x, y in design.chunks():
        pred = torch.addmm(b, x, w.t()).argmax(1)
        total += torch.bincount(y, minlength=k)
        correct += torch.bincount(y[pred == y], minlength=k)
    return correct.cpu().numpy(), total.cpu().numpy()


def _accuracy(correct, total, kind):
    if kind == "top1":
        return float(correct.sum() / max(1, total.sum()))
    present = total > 0
    return float(np.mean(correct[present] / total[present]))


# --------------------------------------------------------------------------- public entry
def _checked_grid(grid: Any, selection: str, tol: float, max_iter: int) -> np.ndarray:
    """The λ grid, increasing without repeats, after checking the sweep's options."""
    if selection not in ("top1", "mean_per_class"):
        raise ParameterError(f"selection must be 'top1' or 'mean_per_class', got {selection!r}")
    if not (tol > 0 and math.isfinite(tol)):
        raise ParameterError(f"tol must be positive and finite, got {tol}")
    as_count(max_iter, "max_iter")
    lams = np.asarray(DEFAULT_GRID if grid is None else grid, dtype=np.float64).ravel()
    if lams.size == 0 or not np.all(np.isfinite(lams)) or np.any(lams <= 0):
        raise ParameterError(
            f"the λ grid must be non-empty, finite and positive, got {np.asarray(grid)!r}"
        )
    return np.unique(lams)  # increasing, no repeats


def _checked_shapes(train_features: Any, test_features: Any):
    """``(N_train, N_test, p)`` of two feature matrices of the same width."""
    for x, name in ((train_features, "train_features"), (test_features, "test_features")):
        _check_features(x, name)
    ntr, nte = _rows(train_features), _rows(test_features)
    if nte == 0:
        raise ParameterError("test_features has no rows: nothing to evaluate the probe on")
    p = int(train_features.shape[1])
    if int(test_features.shape[1]) != p:
        raise ShapeError(
            f"train_features have {p} columns but test_features have "
            f"{int(test_features.shape[1])}: the features must come from the same backbone"
        )
    return ntr, nte, p


def _encode_labels(ytr_raw: np.ndarray, yte_raw: np.ndarray):
    """``(classes, ytr, yte)``: the training classes (sorted) and both label arrays as indices
    into them; every test label must be a training class."""
    classes = np.unique(ytr_raw)
    if classes.size < 2:
        raise TooFewClassesError(
            f"at least 2 classes with samples are needed, but only {classes.size} present"
        )
    unseen = np.setdiff1d(np.unique(yte_raw), classes)
    if unseen.size:
        raise LabelError(
            f"test_labels contain {unseen.size} label(s) never seen in training "
            f"(e.g. {unseen[:5].tolist()}); a probe cannot predict them"
        )
    return classes, np.searchsorted(classes, ytr_raw), np.searchsorted(classes, yte_raw)


def _moments(torch, src: _Source, ntr: int, p: int, dt, dev, standardize: bool):
    """``(mean64, mean, scale)``: the training mean in float64 and in ``dt``, and the standard
    deviation (zeros replaced by 1) when ``standardize``; one streamed pass (which also checks
    finiteness)."""
    s1 = torch.zeros(p, dtype=torch.float64, device=dev)
    s2 = torch.zeros(p, dtype=torch.float64, device=dev) if standardize else None
    for _, _, blk in src.blocks():
        b64 = blk.to(torch.float64)
        s1 += b64.sum(0)
        if standardize:
            s2 += (b64 * b64).sum(0)
    mean64 = s1 / ntr
    scale = None
    if standardize:
        var = (s2 / ntr - mean64 * mean64).clamp_min(0)
        sd = var.sqrt()
        scale = torch.where(sd > 0, sd, torch.ones_like(sd)).to(dt)
    return mean64, mean64.to(dt), scale


def _sweep(torch, sub: _Design, val: _Design, lams: np.ndarray, prior: np.ndarray, fit_opts,
           selection: str):
    """Fits every ``λ`` of ``lams`` on ``sub`` from strong to weak, each warm-started from the
    previous solution (the first from zero weights and the log-prior bias), and scores it on
    ``val``: ``(curve, iterations, converged, solutions)``."""
    k, src = prior.size, sub.src
    w = torch.zeros(k, int(sub.mean.shape[0]), dtype=src.dtype, device=src.device)
    b = torch.from_numpy(np.log(prior)).to(device=src.device, dtype=src.dtype)
    b -= b.mean()
    curve = np.empty(lams.size)
    iters = np.empty(lams.size, dtype=np.int64)
    conv = np.empty(lams.size, dtype=bool)
    sols: List[Any] = [None] * lams.size
    for i in range(lams.size - 1, -1, -1):  # strong → weak
        iters[i], conv[i] = _fit(torch, sub, w, b, float(lams[i]), *fit_opts)
        c, t = _predict_counts(torch, val, w, b, k)
        curve[i] = _accuracy(c, t, selection)
        sols[i] = (w.clone(), b.clone())
    return curve, iters, conv, sols


def linear_probe(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    *,
    seed: int,
    device: Any = "auto",
    dtype: Any = "float32",
    grid: Optional[Sequence[float]] = None,
    val_fraction: float = 0.2,
    selection: str = "top1",
    standardize: bool = False,
    tol: float = 1e-4,
    max_iter: int = 1000,
    history_size: int = 20,
    chunk_rows: Optional[int] = None,
    max_resident_bytes: Optional[int] = None,
    cv: Optional[int] = None,
) -> ProbeResult:
    r"""Linear probe of frozen features: multinomial logistic regression with an unpenalised bias,
    ``min (1/N) Σ CE(W f_i + b, y_i) + (λ/2)‖W‖²`` by full-batch L-BFGS, ``λ`` chosen on a
    stratified validation split from ``grid`` (default 97 values log-spaced in ``[1e-6, 1e6]``,
    swept strong → weak with warm starts), then refitted on all training data.

    Features: numpy arrays (memory-mapped ``.npy`` files included) or torch tensors, ``(N, p)``;
    labels: integers. Training labels may be any integers (they are mapped to ``0..K-1`` in sorted
    order); every test label must occur in training. ``device="auto"`` is the tensor's device, or
    CUDA when available, else CPU. ``dtype`` ``"float32"`` (default) or ``"float64"``.
    ``selection`` ``"top1"`` or ``"mean_per_class"`` is the validation accuracy maximised;
    among tied strengths the weakest regularisation (smallest ``λ``) is taken (see the module
    docstring for why). ``cv``: ``None`` (default) for one stratified validation split of
    ``val_fraction``, or a number of folds ``k ≥ 2`` for stratified, seeded k-fold selection
    (``seed`` draws the folds; ``val_fraction`` is then unused).
    When the training data (in ``dtype``) does not fit in a third of the device's free memory
    (or ``max_resident_bytes``), or ``chunk_rows`` is given, features are streamed to the
    device in chunks of ``chunk_rows`` rows (default 65 536) at every evaluation.

    Examples
    --------
    >>> import numpy as np
    >>> from etfcore import data, transfer
    >>> x, y = data.load_digits()
    >>> r = transfer.linear_probe(x[:1200], y[:1200], x[1200:], y[1200:], seed=0,
    ...                           grid=np.logspace(-4, 0, 5))
    >>> r.top1 > 0.9, r.validation_curve.shape
    (True, (5,))
    """
    torch = _torch()
    lams = _checked_grid(grid, selection, tol, max_iter)
    as_count(history_size, "history_size")
    if chunk_rows is not None:
        as_count(chunk_rows, "chunk_rows")
    as_index(seed, "seed")
    ntr, nte, p = _checked_shapes(train_features, test_features)
    ytr_raw = _labels(train_labels, ntr, "train_labels")
    yte_raw = _labels(test_labels, nte, "test_labels")
    classes, ytr, yte = _encode_labels(ytr_raw, yte_raw)
    k = classes.size
    if cv is None:
        fold = stratified_validation_mask(ytr_raw, val_fraction, seed).astype(np.int64)
        held_out = [1]
    else:
        fold = stratified_folds(ytr_raw, cv, seed)
        held_out = list(range(int(cv)))

    dev = _resolve_device(torch, device, train_features)
    dt = _resolve_dtype(torch, dtype)
    item = 4 if dt == torch.float32 else 8
    resident = chunk_rows is None and _fits(torch, dev, ntr * p * item, max_resident_bytes)
    chunk = chunk_rows if chunk_rows else (ntr if resident else 65536)

    src = _Source(train_features, torch, dev, dt, chunk, "train_features")
    mean64, mean, scale = _moments(torch, src, ntr, p, dt, dev, standardize)

    te_src = _Source(test_features, torch, dev, dt, chunk, "test_features")
    te_res = chunk_rows is None and _fits(torch, dev, nte * p * item, max_resident_bytes)
    full = _Design(src, ytr, None, mean, scale, resident)
    test = _Design(te_src, yte, None, mean, scale, te_res)

    curves, kept = [], None
    for f in held_out:
        val_mask = fold == f
        sub = _Design(src, ytr, ~val_mask, mean, scale, resident)
        val = _Design(src, ytr, val_mask, mean, scale, resident)
        prior = np.bincount(ytr[~val_mask], minlength=k) / (~val_mask).sum()
        curve, it, cv_ok, sols = _sweep(
            torch, sub, val, lams, prior, (tol, int(max_iter), history_size), selection
        )
        curves.append(curve)
        if kept is None:  # the first split's fits: warm starts for the refit, its iterations
            kept, iters, conv = sols, it, cv_ok
        del sols
    curve = np.mean(curves, axis=0)
    best = select_strength(curve)
    w, b = kept[best]
    kept = []
    r_iters, r_conv = _fit(torch, full, w, b, float(lams[best]), tol, int(max_iter),
                           history_size)
    c, t = _predict_counts(torch, test, w, b, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(t > 0, c / np.maximum(t, 1), np.nan)
    return ProbeResult(
        top1=_accuracy(c, t, "top1"),
        mean_per_class=_accuracy(c, t, "mean_per_class"),
        l2=float(lams[best]),
        l2_index=best,
        grid=lams,
        validation_curve=curve,
        selection=selection,
        per_class_accuracy=per_class,
        classes=classes,
        iterations=iters,
        converged=conv,
        refit_iterations=r_iters,
        refit_converged=r_conv,
        num_train=ntr,
        num_val=int((fold == held_out[0]).sum()) if cv is None else ntr,
        num_test=nte,
        device=str(dev),
        dtype=str(dt).replace("torch.", ""),
        tol=float(tol),
        weight=w.cpu().numpy().astype(np.float64),
        bias=b.cpu().numpy().astype(np.float64),
        feature_mean=mean64.cpu().numpy(),
        feature_scale=None if scale is None else scale.cpu().numpy().astype(np.float64),
        cv=None if cv is None else int(cv),
        fold_curves=None if cv is None else np.stack(curves),
    )


def select_strength(curve: Any) -> int:
    """The index into an increasing grid of strengths chosen from a validation curve: the best
    accuracy, and among ties the weakest regularisation (the smallest index; see the module
    docstring for why).

    Examples
    --------
    >>> select_strength([0.5, 0.9, 0.9, 0.9, 0.7])
    1
    """
    curve = np.asarray(curve, dtype=np.float64)
    return int(np.flatnonzero(curve == curve.max())[0])


def fit_logistic(
    features: Any,
    labels: Any,
    l2: float,
    *,
    device: Any = "auto",
    dtype: Any = "float64",
    tol: float = 1e-8,
    max_iter: int = 2000,
    history_size: int = 20,
    chunk_rows: Optional[int] = None,
):
    r"""One fit of ``min (1/N) Σ CE(W f_i + b, y_i) + (λ/2)‖W‖²`` on raw (uncentred) features,
    labels in ``0..K-1``. Returns ``(weight K×p, bias K, iterations, converged)`` as numpy
    (the bias is determined up to a common constant: it is returned with mean zero).
    scikit-learn's ``LogisticRegression(C=1/(λN))`` solves the same problem (``K ≥ 3``;
    ``C = 2/(λN)`` for ``K = 2``, where it fits one binary logit).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
    >>> w, b, _, ok = fit_logistic(x, y, 0.1)
    >>> bool(ok), w.shape
    (True, (2, 1))
    """
    torch = _torch()
    _check_features(features, "features")
    as_count(max_iter, "max_iter")
    as_count(history_size, "history_size")
    if chunk_rows is not None:
        as_count(chunk_rows, "chunk_rows")
    n, p = _rows(features), int(features.shape[1])
    y = _labels(labels, n, "labels")
    if y.min() < 0:
        raise LabelError("labels must be in 0..K-1")
    k = int(y.max()) + 1
    if not (l2 > 0 and math.isfinite(l2)):
        raise ParameterError(f"l2 must be positive and finite, got {l2}")
    dev = _resolve_device(torch, device, features)
    dt = _resolve_dtype(torch, dtype)
    src = _Source(features, torch, dev, dt, chunk_rows or n, "features")
    zero = torch.zeros(p, dtype=dt, device=dev)
    design = _Design(src, y, None, zero, None, chunk_rows is None)
    w = torch.zeros(k, p, dtype=dt, device=dev)
    b = torch.zeros(k, dtype=dt, device=dev)
    it, ok = _fit(torch, design, w, b, float(l2), tol, int(max_iter), history_size)
    bb = b.cpu().numpy().astype(np.float64)
    return w.cpu().numpy().astype(np.float64), bb - bb.mean(), it, ok
