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
    r"""Every collapse metric on ``features`` ``(N, p)`` and integer ``labels`` ``(N,)``.

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

    Parameters
    ----------
    features : array_like
        ``(N, p)`` float32 or float64 features (any strides; not copied).
    labels : array_like
        ``(N,)`` integer labels in ``0..K-1``.
    classifier : array_like, optional
        ``(K, p)`` classifier weights $W$ (one row per class): adds NC3 and NC4.
    bias : array_like, optional
        ``(K,)`` classifier bias $b$ for NC4 (zero by default).
    num_classes : int, optional
        $K$; by default the classifier's number of rows, else ``max(labels) + 1``.
    weighting : {"weighted", "balanced"}, default "weighted"
        Class weights $n_k/N$ and the sample mean, or $1/K$ and the mean of the class means
        (see [`CollapseStats`][etfcore.CollapseStats]).
    rtol : float, optional
        Relative eigenvalue threshold of the pseudo-inverses (default $p \cdot \varepsilon$; see
        [`pinv_psd`][etfcore.pinv_psd]).
    numerical_rank : bool, default True
        Also compute the per-class numerical rank (a second pass over the samples).

    Returns
    -------
    dict
        The metrics by name (the keys above): floats, except ``weighting`` and ``precision``
        (strings), the counts and ranks (ints) and ``nc3_cosines`` (an array).

    Raises
    ------
    LabelError
        A label outside ``0..K-1``.
    TooFewClassesError
        Fewer than two classes with samples.
    ShapeError
        Features, labels and classifier of inconsistent shapes.
    ParameterError
        Another ``weighting``, or a negative or non-finite ``rtol``.
    DegenerateInputError
        A metric undefined on these data (e.g. $\Sigma_B$ keeps no eigenvalue above the
        threshold).

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
    r"""Per class $\|H_k\|_*^2 / \|H_k\|_F^2$ (from "Do we need neural collapse?") and its mean
    over classes.

    $H_k$ is the ``(n_k, p)`` matrix of the features of class $k$; the ratio of its squared
    nuclear and Frobenius norms lies between 1 and $\mathrm{rank}(H_k)$.

    Parameters
    ----------
    features : array_like
        ``(N, p)`` float32 or float64 features.
    labels : array_like
        ``(N,)`` integer labels in ``0..K-1``.
    num_classes : int, optional
        $K$; ``max(labels) + 1`` by default.
    centred : bool, default False
        Subtract each class mean first.

    Returns
    -------
    mean : float
        The mean of the per-class values over the classes with samples.
    per_class : dict of int to float
        The value of each class with samples.

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
    r"""Pseudo-inverse of a symmetric PSD matrix by an explicit threshold.

    Keeps the eigenvalues $\lambda > \mathrm{rtol} \cdot \lambda_{\max}$ (default
    $\mathrm{rtol} = n \varepsilon$), or exactly the top ``rank``.

    Parameters
    ----------
    matrix : array_like
        A symmetric positive semi-definite ``(n, n)`` matrix.
    rank : int, optional
        Keep exactly this many of the largest eigenvalues instead of thresholding.
    rtol : float, optional
        The relative threshold (finite, non-negative); $n \varepsilon$ by default.

    Returns
    -------
    pinv : numpy.ndarray
        The ``(n, n)`` float64 pseudo-inverse.
    rank_used : int
        The number of eigenvalues kept.
    method : str
        ``"cholesky"`` when the fast path provably kept every eigenvalue, else ``"eigh"``.

    Raises
    ------
    ShapeError
        A matrix that is not square or not symmetric.

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
    r"""$\arg\max_k\, (W h + b)_k$ for each row $h$ (ties to the lowest index).

    Parameters
    ----------
    features : array_like
        ``(N, p)`` float32 or float64 features.
    classifier : array_like
        ``(K, p)`` weights $W$, one row per class.
    bias : array_like, optional
        ``(K,)`` bias $b$ (zero by default).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` int64 predicted classes.

    Raises
    ------
    ShapeError
        ``classifier`` and ``features`` of different widths, or a ``bias`` of another length.

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
