"""Argument coercion shared by the public functions (no copies of feature matrices).

These helpers only turn Python objects into what the core takes (arrays of the right dtype,
machine integers, floats, strings) and raise a typed [`EtfcoreError`][etfcore.EtfcoreError] when an
object cannot be turned into one. Every check of *values* (shapes against the statistics,
labels against ``num_classes``, finiteness, domains) is the core's.
"""

from __future__ import annotations

import operator
from typing import Any, Optional, Union

import numpy as np

from .errors import DTypeError, LabelError, ParameterError, ShapeError

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_U64_MAX = 2**64 - 1


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "dtype")


def _asarray(x: Any, name: str) -> np.ndarray:
    """``np.asarray`` of numpy input, CPU torch tensors and nested sequences, with typed errors
    for tensors of dtypes numpy lacks (bfloat16) and ragged sequences."""
    if _is_tensor(x):
        try:
            x = x.detach().cpu().numpy()
        except (TypeError, RuntimeError) as e:
            raise DTypeError(
                f"{name}: a torch tensor of dtype {x.dtype} has no numpy equivalent; cast it "
                f"(e.g. .float()) first ({e})"
            ) from None
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:
        raise ShapeError(
            f"{name} cannot be read as an array (ragged or mixed input): {e}"
        ) from None


def as_features(features: Any, name: str = "features") -> np.ndarray:
    """A 2-D float32/float64 view of ``features`` (CPU torch tensors work too).

    No copy is made for native-endian float32/float64 input of any strides; non-native byte
    order is converted (one copy). Other dtypes are refused rather than silently cast.
    """
    arr = _asarray(features, name)
    if arr.ndim != 2:
        raise ShapeError(f"{name} must be 2-D (num_samples, dim), got shape {arr.shape}")
    if arr.dtype.newbyteorder("=") not in _FLOATS:
        raise DTypeError(
            f"{name} must be float32 or float64, got dtype {arr.dtype}; cast it explicitly "
            "(e.g. .astype(np.float32))"
        )
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def as_labels(labels: Any, name: str = "labels") -> np.ndarray:
    """Contiguous int64 labels; refuses booleans, floats and objects with a
    [`LabelError`][etfcore.LabelError] (their range is checked by the core)."""
    arr = _asarray(labels, name)
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise LabelError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise LabelError(f"{name} contain a value above the int64 range")
    return np.ascontiguousarray(arr, dtype=np.int64)


def as_labels_for_rows(labels: Any, num_rows: int, name: str = "labels") -> np.ndarray:
    """`as_labels` plus the one check the Python-side computations (validation data of the
    ridge path, LEEP, NCE, CM accuracy) need: one label per row of their features."""
    y = as_labels(labels, name)
    if y.shape[0] != num_rows:
        raise ShapeError(f"{name} has {y.shape[0]} entries but there are {num_rows} rows")
    return y


def as_matrix64(matrix: Any, name: str) -> np.ndarray:
    """A contiguous float64 2-D array of a numeric array-like."""
    arr = _asarray(matrix, name)
    if arr.ndim != 2:
        raise ShapeError(f"{name} must be 2-D, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise DTypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def as_vector64(vector: Any, name: str) -> np.ndarray:
    """A contiguous float64 1-D array of a numeric array-like."""
    arr = _asarray(vector, name)
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise DTypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def as_index(value: Any, name: str) -> int:
    """A non-negative machine integer (``0 <= value < 2**64``): sizes, seeds, ranks, orders.

    Integral values only (``3.7``, ``nan``, strings and ``True`` are refused, never truncated).
    """
    if isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ParameterError(
            f"{name} must be an integer, got {value!r} ({type(value).__name__})"
        ) from None
    if not 0 <= v <= _U64_MAX:
        raise ParameterError(f"{name} must be in [0, 2**64 - 1], got {v}")
    return v


def as_optional_index(value: Any, name: str) -> Optional[int]:
    return None if value is None else as_index(value, name)


def as_float(value: Any, name: str) -> float:
    """A Python float of a real number (its domain is checked by the core)."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise ParameterError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ParameterError(
            f"{name} must be a real number, got {value!r} ({type(value).__name__})"
        ) from None


def as_optional_float(value: Any, name: str) -> Optional[float]:
    return None if value is None else as_float(value, name)


def as_str(value: Any, name: str) -> str:
    """A string option (its allowed values are checked by the core)."""
    if not isinstance(value, str):
        raise ParameterError(f"{name} must be a string, got {value!r} ({type(value).__name__})")
    return value


def as_normalizer(value: Any) -> Union[str, int]:
    """VCI's normaliser: a name or a non-negative integer (positivity is the core's check)."""
    if isinstance(value, str):
        return value
    return as_index(value, "normalizer")


def as_bytes(data: Any) -> bytes:
    """``bytes`` of a bytes-like object (bytes, bytearray, memoryview)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise DTypeError(f"data must be bytes-like, got {type(data).__name__}")


def as_flat64(values: Any, name: str) -> np.ndarray:
    """A flat contiguous float64 array of a numeric array-like of any shape."""
    arr = _asarray(values, name)
    if arr.dtype.kind not in "fiu":
        raise DTypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64).ravel()


def as_flat_int64(values: Any, name: str) -> np.ndarray:
    """A flat contiguous int64 array of an integer array-like of any shape."""
    arr = _asarray(values, name)
    if arr.dtype.kind not in "iu":
        raise DTypeError(f"{name} must be integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64).ravel()


def as_count(value: Any, name: str, minimum: int = 1) -> int:
    """An integer ``>= minimum`` (class counts, dimensions, chunk sizes, batch sizes)."""
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        v = operator.index(value)
    except TypeError:
        v = None
    if v is None or v < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return v


def torch_device(device: Any, name: str = "device") -> Any:
    """The ``torch.device`` of ``device`` (``None``/``"auto"``: CUDA when present, else the CPU),
    checked before any tensor goes there: an unknown name, ``"cuda"`` without CUDA, or a device
    index the machine lacks is a [`ParameterError`][etfcore.ParameterError]. The one device check of
    etfcore (probe, extraction, the torch statistics, the command line); imports torch when called.
    """
    import torch

    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, (bool, np.bool_)):
        raise ParameterError(f"{name} must be a device name like 'cpu' or 'cuda:0', got {device!r}")
    try:
        dev = torch.device(device.strip() if isinstance(device, str) else device)
    except (RuntimeError, TypeError, ValueError):
        raise ParameterError(
            f"{name}: unknown device {device!r} (use 'auto', 'cpu', 'cuda', 'cuda:N', 'mps')"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(f"{name} {device!r}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ParameterError(
                f"{name} {device!r}: this machine has {count} CUDA device(s) (0..{count - 1})"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ParameterError(f"{name} {device!r}: MPS is not available on this machine")
    elif dev.type not in ("cpu", "meta"):
        backend = getattr(torch, dev.type, None)
        available = getattr(backend, "is_available", None)
        if available is None or not available():
            raise ParameterError(f"{name} {device!r}: {dev.type} is not available on this machine")
    return dev
