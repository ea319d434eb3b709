r"""Transferability scores: rank backbones for a target task without training them.

Every score takes features ``F`` (``N × p``, rows are samples) of one backbone on the target's
training data and the target labels. Conventions: only classes with samples take part (labels
may be any integers); covariances are population (``1/N``) and weighted (``π_k = n_k/N``):
``Σ_T = (1/N) Σ (f_i - μ_G)(f_i - μ_G)ᵀ``, ``Σ_B = Σ_k π_k (μ_k - μ_G)(μ_k - μ_G)ᵀ``.

===================  ===============================================  ==========================
score                definition                                       passes over the samples
===================  ===============================================  ==========================
``hscore``           ``tr(Σ_T^† Σ_B)`` (Bao et al. 2019)              one (CollapseStats)
``regularized_``     ``tr(Σ_LW^{-1} (1-δ) Σ_B)``, Ledoit–Wolf         one (TransferabilityStats)
``hscore``           ``Σ_LW = (1-δ)Σ_T + δ(tr Σ_T/p) I`` (Ibrahim
                     et al. 2022)
``logme``            mean over classes of the maximised evidence of   one (CollapseStats)
                     Bayesian linear regression of the one-hot
                     column on ``F`` (You et al. 2021)
``gbc``              ``-Σ_{k≠l} exp(-D_B(k,l))``, diagonal Gaussians  one (TransferabilityStats)
                     (Pándy et al. 2022)
``nce``              ``-H(Y|Z)``, ``Z`` the source head's argmax      one (a ``K_s × K`` joint)
                     (Tran et al. 2019)
``leep``             ``(1/N) Σ_i log Σ_z P̂(y_i|z) θ_z(x_i)``         two: the joint, then the
                     (Nguyen et al. 2020)                             log-likelihood
``ncti``             Wang et al. 2023, min–max normalised across      two: the statistics, then
                     candidates                                       the LDA posteriors
``vci``              ``1 - tr(Σ_T^† Σ_B)/min(p, K-1)``                one (CollapseStats)
``probe_mse``        least-squares probe loss                         one (CollapseStats)
``cm_accuracy``      accuracy of ``argmax_k (μ_k - mean_l μ_l)ᵀ f``   two: the means, then the
                     (centred class means as weights; Seddik &        predictions
                     Tamaazousti)
===================  ===============================================  ==========================

Higher is better for every score except ``vci`` and ``probe_mse`` (lower is better);
:func:`score_direction` says which.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .. import _core
from .._validation import (
    as_features,
    as_float,
    as_index,
    as_labels,
    as_optional_float,
    as_optional_index,
)
from ..errors import (
    DTypeError,
    IncompatibleStatsError,
    LabelError,
    ParameterError,
    ShapeError,
    TooFewClassesError,
)
from ..stats import CollapseStats

HIGHER_IS_BETTER = {
    "hscore": True,
    "regularized_hscore": True,
    "logme": True,
    "gbc": True,
    "nce": True,
    "leep": True,
    "ncti": True,
    "vci": False,
    "probe_mse": False,
    "cm_accuracy": True,
}


def score_direction(name: str) -> int:
    """``+1`` when a larger value of the score predicts better transfer, ``-1`` otherwise.

    >>> score_direction("logme"), score_direction("vci")
    (1, -1)
    """
    if name not in HIGHER_IS_BETTER:
        raise ParameterError(f"unknown score {name!r}; known: {sorted(HIGHER_IS_BETTER)}")
    return 1 if HIGHER_IS_BETTER[name] else -1


def _labels_for(labels: Any, num_rows: int, name: str = "labels") -> np.ndarray:
    """``as_labels`` plus the one row-count check the Python-only scores (LEEP, NCE, CM
    accuracy, the validation side of the ridge path) need: one label per row."""
    y = as_labels(labels, name)
    if y.shape[0] != num_rows:
        raise ShapeError(f"{name} has {y.shape[0]} entries but there are {num_rows} rows")
    return y


def _encode(labels: Any, n: int) -> Tuple[np.ndarray, np.ndarray]:
    y = _labels_for(labels, n)
    classes, codes = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise TooFewClassesError(
            f"at least 2 classes with samples are needed, but only {classes.size} present"
        )
    return classes, codes.astype(np.int64)


def _stats(features: Any, labels: Any) -> CollapseStats:
    h = as_features(features)
    classes, y = _encode(labels, h.shape[0])
    return CollapseStats(classes.size, h.shape[1]).update(h, y)


def _xstats(features: Any, labels: Any) -> TransferabilityStats:
    h = as_features(features)
    classes, y = _encode(labels, h.shape[0])
    return TransferabilityStats(classes.size, h.shape[1]).update(h, y)


# --------------------------------------------------------------------------- from CollapseStats
def hscore_from_stats(
    stats: CollapseStats, *, rank: Optional[int] = None, rtol: Optional[float] = None
) -> float:
    """H-score ``tr(Σ_T^† Σ_B)`` of streamed statistics (``Σ_T^†`` under the package's pinv
    policy: eigenvalues ``> rtol·λ_max``, default ``rtol = p·eps``, or exactly the top ``rank``).
    It equals ``r·(1 - VCI)`` with VCI's ``r``."""
    return float(_core.transfer_hscore(
        stats._raw, as_optional_index(rank, "rank"), as_optional_float(rtol, "rtol"))[0])


@dataclasses.dataclass(frozen=True)
class LogMEResult:
    """LogME with its diagnostics: ``per_class[i]`` is the evidence of class ``classes[i]``;
    ``iterations`` the largest fixed-point count over classes; ``rank`` the eigenvalues of
    ``FᵀF`` used."""

    value: float
    per_class: np.ndarray
    classes: np.ndarray
    iterations: int
    converged: bool
    rank: int
    parity: bool

    def __float__(self) -> float:
        return float(self.value)


def logme_from_stats(
    stats: CollapseStats,
    *,
    parity: bool = False,
    tol: float = 1e-12,
    max_iter: int = 10000,
    rtol: Optional[float] = None,
) -> LogMEResult:
    r"""LogME from streamed statistics: it needs only ``FᵀF`` (uncentred), ``Fᵀy_k`` and ``n_k``,
    which the shifted state gives exactly.

    For each class the evidence of ``y_k ≈ F m`` (no bias), prior ``m ~ N(0, α⁻¹I)``, noise
    ``N(0, β⁻¹)``, is maximised by the fixed point ``α = γ/‖m‖²``, ``β = (N-γ)/‖y_k - Fm‖²``,
    ``γ = Σ_j βσ_j/(α+βσ_j)`` (``σ_j`` eigenvalues of ``FᵀF``), iterated until the relative change
    of ``α/β`` is ``≤ tol``; the evidence per sample,
    ``[r/2 log α + N/2 log β - ½Σ log(α+βσ_j) - β/2‖y-Fm‖² - α/2‖m‖² - N/2 log 2π]/N``
    (``r`` = rank of ``F``: zero eigenvalues contribute ``log α`` to the sum and cancel), is
    averaged over classes. ``parity=True`` reproduces the reference implementation instead
    (11 iterations at most, 1e-3 relative stop, ``1e-5`` in the denominators, zero eigenvalues
    dropped but ``p/2 log α`` kept).

    Numerics: ``r`` is at most ``min(N, p)`` and eigenvalues ``≤ rtol·σ_max`` count as zero,
    default ``rtol = p·eps`` of the input precision (float32 input: float32 eps), the same
    policy as the collapse metrics. ``FᵀF`` is formed uncentred, which squares the conditioning
    of ``F``: with features far from the origin (offset/spread ``≈ 10⁴`` the relative error is
    ``≈ 1e-6``; at ``≈ 10⁶`` the value is meaningless) centre or rescale the features first.

    Default mode needs more samples than the rank of ``F``: when ``r ≥ N`` the features fit
    every one-hot column exactly, the evidence grows without bound as ``β → ∞`` and a
    :class:`~etfcore.NumericalError` says so; ``parity=True`` (the reference code's 11 damped
    iterations) still returns its finite value there.
    """
    v, per, present, it, conv, rank = _core.transfer_logme(
        stats._raw, bool(parity), as_float(tol, "tol"), as_index(max_iter, "max_iter"),
        as_optional_float(rtol, "rtol"),
    )
    return LogMEResult(float(v), per, present, int(it), bool(conv), int(rank), bool(parity))


@dataclasses.dataclass(frozen=True)
class RidgePath:
    """The ridge least-squares probe for every ``λ`` (see :func:`ridge_path`)."""

    grid: np.ndarray
    train_mse: np.ndarray
    rank: int
    classes: np.ndarray
    priors: np.ndarray
    global_mean: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    projected_targets: np.ndarray
    validation_accuracy: Optional[np.ndarray] = None
    validation_mse: Optional[np.ndarray] = None

    def weights(self, lam: float) -> Tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` with ``W`` ``p × K'`` and ``b`` ``K'``: predictions ``f @ W + b``."""
        if lam < 0:
            raise ParameterError(f"λ must be >= 0, got {lam}")
        s = self.eigenvalues
        if lam == 0:
            d = np.zeros_like(s)
            d[: self.rank] = 1.0 / s[: self.rank]
        else:
            d = 1.0 / (s + lam)
        w = self.eigenvectors @ (d[:, None] * self.projected_targets)
        return w, self.priors - self.global_mean @ w

    def predict(self, features: Any, lam: float) -> np.ndarray:
        """Ridge-probe outputs ``f @ W_λ + b_λ`` (``n × K'``)."""
        w, b = self.weights(lam)
        return np.asarray(features, dtype=np.float64) @ w + b


def ridge_path(
    stats: CollapseStats,
    grid: Optional[Sequence[float]] = None,
    *,
    val_features: Any = None,
    val_labels: Any = None,
    rtol: Optional[float] = None,
) -> RidgePath:
    r"""The least-squares probe onto one-hot labels with ridge ``λ``,
    ``min_{W,b} (1/2N) Σ ‖Wᵀf_i + b - e_{y_i}‖² + (λ/2)‖W‖²``, for every ``λ`` of ``grid``
    (default: ``0`` and the probe's 97 values ``logspace(-6, 6, 97)``), from one
    eigendecomposition ``Σ_T = V diag(σ) Vᵀ``: ``W_λ = V diag(1/(σ+λ)) Vᵀ C`` with
    ``C = Σ_k π_k (μ_k-μ_G) e_kᵀ``, and the training loss in closed form,
    ``½(1-Σπ_k²) - ½ Σ_j ‖(VᵀC)_j‖² (2/(σ_j+λ) - σ_j/(σ_j+λ)²)``. At ``λ = 0`` the pseudo-inverse
    policy applies and the loss is ``stats.probe_mse()``. With validation data, also the
    validation accuracy (argmax) and loss at every ``λ`` (columns follow ``classes``).

    >>> import numpy as np, etfcore as ec
    >>> from etfcore import transfer
    >>> x, y = ec.data.load_digits()
    >>> st = ec.CollapseStats(10, 64).update(x[:1000], y[:1000])
    >>> path = transfer.ridge_path(st, [0.0, 1.0], val_features=x[1000:], val_labels=y[1000:])
    >>> bool(abs(path.train_mse[0] - float(st.probe_mse())) < 1e-10)
    True
    >>> bool(path.validation_accuracy[1] > 0.85)
    True
    """
    lams = np.asarray(
        np.concatenate([[0.0], np.logspace(-6.0, 6.0, 97)]) if grid is None else grid,
        dtype=np.float64,
    ).ravel()
    if lams.size == 0 or not np.all(np.isfinite(lams)) or np.any(lams < 0):
        raise ParameterError(f"the ridge grid must be non-empty, finite and >= 0, got {lams!r}")
    present, pi, mean, vals, vecs, g, rank, mse = _core.transfer_ridge_path(
        stats._raw, [float(v) for v in lams], as_optional_float(rtol, "rtol")
    )
    path = RidgePath(lams, mse, int(rank), present, pi, mean, vals, vecs, g)
    if val_features is None:
        return path
    h = as_features(val_features, "val_features")
    if h.shape[1] != stats.dim:
        raise ShapeError(
            f"val_features have {h.shape[1]} columns but the statistics have dim={stats.dim}"
        )
    y = _labels_for(val_labels, h.shape[0], "val_labels")
    pos = np.searchsorted(present, y)
    bad = (pos >= present.size) | (present[np.minimum(pos, present.size - 1)] != y)
    if bad.any():
        raise LabelError(
            f"val_labels contain label(s) without training samples: {np.unique(y[bad])[:5]}"
        )
    # (F_val - μ_G) V once; then each λ costs one n × p × K' product
    proj = (h.astype(np.float64) - mean) @ vecs
    acc = np.empty(lams.size)
    vmse = np.empty(lams.size)
    onehot = np.zeros((h.shape[0], present.size))
    onehot[np.arange(h.shape[0]), pos] = 1.0
    for i, lam in enumerate(lams):
        if lam == 0:
            d = np.zeros_like(vals)
            d[:rank] = 1.0 / vals[:rank]
        else:
            d = 1.0 / (vals + lam)
        out = proj @ (d[:, None] * g) + pi
        acc[i] = float(np.mean(out.argmax(1) == pos))
        vmse[i] = 0.5 * float(np.mean(np.sum((out - onehot) ** 2, axis=1)))
    return dataclasses.replace(path, validation_accuracy=acc, validation_mse=vmse)


# --------------------------------------------------------------------------- TransferabilityStats
class TransferabilityStats:
    r"""A :class:`~etfcore.CollapseStats` plus the accumulators the regularised H-score and GBC
    need, relative to the same shift ``c`` (``a_i = f_i - c``): ``Σ‖a_i‖⁴``, ``Σ‖a_i‖² a_i`` and
    the per-class, per-dimension ``Σ_{y_i=k} a_i²`` (``K × p``). One streaming pass, float64,
    mergeable (another's sums are re-expressed to this shift exactly), serialisable.

    >>> import numpy as np
    >>> from etfcore import data, transfer
    >>> x, y = data.load_digits()
    >>> a = transfer.TransferabilityStats(10, 64).update(x[:900], y[:900])
    >>> b = transfer.TransferabilityStats(10, 64).update(x[900:], y[900:])
    >>> whole = transfer.TransferabilityStats(10, 64).update(x, y)
    >>> bool(abs(a.merge(b).gbc() - whole.gbc()) < 1e-9 * abs(whole.gbc()))
    True
    """

    __slots__ = ("_raw",)

    def __init__(self, num_classes: int, dim: int) -> None:
        self._raw = _core.RawTransferabilityStats(int(num_classes), int(dim))

    @classmethod
    def _wrap(cls, raw) -> TransferabilityStats:
        obj = cls.__new__(cls)
        obj._raw = raw
        return obj

    def update(self, features: Any, labels: Any) -> TransferabilityStats:
        """Adds a batch (all-or-nothing: on error nothing changes)."""
        h = as_features(features)
        self._raw.update(h, as_labels(labels))
        return self

    def merge(self, other: TransferabilityStats) -> TransferabilityStats:
        if not isinstance(other, TransferabilityStats):
            raise IncompatibleStatsError(
                f"can only merge a TransferabilityStats, got {type(other).__name__}"
            )
        self._raw.merge(other._raw)
        return self

    def copy(self) -> TransferabilityStats:
        return TransferabilityStats._wrap(self._raw.copy())

    def to_bytes(self) -> bytes:
        """Magic ``ETFCXFER``, version, the inner statistics' bytes, the extra sums, FNV-1a-64."""
        return self._raw.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> TransferabilityStats:
        return cls._wrap(_core.RawTransferabilityStats.from_bytes(bytes(data)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TransferabilityStats) and self._raw == other._raw

    __hash__ = None  # mutable

    @property
    def collapse_stats(self) -> CollapseStats:
        """A copy of the inner :class:`~etfcore.CollapseStats` (every collapse metric)."""
        return CollapseStats._wrap(self._raw.collapse_stats())

    @property
    def num_samples(self) -> int:
        return self.collapse_stats.num_samples

    def hscore(self, **kw) -> float:
        return hscore_from_stats(self.collapse_stats, **kw)

    def logme(self, **kw) -> LogMEResult:
        return logme_from_stats(self.collapse_stats, **kw)

    def regularized_hscore(self, *, rtol: Optional[float] = None) -> float:
        """``tr(Σ_LW^{-1} (1-δ) Σ_B)``, Ledoit–Wolf ``δ = min(1, b̄²/d²)`` with
        ``d² = ‖Σ_T - μI‖_F²``, ``μ = tr Σ_T/p``, ``b̄² = (Σ_i‖f_i-μ_G‖⁴/N - ‖Σ_T‖_F²)/N``
        (scikit-learn's ``ledoit_wolf``); ``Σ_B`` population (the reference code uses ``1/(N-1)``
        for it)."""
        return float(self._raw.regularized_hscore(as_optional_float(rtol, "rtol"))[0])

    def ledoit_wolf_shrinkage(self) -> float:
        """The shrinkage ``δ`` used by :meth:`regularized_hscore`."""
        return float(self._raw.regularized_hscore(None)[1])

    def gbc(self, *, var_floor: Optional[float] = None) -> float:
        """``-Σ_{k≠l} exp(-D_B(k,l))``, ``D_B = ⅛Σ_d (μ_kd-μ_ld)²/σ̄_d + ½Σ_d ln(σ̄_d/√(σ_kd σ_ld))``,
        ``σ̄ = (σ_k+σ_l)/2``, population per-class variances floored at ``var_floor`` (default
        ``1e-12 ×`` the largest)."""
        return float(self._raw.gbc(var_floor))


# --------------------------------------------------------------------------- arrays in, float out
def hscore(features: Any, labels: Any, **kw) -> float:
    """H-score ``tr(Σ_T^† Σ_B)`` of in-memory features (see :func:`hscore_from_stats`).

    >>> from etfcore import data, transfer
    >>> x, y = data.load_digits()
    >>> round(transfer.hscore(x, y), 4) == round(transfer.hscore(x * 3 + 1, y), 4)
    True
    """
    return hscore_from_stats(_stats(features, labels), **kw)


def logme(features: Any, labels: Any, **kw) -> float:
    """LogME of in-memory features (see :func:`logme_from_stats`; ``float`` of its result).

    >>> from etfcore import data, transfer
    >>> x, y = data.load_digits()
    >>> -2.0 < transfer.logme(x / 16, y) < 2.0
    True
    """
    return logme_from_stats(_stats(features, labels), **kw).value


def regularized_hscore(features: Any, labels: Any, **kw) -> float:
    """Regularised H-score (see :meth:`TransferabilityStats.regularized_hscore`)."""
    return _xstats(features, labels).regularized_hscore(**kw)


def gbc(features: Any, labels: Any, **kw) -> float:
    """GBC (see :meth:`TransferabilityStats.gbc`)."""
    return _xstats(features, labels).gbc(**kw)


def vci(features: Any, labels: Any, **kw) -> float:
    """VCI ``1 - tr(Σ_T^† Σ_B)/min(p, K-1)`` (lower predicts better transfer)."""
    return float(_stats(features, labels).vci(**kw))


def probe_mse(features: Any, labels: Any, **kw) -> float:
    """Least-squares probe loss ``min (1/2N)Σ‖Wᵀf_i + b - e_{y_i}‖²`` (lower is better)."""
    return float(_stats(features, labels).probe_mse(**kw))


def centred_means_classifier(stats: CollapseStats) -> Tuple[np.ndarray, np.ndarray]:
    """``(M̄, classes)``: ``M̄ = M P/‖M P‖₂`` (rows = present classes), ``M`` the class means,
    ``P = I - 11ᵀ/K`` (Seddik & Tamaazousti's "CM" weights; no bias)."""
    present = stats.present_classes()
    m = stats.class_means()[present]
    mc = m - m.mean(0)
    return mc / np.linalg.norm(mc, 2), present


def cm_accuracy(
    features: Any,
    labels: Any,
    eval_features: Any = None,
    eval_labels: Any = None,
    *,
    chunk_rows: int = 65536,
) -> float:
    """Accuracy of the centred-means classifier ``argmax_k m̄_kᵀ f`` built from
    ``(features, labels)`` and evaluated on ``(eval_features, eval_labels)`` (default: the same
    samples). Two passes: the means, then the predictions (in chunks).

    >>> from etfcore import data, transfer
    >>> x, y = data.load_digits()
    >>> transfer.cm_accuracy(x, y) > 0.8
    True
    """
    h = as_features(features)
    classes, y = _encode(labels, h.shape[0])
    st = CollapseStats(classes.size, h.shape[1]).update(h, y)
    w, _ = centred_means_classifier(st)
    if eval_features is None:
        he, ye = h, y
    else:
        he = as_features(eval_features, "eval_features")
        if he.shape[1] != h.shape[1]:
            raise ShapeError(
                f"eval_features have {he.shape[1]} columns, features have {h.shape[1]}"
            )
        ye_raw = _labels_for(eval_labels, he.shape[0], "eval_labels")
        unseen = np.setdiff1d(ye_raw, classes)
        if unseen.size:
            raise LabelError(f"eval_labels contain labels never seen in features: {unseen[:5]}")
        ye = np.searchsorted(classes, ye_raw)
    correct = 0
    for a in range(0, he.shape[0], chunk_rows):
        pred = (np.asarray(he[a:a + chunk_rows], dtype=np.float64) @ w.T).argmax(1)
        correct += int(np.sum(pred == ye[a:a + chunk_rows]))
    return correct / max(1, he.shape[0])


# --------------------------------------------------------------------------- source-head scores
def _probabilities(p: Any, name: str) -> np.ndarray:
    if hasattr(p, "detach"):
        p = p.detach().cpu().numpy()
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 2:
        raise ShapeError(f"{name} must be 2-D (num_samples, num_source_classes)")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ParameterError(
            f"{name} must be finite and non-negative (probabilities); pass logits=True for logits"
        )
    if not np.allclose(arr.sum(1), 1.0, atol=1e-4):
        raise ParameterError(
            f"{name} rows must sum to 1 (softmax of the source head); pass logits=True for logits"
        )
    return arr


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def source_joint(source_probs: Any, labels: Any, *, logits: bool = False):
    """``(joint, classes)``: the empirical joint ``P̂(y, z) = (1/N) Σ_i θ_z(x_i) [y_i = y]``
    (``K × K_s``) of target labels and the source head's outputs ``θ(x_i)``. Streaming: the
    joint of a union is the ``N``-weighted mean of the joints."""
    if logits:
        z = np.asarray(source_probs.detach().cpu().numpy() if hasattr(source_probs, "detach")
                       else source_probs, dtype=np.float64)
        if z.ndim != 2 or not np.all(np.isfinite(z)):
            raise ShapeError("source logits must be a finite 2-D array")
        theta = _softmax(z)
    else:
        theta = _probabilities(source_probs, "source_probs")
    classes, y = _encode(labels, theta.shape[0])
    joint = np.zeros((classes.size, theta.shape[1]))
    np.add.at(joint, y, theta)
    return joint / theta.shape[0], classes, theta, y


def leep(source_probs: Any, labels: Any, *, logits: bool = False) -> float:
    r"""LEEP (Nguyen et al. 2020): ``(1/N) Σ_i log Σ_z P̂(y_i|z) θ_z(x_i)`` with
    ``P̂(y|z) = P̂(y,z)/P̂(z)`` from the empirical joint (:func:`source_joint`). Two passes over
    the predictions (the joint, then the log-likelihood).

    >>> import numpy as np
    >>> from etfcore import transfer
    >>> theta = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]])
    >>> round(transfer.leep(theta, [0, 0, 1, 1]), 4)
    -0.3426
    """
    joint, _, theta, y = source_joint(source_probs, labels, logits=logits)
    pz = joint.sum(0)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)  # P(y|z)
    lik = np.einsum("iz,iz->i", theta, cond[y])
    return float(np.mean(np.log(lik)))


def nce(source_probs: Any, labels: Any, *, logits: bool = False) -> float:
    r"""NCE (Tran et al. 2019): ``-H(Y|Z) = Σ_{y,z} P̂(y,z) log P̂(y|z)`` with ``Z`` the source
    head's hard prediction (argmax of ``source_probs``). One pass (a ``K × K_s`` count table).

    >>> from etfcore import transfer
    >>> transfer.nce([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]], [0, 0, 1, 1])
    0.0
    """
    if hasattr(source_probs, "detach"):
        source_probs = source_probs.detach().cpu().numpy()
    arr = np.asarray(source_probs)
    if arr.ndim != 2:
        raise ShapeError("source_probs must be 2-D (num_samples, num_source_classes)")
    if arr.dtype.kind not in "fiu":
        raise DTypeError(f"source_probs must be numeric, got {arr.dtype}")
    classes, y = _encode(labels, arr.shape[0])
    z = arr.argmax(1)
    joint = np.zeros((classes.size, arr.shape[1]))
    np.add.at(joint, (y, z), 1.0)
    joint /= arr.shape[0]
    pz = joint.sum(0)
    nz = joint > 0
    cond = np.divide(joint, pz, out=np.ones_like(joint), where=pz > 0)
    return float(np.sum(joint[nz] * np.log(cond[nz])) + 0.0)


# --------------------------------------------------------------------------- NCTI
@dataclasses.dataclass(frozen=True)
class NCTIComponents:
    """The three raw NCTI terms of one candidate (combined across candidates by :func:`ncti`):
    ``seli = ‖Z‖_*`` (nuclear norm of the centred LDA projection), ``ncc`` the mean LDA
    posterior of the true class, ``vc = log Σ_k ‖P_k‖_*`` (posteriors of class ``k``)."""

    seli: float
    ncc: float
    vc: float
    shrinkage: float


def ncti_components(features: Any, labels: Any, *, pca_dim: int = 64) -> NCTIComponents:
    r"""NCTI terms (Wang et al., ICCV 2023, as their public code computes them): PCA to
    ``pca_dim`` dimensions; LDA with within-class covariance shrunk by
    ``s = max(exp(-Σ_{j<32} λ_j), 1e-10)`` (``λ_j`` the PCA variances, ``1/(N-1)``),
    ``Σ_W^s = (1-s)Σ_W + s(tr Σ_W/d)I``; ``Z`` the centred projection onto the top ``K-1``
    generalised eigenvectors of ``(S_B, Σ_W^s)``, ``S_B = Σ_T^s - Σ_W^s``;
    posteriors ``softmax_k(μ_kᵀΣ_W^{s,-1} f - ½μ_kᵀΣ_W^{s,-1}μ_k + log π_k)``. Two passes (the
    statistics, then the posteriors). Needs the features in memory (the per-class posterior
    matrices' singular values).
    """
    h = np.asarray(as_features(features), dtype=np.float64)
    classes, y = _encode(labels, h.shape[0])
    n, p = h.shape
    k = classes.size
    d = min(pca_dim, p, n)
    mean = h.mean(0)
    xc = h - mean
    cov = xc.T @ xc / (n - 1)
    lam, vec = np.linalg.eigh(cov)
    lam, vec = lam[::-1][:d], vec[:, ::-1][:, :d]
    x = xc @ vec  # PCA scores (centred)
    s = max(float(np.exp(-lam[:32].sum())), 1e-10)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    pri = counts / n
    mu = np.zeros((k, d))
    np.add.at(mu, y, x)
    mu /= counts[:, None]
    r = x - mu[y]
    sw = r.T @ r / n
    st = x.T @ x / n

    def shrink(a):
        return (1 - s) * a + s * np.trace(a) / d * np.eye(d)

    sw_s, st_s = shrink(sw), shrink(st)
    sb = st_s - sw_s
    # generalised symmetric eigenproblem via Σ_W^{-1/2}
    wl, wv = np.linalg.eigh(sw_s)
    if wl.min() <= 0:
        raise ParameterError("the shrunk within-class covariance is singular; NCTI is undefined")
    isq = wv / np.sqrt(wl)
    gl, gv = np.linalg.eigh(isq.T @ sb @ isq)
    scal = isq @ gv[:, ::-1][:, : min(k - 1, d)]
    z = x @ scal
    z = z - z.mean(0)
    seli = float(np.linalg.svd(z, compute_uv=False).sum())
    coef = mu @ np.linalg.inv(sw_s)
    logits = x @ coef.T - 0.5 * np.sum(coef * mu, axis=1) + np.log(pri)
    post = _softmax(logits)
    ncc = float(np.mean(post[np.arange(n), y]))
    vc = float(np.log(sum(np.linalg.svd(post[y == c], compute_uv=False).sum()
                          for c in range(k))))
    return NCTIComponents(seli, ncc, vc, s)


def ncti(components: Sequence[NCTIComponents]) -> np.ndarray:
    """NCTI of several candidates: min–max normalise each term across candidates and combine
    ``seli + ncc - vc`` (a candidate's score depends on the others; at least 2 candidates)."""
    if len(components) < 2:
        raise ParameterError(f"NCTI compares candidates: need at least 2, got {len(components)}")

    def norm(v):
        v = np.asarray(v, dtype=np.float64)
        span = v.max() - v.min()
        return np.zeros_like(v) if span == 0 else (v - v.min()) / span

    return (norm([c.seli for c in components]) + norm([c.ncc for c in components])
            - norm([c.vc for c in components]))


def all_scores(features: Any, labels: Any, *, source_probs: Any = None) -> Dict[str, float]:
    """Every single-candidate score of one feature matrix (NCTI's raw components included as
    ``ncti_seli``/``ncti_ncc``/``ncti_vc``; LEEP and NCE when ``source_probs`` is given)."""
    h = as_features(features)
    classes, y = _encode(labels, h.shape[0])
    xs = TransferabilityStats(classes.size, h.shape[1]).update(h, y)
    st = xs.collapse_stats
    out = {
        "hscore": xs.hscore(),
        "regularized_hscore": xs.regularized_hscore(),
        "logme": float(xs.logme()),
        "gbc": xs.gbc(),
        "vci": float(st.vci()),
        "probe_mse": float(st.probe_mse()),
        "cm_accuracy": cm_accuracy(h, y),
    }
    c = ncti_components(h, y)
    out.update(ncti_seli=c.seli, ncti_ncc=c.ncc, ncti_vc=c.vc)
    if source_probs is not None:
        out["leep"] = leep(source_probs, labels)
        out["nce"] = nce(source_probs, labels)
    return out
