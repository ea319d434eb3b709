"""Label handling shared by the transfer scores (private to `etfcore.transfer`)."""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from .._validation import as_features, as_labels_for_rows
from ..errors import ParameterError, TooFewClassesError
from ..stats import CollapseStats


def encode(labels: Any, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(classes, codes)``: the distinct labels (sorted) and each row's index among them; at
    least two classes, one label per row."""
    y = as_labels_for_rows(labels, n)
    classes, codes = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise TooFewClassesError(
            f"at least 2 classes with samples are needed, but only {classes.size} present"
        )
    return classes, codes.astype(np.int64)


def stats_of(features: Any, labels: Any) -> CollapseStats:
    """[`CollapseStats`][etfcore.CollapseStats] of in-memory features over their present classes."""
    h = as_features(features)
    classes, y = encode(labels, h.shape[0])
    return CollapseStats(classes.size, h.shape[1]).update(h, y)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by each row's maximum."""
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def as_collapse_stats(stats: Any) -> CollapseStats:
    """The `etfcore.CollapseStats` behind any of the package's statistics.

    Parameters
    ----------
    stats : CollapseStats, TransferabilityStats or a torch accumulator
        A `etfcore.CollapseStats` is returned as it is; a
        `TransferabilityStats` gives its inner
        statistics; an object with ``to_core()`` (the training layer's
        `etfcore.training.TorchCollapseStats`, which accumulates in float64 on its device)
        is copied to the host (``O(K·D + D²)`` numbers).

    Returns
    -------
    CollapseStats

    Raises
    ------
    ParameterError
        For any other object.
    """
    if isinstance(stats, CollapseStats):
        return stats
    from .streaming import TransferabilityStats

    if isinstance(stats, TransferabilityStats):
        return stats.collapse_stats
    to_core = getattr(stats, "to_core", None)
    if callable(to_core):
        out = to_core()
        if isinstance(out, CollapseStats):
            return out
    raise ParameterError(
        f"expected CollapseStats, TransferabilityStats or a torch accumulator with to_core(), "
        f"got {type(stats).__name__}"
    )
