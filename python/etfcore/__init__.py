"""etfcore — neural-collapse geometry.

- [`etf`][etfcore.etf], [`orthogonal_frame`][etfcore.orthogonal_frame]: fixed classifier frames;
  beyond the simplex (``K > dim + 1``) [`sphere_codes`][etfcore.sphere_codes],
  [`hypercube_frame`][etfcore.hypercube_frame], [`orthoplex_frame`][etfcore.orthoplex_frame],
  [`min_coherence_frame`][etfcore.min_coherence_frame], and
  [`frame_coherence`][etfcore.frame_coherence] against the Welch bound.
- [`CollapseStats`][etfcore.CollapseStats]: streaming, mergeable sufficient statistics and every
  collapse metric computed from them.
- [`collapse_metrics`][etfcore.collapse_metrics]: every metric on in-memory arrays in one call.
- [`pinv_psd`][etfcore.pinv_psd]: the explicit pseudo-inverse policy.
- [`etfcore.data`][etfcore.data]: embedded data (digits, Gaussian mixtures, long-tail profiles).
- [`etfcore.errors`][etfcore.errors]: the exception hierarchy (all ``ValueError``).

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
