"""The etfcore exception hierarchy.

Every error etfcore raises for bad input is an [`EtfcoreError`][etfcore.EtfcoreError], itself a
``ValueError``; the subclass names the kind of problem and the message names the offending value or
position. They are defined once in the Rust core (``etfcore._core``) and re-exported here; the one
Python-side kind, [`StorageError`][etfcore.StorageError], is for the filesystem.
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



class MissingDependencyError(EtfcoreError, ImportError):
    """An optional dependency is not installed. Also an ``ImportError`` (``name`` is the missing
    module), so code that catches ``ImportError`` keeps working; ``extra`` is the etfcore extra
    that installs it (``pip install 'etfcore[extra]'``), named in the message."""

    def __init__(self, message: str, *, name: "str | None" = None, extra: "str | None" = None):
        ImportError.__init__(self, message, name=name)
        self.extra = extra

    def __reduce__(self):
        return (_missing_dependency, (str(self), self.name, self.extra))


def _missing_dependency(message: str, name: "str | None", extra: "str | None"):
    return MissingDependencyError(message, name=name, extra=extra)


def require(module: str, extra: str, purpose: str, package: "str | None" = None):
    """Imports ``module`` and returns it, or raises
    [`MissingDependencyError`][etfcore.MissingDependencyError] naming what needs it (``purpose``),
    the package (``package``, default the module's top level) and the extra that installs it: the
    one helper behind every optional import of etfcore.

    Examples
    --------
    >>> require("numpy", "torch", "this example").__name__
    'numpy'
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        missing = (getattr(e, "name", None) or top).split(".")[0]
        # the module itself, or a dependency of it (torchvision without torch) is missing
        pkg = (package or top) if missing == top else missing
        raise MissingDependencyError(
            f"{purpose} needs {pkg}, which is not installed: pip install 'etfcore[{extra}]' "
            f"(or pip install {pkg})",
            name=missing,
            extra=extra,
        ) from None


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
    "MissingDependencyError",
]
