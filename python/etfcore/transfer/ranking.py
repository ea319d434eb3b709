r"""Rank agreement between transferability scores and measured transfer, and MLOG.

- [`weighted_kendall_tau`][etfcore.transfer.weighted_kendall_tau]: Vigna's weighted τ with the
  hyperbolic weigher ``1/(r+1)`` and additive pair weights, averaged over the rankings by ``(x, y)``
  and by ``(y, x)`` — the convention of ``scipy.stats.weightedtau`` (its default ``rank=True``), the
  field's standard.
- [`pearson`][etfcore.transfer.pearson], [`spearman`][etfcore.transfer.spearman].
- [`mlog`][etfcore.transfer.mlog]: mean log-odds gain
  ``(1/T) Σ_t logit(acc_t) - logit(acc_pretrain)`` (Xu & Liu), accuracies as fractions.
- [`rank_report`][etfcore.transfer.rank_report]: every score of every candidate against the ground
  truth of one target, always with the baseline of ranking by the candidates' own source accuracy.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..errors import ParameterError, ShapeError


def _numbers(v: Any, name: str) -> np.ndarray:
    """A float64 vector of real numbers; strings, booleans and ``None`` are refused."""
    arr = np.asarray(v)
    ok = arr.dtype.kind in "fiu" or (arr.dtype.kind == "O" and all(
        isinstance(e, (numbers.Real, np.number)) and not isinstance(e, (bool, np.bool_))
        for e in arr.ravel()
    ))
    if not ok:
        raise ParameterError(f"{name} must be numbers, got {arr.ravel()[:3].tolist()!r}...")
    return np.asarray(arr, dtype=np.float64).ravel()


def _pair(x: Any, y: Any):
    a = _numbers(x, "scores")
    b = _numbers(y, "accuracies")
    if a.shape != b.shape:
        raise ShapeError(f"the two sequences differ in length: {a.size} and {b.size}")
    if a.size < 2:
        raise ParameterError(f"rank agreement needs at least 2 candidates, got {a.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ParameterError("scores and accuracies must be finite")
    return a, b


def _weighted_tau_one(x: np.ndarray, y: np.ndarray, first: np.ndarray, second: np.ndarray):
    # ranks: decreasing lexicographic order by (first, second); rank 0 is the best
    order = np.lexsort((-second, -first))
    r = np.empty(x.size, dtype=np.float64)
    r[order] = np.arange(x.size)
    w = 1.0 / (r + 1.0)
    wij = w[:, None] + w[None, :]
    iu = np.triu_indices(x.size, 1)
    dx = np.sign(x[:, None] - x[None, :])[iu]
    dy = np.sign(y[:, None] - y[None, :])[iu]
    ww = wij[iu]
    num = np.sum(ww * dx * dy)
    den = math.sqrt(np.sum(ww * (dx != 0)) * np.sum(ww * (dy != 0)))
    return num / den if den > 0 else math.nan


def weighted_kendall_tau(scores: Any, accuracies: Any) -> float:
    r"""Weighted Kendall τ between scores and ground-truth accuracies over candidates:
    ``τ_w = Σ_{i<j} w_ij sgn(x_i-x_j) sgn(y_i-y_j) / √(Σ w_ij[x_i≠x_j] · Σ w_ij[y_i≠y_j])``,
    ``w_ij = 1/(r_i+1) + 1/(r_j+1)`` with ``r`` the decreasing lexicographic rank by ``(x, y)``,
    averaged with the same using the rank by ``(y, x)``. Equals
    ``scipy.stats.weightedtau(scores, accuracies).statistic`` (written here, no scipy needed).
    ``O(M²)`` for ``M`` candidates.

    Examples
    --------
    >>> round(weighted_kendall_tau([0.1, 0.4, 0.35, 0.8], [0.6, 0.7, 0.75, 0.9]), 6)
    0.733333
    """
    x, y = _pair(scores, accuracies)
    return float(0.5 * (_weighted_tau_one(x, y, x, y) + _weighted_tau_one(x, y, y, x)))


def pearson(x: Any, y: Any) -> float:
    """Pearson correlation (NaN when either sequence is constant)."""
    a, b = _pair(x, y)
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 0 else math.nan


def _average_ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="mergesort")
    r = np.empty(v.size)
    sv = v[order]
    i = 0
    while i < v.size:
        j = i
        while j + 1 < v.size and sv[j + 1] == sv[i]:
            j += 1
        r[order[i:j + 1]] = 0.5 * (i + j)
        i = j + 1
    return r


def spearman(x: Any, y: Any) -> float:
    """Spearman correlation: Pearson of average ranks (ties share their mean rank)."""
    a, b = _pair(x, y)
    return pearson(_average_ranks(a), _average_ranks(b))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


def _fractions(v: Any, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).ravel()
    if a.size == 0:
        raise ParameterError(f"{name} is empty")
    bad = ~((a > 0) & (a < 1))
    if bad.any():
        raise ParameterError(
            f"{name} must be fractions strictly between 0 and 1 (not percentages), got "
            f"{a[bad][:3].tolist()}"
        )
    return a


def mlog(target_accuracies: Any, pretrain_accuracy: float) -> float:
    r"""Mean log-odds gain (Xu & Liu):
    ``MLOG = (1/T) Σ_t logit(acc_t) - logit(acc_pretrain)``, ``logit(p) = log(p/(1-p))``,
    accuracies as fractions in ``(0, 1)``.

    Examples
    --------
    >>> accs = [.908, .9503, .5885, .6473, .7447, .931, .7545, .7714, .849, .6244]
    >>> round(mlog(accs, 0.754), 3)   # Xu & Liu, App. C, τ = 0.1: 0.3250 (rounded inputs)
    0.325
    """
    t = _fractions(target_accuracies, "target_accuracies")
    p = _fractions([pretrain_accuracy], "pretrain_accuracy")
    return float(np.mean(_logit(t)) - _logit(p)[0])


def mean_log_odds(target_accuracies: Any) -> float:
    """``(1/T) Σ_t logit(acc_t)`` (Kornblith et al.'s aggregate; MLOG without the baseline)."""
    return float(np.mean(_logit(_fractions(target_accuracies, "target_accuracies"))))


@dataclasses.dataclass(frozen=True)
class MLOGReport:
    """Per-target log-odds and the aggregate of one backbone."""

    targets: List[str]
    accuracies: np.ndarray
    log_odds: np.ndarray
    pretrain_accuracy: float
    mean_log_odds: float
    mlog: float

    def table(self) -> str:
        lines = [f"{'target':<20} {'accuracy':>9} {'logit':>8}"]
        for t, a, lo in zip(self.targets, self.accuracies, self.log_odds):
            lines.append(f"{t:<20} {a:9.4f} {lo:8.4f}")
        lines.append(f"{'mean log odds':<20} {'':>9} {self.mean_log_odds:8.4f}")
        lines.append(f"{'pretrain':<20} {self.pretrain_accuracy:9.4f} "
                     f"{float(_logit(np.array([self.pretrain_accuracy]))[0]):8.4f}")
        lines.append(f"{'MLOG':<20} {'':>9} {self.mlog:8.4f}")
        return "\n".join(lines)


def mlog_report(target_accuracies: Mapping[str, float], pretrain_accuracy: float) -> MLOGReport:
    """MLOG with its per-target log-odds (``{target: accuracy}``)."""
    names = list(target_accuracies)
    acc = _fractions([target_accuracies[k] for k in names], "target_accuracies")
    lo = _logit(acc)
    return MLOGReport(names, acc, lo, float(pretrain_accuracy), float(lo.mean()),
                      mlog(acc, pretrain_accuracy))


@dataclasses.dataclass(frozen=True)
class RankAgreement:
    """Agreement of one score with the ground truth over candidates (``direction`` = +1 when a
    larger score predicts better transfer; the score is multiplied by it before ranking)."""

    score: str
    weighted_tau: float
    pearson: float
    spearman: float
    direction: int


def rank_agreement(name: str, scores: Any, accuracies: Any, direction: int = 1) -> RankAgreement:
    s = np.asarray(scores, dtype=np.float64) * direction
    return RankAgreement(name, weighted_kendall_tau(s, accuracies), pearson(s, accuracies),
                         spearman(s, accuracies), direction)


@dataclasses.dataclass(frozen=True)
class RankReport:
    """Every score of every candidate for one target, and (when the ground-truth accuracies
    are known) each score's agreement with them, the source-accuracy baseline included."""

    candidates: List[str]
    scores: Dict[str, np.ndarray]
    accuracies: Optional[np.ndarray]
    agreement: List[RankAgreement]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "candidates": self.candidates,
            "scores": {k: v.tolist() for k, v in self.scores.items()},
            "accuracies": None if self.accuracies is None else self.accuracies.tolist(),
            "agreement": [dataclasses.asdict(a) for a in self.agreement],
        }

    def table(self) -> str:
        names = list(self.scores)
        w = max(10, *(len(c) for c in self.candidates))
        lines = [f"{'score':<20}" + "".join(f"{c:>{w + 2}}" for c in self.candidates)]
        if self.accuracies is not None:
            lines.append(f"{'(ground truth)':<20}"
                         + "".join(f"{a:>{w + 2}.4f}" for a in self.accuracies))
        for n in names:
            lines.append(f"{n:<20}" + "".join(f"{v:>{w + 2}.5g}" for v in self.scores[n]))
        if self.agreement:
            lines.append("")
            lines.append(f"{'score':<20} {'weighted τ':>11} {'Pearson':>9} {'Spearman':>9}  "
                         "direction")
            for a in self.agreement:
                way = "higher is better" if a.direction > 0 else "lower is better (sign flipped)"
                lines.append(f"{a.score:<20} {a.weighted_tau:11.4f} {a.pearson:9.4f} "
                             f"{a.spearman:9.4f}  {way}")
            if any(a.direction < 0 for a in self.agreement):
                lines.append("(τ, Pearson and Spearman of a lower-is-better score are those of "
                             "its negation: +1 means it ranks the candidates right)")
        return "\n".join(lines)


def rank_report(
    candidates: Sequence[str],
    scores: Mapping[str, Sequence[float]],
    accuracies: Optional[Sequence[float]] = None,
    *,
    source_accuracies: Optional[Sequence[float]] = None,
) -> RankReport:
    """Collects per-candidate scores (``{score name: one value per candidate}``) and, with
    ``accuracies``, their rank agreement; ``source_accuracies`` (the candidates' accuracy on
    their own pretraining task) adds the baseline row ``source_accuracy``."""
    from .scores import HIGHER_IS_BETTER

    m = len(candidates)
    if m < 2:
        raise ParameterError(f"ranking needs at least 2 candidate models, got {m}")
    sc = {}
    for k, v in scores.items():
        a = np.asarray(v, dtype=np.float64).ravel()
        if a.size != m:
            raise ShapeError(f"score {k!r} has {a.size} values for {m} candidates")
        sc[k] = a
    if source_accuracies is not None:
        sc["source_accuracy"] = np.asarray(source_accuracies, dtype=np.float64).ravel()
    agreement = []
    acc = None
    if accuracies is not None:
        acc = np.asarray(accuracies, dtype=np.float64).ravel()
        if acc.size != m:
            raise ShapeError(f"{acc.size} accuracies for {m} candidates")
        for k, v in sc.items():
            base = k[5:] if k.startswith("ncti_") else k
            d = 1 if HIGHER_IS_BETTER.get(base, True) else -1
            if k == "ncti_vc":
                d = -1
            agreement.append(rank_agreement(k, v, acc, d))
    return RankReport(list(candidates), sc, acc, agreement)


def aggregate_agreement(reports: Sequence[RankReport]) -> Dict[str, Dict[str, float]]:
    """Mean over targets of each score's weighted τ, Pearson and Spearman (the field's summary:
    per-target agreement, then averaged), with the number of targets it was measured on."""
    acc: Dict[str, List[RankAgreement]] = {}
    for rep in reports:
        for a in rep.agreement:
            acc.setdefault(a.score, []).append(a)
    if not acc:
        raise ParameterError("no report carries ground-truth accuracies to aggregate")
    return {
        k: {
            "weighted_tau": float(np.nanmean([a.weighted_tau for a in v])),
            "pearson": float(np.nanmean([a.pearson for a in v])),
            "spearman": float(np.nanmean([a.spearman for a in v])),
            "targets": float(len(v)),
        }
        for k, v in acc.items()
    }
