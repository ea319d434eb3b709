"""The etfcore exception hierarchy.

Every error etfcore raises for bad input is an :class:`EtfcoreError`, itself a ``ValueError``;
the subclass names the kind of problem and the message names the offending value or position.
They are defined once in the Rust core (``etfcore._core``) and re-exported here.
"""

from ._core import (
    CorruptDataError,
    DegenerateInputError,
    DimensionError,
    DTypeError,
    EtfcoreError,
    IncompatibleStatsError,
    LabelError,
    NonFiniteError,
    NumericalError,
    ParameterError,
    ShapeError,
    TooFewClassesError,
)

__all__ = [
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
]
