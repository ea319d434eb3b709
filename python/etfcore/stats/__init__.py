"""Streaming, mergeable collapse statistics and the metrics computed from them.

- [`etfcore.stats.collapse`][etfcore.stats.collapse]: [`CollapseStats`][etfcore.CollapseStats] (the
  accumulator, every collapse metric and the statistics-only transferability scores: H-score, LogME,
  the ridge path) and [`merge_stats`][etfcore.merge_stats].
- [`etfcore.stats.results`][etfcore.stats.results]: the result types
  ([`PinvResult`][etfcore.PinvResult], [`NC1Split`][etfcore.NC1Split],
  [`LogMEResult`][etfcore.stats.LogMEResult], [`RidgePath`][etfcore.stats.RidgePath]), which the
  transfer layer returns too.

This package imports only the Rust core and the package's low modules (errors, validation):
nothing of `etfcore.transfer` or above.

Examples
--------
>>> import etfcore as ec
>>> H, y = ec.data.gaussian_mixture(3, 4, 20, seed=0)
>>> st = ec.stats.CollapseStats(3, 4).update(H, y)
>>> st.num_samples, isinstance(st.vci(), ec.stats.PinvResult)
(60, True)
"""

from .collapse import CollapseStats, Weighting, merge_stats
from .collapse import _from_bytes as _from_bytes  # named by pickles of CollapseStats
from .results import LogMEResult, NC1Split, PinvResult, RidgePath

__all__ = [
    "CollapseStats",
    "LogMEResult",
    "NC1Split",
    "PinvResult",
    "RidgePath",
    "Weighting",
    "merge_stats",
]
