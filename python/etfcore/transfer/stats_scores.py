r"""EMMS and the PED wrapper from streamed statistics: one mergeable pass, no ``N × D`` matrix.

- `emms_from_stats`: EMMS regresses (standardised) label
  embeddings on standardised features. Every quantity it needs — the least-squares fit's
  projections, the residual, the mixture weights' normal equations — is a function of the
  counts, the class sums and `FᵀF`, because the targets are constant within a class.
- `ped_from_stats`: PED's potential-energy descent moves
  every sample of a class by the same vector, so it only moves class means (per-class variances
  do not change) and the moved statistics follow in closed form: with `a'_i = a_i + δ_{y_i}`,
  `s'_k = s_k + n_k δ_k` and `Σ a'a'ᵀ = Σ aaᵀ + Σ_k (s_kδ_kᵀ + δ_ks_kᵀ + n_kδ_kδ_kᵀ)`. The ball
  radii need per-class, per-dimension variances: a
  `TransferabilityStats` holds them.

Both accept statistics accumulated on a torch device too (anything with ``to_core()``, such as
`etfcore.training.TorchCollapseStats`); see `as_collapse_stats`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .. import _core
from .._validation import as_float, as_index, as_matrix64, as_str
from ..errors import ParameterError, ShapeError, TooFewClassesError
from ..stats import CollapseStats
from ._common import as_collapse_stats
from ._selection_common import eig_threshold
from .discriminant_scores import EMMSResult, PEDResult, _sparsemax
from .streaming import TransferabilityStats

__all__ = ["as_collapse_stats", "emms_from_stats", "ped_from_stats"]


def _present(st: CollapseStats) -> np.ndarray:
    present = st.present_classes()
    if present.size < 2:
        raise TooFewClassesError(
            f"at least 2 classes with samples are needed, but only {present.size} present"
        )
    return present


def _precision_eps(st: CollapseStats) -> float:
    return float(np.finfo(np.float32 if st.precision == "float32" else np.float64).eps)


# ------------------------------------------------------------------------------------ EMMS
def emms_from_stats(
    stats: Any,
    *,
    label_embeddings: Optional[Sequence[Any]] = None,
    iterations: int = 1,
    rtol: Optional[float] = None,
) -> EMMSResult:
    r"""EMMS (`etfcore.transfer.emms`) from streamed statistics, exactly.

    With features standardised per column (`x̃ = (f - μ)/(σ + 10⁻⁸)`, `σ² = diag Σ_T`) and
    each target standardised alike, the target of a sample depends only on its class:
    `Ŷ_m[i] = Ê_m[y_i]`, `Ê_m = (E_m - π E_m)/(τ_m + 10⁻⁸)` with `τ_m² = π (E_m - πE_m)^{∘2}`.
    Then `X̃ᵀX̃ = N D_σ^{-1} Σ_T D_σ^{-1}`, `X̃ᵀŶ_m = D_σ^{-1} Σ_k n_k (μ_k - μ) Ê_m[k]ᵀ`,
    and with `P` the projection onto the span of `X̃` (eigenvalues of `X̃ᵀX̃` above
    `rtol·λ_max` kept) the method only needs the `M × M` matrices `H_{mm'} = ⟨Ŷ_m, P Ŷ_{m'}⟩`
    and `G_{mm'} = ⟨Ŷ_m, Ŷ_{m'}⟩ = Σ_k n_k Ê_m[k]·Ê_{m'}[k]`: the mixture step solves
    `G t' = H t` (minimum norm), and the score is
    `-(t_pᵀ H t_p - 2 tᵀ H t_p + tᵀ G t)/(N d)` (`t_p` the weights of the last fit).

    Parameters
    ----------
    stats : CollapseStats, TransferabilityStats or a torch accumulator
        See `as_collapse_stats`.
    label_embeddings : sequence of array_like, optional
        `K × d` arrays, one per foundation model, rows for the present classes in label order
        (or for all `num_classes` slots, rows of absent classes ignored). ``None``: the one-hot
        labels as the single target.
    iterations : int
        The alternations of `etfcore.transfer.emms`.
    rtol : float, optional
        Relative eigenvalue cut; default `D · eps` of the statistics' precision.

    Returns
    -------
    EMMSResult
        As `etfcore.transfer.emms` returns for the same data.

    Examples
    --------
    >>> import etfcore as ec
    >>> from etfcore import transfer
    >>> x, y = ec.data.load_digits()
    >>> st = ec.CollapseStats(10, 64).update(x, y)
    >>> a, b = transfer.emms_from_stats(st).value, transfer.emms(x, y).value
    >>> bool(abs(a - b) < 1e-10 * abs(b))
    True
    """
    st = as_collapse_stats(stats)
    present = _present(st)
    kp = present.size
    n = float(st.num_samples)
    counts = st.class_counts[present].astype(np.float64)
    pri = counts / n
    if label_embeddings is None:
        embs = [np.eye(kp)]
        kind = "one-hot"
    else:
        embs = []
        for e in label_embeddings:
            e = as_matrix64(e, "label_embeddings")
            if e.shape[0] == st.num_classes and e.shape[0] != kp:
                e = e[present]
            embs.append(e)
        if not embs:
            raise ParameterError("label_embeddings is empty")
        d2 = embs[0].shape[1]
        for e in embs:
            if e.shape != (kp, d2):
                raise ShapeError(f"every label embedding must be {kp} × {d2} (present classes × "
                                 f"dim), got {e.shape}")
        kind = "embeddings"
    hats = []
    for e in embs:
        ec_ = e - pri @ e
        hats.append(ec_ / (np.sqrt(pri @ ec_ ** 2) + 1e-8))
    d = hats[0].shape[1]
    sig = np.sqrt(np.clip(np.diag(st.total_covariance()), 0.0, None)) + 1e-8
    gram = n * st.total_covariance() / np.outer(sig, sig)
    lam, vec = np.linalg.eigh(0.5 * (gram + gram.T))
    keep = lam > eig_threshold(lam, _precision_eps(st), rtol)
    dm = (st.class_means()[present] - st.global_mean()) * counts[:, None] / sig  # n_k(μ_k-μ)/σ
    proj = [(vec[:, keep].T @ dm.T) @ h for h in hats]  # Vᵀ X̃ᵀŶ_m, r × d
    m = len(hats)
    lk = lam[keep][:, None]
    hmat = np.array([[float(np.sum(proj[i] * proj[j] / lk)) for j in range(m)]
                     for i in range(m)])
    gmat = np.array([[float(np.sum(counts[:, None] * hats[i] * hats[j])) for j in range(m)]
                     for i in range(m)])
    n_it = as_index(iterations, "iterations")
    if n_it < 1:
        raise ParameterError("iterations must be at least 1")
    t = np.full(m, 1.0 / m)
    tp = t
    for _ in range(n_it):
        tp = t
        if m > 1:
            t = _sparsemax(np.linalg.pinv(gmat, hermitian=True) @ (hmat @ tp))
    resid = tp @ hmat @ tp - 2.0 * t @ hmat @ tp + t @ gmat @ t
    return EMMSResult(-float(resid) / (n * d), tuple(float(v) for v in t), kind, n_it,
                      int(keep.sum()))


# ------------------------------------------------------------------------------------- PED
def _standardisation(reference: Any, std_floor: float) -> Tuple[np.ndarray, np.ndarray]:
    ref = as_collapse_stats(reference)
    sd = np.sqrt(np.clip(np.diag(ref.total_covariance()), 0.0, None))
    return ref.global_mean(), np.maximum(sd, std_floor)


def _ped_shifts(means_u, var_u, t, ns, er, c, max_steps):
    """PED's descent on the class means in standardised coordinates: ``(total shift per class,
    displacements)`` — the loop of `etfcore.transfer.ped_features` without the samples.
    Distances come from the means' Gram matrix and each class's shift
    ``Σ_l w_kl (μ_k - μ_l) = μ_k Σ_l w_kl - Σ_l w_kl μ_l`` (``w = magnitude/distance``), so no
    ``K × K × D`` array is formed."""
    k = means_u.shape[0]
    radius = np.sqrt(var_u.sum(1))
    mu = means_u.copy()
    total_shift = np.zeros_like(mu)
    disp = []
    first = None
    off = ~np.eye(k, dtype=bool)
    for _ in range(max_steps):
        sq = np.einsum("kd,kd->k", mu, mu)
        dist = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2.0 * (mu @ mu.T), 0.0, None))
        overlap = np.where(off, np.maximum(ns * (radius[:, None] + radius[None, :]) - dist, 0.0),
                           0.0)
        mag = np.minimum(0.5 * t * t * c * overlap, overlap)
        w = np.divide(mag, dist, out=np.zeros_like(mag), where=dist > 0)
        shift = w.sum(1)[:, None] * mu - w @ mu
        total = float(np.abs(shift).sum())
        if first is None:
            first = total
        disp.append(total)
        if first == 0 or total / first <= er:
            break
        mu += shift
        total_shift += shift
    return total_shift, tuple(disp)


def _moved_collapse_stats(st: CollapseStats, delta: np.ndarray) -> CollapseStats:
    """The statistics of the features with class ``k`` moved by ``delta[k]`` (closed form; the
    unit-vector sums, which LogME does not read, are not carried)."""
    counts = st.class_counts.astype(np.float64)
    s = st.class_sums
    cross = s.T @ delta
    scatter = st.scatter + cross + cross.T + (delta * counts[:, None]).T @ delta
    sq = st._raw.class_sq_norms + 2.0 * np.sum(delta * s, 1) + counts * np.sum(delta * delta, 1)
    return CollapseStats.from_parts(
        st.num_classes, st.dim, shift=st.shift, class_counts=st.class_counts,
        class_sums=s + counts[:, None] * delta, class_sq_norms=sq,
        class_unit_sums=np.zeros_like(s), class_zero_rows=np.zeros(st.num_classes, np.int64),
        scatter=0.5 * (scatter + scatter.T), precision=st.precision,
    )


def _gbc_from_moments(means: np.ndarray, var: np.ndarray, var_floor: Optional[float]) -> float:
    """GBC from class means and per-dimension variances: the core's
    (`TransferabilityStats.gbc`'s formula and
    code)."""
    floor = None if var_floor is None else as_float(var_floor, "var_floor")
    m = np.ascontiguousarray(means, dtype=np.float64)
    v = np.ascontiguousarray(var, dtype=np.float64)
    return float(_core.transfer_gbc_from_moments(m, v, floor))


def ped_from_stats(
    stats: TransferabilityStats,
    *,
    score: str = "logme",
    reference: Any = None,
    time_step: float = 0.1,
    nsigma: float = 0.6,
    exit_ratio: float = 0.5,
    max_steps: int = 6,
    constant: float = 1.0,
    std_floor: float = 1e-3,
    **score_kw: Any,
) -> PEDResult:
    r"""PED (`etfcore.transfer.ped`) from streamed statistics, exactly.

    The descent of `etfcore.transfer.ped_features` moves every sample of class `k` by the
    same vector, so in standardised coordinates only the class means move and the radii
    `R_k = √(Σ_d var_kd)` stay fixed: the loop runs on the `K × D` means. The moved features'
    statistics then follow in closed form (class sums, `FᵀF`; per-class variances unchanged),
    and LogME or GBC is computed from them.

    Parameters
    ----------
    stats : TransferabilityStats
        The target features' statistics (the per-class, per-dimension sums of squares give the
        radii; a `etfcore.CollapseStats` does not have them).
    score : {"logme", "gbc"}
        The wrapped score; ``score_kw`` go to it (``parity``, ``tol``, ``rtol`` for LogME,
        ``var_floor`` for GBC).
    reference : statistics, optional
        Statistics of the reference features whose per-dimension mean and population standard
        deviation standardise the space (any of `as_collapse_stats`'s inputs); ``None``: the
        target's own.
    time_step : float, default 0.1
        The step $t$ of the descent (as in `etfcore.transfer.ped_features`).
    nsigma : float, default 0.6
        Two classes overlap where their means are closer than ``nsigma`` times the sum of their
        radii.
    exit_ratio : float, default 0.5
        A step is kept while its total displacement is more than this fraction of the first
        step's.
    max_steps : int, default 6
        The largest number of steps.
    constant : float, default 1.0
        The force constant of the repulsion.
    std_floor : float, default 1e-3
        The floor of the per-dimension standard deviations of the standardisation.

    Returns
    -------
    PEDResult
        As `etfcore.transfer.ped` returns for the same data.

    Examples
    --------
    >>> from etfcore import data, transfer
    >>> x, y = data.load_digits()
    >>> xs = transfer.TransferabilityStats(10, 64).update(x, y)
    >>> a = transfer.ped_from_stats(xs, score="gbc").value
    >>> bool(abs(a - transfer.ped(x, y, score="gbc").value) < 1e-9 * abs(a))
    True
    """
    if not isinstance(stats, TransferabilityStats):
        raise ParameterError(
            "PED needs per-class, per-dimension variances: pass a TransferabilityStats, got "
            f"{type(stats).__name__}"
        )
    name = as_str(score, "score").lower()
    if name not in ("logme", "gbc"):
        raise ParameterError(f"score must be 'logme' or 'gbc', got {score!r}")
    st = stats.collapse_stats
    present = _present(st)
    t = as_float(time_step, "time_step")
    ns = abs(as_float(nsigma, "nsigma"))
    er = as_float(exit_ratio, "exit_ratio")
    c = as_float(constant, "constant")
    floor = as_float(std_floor, "std_floor")
    mean, sd = _standardisation(st if reference is None else reference, floor)
    if mean.size != st.dim:
        raise ShapeError(f"reference has dimension {mean.size}, the statistics {st.dim}")
    counts = st.class_counts[present].astype(np.float64)
    sums = st.class_sums[present]  # relative to the shift c
    m_a = sums / counts[:, None]
    var = np.clip(stats._raw.class_sq_sums[present] / counts[:, None] - m_a ** 2, 0.0, None)
    means_u = (m_a + st.shift - mean) / sd
    shift_u, disp = _ped_shifts(means_u, var / sd ** 2, t, ns, er, c,
                                as_index(max_steps, "max_steps"))
    delta = shift_u * sd  # in the features' coordinates
    if name == "gbc":
        value = _gbc_from_moments(m_a + delta, var, score_kw.pop("var_floor", None))
        if score_kw:
            raise ParameterError(f"unknown GBC options {sorted(score_kw)}")
    else:
        full = np.zeros((st.num_classes, st.dim))
        full[present] = delta
        value = float(_moved_collapse_stats(st, full).logme(**score_kw))
    first = disp[0] if disp else 0.0
    steps = sum(1 for v in disp if first > 0 and v / first > er)
    return PEDResult(float(value), name, steps, disp, float(time_step), float(nsigma),
                     float(exit_ratio), "target" if reference is None else "given")
