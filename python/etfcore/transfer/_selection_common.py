"""Helpers shared by the model-selection scores (private to `etfcore.transfer`): input in
float64 with its precision remembered, a seeded stratified subsample, thresholds that follow the
input precision, PCA with a fixed sign convention, average ranks and a row-wise softmax."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from .._validation import as_features, as_index
from ..errors import NonFiniteError, ParameterError
from ..splits import take_per_class
from ._common import encode


def prepared(features: Any, labels: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(x, y, classes, eps)``: the features in float64 (validated by the package's
    `as_features`, then checked finite), the label codes ``0..K-1``
    of the present classes (`encode`), the classes, and the
    machine epsilon of the *input* precision (float32 input: float32 eps)."""
    x, eps = finite_matrix(features)
    classes, y = encode(labels, x.shape[0])
    return x, y, classes, eps


def finite_matrix(features: Any, name: str = "features") -> Tuple[np.ndarray, float]:
    """``(x, eps)``: `as_features` in float64, checked finite, and the
    machine epsilon of the input precision."""
    h = as_features(features, name)
    eps = float(np.finfo(h.dtype).eps)
    x = np.asarray(h, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        row, col = np.argwhere(~np.isfinite(x))[0]
        raise NonFiniteError(
            f"{name} contain a non-finite value (NaN or Inf) at row {row}, column {col}"
        )
    return x, eps


def check_seed(seed: Any) -> int:
    return as_index(seed, "seed")


def stratified_subsample(
    y: np.ndarray, max_samples: Optional[int], seed: int
) -> np.ndarray:
    """Sorted row indices of a seeded, stratified subsample of at most ``max_samples`` rows: class
    ``k`` keeps ``max(min(n_k, 2), ⌊max_samples · n_k / N⌋)`` samples (every class keeps at least
    two, or all it has), drawn by [`etfcore.splits.take_per_class`][etfcore.splits.take_per_class].
    ``None`` or ``max_samples ≥ N``: every row."""
    n = y.size
    if max_samples is None:
        return np.arange(n)
    m = as_index(max_samples, "max_samples")
    if m < 2:
        raise ParameterError(f"max_samples must be at least 2, got {m}")
    if m >= n:
        return np.arange(n)
    have = np.bincount(y)
    counts = np.maximum(np.minimum(have, 2), (m * have) // n)
    return take_per_class(y, counts, seed=seed)


def eig_threshold(eigenvalues: np.ndarray, eps: float, rtol: Optional[float]) -> float:
    """The cut below which eigenvalues of a PSD matrix count as zero: ``rtol · λ_max``, default
    ``rtol = p · eps`` of the input precision (the package's pseudo-inverse policy)."""
    p = eigenvalues.size
    r = p * eps if rtol is None else float(rtol)
    if not (r >= 0 and np.isfinite(r)):
        raise ParameterError(f"rtol must be a non-negative number, got {rtol}")
    top = float(eigenvalues.max(initial=0.0))
    return r * max(top, 0.0)


def pca_scores(x: np.ndarray, dim: Optional[int] = None, variance_kept: Optional[float] = None):
    """``(scores, variances)``: the centred data projected on its top principal axes (by a
    symmetric eigendecomposition of the ``1/N`` covariance, float64), ``dim`` of them or the
    fewest whose variance reaches ``variance_kept`` of the total. Sign convention: each axis
    has its largest-magnitude loading positive."""
    xc = x - x.mean(0)
    n, p = xc.shape
    if p <= n:
        lam, vec = np.linalg.eigh(xc.T @ xc / n)
        lam, vec = lam[::-1], vec[:, ::-1]
    else:  # through the N × N Gram
        lam, u = np.linalg.eigh(xc @ xc.T / n)
        lam, u = lam[::-1], u[:, ::-1]
        keep = lam > 0
        lam, u = lam[keep], u[:, keep]
        vec = xc.T @ u / np.sqrt(lam * n)
    lam = np.clip(lam, 0.0, None)
    if variance_kept is not None:
        if not 0.0 < variance_kept <= 1.0:
            raise ParameterError(f"variance_kept must be in (0, 1], got {variance_kept}")
        frac = np.cumsum(lam) / max(lam.sum(), np.finfo(float).tiny)
        d = int(np.searchsorted(frac, variance_kept - 1e-12) + 1)
    else:
        d = lam.size if dim is None else as_index(dim, "pca_dim")
        if d < 1:
            raise ParameterError("pca_dim must be at least 1")
    d = min(d, lam.size)
    vec = vec[:, :d]
    big = np.argmax(np.abs(vec), axis=0)
    vec = vec * np.sign(vec[big, np.arange(d)])
    return xc @ vec, lam[:d]


def average_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks ``0..n-1`` of ``v`` with ties sharing their mean rank (vectorised)."""
    order = np.argsort(v, kind="mergesort")
    sv = v[order]
    starts = np.r_[True, sv[1:] != sv[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], v.size] - 1
    r = np.empty(v.size)
    r[order] = 0.5 * (first + last)[group]
    return r


def pearson_corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b) / den if den > 0 else float("nan")


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def logsumexp_rows(z: np.ndarray) -> np.ndarray:
    m = z.max(1)
    return m + np.log(np.exp(z - m[:, None]).sum(1))
