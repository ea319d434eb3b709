"""The etfcore exception hierarchy.

Every error etfcore raises for bad input is an :class:`EtfcoreError`, itself a ``ValueError``;
the subclass names the kind of problem and the message names the offending value or position.
They are defined once in the Rust core (``etfcore._core``) and re-exported here; the one
Python-side kind, :class:`StorageError`, is for the filesystem.
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


class StorageError(EtfcoreError):
    """Reading or writing a file failed for a reason of the machine, not of the data: a full or
    read-only disk, missing permissions, a file where a directory should be. ``path`` is the file
    and ``errno`` the operating system's error number (or ``None``)."""

    path: str = ""
    errno: "int | None" = None

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
    "StorageError",
]
