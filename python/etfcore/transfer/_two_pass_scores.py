r"""One accumulator per score of the two-pass mode (private to `etfcore.transfer`).

`etfcore.transfer.TwoPassScores` validates the chunks, keeps the first pass's statistics and
drives the passes; each class here owns one score: what the first pass fixes for it
(`fix`), what one chunk of a later pass contributes (`measure`, computed before anything is
changed) and how a contribution is added (`add`), how two shards combine (`merge`), and the
score itself (`result`). A chunk's contributions to every score are all measured before any is
added, so a chunk that fails leaves the state as it was.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import ParameterError
from ..stats import CollapseStats
from ._array_ops import _core
from ._selection_common import eig_threshold
from .discriminant_scores import (
    ETranComponents,
    SFDAResult,
    _power_lambda_max,
    shrunk_lda_coefficients,
)
from .ncti import NCTIComponents


# ------------------------------------------------------------------ shared inputs
@dataclasses.dataclass(frozen=True)
class FirstPass:
    """What the first pass leaves for every score.

    Attributes
    ----------
    stats : CollapseStats or None
        The float64 statistics of the features (``None`` for LEEP alone, which reads none).
    joint : array or None
        LEEP's soft joint of target labels and source outputs, summed (``K × K_s``, on the
        chunks' backend), or ``None``.
    present : ndarray
        The classes with samples, ascending.
    num_samples : int
        ``N``.
    coarse : bool
        A chunk was coarser than float64 (sets ETran's default eigenvalue cut).
    ops : type
        The chunks' array operations (numpy or torch).
    """

    stats: Optional[CollapseStats]
    joint: Any
    present: np.ndarray
    num_samples: int
    coarse: bool
    ops: Any


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One validated chunk of a later pass: float64 features ``x`` (or ``None``), labels ``y``,
    their indices ``c`` among the present classes, source outputs ``theta`` (or ``None``)."""

    x: Any
    y: Any
    c: Any
    theta: Any


class OnDevice:
    """Fixed numpy quantities, converted once per device of the chunks that use them."""

    def __init__(self, ops: Any, *values: Any) -> None:
        self._ops = ops
        self._values = values
        self._by_device: Dict[str, Tuple[Any, ...]] = {}

    def get(self, like: Any) -> Tuple[Any, ...]:
        """The values on the backend and device of `like`."""
        dev = str(getattr(like, "device", "cpu"))
        if dev not in self._by_device:
            self._by_device[dev] = tuple(
                self._ops.const(a, like) if isinstance(a, np.ndarray) else a
                for a in self._values
            )
        return self._by_device[dev]


def _copy_stats(stats: Any) -> Any:
    if stats is None:
        return None
    return stats.copy() if isinstance(stats, CollapseStats) else copy.deepcopy(stats)


def _merged_stats(mine: Any, theirs: Any) -> Any:
    """The sum of two statistics of either backend, as core statistics (`theirs` not `None`)."""
    if mine is None:
        return _core(theirs)
    return _core(mine).merge(_core(theirs))


def _true_class_sum(ops: Any, logp: Any, c: Any) -> float:
    """``Σ_i p_i[c_i]`` from log-posteriors."""
    return ops.scalar(ops.exp(ops.take(logp, c)).sum())


# ----------------------------------------------------------------------- classifiers
def shrunk_lda(stats: CollapseStats, present: np.ndarray, shrinkage: Optional[float], rule: str):
    r"""``(coef, bias, means, s)`` of the shrunk LDA of SFDA's first stage from statistics:
    logits ``f·coef_kᵀ + bias_k`` with ``coef_k = μ_kᵀS⁻¹``, ``bias_k = -½μ_kᵀS⁻¹μ_k + log π_k``,
    ``S = (1-s)Σ_W + s(tr Σ_W/D)I`` (population, weighted ``Σ_W``)."""
    counts = stats.class_counts[present].astype(np.float64)
    pri = counts / counts.sum()
    means = stats.class_means()[present]
    sw = stats.within_class_covariance("weighted")
    if shrinkage is None:
        lam_max = float(np.linalg.eigvalsh(sw)[-1]) if rule == "exact" else _power_lambda_max(sw)
        s = max(math.exp(-5.0 * lam_max), 1e-10)
    else:
        s = shrinkage
    coef, bias = shrunk_lda_coefficients(pri, means, sw, s)
    return coef, bias, means, s


def ncti_model(stats: CollapseStats, present: np.ndarray, pca_dim: int):
    """NCTI's PCA, shrinkage, LDA and the nuclear norm ``‖Z‖_*`` from statistics (as
    `etfcore.transfer.ncti_components` computes them from the matrix): ``(a, b, seli, s)``,
    the LDA logits of a raw feature being ``h @ a + b``."""
    n = stats.num_samples
    k = present.size
    d = min(pca_dim, stats.dim, n)
    mean = stats.global_mean()
    st_pop = stats.total_covariance()
    lam, vec = np.linalg.eigh(st_pop * (n / (n - 1)))
    lam, vec = lam[::-1][:d], vec[:, ::-1][:, :d]
    s = max(float(np.exp(-lam[:32].sum())), 1e-10)
    pri = stats.class_counts[present].astype(np.float64) / n
    mu = (stats.class_means()[present] - mean) @ vec
    sw = vec.T @ stats.within_class_covariance("weighted") @ vec
    st = vec.T @ st_pop @ vec

    def shrink(a):
        return (1 - s) * a + s * np.trace(a) / d * np.eye(d)

    sw_s, st_s = shrink(sw), shrink(st)
    wl, wv = np.linalg.eigh(sw_s)
    if wl.min() <= 0:
        raise ParameterError("the shrunk within-class covariance is singular; NCTI is undefined")
    isq = wv / np.sqrt(wl)
    _, gv = np.linalg.eigh(isq.T @ (st_s - sw_s) @ isq)
    scal = isq @ gv[:, ::-1][:, : min(k - 1, d)]
    zz = n * (scal.T @ st @ scal)  # ZᵀZ of the centred projection
    seli = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (zz + zz.T)), 0.0, None))))
    coef = mu @ np.linalg.inv(sw_s)
    bias = -0.5 * np.sum(coef * mu, axis=1) + np.log(pri)
    # logits of a raw feature h: ((h - mean) @ vec) @ coef.T + bias = h @ a + b
    a = vec @ coef.T
    return a, bias - mean @ a, seli, s


# ---------------------------------------------------------------------- the scores
class ETranAccumulator:
    """ETran: the true-class posterior sum under its LDA, the ``m`` lowest energies
    ``logsumexp(f)``, and (at the end, from the statistics) the SVD term."""

    name = "etran"
    passes = 2

    def __init__(self, first: FirstPass, *, energy_fraction: float, lda_mode: str,
                 shrinkage: Optional[float], rtol: Optional[float]) -> None:  # fmt: skip
        st, present, n = first.stats, first.present, first.num_samples
        assert st is not None
        self.m = max(1, int(math.floor(energy_fraction * n + 1e-9)))
        if lda_mode == "paper":
            coef, bias, _, s = shrunk_lda(st, present, shrinkage, "exact")
        else:
            means = st.class_means()[present]
            pri = st.class_counts[present] / n
            coef, bias, s = means, -0.5 * np.sum(means * means, 1) + np.log(pri), math.nan
        self._ops = first.ops
        self._lda = OnDevice(first.ops, coef, bias)
        self._options = (energy_fraction, lda_mode, s, rtol)
        self.lda_sum = 0.0
        self.lowest: Any = None

    def measure(self, chunk: Chunk) -> Tuple[float, Any]:
        ops = self._ops
        coef, bias = self._lda.get(chunk.c)
        lda = _true_class_sum(ops, ops.log_softmax(chunk.x @ coef.T + bias), chunk.c)
        return lda, ops.smallest(ops.logsumexp(chunk.x), self.m)

    def add(self, part: Tuple[float, Any]) -> None:
        lda, low = part
        self.lda_sum += lda
        if low is not None:
            both = low if self.lowest is None else self._ops.cat([self.lowest, low])
            self.lowest = self._ops.smallest(both, self.m)

    def merge(self, other: ETranAccumulator, stage: int) -> None:
        self.add((other.lda_sum, other.lowest))

    def copy(self) -> ETranAccumulator:
        return copy.copy(self)

    def result(self, first: FirstPass) -> ETranComponents:
        frac, mode, s, rtol = self._options
        n = first.num_samples
        svd, rank = self._svd_term(first, rtol)
        energy = float(np.mean(np.sort(self._ops.host(self.lowest))))
        return ETranComponents(energy, self.lda_sum / n, svd, frac, self.m, mode, s, rank)

    @staticmethod
    def _svd_term(first: FirstPass, rtol: Optional[float]) -> Tuple[float, int]:
        r"""``‖FW - Y‖² = N - Σ_k S_kᵀ(FᵀF)^†S_k`` with ``S_k`` the uncentred class sums and the
        cut of `etfcore.transfer.etran`."""
        st = first.stats
        assert st is not None
        present, n, c = first.present, st.num_samples, st.shift
        s_all = st.class_sums
        tot = s_all.sum(0)
        gram = st.scatter + np.outer(c, tot) + np.outer(tot, c) + n * np.outer(c, c)
        sums = s_all[present] + st.class_counts[present, None] * c
        lam, vec = np.linalg.eigh(0.5 * (gram + gram.T))
        coarse = first.coarse or st.precision == "float32"
        eps = float(np.finfo(np.float32 if coarse else np.float64).eps)
        keep = lam > eig_threshold(lam, eps, rtol)
        proj = sums @ vec[:, keep]
        fit = float(np.sum(proj * proj / lam[keep]))
        return -(n - fit) / (n * present.size), int(keep.sum())


class SFDAAccumulator:
    """SFDA: the first stage's true-class posterior sum and the statistics of the
    confidence-mixed features (second pass), then the true-class posterior sum of the mixed
    features under the discriminant refit on them (third pass)."""

    name = "sfda"
    passes = 3

    def __init__(self, first: FirstPass, *, shrinkage: Optional[float], rule: str,
                 new_stats: Callable[[Any], Any]) -> None:  # fmt: skip
        assert first.stats is not None
        coef, bias, means, s = shrunk_lda(first.stats, first.present, shrinkage, rule)
        others = (means.sum(0)[None, :] - means) / (first.present.size - 1)
        self._ops = first.ops
        self._first_lda = OnDevice(first.ops, coef, bias, others)
        self._refit: Optional[OnDevice] = None
        self._new_stats = new_stats
        self.rule = rule if shrinkage is None else "given"
        self.shrinkage = s
        self.first_sum = 0.0
        self.refit_sum = 0.0
        self.mixed: Any = None

    def _mix(self, chunk: Chunk) -> Tuple[Any, Any]:
        """First-stage log-posteriors and the mixed features ``q f + (1-q) m̄_{-y}``."""
        ops, c = self._ops, chunk.c
        coef, bias, others = self._first_lda.get(c)
        logp = ops.log_softmax(chunk.x @ coef.T + bias)
        q = ops.exp(ops.take(ops.log_softmax(ops.exp(logp)), c))[:, None]
        return logp, q * chunk.x + (1.0 - q) * others[c]

    def measure(self, chunk: Chunk) -> Tuple[float, Any, Any]:
        logp, mixed = self._mix(chunk)
        return _true_class_sum(self._ops, logp, chunk.c), mixed, chunk.y

    def add(self, part: Tuple[float, Any, Any]) -> None:
        first, mixed, y = part
        stats = self._new_stats(mixed) if self.mixed is None else self.mixed
        stats.update(mixed, y)  # all-or-nothing; before the sum, which cannot fail
        self.mixed = stats
        self.first_sum += first

    def close_second(self, present: np.ndarray) -> bytes:
        """Refits the discriminant on the mixed statistics; returns their bytes (the state's
        key for merging third passes)."""
        mixed = _core(self.mixed)
        coef, bias, _, _ = shrunk_lda(mixed, present, self.shrinkage, "exact")
        self._refit = OnDevice(self._ops, coef, bias)
        self.mixed = mixed
        return mixed.to_bytes()

    def measure_third(self, chunk: Chunk) -> float:
        assert self._refit is not None
        _, mixed = self._mix(chunk)
        coef, bias = self._refit.get(chunk.c)
        return _true_class_sum(self._ops, self._ops.log_softmax(mixed @ coef.T + bias), chunk.c)

    def add_third(self, part: float) -> None:
        self.refit_sum += part

    def merge(self, other: SFDAAccumulator, stage: int) -> None:
        if stage == 3:
            self.refit_sum += other.refit_sum
            return
        if other.mixed is not None:
            self.mixed = _merged_stats(self.mixed, other.mixed)
        self.first_sum += other.first_sum

    def copy(self) -> SFDAAccumulator:
        other = copy.copy(self)
        other.mixed = _copy_stats(self.mixed)
        return other

    def result(self, first: FirstPass) -> SFDAResult:
        n = first.num_samples
        value = self.refit_sum / n
        return SFDAResult(value, self.first_sum / n, self.shrinkage, self.rule, value > 1 - 1e-6)


class NCTIAccumulator:
    """NCTI: the true-class posterior sum under its LDA, and per class an R factor of the
    ``n_k × K`` posterior matrix (stacked rows are re-factored by QR once they outnumber
    ``K``, so at most ``2K × K`` numbers per class are held)."""

    name = "ncti"
    passes = 2

    def __init__(self, first: FirstPass, *, pca_dim: int) -> None:
        assert first.stats is not None
        a, b, seli, s = ncti_model(first.stats, first.present, pca_dim)
        self._ops = first.ops
        self._lda = OnDevice(first.ops, a, b)
        self.seli, self.shrinkage = seli, s
        self.ncc_sum = 0.0
        self.rows: Dict[int, List[Any]] = {}

    def measure(self, chunk: Chunk) -> Tuple[float, Any, Any]:
        ops = self._ops
        a, b = self._lda.get(chunk.c)
        logp = ops.log_softmax(chunk.x @ a + b)
        return _true_class_sum(ops, logp, chunk.c), ops.exp(logp), chunk.c

    def add(self, part: Tuple[float, Any, Any]) -> None:
        ncc, post, c = part
        ops = self._ops
        k = post.shape[1]
        ch = ops.host(c)
        order = np.argsort(ch, kind="stable")
        cls, starts = np.unique(ch[order], return_index=True)
        ends = np.r_[starts[1:], ch.size]
        ps = post[ops.index(order, post)]
        for cl, a, b in zip(cls.tolist(), starts.tolist(), ends.tolist()):
            buf = self.rows.setdefault(cl, [])
            buf.append(ps[a:b])
            if sum(int(r.shape[0]) for r in buf) > k:
                self.rows[cl] = [ops.qr_r(ops.cat(buf))]
        self.ncc_sum += ncc

    def merge(self, other: NCTIAccumulator, stage: int) -> None:
        for cl, rows in other.rows.items():
            self.rows.setdefault(cl, []).extend(rows)
        self.ncc_sum += other.ncc_sum

    def copy(self) -> NCTIAccumulator:
        other = copy.copy(self)
        other.rows = {cl: list(rows) for cl, rows in self.rows.items()}
        return other

    def result(self, first: FirstPass) -> NCTIComponents:
        ops = self._ops
        nuclear = 0.0
        for rows in self.rows.values():
            r = ops.host(ops.cat(rows)) if len(rows) > 1 else ops.host(rows[0])
            nuclear += float(np.linalg.svd(r, compute_uv=False).sum())
        n = first.num_samples
        return NCTIComponents(self.seli, self.ncc_sum / n, float(np.log(nuclear)), self.shrinkage)


class LEEPAccumulator:
    """LEEP: the sum of ``log Σ_z θ_i(z) P(y_i | z)`` with ``P(y | z)`` from the first pass's
    joint."""

    name = "leep"
    passes = 2

    def __init__(self, first: FirstPass) -> None:
        joint = first.ops.host(first.joint) / first.num_samples
        pz = joint.sum(0)
        cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)
        self._ops = first.ops
        self._cond = OnDevice(first.ops, cond)
        self.log_sum = 0.0

    def measure(self, chunk: Chunk) -> float:
        (cond,) = self._cond.get(chunk.theta)
        return self._ops.scalar(self._ops.log((chunk.theta * cond[chunk.y]).sum(1)).sum())

    def add(self, part: float) -> None:
        self.log_sum += part

    def merge(self, other: LEEPAccumulator, stage: int) -> None:
        self.log_sum += other.log_sum

    def copy(self) -> LEEPAccumulator:
        return copy.copy(self)

    def result(self, first: FirstPass) -> float:
        return self.log_sum / first.num_samples


def accumulators(
    scores: Tuple[str, ...], first: FirstPass, options: Dict[str, Any],
    new_stats: Callable[[Any], Any],
) -> Dict[str, Any]:  # fmt: skip
    """One accumulator per score, fixed by the first pass (in the order of `scores`)."""
    o = options
    make = {
        "etran": lambda: ETranAccumulator(
            first, energy_fraction=o["energy_fraction"], lda_mode=o["lda_mode"],
            shrinkage=o["shrinkage"], rtol=o["rtol"]),
        "sfda": lambda: SFDAAccumulator(
            first, shrinkage=o["sfda_shrinkage"], rule=o["shrinkage_rule"], new_stats=new_stats),
        "ncti": lambda: NCTIAccumulator(first, pca_dim=o["pca_dim"]),
        "leep": lambda: LEEPAccumulator(first),
    }  # fmt: skip
    return {name: make[name]() for name in scores}
