"""NCTI (Wang et al., ICCV 2023): a transferability score that compares candidates, from the
geometry of their features' LDA projection and posteriors."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from .._validation import as_count, as_features
from ..errors import NonFiniteError, ParameterError
from ._common import encode, softmax


@dataclasses.dataclass(frozen=True)
class NCTIComponents:
    """The three raw NCTI terms of one candidate (combined across candidates by
    [`ncti`][etfcore.transfer.ncti]): ``seli = ‖Z‖_*`` (nuclear norm of the centred LDA projection),
    ``ncc`` the mean LDA posterior of the true class, ``vc = log Σ_k ‖P_k‖_*`` (posteriors of class
    ``k``)."""

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
    pca_dim = as_count(pca_dim, "pca_dim")
    h = np.asarray(as_features(features), dtype=np.float64)
    if not np.isfinite(h).all():
        raise NonFiniteError("features contain NaN or Inf")
    if h.shape[0] < 2:
        raise ParameterError(f"NCTI needs at least 2 samples, got {h.shape[0]}")
    classes, y = encode(labels, h.shape[0])
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
    post = softmax(logits)
    ncc = float(np.mean(post[np.arange(n), y]))
    vc = float(np.log(sum(np.linalg.svd(post[y == c], compute_uv=False).sum()
                          for c in range(k))))
    return NCTIComponents(seli, ncc, vc, s)


def ncti(components: Sequence[NCTIComponents]) -> np.ndarray:
    """NCTI of several candidates: min–max normalise each term across candidates and combine
    ``seli + ncc - vc`` (a candidate's score depends on the others; at least 2 candidates)."""
    if len(components) < 2:
        raise ParameterError(f"NCTI compares candidates: need at least 2, got {len(components)}")

    for i, c in enumerate(components):
        if not isinstance(c, NCTIComponents):
            raise ParameterError(f"component {i} is a {type(c).__name__}, not NCTIComponents")
        for name in ("seli", "ncc", "vc"):
            v = getattr(c, name)
            if isinstance(v, (bool, str, bytes)) or not np.isfinite(np.float64(v)):
                raise ParameterError(f"component {i}: {name} must be a finite number, got {v!r}")

    def norm(v):
        v = np.asarray(v, dtype=np.float64)
        span = v.max() - v.min()
        return np.zeros_like(v) if span == 0 else (v - v.min()) / span

    return (norm([c.seli for c in components]) + norm([c.ncc for c in components])
            - norm([c.vc for c in components]))

