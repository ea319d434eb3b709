r"""Transferability scores: rank backbones for a target task without training them.

Every score takes features ``F`` (``N × p``, rows are samples) of one backbone on the target's
training data and the target labels. Conventions: only classes with samples take part (labels
may be any integers); covariances are population (``1/N``) and weighted (``π_k = n_k/N``):
``Σ_T = (1/N) Σ (f_i - μ_G)(f_i - μ_G)ᵀ``, ``Σ_B = Σ_k π_k (μ_k - μ_G)(μ_k - μ_G)ᵀ``.

- ``hscore``: $\mathrm{tr}(\Sigma_T^\dagger \Sigma_B)$ (Bao et al. 2019). Passes over the samples:
  one (CollapseStats).
- ``regularized_hscore``: $\mathrm{tr}(\Sigma_{LW}^{-1} (1-\delta) \Sigma_B)$, Ledoit–Wolf
  $\Sigma_{LW} = (1-\delta)\Sigma_T + \delta\,(\mathrm{tr}\,\Sigma_T/p)\, I$ (Ibrahim et al. 2022).
  Passes over the samples: one (TransferabilityStats).
- ``logme``: mean over classes of the maximised evidence of Bayesian linear regression of the
  one-hot column on $F$ (You et al. 2021). Passes over the samples: one (CollapseStats).
- ``gbc``: $-\sum_{k \ne l} \exp(-D_B(k,l))$, diagonal Gaussians (Pándy et al. 2022). Passes over
  the samples: one (TransferabilityStats).
- ``nce``: $-H(Y \mid Z)$, $Z$ the source head's argmax (Tran et al. 2019). Passes over the samples:
  one (a $K_s \times K$ joint).
- ``leep``: $\frac1N \sum_i \log \sum_z \hat P(y_i \mid z)\, \theta_z(x_i)$ (Nguyen et al. 2020).
  Passes over the samples: two: the joint, then the log-likelihood.
- ``ncti``: Wang et al. 2023, min–max normalised across candidates. Passes over the samples: two:
  the statistics, then the LDA posteriors.
- ``vci``: $1 - \mathrm{tr}(\Sigma_T^\dagger \Sigma_B)/\min(p, K-1)$. Passes over the samples: one
  (CollapseStats).
- ``probe_mse``: least-squares probe loss. Passes over the samples: one (CollapseStats).
- ``cm_accuracy``: accuracy of $\arg\max_k (\mu_k - \mathrm{mean}_l\, \mu_l)^\top f$ (centred class
  means as weights; Seddik & Tamaazousti). Passes over the samples: two: the means, then the
  predictions.

Higher is better for every score except ``vci`` and ``probe_mse`` (lower is better);
[`score_direction`][etfcore.transfer.score_direction] says which.

This module holds the array-in scores and those of [`CollapseStats`][etfcore.CollapseStats]; the
streaming accumulator of the regularised H-score and GBC is
[`etfcore.transfer.streaming`][etfcore.transfer.streaming], LEEP and NCE are
[`etfcore.transfer.source_head`][etfcore.transfer.source_head], NCTI is
[`etfcore.transfer.ncti`][etfcore.transfer.ncti] (all re-exported here and by `etfcore.transfer`).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .._validation import as_features, as_labels_for_rows
from ..errors import LabelError, ParameterError, ShapeError
from ..stats import CollapseStats, LogMEResult, RidgePath
from ._common import as_collapse_stats, encode, stats_of
from .ncti import NCTIComponents, ncti, ncti_components
from .source_head import leep, nce, source_joint
from .streaming import TransferabilityStats

# The types and scores that moved to their own modules stay importable (and unpicklable) from
# here, where the previous release defined them.
__all__ = [
    "HIGHER_IS_BETTER",
    "LogMEResult",
    "NCTIComponents",
    "RidgePath",
    "TransferabilityStats",
    "all_scores",
    "centred_means_classifier",
    "cm_accuracy",
    "gbc",
    "hscore",
    "hscore_from_stats",
    "leep",
    "logme",
    "logme_from_stats",
    "nce",
    "ncti",
    "ncti_components",
    "probe_mse",
    "regularized_hscore",
    "ridge_path",
    "score_direction",
    "source_joint",
    "vci",
]

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

    Examples
    --------
    >>> score_direction("logme"), score_direction("vci")
    (1, -1)
    """
    if name not in HIGHER_IS_BETTER:
        raise ParameterError(f"unknown score {name!r}; known: {sorted(HIGHER_IS_BETTER)}")
    return 1 if HIGHER_IS_BETTER[name] else -1


def _xstats(features: Any, labels: Any) -> TransferabilityStats:
    h = as_features(features)
    classes, y = encode(labels, h.shape[0])
    return TransferabilityStats(classes.size, h.shape[1]).update(h, y)


# --------------------------------------------------------------------------- from CollapseStats
def hscore_from_stats(
    stats: CollapseStats, *, rank: Optional[int] = None, rtol: Optional[float] = None
) -> float:
    """H-score ``tr(Σ_T^† Σ_B)`` of streamed statistics (``Σ_T^†`` under the package's pinv policy:
    eigenvalues ``> rtol·λ_max``, default ``rtol = p·eps``, or exactly the top ``rank``). It equals
    ``r·(1 - VCI)`` with VCI's ``r``; the same as
    [`CollapseStats.hscore`][etfcore.CollapseStats.hscore].

    Examples
    --------
    >>> import etfcore as ec
    >>> from etfcore import transfer
    >>> x, y = ec.data.load_digits()
    >>> st = ec.CollapseStats(10, 64).update(x, y)
    >>> transfer.hscore_from_stats(st) == st.hscore() == transfer.hscore(x, y)
    True
    """
    return as_collapse_stats(stats).hscore(rank=rank, rtol=rtol)


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
    ``[r/2 log α + N/2 log β - ½Σ log(α+βσ_j) - β/2‖y-Fm‖² - α/2‖m‖² - N/2 log 2π]/N`` (``r`` = rank
    of ``F``: zero eigenvalues contribute ``log α`` to the sum and cancel), is averaged over
    classes. ``parity=True`` reproduces the reference implementation instead (11 iterations at most,
    1e-3 relative stop, ``1e-5`` in the denominators, zero eigenvalues dropped but ``p/2 log α``
    kept). The same as [`CollapseStats.logme`][etfcore.CollapseStats.logme].

    Numerics: ``r`` is at most ``min(N, p)`` and eigenvalues ``≤ rtol·σ_max`` count as zero,
    default ``rtol = p·eps`` of the input precision (float32 input: float32 eps), the same
    policy as the collapse metrics. ``FᵀF`` is formed uncentred, which squares the conditioning
    of ``F``: with features far from the origin (offset/spread ``≈ 10⁴`` the relative error is
    ``≈ 1e-6``; at ``≈ 10⁶`` the value is meaningless) centre or rescale the features first.

    Default mode needs more samples than the rank of ``F``: when ``r ≥ N`` the features fit every
    one-hot column exactly, the evidence grows without bound as ``β → ∞`` and a
    [`NumericalError`][etfcore.NumericalError] says so; ``parity=True`` (the reference code's 11
    damped iterations) still returns its finite value there.
    """
    return as_collapse_stats(stats).logme(parity=parity, tol=tol, max_iter=max_iter, rtol=rtol)



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
    validation accuracy (argmax) and loss at every ``λ`` (columns follow ``classes``). The same
    as [`CollapseStats.ridge_path`][etfcore.CollapseStats.ridge_path].

    Examples
    --------
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
    return stats.ridge_path(
        grid, val_features=val_features, val_labels=val_labels, rtol=rtol
    )



# --------------------------------------------------------------------------- arrays in, float out
def hscore(features: Any, labels: Any, **kw) -> float:
    r"""H-score $\mathrm{tr}(\Sigma_T^\dagger \Sigma_B)$ of in-memory features (see
    [`hscore_from_stats`][etfcore.transfer.hscore_from_stats]).

    Parameters
    ----------
    features : array_like
        ``(N, p)`` float32 or float64 features of one backbone on the target's training data.
    labels : array_like
        ``(N,)`` integer target labels (any integers; at least two distinct).
    **kw
        ``rank`` or ``rtol`` of the pseudo-inverse of $\Sigma_T$, as in
        [`hscore_from_stats`][etfcore.transfer.hscore_from_stats].

    Returns
    -------
    float
        The H-score (higher predicts better transfer).

    Examples
    --------
    >>> from etfcore import data, transfer
    >>> x, y = data.load_digits()
    >>> round(transfer.hscore(x, y), 4) == round(transfer.hscore(x * 3 + 1, y), 4)
    True
    """
    return hscore_from_stats(stats_of(features, labels), **kw)


def logme(features: Any, labels: Any, **kw) -> float:
    """LogME of in-memory features (see [`logme_from_stats`][etfcore.transfer.logme_from_stats];
    ``float`` of its result).

    Parameters
    ----------
    features : array_like
        ``(N, p)`` float32 or float64 features of one backbone on the target's training data.
    labels : array_like
        ``(N,)`` integer target labels (any integers; at least two distinct).
    **kw
        ``parity``, ``tol``, ``max_iter`` or ``rtol``, as in
        [`logme_from_stats`][etfcore.transfer.logme_from_stats].

    Returns
    -------
    float
        The mean evidence per sample over the classes (higher predicts better transfer).

    Examples
    --------
    >>> from etfcore import data, transfer
    >>> x, y = data.load_digits()
    >>> -2.0 < transfer.logme(x / 16, y) < 2.0
    True
    """
    return logme_from_stats(stats_of(features, labels), **kw).value


def regularized_hscore(features: Any, labels: Any, **kw) -> float:
    r"""Regularised H-score $\mathrm{tr}(\Sigma_{LW}^{-1} (1-\delta) \Sigma_B)$ with the
    Ledoit–Wolf shrinkage $\delta$ (see
    [`TransferabilityStats.regularized_hscore`][etfcore.transfer.streaming.TransferabilityStats.regularized_hscore]).

    Parameters
    ----------
    features : array_like
        ``(N, p)`` float32 or float64 features of one backbone on the target's training data.
    labels : array_like
        ``(N,)`` integer target labels (any integers; at least two distinct).
    **kw
        ``rtol``, as in ``TransferabilityStats.regularized_hscore``.

    Returns
    -------
    float
        The regularised H-score (higher predicts better transfer).
    """
    return _xstats(features, labels).regularized_hscore(**kw)


def gbc(features: Any, labels: Any, **kw) -> float:
    r"""GBC, $-\sum_{k \ne l} \exp(-D_B(k, l))$ with $D_B$ the Bhattacharyya distance of
    diagonal Gaussians (see
    [`TransferabilityStats.gbc`][etfcore.transfer.streaming.TransferabilityStats.gbc]).

    Parameters
    ----------
    features : array_like
        ``(N, p)`` float32 or float64 features of one backbone on the target's training data.
    labels : array_like
        ``(N,)`` integer target labels (any integers; at least two distinct).
    **kw
        ``var_floor``, as in ``TransferabilityStats.gbc``.

    Returns
    -------
    float
        The GBC score, at most 0 (higher predicts better transfer).
    """
    return _xstats(features, labels).gbc(**kw)


def vci(features: Any, labels: Any, **kw) -> float:
    r"""VCI $1 - \mathrm{tr}(\Sigma_T^\dagger \Sigma_B)/\min(p, K-1)$ (lower predicts better
    transfer).

    Parameters
    ----------
    features : array_like
        ``(N, p)`` float32 or float64 features of one backbone on the target's training data.
    labels : array_like
        ``(N,)`` integer target labels (any integers; at least two distinct).
    **kw
        ``weighting``, ``normalizer``, ``rank`` or ``rtol``, as in
        [`CollapseStats.vci`][etfcore.CollapseStats.vci].

    Returns
    -------
    float
        The VCI, in $[0, 1]$.
    """
    return float(stats_of(features, labels).vci(**kw))


def probe_mse(features: Any, labels: Any, **kw) -> float:
    r"""Least-squares probe loss
    $\min_{W, b} \frac{1}{2N} \sum_i \lVert W^\top f_i + b - e_{y_i} \rVert^2$ (lower is better).

    Parameters
    ----------
    features : array_like
        ``(N, p)`` float32 or float64 features of one backbone on the target's training data.
    labels : array_like
        ``(N,)`` integer target labels (any integers; at least two distinct).
    **kw
        ``rank`` or ``rtol``, as in [`CollapseStats.probe_mse`][etfcore.CollapseStats.probe_mse].

    Returns
    -------
    float
        The loss in closed form (no training).
    """
    return float(stats_of(features, labels).probe_mse(**kw))


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

    Examples
    --------
    >>> from etfcore import data, transfer
    >>> x, y = data.load_digits()
    >>> transfer.cm_accuracy(x, y) > 0.8
    True
    """
    h = as_features(features)
    classes, y = encode(labels, h.shape[0])
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
        ye_raw = as_labels_for_rows(eval_labels, he.shape[0], "eval_labels")
        unseen = np.setdiff1d(ye_raw, classes)
        if unseen.size:
            raise LabelError(f"eval_labels contain labels never seen in features: {unseen[:5]}")
        ye = np.searchsorted(classes, ye_raw)
    correct = 0
    for a in range(0, he.shape[0], chunk_rows):
        pred = (np.asarray(he[a:a + chunk_rows], dtype=np.float64) @ w.T).argmax(1)
        correct += int(np.sum(pred == ye[a:a + chunk_rows]))
    return correct / max(1, he.shape[0])




def all_scores(features: Any, labels: Any, *, source_probs: Any = None) -> Dict[str, float]:
    """Every single-candidate score of one feature matrix (NCTI's raw components included as
    ``ncti_seli``/``ncti_ncc``/``ncti_vc``; LEEP and NCE when ``source_probs`` is given)."""
    h = as_features(features)
    classes, y = encode(labels, h.shape[0])
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
