r"""Representation-quality scores from spectra of the streamed statistics: RankMe (label-free,
Garrido et al. 2023) and LiDAR (label-aware, Thilak et al. 2024). Both read only covariances of
[`CollapseStats`][etfcore.CollapseStats] (one streaming, mergeable pass, no per-sample work); the
array-in forms build those statistics first (RankMe also has a direct SVD form for reference).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import numpy as np

from .._validation import as_float
from ..errors import ParameterError
from ..stats import CollapseStats
from ._common import as_collapse_stats, stats_of
from ._selection_common import eig_threshold, finite_matrix

__all__ = [
    "LiDARResult",
    "RankMeResult",
    "lidar",
    "lidar_from_stats",
    "rankme",
    "rankme_from_stats",
]


@dataclasses.dataclass(frozen=True)
class RankMeResult:
    """RankMe and its conventions (``float(result)`` is the effective rank)."""

    value: float
    centred: bool
    eps: float
    rank: int
    terms: int

    def __float__(self) -> float:
        return self.value


@dataclasses.dataclass(frozen=True)
class LiDARResult:
    """LiDAR and its conventions (``float(result)`` is the effective rank)."""

    value: float
    delta: float
    eps: float
    weighting: str
    terms: int

    def __float__(self) -> float:
        return self.value


def _entropy_rank(v: np.ndarray, eps: float) -> float:
    """``exp(-Σ p log p)``, ``p = v/Σv + eps`` (the papers' smoothing)."""
    tot = float(v.sum())
    if not tot > 0:
        raise ParameterError("the spectrum is zero (constant features); the rank is undefined")
    p = v / tot + eps
    return float(math.exp(-np.sum(p * np.log(p))))


def _eps(value: Any) -> float:
    e = as_float(value, "eps")
    if not 0 <= e < 1:
        raise ParameterError(f"eps must be in [0, 1), got {value}")
    return e


def _precision_eps(stats: CollapseStats) -> float:
    return float(np.finfo(np.float32 if stats.precision == "float32" else np.float64).eps)


def rankme_from_stats(
    stats: CollapseStats, *, centred: bool = False, eps: float = 1e-7,
    rtol: Optional[float] = None,
) -> RankMeResult:
    r"""RankMe of streamed statistics: ``exp(-Σ_j p_j log p_j)``, ``p_j = σ_j/Σσ + eps`` over
    the ``min(N, D)`` singular values ``σ_j`` of the ``N × D`` feature matrix. They come from the
    eigenvalues of the second moment: ``σ_j = √(N λ_j)`` with ``λ_j`` of ``Σ_T + μ_G μ_Gᵀ``
    (the paper's uncentred embeddings, default) or of ``Σ_T`` (``centred=True``). Eigenvalues
    ``≤ rtol · λ_max`` (default ``rtol = D · eps`` of the input precision) count as zero.
    Scale-invariant; at most ``min(N, D)``."""
    e = _eps(eps)
    stats = as_collapse_stats(stats)
    cov = stats.total_covariance()
    if not centred:
        mu = stats.global_mean()
        cov = cov + np.outer(mu, mu)
    lam = np.linalg.eigvalsh(cov)[::-1]
    lam = np.where(lam > eig_threshold(lam, _precision_eps(stats), rtol), lam, 0.0)
    terms = min(int(stats.num_samples), lam.size)
    sig = np.sqrt(lam[:terms])
    return RankMeResult(_entropy_rank(sig, e), bool(centred), e, int(np.sum(sig > 0)), terms)


def rankme(
    features: Any, *, centred: bool = False, eps: float = 1e-7, rtol: Optional[float] = None,
) -> RankMeResult:
    """RankMe of an in-memory matrix (no labels), from its singular values directly (the definition
    of [`rankme_from_stats`][etfcore.transfer.rankme_from_stats]; the same threshold on ``σ_j²``).
    """
    x, pe = finite_matrix(features)
    if centred:
        x = x - x.mean(0)
    sig = np.linalg.svd(x, compute_uv=False)
    lam = sig ** 2
    r = rtol
    sig = np.where(lam > eig_threshold(np.r_[lam, np.zeros(max(0, x.shape[1] - lam.size))],
                                       pe, r), sig, 0.0)
    return RankMeResult(_entropy_rank(sig, _eps(eps)), bool(centred), _eps(eps),
                        int(np.sum(sig > 0)), int(sig.size))


def lidar_from_stats(
    stats: CollapseStats, *, delta: float = 1e-4, eps: float = 1e-7,
    weighting: str = "weighted",
) -> LiDARResult:
    r"""LiDAR of streamed statistics: ``exp(-Σ_j p_j log p_j)``, ``p_j = λ_j/Σλ + eps`` over the
    ``D`` eigenvalues of ``Σ_L = (Σ_W + δI)^{-½} Σ_B (Σ_W + δI)^{-½}`` (population covariances of
    the package's ``weighting``; the paper's classes are a sample's augmentations, here they are
    the labels). ``δ`` is an absolute ridge (the paper's default ``1e-4``): the value is not
    invariant to rescaling the features unless ``δ`` is scaled alike. At most ``K - 1``
    (plus the smoothing terms of the zero eigenvalues)."""
    d = as_float(delta, "delta")
    if not d > 0:
        raise ParameterError(f"delta must be positive, got {delta}")
    e = _eps(eps)
    stats = as_collapse_stats(stats)
    sb = stats.between_class_covariance(weighting)
    sw = stats.within_class_covariance(weighting)
    lam, vec = np.linalg.eigh(sw + d * np.eye(sw.shape[0]))
    isq = vec / np.sqrt(lam)
    mid = isq.T @ sb @ isq
    ev = np.clip(np.linalg.eigvalsh(0.5 * (mid + mid.T)), 0.0, None)
    return LiDARResult(_entropy_rank(ev, e), d, e, weighting, int(ev.size))


def lidar(features: Any, labels: Any, **kw: Any) -> LiDARResult:
    """LiDAR of in-memory features and labels
    ([`lidar_from_stats`][etfcore.transfer.lidar_from_stats] of their statistics)."""
    return lidar_from_stats(stats_of(features, labels), **kw)
