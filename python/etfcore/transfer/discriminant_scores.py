r"""Model-selection scores built on class statistics and linear discriminants: SFDA, ETran,
TransRate, EMMS and the PED wrapper. Each takes in-memory features ``F`` (``N × D``) and labels
and returns a result that records its conventions (``float(result)`` is the score).

- ``sfda``: mean true-class posterior of a shrunk-LDA classifier refit on confidence-mixed features
  (Shao et al. 2022). Passes: two (+ mixing).
- ``etran``: energy, LDA and SVD terms (Gholami et al. 2023); combined across a zoo by
  [`etran_combine`][etfcore.transfer.etran_combine]. Passes: two.
- ``transrate``: coding-rate difference $R(Z) - R(Z \mid Y)$ (Huang et al. 2022). Passes: one (per
  class Grams).
- ``emms``: negative residual of a least-squares map from features to (mixtures of) label embeddings
  (Meng et al. 2023). Passes: one.
- ``ped``: potential-energy-descent class shifts (Li et al. 2023), then LogME or GBC. Passes: one +
  score.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .._validation import as_float, as_index, as_matrix64, as_str
from ..errors import DegenerateInputError, ParameterError, ShapeError
from ._selection_common import (
    eig_threshold,
    finite_matrix,
    log_softmax,
    logsumexp_rows,
    prepared,
)
from .scores import gbc as _gbc
from .scores import logme as _logme

__all__ = [
    "EMMSResult",
    "ETranComponents",
    "PEDResult",
    "SFDAResult",
    "TransRateResult",
    "emms",
    "etran",
    "etran_combine",
    "normalise_scores",
    "ped",
    "ped_features",
    "sfda",
    "transrate",
]


# ------------------------------------------------------------------------- shared LDA pieces
def _class_moments(x: np.ndarray, y: np.ndarray, k: int):
    counts = np.bincount(y, minlength=k).astype(np.float64)
    means = np.zeros((k, x.shape[1]))
    np.add.at(means, y, x)
    means /= counts[:, None]
    r = x - means[y]
    sw = r.T @ r / x.shape[0]  # Σ_k π_k C_k, population
    return counts / x.shape[0], means, sw


def _power_lambda_max(a: np.ndarray, iterations: int = 3) -> float:
    """The reference code's estimate of ``λ_max``: start from the row sums, ``iterations``
    double power steps, return ``xᵀ A y`` of the last two unit iterates."""
    x = a.sum(1)
    y = x
    for _ in range(iterations):
        t = a @ x
        y = t / np.linalg.norm(t)
        t = a @ y
        x = t / np.linalg.norm(t)
    return float(x @ a @ y)


def _shrinkage(sw: np.ndarray, rule: str) -> float:
    if rule == "exact":
        lam = float(np.linalg.eigvalsh(sw)[-1])
    elif rule == "power3":
        lam = _power_lambda_max(sw)
    else:
        raise ParameterError(f"shrinkage_rule must be 'exact' or 'power3', got {rule!r}")
    return max(math.exp(-5.0 * lam), 1e-10)


def shrunk_lda_coefficients(pri, means, sw, shrinkage):
    """``(coef, bias)`` of the shrunk-LDA classifier, logits ``f·coef_kᵀ + bias_k`` with
    ``coef_k = μ_kᵀS⁻¹``, ``bias_k = -½μ_kᵀS⁻¹μ_k + log π_k``, ``S = (1-s)Σ_W + s(tr Σ_W/D) I``
    (through an eigendecomposition of ``S``; a singular ``S`` is refused)."""
    d = sw.shape[0]
    s = (1.0 - shrinkage) * sw
    s[np.diag_indices(d)] += shrinkage * np.trace(sw) / d
    lam, vec = np.linalg.eigh(s)
    if lam[0] <= 0:
        raise DegenerateInputError(
            "the shrunk within-class covariance is singular (all within-class variation is "
            "zero); the LDA posterior is undefined"
        )
    coef = (means @ vec / lam) @ vec.T  # μ_k S⁻¹
    return coef, -0.5 * np.sum(coef * means, 1) + np.log(pri)


def _lda_log_posteriors(x, y, k, shrinkage):
    """Log posteriors of the shrunk-LDA classifier (`shrunk_lda_coefficients`), and the class
    means."""
    pri, means, sw = _class_moments(x, y, k)
    coef, bias = shrunk_lda_coefficients(pri, means, sw, shrinkage)
    return log_softmax(x @ coef.T + bias), means


# ------------------------------------------------------------------------------------ SFDA
@dataclasses.dataclass(frozen=True)
class SFDAResult:
    """SFDA and its choices (``float(result)`` is the score, in ``(0, 1]``)."""

    value: float
    first_stage: float
    shrinkage: float
    shrinkage_rule: str
    saturated: bool

    def __float__(self) -> float:
        return self.value


def sfda(
    features: Any, labels: Any, *, shrinkage: Optional[float] = None,
    shrinkage_rule: str = "exact",
) -> SFDAResult:
    r"""SFDA (Shao et al., ECCV 2022): the mean posterior of the true class of a regularised
    Fisher discriminant, refit after the "self-challenging" confidence mix.

    1. Regularised LDA: ``Σ_W = Σ_k π_k C_k`` (population class covariances),
       ``S = (1-s)Σ_W + s (tr Σ_W/D) I`` with the paper's adaptive ``s = max(exp(-5 λ_max(Σ_W)),
       1e-10)``; posteriors ``p(k|f) = softmax_k(fᵀS⁻¹μ_k - ½μ_kᵀS⁻¹μ_k + log π_k)`` (the
       Fisher projection onto all ``D`` generalised eigenvectors of ``(Σ_B, S)`` gives the same
       classifier).
    2. ConfMix: ``q_i`` = the true-class entry of ``softmax(p(·|f_i))`` (the probabilities
       softened by a second softmax), ``f_i ← q_i f_i + (1-q_i) m̄_{y_i}`` with ``m̄_k`` the
       unweighted mean of the *other* classes' means.
    3. Refit step 1 on the mixed features with the same ``s``; the score is
       ``(1/N) Σ_i p(y_i | f̃_i)`` (no log, as the paper).

    ``shrinkage_rule="exact"`` takes ``λ_max`` from an eigendecomposition (the paper's
    definition); ``"power3"`` reproduces the reference code's three power iterations. A given
    ``shrinkage`` overrides both. Degenerates: with few samples per dimension (``N ≲ D``) ``Σ_W``
    is singular, ``s`` is tiny, the classifier separates the training samples perfectly and the
    score saturates at 1.0 (``saturated`` is set when it is within ``1e-6`` of 1); it then no
    longer ranks models.
    """
    x, y, classes, _ = prepared(features, labels)
    k = classes.size
    rule = as_str(shrinkage_rule, "shrinkage_rule")
    _, _, sw = _class_moments(x, y, k)
    if shrinkage is None:
        s = _shrinkage(sw, rule)
    else:
        s = as_float(shrinkage, "shrinkage")
        if not 0.0 <= s <= 1.0:
            raise ParameterError(f"shrinkage must be in [0, 1], got {s}")
    logp, means = _lda_log_posteriors(x, y, k, s)
    n = x.shape[0]
    first = float(np.mean(np.exp(logp[np.arange(n), y])))
    soft = np.exp(log_softmax(np.exp(logp)))
    q = soft[np.arange(n), y][:, None]
    others = (means.sum(0)[None, :] - means) / (k - 1)
    mixed = q * x + (1.0 - q) * others[y]
    logp2, _ = _lda_log_posteriors(mixed, y, k, s)
    val = float(np.mean(np.exp(logp2[np.arange(n), y])))
    return SFDAResult(val, first, s, rule if shrinkage is None else "given", val > 1 - 1e-6)


# ----------------------------------------------------------------------------------- ETran
@dataclasses.dataclass(frozen=True)
class ETranComponents:
    """The three raw ETran terms of one model on one target (combined across a zoo by
    [`etran_combine`][etfcore.transfer.etran_combine]; never normalised here)."""

    energy: float
    lda: float
    svd: float
    energy_fraction: float
    num_energy_samples: int
    lda_mode: str
    shrinkage: float
    svd_rank: int


def etran(
    features: Any,
    labels: Any,
    *,
    energy_fraction: float = 0.005,
    lda_mode: str = "paper",
    shrinkage: Optional[float] = None,
    rtol: Optional[float] = None,
) -> ETranComponents:
    r"""The ETran terms (Gholami et al., ICCV 2023) of one model's features on a target.

    - **energy**: ``-E(f_i) = log Σ_j exp(f_ij)`` (the features read as logits, temperature 1),
      averaged over the ``max(1, ⌊energy_fraction · N⌋)`` samples of *lowest* value (the
      reference code's default keeps the lowest 0.5 %). Not label-aware.
    - **lda**: ``(1/N) Σ_i p(y_i | f_i)`` of an LDA classifier. ``lda_mode="paper"``: the shrunk LDA
      of [`sfda`][etfcore.transfer.sfda]'s first stage (shrinkage
      ``s = max(exp(-5λ_max(Σ_W)), 1e-10)`` unless given). ``lda_mode="public"``: what the public
      code computes — its eigendecomposition of the non-symmetric ``S⁻¹Σ_B`` through a symmetric
      solver returns an orthogonal basis, so its classifier reduces to
      ``softmax_k(fᵀμ_k - ½‖μ_k‖² + log π_k)`` (identity covariance).
    - **svd**: ``-(1/(N K)) ‖F W - Y‖_F²`` with ``W = F^† Y`` the minimum-norm least-squares map
      onto the one-hot labels ``Y`` (no bias), ``F^†`` through the eigendecomposition of ``FᵀF``
      keeping eigenvalues ``> rtol · λ_max`` (default ``rtol = D · eps`` of the input precision).

    The paper's score is a weighted sum of the terms after each is min–max normalised over the
    candidate models of the target; that step depends on the zoo, so it is
    [`etran_combine`][etfcore.transfer.etran_combine]'s, never this function's.
    """
    x, y, classes, eps = prepared(features, labels)
    n = x.shape[0]
    frac = as_float(energy_fraction, "energy_fraction")
    if not 0.0 < frac <= 1.0:
        raise ParameterError(f"energy_fraction must be in (0, 1], got {frac}")
    lse = logsumexp_rows(x)
    m = max(1, int(math.floor(frac * n + 1e-9)))
    energy = float(np.mean(np.sort(lse)[:m]))
    mode = as_str(lda_mode, "lda_mode")
    k = classes.size
    if mode == "paper":
        _, _, sw = _class_moments(x, y, k)
        s = _shrinkage(sw, "exact") if shrinkage is None else as_float(shrinkage, "shrinkage")
        logp, _ = _lda_log_posteriors(x, y, k, s)
    elif mode == "public":
        pri, means, _ = _class_moments(x, y, k)
        s = float("nan")
        logp = log_softmax(x @ means.T - 0.5 * np.sum(means * means, 1) + np.log(pri))
    else:
        raise ParameterError(f"lda_mode must be 'paper' or 'public', got {mode!r}")
    lda = float(np.mean(np.exp(logp[np.arange(n), y])))
    lam, vec = np.linalg.eigh(x.T @ x)
    keep = lam > eig_threshold(lam, eps, rtol)
    onehot = np.eye(k)[y]
    proj = x @ vec[:, keep]  # F V_r; F W = F V_r Λ_r⁻¹ V_rᵀ Fᵀ Y
    fit = proj @ ((proj.T @ onehot) / lam[keep][:, None])
    svd = -float(np.mean((fit - onehot) ** 2))
    return ETranComponents(energy, lda, svd, frac, m, mode, s, int(keep.sum()))


def normalise_scores(values: Any, normalise: Optional[str] = "minmax") -> np.ndarray:
    """Zoo normalisation of one score over the candidate models of one target:
    ``"minmax"`` → ``(v - min)/(max - min)``, ``"zscore"`` → ``(v - mean)/std`` (population),
    ``None`` → unchanged. A constant score (``max = min``) normalises to zeros."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ParameterError("zoo normalisation needs a non-empty array of finite scores")
    if normalise is None:
        return v.copy()
    norm = as_str(normalise, "normalise")
    if norm == "minmax":
        span = v.max() - v.min()
        return (v - v.min()) / span if span > 0 else np.zeros_like(v)
    if norm == "zscore":
        sd = v.std()
        return (v - v.mean()) / sd if sd > 0 else np.zeros_like(v)
    raise ParameterError(f"normalise must be 'minmax', 'zscore' or None, got {normalise!r}")


def etran_combine(
    components: Sequence[ETranComponents],
    *,
    weights: Tuple[float, float, float] = (0.15, 0.85, 0.0),
    normalise: Optional[str] = "minmax",
) -> np.ndarray:
    """ETran scores of a zoo (one entry per candidate model, same target):
    ``w_e · n(energy) + w_l · n(lda) + w_s · n(svd)`` with ``n`` the zoo normalisation
    ([`normalise_scores`][etfcore.transfer.normalise_scores]). Default weights: the public code's
    classification setting (0.15 energy, 0.85 LDA, no SVD term). Adding or removing a model changes
    every value."""
    comps = list(components)
    if len(comps) < 2:
        raise ParameterError("ETran's zoo normalisation needs at least two candidate models")
    if len(weights) != 3:
        raise ShapeError("weights must be (energy, lda, svd)")
    we, wl, ws = (as_float(w, "weight") for w in weights)
    out = np.zeros(len(comps))
    for w, name in ((we, "energy"), (wl, "lda"), (ws, "svd")):
        if w != 0.0:
            out += w * normalise_scores([getattr(c, name) for c in comps], normalise)
    return out


# ------------------------------------------------------------------------------- TransRate
@dataclasses.dataclass(frozen=True)
class TransRateResult:
    """TransRate ``R(Z) - R(Z|Y)`` and its conventions (``float(result)`` is the value)."""

    value: float
    rate: float
    conditional_rate: float
    eps: float
    centred: bool
    class_weighting: str

    def __float__(self) -> float:
        return self.value


def _coding_rate(z: np.ndarray, eps: float) -> float:
    """``½ log det(I + ZᵀZ/(n ε))`` through the smaller Gram's eigenvalues (float64)."""
    n = z.shape[0]
    g = z @ z.T if n < z.shape[1] else z.T @ z
    lam = np.clip(np.linalg.eigvalsh(g), 0.0, None)
    return 0.5 * float(np.sum(np.log1p(lam / (n * eps))))


def transrate(
    features: Any, labels: Any, *, eps: float = 1e-4, centre: bool = True,
    class_weighting: str = "uniform",
) -> TransRateResult:
    r"""TransRate (Huang et al., ICML 2022): the coding rate of the features minus their coding
    rate given the labels, ``R(Z, ε) - R(Z, ε | Y)`` with
    ``R(Z, ε) = ½ log det(I_D + ZᵀZ/(N ε))`` and ``R(Z, ε | Y) = Σ_k w_k R(Z_k, ε)``,
    ``Z_k`` the ``n_k`` rows of class ``k`` (``n_k`` in its own denominator).

    Conventions (those of the public code): ``ε = 1e-4`` plays the role of the paper's ``ε²/D``
    (the paper writes ``D/(N ε²)``); ``centre=True`` subtracts the global mean once (rows of a
    class are *not* re-centred); ``class_weighting="uniform"`` averages the class rates
    (``w_k = 1/K``), ``"proportional"`` weights them by ``n_k/N`` as the rate-distortion
    formula of Ma et al. Determinants through eigenvalues of the smaller Gram matrix in float64.
    Degenerates: the value grows with ``D`` and with ``1/ε``; only comparisons at the same ``ε``
    and feature scale are meaningful (rescale all candidates alike, e.g. unit-norm rows).
    """
    x, y, classes, _ = prepared(features, labels)
    e = as_float(eps, "eps")
    if not e > 0:
        raise ParameterError(f"eps must be positive, got {eps}")
    cw = as_str(class_weighting, "class_weighting")
    if cw not in ("uniform", "proportional"):
        raise ParameterError(f"class_weighting must be 'uniform' or 'proportional', got {cw!r}")
    if centre:
        x = x - x.mean(0)
    k = classes.size
    r = _coding_rate(x, e)
    rk = np.array([_coding_rate(x[y == c], e) for c in range(k)])
    w = np.full(k, 1.0 / k) if cw == "uniform" else np.bincount(y, minlength=k) / x.shape[0]
    rc = float(w @ rk)
    return TransRateResult(r - rc, r, rc, e, bool(centre), cw)


# ------------------------------------------------------------------------------------ EMMS
@dataclasses.dataclass(frozen=True)
class EMMSResult:
    """EMMS and its conventions (``float(result)`` is the score, ``≤ 0``)."""

    value: float
    mixture_weights: Tuple[float, ...]
    targets: str
    iterations: int
    rank: int

    def __float__(self) -> float:
        return self.value


def _sparsemax(z: np.ndarray) -> np.ndarray:
    zs = np.sort(z)[::-1]
    cs = np.cumsum(zs)
    k = np.arange(1, z.size + 1)
    kz = k[1 + k * zs > cs][-1]
    tau = (cs[kz - 1] - 1) / kz
    return np.maximum(z - tau, 0.0)


def _standardise(a: np.ndarray) -> np.ndarray:
    return (a - a.mean(0)) / (a.std(0) + 1e-8)


def emms(
    features: Any,
    labels: Any,
    *,
    label_embeddings: Optional[Sequence[Any]] = None,
    iterations: int = 1,
    rtol: Optional[float] = None,
) -> EMMSResult:
    r"""EMMS (Meng et al., NeurIPS 2023): how well a linear map of the features regresses a
    convex mixture of label embeddings. Features and every embedding target are standardised
    per column (``(a - mean)/(std + 1e-8)``, population std). With targets ``Y_m = E_m[y]``
    (``E_m``: ``K × d`` label embeddings of foundation model ``m``) and mixture ``t`` on the
    simplex, start from ``t = 1/M``; each iteration solves ``W = F^† (Σ_m t_m Y_m)`` and then
    ``t = sparsemax(argmin_t ‖F W - Σ_m t_m Y_m‖)``; the score is
    ``-(1/(N d)) ‖F W - Σ_m t_m Y_m‖_F²`` with ``W`` of the last iteration's first solve and
    ``t`` of its last (the reference code's order; it also multiplies by ``d`` instead of
    dividing — a constant per target that does not change rankings).

    ``label_embeddings=None`` uses the one-hot labels as the single target (``M = 1``, ``t = 1``):
    then EMMS is the negative mean squared residual of the least-squares fit of the standardised
    one-hot labels, and needs no foundation model — this is *not* the paper's setting, which
    embeds class names with CLIP, BERT or GPT-2 (pass those as ``K × d`` arrays, rows in the
    order of the sorted class labels). ``F^†`` through the eigendecomposition of ``FᵀF`` with
    eigenvalues ``> rtol·λ_max`` (default ``D · eps``) kept.
    """
    x, y, classes, eps = prepared(features, labels)
    k = classes.size
    if label_embeddings is None:
        targets = [np.eye(k)[y]]
        kind = "one-hot"
    else:
        embs = [as_matrix64(e, "label_embeddings") for e in label_embeddings]
        if not embs:
            raise ParameterError("label_embeddings is empty")
        d2 = embs[0].shape[1]
        for e in embs:
            if e.shape != (k, d2):
                raise ShapeError(f"every label embedding must be {k} × {d2} (classes × dim), "
                                 f"got {e.shape}")
        targets = [e[y] for e in embs]
        kind = "embeddings"
    targets = [_standardise(t) for t in targets]
    xs = _standardise(x)
    lam, vec = np.linalg.eigh(xs.T @ xs)
    keep = lam > eig_threshold(lam, eps, rtol)
    proj = xs @ vec[:, keep]

    def fit(b):
        return proj @ ((proj.T @ b) / lam[keep][:, None])

    m = len(targets)
    t = np.full(m, 1.0 / m)
    n_it = as_index(iterations, "iterations")
    if n_it < 1:
        raise ParameterError("iterations must be at least 1")
    pred = None
    for _ in range(n_it):
        b = sum(ti * yi for ti, yi in zip(t, targets))
        pred = fit(b)
        if m > 1:
            a = np.stack([yi.ravel() for yi in targets], 1)
            sol, *_ = np.linalg.lstsq(a, pred.ravel(), rcond=None)
            t = _sparsemax(sol)
    b = sum(ti * yi for ti, yi in zip(t, targets))
    val = -float(np.mean((pred - b) ** 2))
    return EMMSResult(val, tuple(float(v) for v in t), kind, n_it, int(keep.sum()))


# ------------------------------------------------------------------------------------- PED
@dataclasses.dataclass(frozen=True)
class PEDResult:
    """PED-wrapped score and the dynamics' record (``float(result)`` is the wrapped score)."""

    value: float
    score: str
    steps: int
    displacements: Tuple[float, ...]
    time_step: float
    nsigma: float
    exit_ratio: float
    reference: str

    def __float__(self) -> float:
        return self.value


def ped_features(
    features: Any,
    labels: Any,
    *,
    reference: Any = None,
    time_step: float = 0.1,
    nsigma: float = 0.6,
    exit_ratio: float = 0.5,
    max_steps: int = 6,
    constant: float = 1.0,
    std_floor: float = 1e-3,
):
    r"""The features after PED's potential-energy descent (Li et al., ICCV 2023), with the
    total displacement of each step: ``(moved_features, displacements)``.

    In standardised coordinates ``u = (f - m)/s`` (``m``, ``s`` the per-dimension mean and
    population std of ``reference`` — the paper uses the source model's features on ImageNet
    validation images; ``None`` uses the target features themselves — with ``s`` floored at
    ``std_floor``), every class is a ball of centre ``μ_k`` and radius ``R_k = √(Σ_d var_kd)``.
    Each overlapping pair repels: overlap ``o_kl = max(nsigma (R_k + R_l) - ‖μ_k - μ_l‖, 0)``,
    displacement ``δ_kl = min(½ t² · constant · o_kl, o_kl)`` along ``(μ_k - μ_l)/‖μ_k - μ_l‖``;
    class ``k`` moves by ``Σ_l δ_kl`` (every sample of it alike). A step is kept while its
    total displacement ``Σ_k‖Σ_l δ_kl‖₁`` is more than ``exit_ratio`` times the first step's,
    at most ``max_steps`` steps (the reference code's loop). Classes with identical means do
    not push each other.
    """
    x, y, classes, _ = prepared(features, labels)
    k = classes.size
    if reference is None:
        ref = x
    else:
        ref, _ = finite_matrix(reference, "reference")
        if ref.shape[1] != x.shape[1]:
            raise ShapeError(f"reference has {ref.shape[1]} columns, features {x.shape[1]}")
    t = as_float(time_step, "time_step")
    ns = abs(as_float(nsigma, "nsigma"))
    er = as_float(exit_ratio, "exit_ratio")
    c = as_float(constant, "constant")
    mean = ref.mean(0)
    sd = np.maximum(ref.std(0), as_float(std_floor, "std_floor"))
    u = (x - mean) / sd
    counts = np.bincount(y, minlength=k).astype(np.float64)
    disp = []
    first = None
    for _ in range(as_index(max_steps, "max_steps")):
        mu = np.zeros((k, u.shape[1]))
        np.add.at(mu, y, u)
        mu /= counts[:, None]
        var = np.zeros_like(mu)
        np.add.at(var, y, (u - mu[y]) ** 2)
        radius = np.sqrt((var / counts[:, None]).sum(1))
        diff = mu[:, None, :] - mu[None, :, :]
        dist = np.linalg.norm(diff, axis=2)
        overlap = np.maximum(ns * (radius[:, None] + radius[None, :]) - dist, 0.0)
        np.fill_diagonal(overlap, 0.0)
        mag = np.minimum(0.5 * t * t * c * overlap, overlap)
        unit = np.divide(diff, dist[:, :, None], out=np.zeros_like(diff),
                         where=dist[:, :, None] > 0)
        shift = np.einsum("kl,kld->kd", mag, unit)
        total = float(np.abs(shift).sum())
        if first is None:
            first = total
        if first == 0 or total / first <= er:
            disp.append(total)
            break
        disp.append(total)
        u = u + shift[y]
    return u * sd + mean, tuple(disp)


def ped(
    features: Any,
    labels: Any,
    *,
    score: str = "logme",
    reference: Any = None,
    time_step: float = 0.1,
    nsigma: float = 0.6,
    exit_ratio: float = 0.5,
    max_steps: int = 6,
    **score_kw: Any,
) -> PEDResult:
    """PED as a wrapper (Li et al., ICCV 2023): [`ped_features`][etfcore.transfer.ped_features],
    then [`etfcore.transfer.logme`][etfcore.transfer.logme] (``score="logme"``) or
    [`etfcore.transfer.gbc`][etfcore.transfer.gbc] (``"gbc"``) of the moved features; ``score_kw``
    go to that score. The paper's defaults: ``time_step = 0.1``, ``nsigma = 0.6`` (0.3 its other
    candidate), ``exit_ratio = 0.5``. ``steps`` in the result counts the steps applied (the last
    recorded displacement is that of the step that stopped the descent when
    ``steps < len(displacements)``)."""
    name = as_str(score, "score").lower()
    if name not in ("logme", "gbc"):
        raise ParameterError(f"score must be 'logme' or 'gbc', got {score!r}")
    moved, disp = ped_features(features, labels, reference=reference, time_step=time_step,
                               nsigma=nsigma, exit_ratio=exit_ratio, max_steps=max_steps)
    first = disp[0] if disp else 0.0
    steps = sum(1 for d in disp if first > 0 and d / first > exit_ratio)
    value = _logme(moved, labels, **score_kw) if name == "logme" else \
        _gbc(moved, labels, **score_kw)
    return PEDResult(float(value), name, steps, disp, float(time_step), float(nsigma),
                     float(exit_ratio), "target" if reference is None else "given")
