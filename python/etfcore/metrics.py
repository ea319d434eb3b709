"""One-call metrics on in-memory arrays, and the numerical helpers behind them."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import _core
from ._validation import (
    as_features,
    as_index,
    as_labels,
    as_matrix64,
    as_optional_float,
    as_optional_index,
    as_str,
    as_vector64,
)
from .errors import ShapeError
from .stats import CollapseStats


def collapse_metrics(
    features: Any,
    labels: Any,
    classifier: Any = None,
    bias: Any = None,
    *,
    num_classes: Optional[int] = None,
    weighting: str = "weighted",
    rtol: Optional[float] = None,
    numerical_rank: bool = True,
) -> Dict[str, Any]:
    """Every collapse metric on ``features`` ``(N, p)`` and integer ``labels`` ``(N,)``.

    One statistics pass ([`CollapseStats`][etfcore.CollapseStats]), then every covariance metric;
    with a ``classifier`` ``(K, p)`` (and optional ``bias``) also NC3 and NC4; the per-class
    numerical rank needs the samples and costs ``O(Σ_k n_k p min(n_k, p))``. For
    ``weighting="balanced"`` on imbalanced classes a second pass computes the balanced within-class
    scatter.

    Keys: ``num_samples, num_classes_present, dim, weighting, precision, vci, vci_rank,
    vci_normalizer, probe_mse, probe_mse_rank, nc1, nc1_rank, nc1_split_between,
    nc1_split_orthogonal, squared_distance, within_trace_per_dim, cdnv, nc2_equinorm,
    nc2_equiangularity, nc2_max_equiangularity, nc2_etf_error, cosine_within, cosine_total,
    class_separation`` (cosine keys only without all-zero rows), ``numerical_rank``, and with a
    classifier ``nc3, nc3_cosines, nc4``.

    Examples
    --------
    >>> import numpy as np, etfcore as ec
    >>> H, y = ec.data.gaussian_mixture(num_classes=4, dim=8, samples_per_class=50, seed=0)
    >>> m = ec.collapse_metrics(H, y, classifier=ec.etf(4, 8, seed=0))
    >>> sorted(k for k in m if k.startswith("nc"))[:3]
    ['nc1', 'nc1_rank', 'nc1_split_between']
    """
    weighting = as_str(weighting, "weighting")
    h = as_features(features)
    y = as_labels(labels)
    w = None if classifier is None else as_matrix64(classifier, "classifier")
    k = _num_classes(num_classes, y, w)
    stats = CollapseStats(k, h.shape[1]).update(h, y)
    counts = stats.class_counts[stats.class_counts > 0]
    if weighting == "balanced" and counts.size and (counts != counts[0]).any():
        stats._raw.attach_balanced_scatter(h, y)
    out = stats.metrics(weighting, classifier=w, rtol=rtol)
    if w is not None:
        out["nc4"] = stats.nc4(h, w, bias)
    if numerical_rank:
        out["numerical_rank"] = numerical_rank_of(h, y, k)[0]
    return out


def _num_classes(num_classes: Any, y: np.ndarray, classifier: Optional[np.ndarray]) -> int:
    """``num_classes`` as given, else the classifier's rows, else ``max(labels) + 1`` (the core
    checks the labels against it)."""
    if num_classes is not None:
        return as_index(num_classes, "num_classes")
    if classifier is not None:
        rows = classifier.shape[0]
        top = int(y.max()) if y.size else -1
        if top >= rows:
            # the labels are the data; a classifier with too few rows is what is wrong
            raise ShapeError(
                f"classifier has {rows} rows (one per class) but the labels go up to {top} "
                f"({top + 1} classes): give a ({top + 1}, p) classifier, or num_classes"
            )
        return rows
    return int(y.max()) + 1 if y.size and y.max() >= 0 else 1


def numerical_rank_of(
    features: Any, labels: Any, num_classes: Optional[int] = None, *, centred: bool = False
) -> Tuple[float, Dict[int, float]]:
    """Per class ``‖H_k‖_*² / ‖H_k‖_F²`` (from "Do we need neural collapse?") and its mean over
    classes.

    ``centred=True`` subtracts each class mean first. Returns ``(mean, {class: value})``.

    Examples
    --------
    >>> import numpy as np, etfcore as ec
    >>> H = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    >>> mean, per = ec.numerical_rank_of(H, np.array([0, 0, 1, 1]))
    >>> round(mean, 12), {k: round(v, 12) for k, v in per.items()}
    (1.0, {0: 1.0, 1: 1.0})
    """
    h = as_features(features)
    y = as_labels(labels)
    k = _num_classes(num_classes, y, None)
    mean, cls, vals = _core.numerical_rank(h, y, k, bool(centred))
    return float(mean), {int(k): float(v) for k, v in zip(cls, vals)}


def pinv_psd(
    matrix: Any, *, rank: Optional[int] = None, rtol: Optional[float] = None
) -> Tuple[np.ndarray, int, str]:
    """Pseudo-inverse of a symmetric PSD matrix by an explicit threshold.

    Keeps eigenvalues ``> rtol·λ_max`` (default ``rtol = n·eps``) or exactly the top ``rank``.
    Returns ``(pinv, rank_used, method)``; ``method`` is ``"cholesky"`` when the fast path
    provably kept every eigenvalue, else ``"eigh"``.

    Examples
    --------
    >>> import numpy as np, etfcore as ec
    >>> P, r, _ = ec.pinv_psd(np.diag([1.0, 1e-20]))
    >>> r, float(P[0, 0])
    (1, 1.0)
    """
    return _core.pinv_psd(
        as_matrix64(matrix, "matrix"),
        as_optional_index(rank, "rank"),
        as_optional_float(rtol, "rtol"),
    )


def classifier_predictions(features: Any, classifier: Any, bias: Any = None) -> np.ndarray:
    """``argmax_k (W h + b)`` per row (ties to the lowest index); ``classifier`` is ``(K, p)``.

    Examples
    --------
    >>> import numpy as np, etfcore as ec
    >>> ec.classifier_predictions(np.eye(2), np.array([[0.0, 1.0], [1.0, 0.0]])).tolist()
    [1, 0]
    """
    return _core.classifier_predictions(
        as_features(features),
        as_matrix64(classifier, "classifier"),
        None if bias is None else as_vector64(bias, "bias"),
    )
