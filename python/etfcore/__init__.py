"""etfcore — neural-collapse geometry.

- :func:`etf`, :func:`orthogonal_frame`: fixed classifier frames; beyond the simplex
  (``K > dim + 1``) :func:`sphere_codes`, :func:`hypercube_frame`, :func:`orthoplex_frame`,
  :func:`min_coherence_frame`, and :func:`frame_coherence` against the Welch bound.
- :class:`CollapseStats`: streaming, mergeable sufficient statistics and every collapse metric
  computed from them.
- :func:`collapse_metrics`: every metric on in-memory arrays in one call.
- :func:`pinv_psd`: the explicit pseudo-inverse policy.
- :mod:`etfcore.data`: embedded data (digits, Gaussian mixtures, long-tail profiles).
- :mod:`etfcore.errors`: the exception hierarchy (all ``ValueError``).

Importing etfcore never imports torch.
"""

from . import data, errors
from ._core import FORMAT_VERSION
from .errors import (
    CorruptDataError,
    DegenerateInputError,
    DimensionError,
    DTypeError,
    EtfcoreError,
    IncompatibleStatsError,
    LabelError,
    MissingDependencyError,
    NonFiniteError,
    NumericalError,
    ParameterError,
    ShapeError,
    StorageError,
    TooFewClassesError,
)
from .frames import (
    Coherence,
    etf,
    frame_coherence,
    hypercube_frame,
    min_coherence_frame,
    orthogonal_frame,
    orthoplex_frame,
    sphere_codes,
)
from .metrics import classifier_predictions, collapse_metrics, numerical_rank_of, pinv_psd
from .stats import CollapseStats, NC1Split, PinvResult, merge_stats

__version__ = "0.1.0"

__all__ = [
    "FORMAT_VERSION",
    "CollapseStats",
    "NC1Split",
    "PinvResult",
    "classifier_predictions",
    "collapse_metrics",
    "data",
    "errors",
    "etf",
    "merge_stats",
    "numerical_rank_of",
    "orthogonal_frame",
    "Coherence",
    "frame_coherence",
    "hypercube_frame",
    "min_coherence_frame",
    "orthoplex_frame",
    "sphere_codes",
    "pinv_psd",
    "EtfcoreError",
    "ShapeError",
    "DTypeError",
    "NonFiniteError",
    "LabelError",
    "TooFewClassesError",
    "DimensionError",
    "IncompatibleStatsError",
    "CorruptDataError",
    "ParameterError",
    "DegenerateInputError",
    "NumericalError",
    "StorageError",
    "MissingDependencyError",
]
