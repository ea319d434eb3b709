"""How far a model-selection benchmark's ground truth can be trusted: the share of the zoo's
spread in probe accuracy that is not test-set noise, per target, and the targets reliable enough
to score a ranking against."""

from __future__ import annotations

import math
from typing import Any, List, Mapping, Sequence

import numpy as np

MIN_RELIABILITY = 0.5
"""Reliability a target's ground truth needs to enter the verdict (fixed in advance): the zoo's
spread of probe accuracies must be at least as large as their test-set noise."""


def reliability(probe_acc: Sequence[float], num_test: int) -> float:
    """Reliability of a target's ground truth over the zoo: the share of the variance of the
    members' probe accuracies that is not test-set sampling noise,
    `1 − mean_m p_m(1 − p_m)/n / var_m(p_m)` (classical test theory's signal/total ratio; the
    binomial variance `p(1 − p)/n` is a bootstrap of the test set's variance of one
    accuracy). Negative or 0: the zoo's spread is within noise — the ranking to reproduce is
    itself noise. Independent errors are assumed; members erring on the same test samples make
    this an underestimate (a conservative choice).

    Examples
    --------
    >>> round(reliability([0.5, 0.7, 0.9], 100), 3)
    0.954
    >>> reliability([0.80, 0.81, 0.80], 100) < 0
    True
    """
    p = np.asarray(probe_acc, dtype=np.float64)
    var = float(np.var(p, ddof=1))
    noise = float(np.mean(p * (1.0 - p))) / float(num_test)
    return 1.0 - noise / var if var > 0 else -math.inf


def target_reliability(results: Sequence[Mapping[str, Any]], target: str) -> float:
    """Mean over seeds of `reliability` of `target` (NaN without test-set sizes)."""
    if not all("num_test" in r and "probe_acc" in r for r in results):
        return math.nan
    return float(np.mean([reliability(r["probe_acc"][target], r["num_test"][target])
                          for r in results]))  # fmt: skip


def reliable_targets(results: Sequence[Mapping[str, Any]]) -> List[str]:
    """The targets whose ground truth is reliable enough (`MIN_RELIABILITY`); every
    target when reliability cannot be computed or none passes (the notes say which)."""
    targets = list(results[0]["ranking"]["targets"])
    rel = {t: target_reliability(results, t) for t in targets}
    ok = [t for t in targets if not math.isfinite(rel[t]) or rel[t] >= MIN_RELIABILITY]
    return ok or targets
