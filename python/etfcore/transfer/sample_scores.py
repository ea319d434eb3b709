r"""Sample-level model-selection scores: they need the samples themselves (pairs of samples, or a
mixture model fitted to them), so they run on a seeded, stratified subsample whose size the
result records.

- ``knn_accuracy``: leave-one-out k-NN accuracy (cosine or L2), ``k`` chosen on a split.
- ``parc``: Spearman (or Pearson) correlation of the feature and label dissimilarity matrices (Bolya
  et al. 2021).
- ``nleep``: LEEP on the posteriors of a Gaussian mixture fitted to PCA-reduced features (Li et al.
  2021); EM written here in numpy.
- ``pactran_gauss``: PAC-Bayesian bound of a Gaussian-prior softmax head (Ding et al. 2022).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .._validation import as_float, as_index, as_str
from ..errors import DegenerateInputError, NumericalError, ParameterError
from ..splits import stratified_validation_mask
from ._selection_common import (
    average_ranks,
    check_seed,
    log_softmax,
    logsumexp_rows,
    pca_scores,
    pearson_corr,
    prepared,
    stratified_subsample,
)
from .source_head import leep

__all__ = [
    "KNN_GRID",
    "KNNResult",
    "NLEEPResult",
    "PACTranResult",
    "PARCResult",
    "gaussian_mixture_em",
    "knn_accuracy",
    "nleep",
    "pactran_gauss",
    "parc",
]

#: The default grid of neighbour counts of `knn_accuracy`.
KNN_GRID = (1, 3, 5, 10, 20, 50)


# --------------------------------------------------------------------------------------- k-NN
@dataclasses.dataclass(frozen=True)
class KNNResult:
    """k-NN accuracy and the choices behind it (``float(result)`` is the accuracy)."""

    accuracy: float
    k: int
    metric: str
    grid: Tuple[int, ...]
    validation_accuracy: Tuple[float, ...]
    val_fraction: float
    seed: int
    num_selection: int
    num_evaluated: int
    num_samples: int
    max_samples: Optional[int]

    def __float__(self) -> float:
        return self.accuracy


def _unit_rows(x: np.ndarray) -> np.ndarray:
    nrm = np.linalg.norm(x, axis=1)
    if np.any(nrm == 0):
        raise DegenerateInputError(
            f"cosine k-NN needs non-zero feature rows; row {int(np.argmin(nrm))} is zero"
        )
    return x / nrm[:, None]


def _neighbours(q: np.ndarray, ref: np.ndarray, kmax: int, exclude_self: bool,
                chunk_rows: int) -> np.ndarray:
    """Indices into ``ref`` of the ``kmax`` nearest rows (squared L2) of every query row,
    nearest first, ties by lower index; ``exclude_self``: query ``i`` is ``ref`` row ``i``."""
    rn = np.einsum("ij,ij->i", ref, ref)
    out = np.empty((q.shape[0], kmax), dtype=np.int64)
    for a in range(0, q.shape[0], chunk_rows):
        qb = q[a:a + chunk_rows]
        d = rn[None, :] - 2.0 * (qb @ ref.T) + np.einsum("ij,ij->i", qb, qb)[:, None]
        if exclude_self:
            d[np.arange(qb.shape[0]), np.arange(a, a + qb.shape[0])] = np.inf
        part = np.argpartition(d, kmax - 1, axis=1)[:, :kmax] if kmax < d.shape[1] else \
            np.tile(np.arange(d.shape[1]), (qb.shape[0], 1))
        dp = np.take_along_axis(d, part, 1)
        order = np.lexsort((part, dp), axis=1)
        out[a:a + qb.shape[0]] = np.take_along_axis(part, order, 1)
    return out


def _vote(nb_labels: np.ndarray, k: int, num_classes: int) -> np.ndarray:
    counts = np.zeros((nb_labels.shape[0], num_classes))
    rows = np.repeat(np.arange(nb_labels.shape[0]), k)
    np.add.at(counts, (rows, nb_labels[:, :k].ravel()), 1.0)
    return counts.argmax(1)  # ties: the smallest class


def knn_accuracy(
    features: Any,
    labels: Any,
    *,
    metric: str = "cosine",
    grid: Sequence[int] = KNN_GRID,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_samples: Optional[int] = 10000,
    chunk_rows: int = 1024,
) -> KNNResult:
    r"""k-nearest-neighbour accuracy of the features on the target labels.

    Steps: (1) a seeded stratified subsample of at most ``max_samples`` rows; (2) a seeded
    stratified split
    ([`etfcore.splits.stratified_validation_mask`][etfcore.splits.stratified_validation_mask],
    ``val_fraction`` of every class) into a *selection* part and the *rest*; (3) ``k`` is the grid
    value with the best accuracy of the selection samples classified by their ``k`` nearest rows of
    the rest (ties: the smallest ``k``); (4) the score is the leave-one-out accuracy on the rest:
    every sample classified by the majority label of its ``k`` nearest *other* samples of the rest.
    ``metric="cosine"`` ranks neighbours by cosine similarity (zero rows are an error), ``"l2"`` by
    Euclidean distance. Votes are uniform; a tied vote goes to the smallest class, equidistant
    neighbours to the lower index. Grid values above the neighbours available are dropped (the
    result records the grid used).
    """
    x, y, classes, _ = prepared(features, labels)
    metric = as_str(metric, "metric").lower()
    if metric not in ("cosine", "l2"):
        raise ParameterError(f"metric must be 'cosine' or 'l2', got {metric!r}")
    seed = check_seed(seed)
    vf = as_float(val_fraction, "val_fraction")
    chunk = max(1, as_index(chunk_rows, "chunk_rows"))
    ks = sorted({as_index(k, "grid value") for k in grid})
    if not ks or ks[0] < 1:
        raise ParameterError(f"grid must hold positive neighbour counts, got {list(grid)}")
    idx = stratified_subsample(y, max_samples, seed)
    x, y = x[idx], y[idx]
    if metric == "cosine":
        x = _unit_rows(x)
    sel = stratified_validation_mask(y, vf, seed)
    xr, yr = x[~sel], y[~sel]
    ks = [k for k in ks if k <= xr.shape[0] - 1]
    if not ks:
        raise ParameterError("too few samples for the smallest k of the grid")
    kmax = ks[-1]
    k_count = classes.size
    nb = _neighbours(x[sel], xr, kmax, False, chunk)
    val_acc = [float(np.mean(_vote(yr[nb], k, k_count) == y[sel])) for k in ks]
    best = ks[int(np.argmax(val_acc))]
    nb = _neighbours(xr, xr, best, True, chunk)
    acc = float(np.mean(_vote(yr[nb], best, k_count) == yr))
    return KNNResult(acc, best, metric, tuple(ks), tuple(val_acc), vf, seed, int(sel.sum()),
                     int(xr.shape[0]), int(idx.size),
                     None if max_samples is None else int(max_samples))


# --------------------------------------------------------------------------------------- PARC
@dataclasses.dataclass(frozen=True)
class PARCResult:
    """PARC and its choices (``float(result)`` is the value, in ``[-1, 1]``; the reference
    code reports ``100 ×`` this)."""

    value: float
    correlation: str
    pca_dim: Optional[int]
    num_samples: int
    max_samples: Optional[int]
    seed: int

    def __float__(self) -> float:
        return self.value


def parc(
    features: Any,
    labels: Any,
    *,
    max_samples: Optional[int] = 2000,
    seed: int = 0,
    pca_dim: Optional[int] = 32,
    correlation: str = "spearman",
) -> PARCResult:
    r"""PARC (Bolya et al., NeurIPS 2021): the correlation between the upper triangles of two
    dissimilarity matrices of the same samples, ``1 - corr(f̃_i, f̃_j)`` of the features and
    ``1 - corr(e_{y_i}, e_{y_j})`` of the one-hot labels (``corr``: Pearson correlation of two
    rows across their entries).

    Conventions: on a seeded stratified subsample of at most ``max_samples`` rows; the
    features are reduced to their top ``pca_dim`` principal components (of the subsample; ``None``
    keeps all; each axis's largest loading positive), then every column standardised (``1/N``
    variance; constant columns left at zero). ``correlation="spearman"`` (the paper's, average
    ranks for ties) or ``"pearson"``. Memory ``O(m²)`` for ``m`` samples.
    """
    x, y, classes, _ = prepared(features, labels)
    seed = check_seed(seed)
    correlation = as_str(correlation, "correlation").lower()
    if correlation not in ("spearman", "pearson"):
        raise ParameterError(f"correlation must be 'spearman' or 'pearson', got {correlation!r}")
    idx = stratified_subsample(y, max_samples, seed)
    x, y = x[idx], y[idx]
    z, _ = pca_scores(x, None if pca_dim is None else as_index(pca_dim, "pca_dim"))
    sd = z.std(0)
    z = np.divide(z, sd, out=np.zeros_like(z), where=sd > 0)
    zc = z - z.mean(1, keepdims=True)
    nrm = np.linalg.norm(zc, axis=1)
    if np.any(nrm == 0):
        raise DegenerateInputError("PARC needs feature rows that are not constant across dims")
    zc /= nrm[:, None]
    m = x.shape[0]
    iu = np.triu_indices(m, 1)
    rdm_f = (1.0 - zc @ zc.T)[iu]
    onehot = np.eye(classes.size)[y]
    oc = onehot - onehot.mean(1, keepdims=True)
    oc /= np.linalg.norm(oc, axis=1)[:, None]
    rdm_y = (1.0 - oc @ oc.T)[iu]
    if correlation == "spearman":
        rdm_f, rdm_y = average_ranks(rdm_f), average_ranks(rdm_y)
    val = pearson_corr(rdm_f, rdm_y)
    return PARCResult(val, correlation, None if pca_dim is None else int(pca_dim), m,
                      None if max_samples is None else int(max_samples), seed)


# --------------------------------------------------------------------------------------- NLEEP
@dataclasses.dataclass(frozen=True)
class NLEEPResult:
    """NLEEP and its choices (``float(result)`` is the value, a mean log-likelihood ``≤ 0``)."""

    value: float
    num_components: int
    pca_dim: int
    variance_kept: Optional[float]
    covariance: str
    iterations: int
    converged: bool
    log_likelihood: float
    num_samples: int
    max_samples: Optional[int]
    seed: int

    def __float__(self) -> float:
        return self.value


def _log_gauss(x, means, cov, covariance):
    """``N × C`` log densities of every row under every component."""
    n, d = x.shape
    out = np.empty((n, means.shape[0]))
    for c in range(means.shape[0]):
        r = x - means[c]
        if covariance == "diag":
            out[:, c] = -0.5 * (np.sum(r * r / cov[c], 1) + np.sum(np.log(cov[c]))
                                + d * np.log(2 * np.pi))
        else:
            try:
                chol = np.linalg.cholesky(cov[c])
            except np.linalg.LinAlgError:
                raise NumericalError(
                    f"mixture component {c} has a covariance that is not positive definite; "
                    "raise reg_covar or rescale the features"
                ) from None
            sol = np.linalg.solve(chol, r.T)
            out[:, c] = -0.5 * (np.sum(sol * sol, 0) + 2 * np.sum(np.log(np.diag(chol)))
                                + d * np.log(2 * np.pi))
    return out


def _m_step(x, resp, covariance, reg_covar):
    nk = resp.sum(0) + 10 * np.finfo(float).eps
    means = resp.T @ x / nk[:, None]
    d = x.shape[1]
    if covariance == "diag":
        cov = np.stack([resp[:, c] @ (x - means[c]) ** 2 / nk[c] for c in range(nk.size)])
        cov += reg_covar
    else:
        cov = np.empty((nk.size, d, d))
        for c in range(nk.size):
            r = x - means[c]
            cov[c] = (resp[:, c, None] * r).T @ r / nk[c] + reg_covar * np.eye(d)
    return nk / x.shape[0], means, cov


def gaussian_mixture_em(
    x: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    *,
    covariance: str = "full",
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
):
    """EM for a Gaussian mixture from given parameters (float64): each iteration an E-step
    (responsibilities) then an M-step (weights, means, covariances ``+ reg_covar·I``), stopped
    when the mean log-likelihood changes by less than ``tol``. Returns ``(posteriors, weights,
    means, covariances, iterations, converged, mean_log_likelihood)``, the posteriors and
    likelihood under the final parameters (scikit-learn's ``predict_proba`` convention).
    ``covariances``: ``C × d × d`` (``"full"``) or ``C × d`` (``"diag"``)."""
    w, mu, cov = weights, means, covariances
    prev = -np.inf
    converged = False
    it = 0
    while it < max_iter:
        it += 1
        lp = _log_gauss(x, mu, cov, covariance) + np.log(w)
        ll = float(np.mean(logsumexp_rows(lp)))
        resp = np.exp(log_softmax(lp))
        w, mu, cov = _m_step(x, resp, covariance, reg_covar)
        if abs(ll - prev) < tol:
            converged = True
            break
        prev = ll
    lp = _log_gauss(x, mu, cov, covariance) + np.log(w)
    ll = float(np.mean(logsumexp_rows(lp)))
    return np.exp(log_softmax(lp)), w, mu, cov, it, converged, ll


def _kmeanspp(x: np.ndarray, c: int, rng: np.random.Generator) -> np.ndarray:
    centres = [int(rng.integers(x.shape[0]))]
    d2 = np.sum((x - x[centres[0]]) ** 2, 1)
    for _ in range(1, c):
        tot = d2.sum()
        nxt = int(rng.choice(x.shape[0], p=d2 / tot)) if tot > 0 else int(rng.integers(x.shape[0]))
        centres.append(nxt)
        d2 = np.minimum(d2, np.sum((x - x[nxt]) ** 2, 1))
    return x[centres]


def nleep(
    features: Any,
    labels: Any,
    *,
    components_per_class: int = 5,
    variance_kept: Optional[float] = 0.8,
    pca_dim: Optional[int] = None,
    covariance: str = "full",
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    max_samples: Optional[int] = None,
) -> NLEEPResult:
    r"""NLEEP (Li et al., CVPR 2021): LEEP ([`etfcore.transfer.leep`][etfcore.transfer.leep], with
    its log) of the target labels against the posteriors ``p(c | x_i)`` of a Gaussian mixture fitted
    to the PCA-reduced features, as if the mixture components were a source head's classes:
    ``(1/N) Σ_i log Σ_c P̂(y_i | c) p(c | x_i)``.

    Conventions: PCA keeps the fewest axes reaching ``variance_kept`` of the variance (the
    paper's 80 %) or exactly ``pca_dim``; ``components_per_class · K`` components (the paper's
    5 per class); ``covariance="full"`` (as the reference code, scikit-learn's default) or
    ``"diag"``; EM here in numpy from a seeded k-means++ start (hard assignment to the nearest
    seed, then an M-step), stopped at a mean log-likelihood change below ``tol``, covariances
    regularised by ``reg_covar·I``. Everything on a seeded stratified subsample of at most
    ``max_samples`` rows (``None``: all). Some re-implementations report the mean posterior
    without the log; this one keeps LEEP's log.
    """
    x, y, classes, _ = prepared(features, labels)
    seed = check_seed(seed)
    covariance = as_str(covariance, "covariance").lower()
    if covariance not in ("full", "diag"):
        raise ParameterError(f"covariance must be 'full' or 'diag', got {covariance!r}")
    cpc = as_index(components_per_class, "components_per_class")
    if cpc < 1:
        raise ParameterError("components_per_class must be at least 1")
    idx = stratified_subsample(y, max_samples, seed)
    x, y = x[idx], y[idx]
    if pca_dim is not None:
        z, _ = pca_scores(x, as_index(pca_dim, "pca_dim"))
        vk = None
    else:
        vk = None if variance_kept is None else as_float(variance_kept, "variance_kept")
        z, _ = pca_scores(x, None, vk)
    c = cpc * classes.size
    if c > z.shape[0]:
        raise ParameterError(f"{c} mixture components need at least as many samples "
                             f"({z.shape[0]} given)")
    rng = np.random.default_rng(seed)
    centres = _kmeanspp(z, c, rng)
    d2 = np.sum(z * z, 1)[:, None] - 2 * z @ centres.T + np.sum(centres ** 2, 1)[None, :]
    resp = np.zeros((z.shape[0], c))
    resp[np.arange(z.shape[0]), d2.argmin(1)] = 1.0
    w, mu, cov = _m_step(z, resp, covariance, float(reg_covar))
    post, *_rest, it, conv, ll = gaussian_mixture_em(
        z, w, mu, cov, covariance=covariance, max_iter=as_index(max_iter, "max_iter"),
        tol=as_float(tol, "tol"), reg_covar=float(reg_covar))
    post = post / post.sum(1, keepdims=True)
    val = leep(post, y)
    return NLEEPResult(val, c, int(z.shape[1]), vk, covariance, it, conv, ll, int(idx.size),
                       None if max_samples is None else int(max_samples), seed)


# ------------------------------------------------------------------------------ PACTran-Gauss
@dataclasses.dataclass(frozen=True)
class PACTranResult:
    """PACTran-Gaussian and its conventions. ``bound`` is the PAC-Bayesian bound (lower
    predicts better transfer); ``value = -bound`` so that, like every other score here, higher
    is better (``float(result)`` is ``value``)."""

    value: float
    bound: float
    empirical_loss: float
    prior_variance: float
    lda_factor: float
    iterations: int
    converged: bool
    num_samples: int
    max_samples: Optional[int]
    seed: int

    def __float__(self) -> float:
        return self.value


def pactran_gauss(
    features: Any,
    labels: Any,
    *,
    lda_factor: float = 1.0,
    s2_factor: Optional[float] = None,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-6,
    max_samples: Optional[int] = None,
) -> PACTranResult:
    r"""PACTran with a Gaussian prior (Ding et al., ECCV 2022), as its reference code computes it.

    On centred features ``F`` (``N × D``) and one-hot labels, minimise
    ``L(W, b) = (1/N) Σ_i CE(softmax(Wᵀf_i + b), y_i) + ‖W‖²/(2λN)`` (``λ = lda_factor``; the
    bias is not penalised) by L-BFGS-B (scipy, ``max_iter`` iterations, ``tol``) from a seeded
    start ``W ~ N(0, 0.03²)``, ``b = 0``. With the optimum ``L*`` and the elementwise curvature
    ``h = Σ_i f_id² q_ik(1 - q_ik) + 1/(λN)`` for the weights and ``Σ_i q_ik(1 - q_ik)`` for the
    biases (no ``1/N``, as the reference code), ``1/σ² = λN Σh / (DK) + 1e-10`` and the bound is
    ``L* + (DK/(2λN)) · s² · log(1/σ²)``, prior variance ``s² = s2_factor/D`` (default
    ``s2_factor = 100 λ``, the first of the reference code's two settings). Lower bound = better;
    the result's ``value`` is its negative. Sample level: a seeded stratified subsample of at most
    ``max_samples`` rows (``None``: all). Needs scipy (imported on call).
    """
    from scipy.optimize import minimize

    x, y, classes, _ = prepared(features, labels)
    seed = check_seed(seed)
    lam = as_float(lda_factor, "lda_factor")
    if not lam > 0:
        raise ParameterError(f"lda_factor must be positive, got {lda_factor}")
    s2f = 100.0 * lam if s2_factor is None else as_float(s2_factor, "s2_factor")
    idx = stratified_subsample(y, max_samples, seed)
    x, y = x[idx], y[idx]
    x = x - x.mean(0)
    n, d = x.shape
    k = classes.size
    onehot = np.eye(k)[y]
    reg = lam * n

    def unpack(theta):
        t = theta.reshape(d + 1, k)
        return t[:d], t[d:]

    def loss_grad(theta):
        w, b = unpack(theta)
        logits = x @ w + b
        lq = log_softmax(logits)
        loss = -np.sum(onehot * lq) / n + 0.5 * np.sum(w * w) / reg
        g = (np.exp(lq) - onehot) / n
        gw = x.T @ g + w / reg
        return loss, np.concatenate([gw, g.sum(0, keepdims=True)]).ravel()

    rng = np.random.default_rng(seed)
    theta0 = np.concatenate([rng.normal(size=(d, k)) * 0.03, np.zeros((1, k))]).ravel()
    opt = minimize(loss_grad, theta0, jac=True, method="L-BFGS-B",
                   options=dict(maxiter=as_index(max_iter, "max_iter")),
                   tol=as_float(tol, "tol"))
    w, b = unpack(opt.x)
    lq = log_softmax(x @ w + b)
    loss = -float(np.sum(onehot * lq)) / n + 0.5 * float(np.sum(w * w)) / reg
    q = np.exp(lq)
    curv = q - q * q
    h = float(np.sum((x * x).T @ curv) + d * k / reg + np.sum(curv))
    kd = d * k
    sigma2_inv = h * reg / kd + 1e-10
    s2 = s2f / d
    bound = loss + 0.5 * kd / reg * s2 * np.log(sigma2_inv)
    return PACTranResult(-float(bound), float(bound), loss, s2, lam, int(opt.nit),
                         bool(opt.success), int(idx.size),
                         None if max_samples is None else int(max_samples), seed)
