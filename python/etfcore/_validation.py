"""Argument conversion shared by the public functions (no copies of feature matrices)."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .errors import DTypeError, LabelError, ShapeError

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def as_features(features: Any, name: str = "features") -> np.ndarray:
    """A 2-D float32/float64 view of ``features`` (CPU torch tensors work through ``__array__``).

    No copy is made for native-endian float32/float64 input of any strides; non-native byte
    order is converted (one copy). Other dtypes are refused rather than silently cast.
    """
    if hasattr(features, "detach") and hasattr(features, "cpu"):  # a torch tensor
        features = features.detach().cpu().numpy()
    arr = np.asarray(features)
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


def as_labels(labels: Any, num_samples: Optional[int] = None, name: str = "labels") -> np.ndarray:
    """Contiguous int64 labels; refuses booleans, floats and objects with a :class:`LabelError`."""
    if hasattr(labels, "detach") and hasattr(labels, "cpu"):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise LabelError(f"{name} must be integers, got dtype {arr.dtype}")
    if num_samples is not None and arr.shape[0] != num_samples:
        raise ShapeError(f"features have {num_samples} rows but {name} have {arr.shape[0]} entries")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise LabelError(f"{name} contain a value above the int64 range")
    return np.ascontiguousarray(arr, dtype=np.int64)


def as_matrix64(matrix: Any, name: str) -> np.ndarray:
    if hasattr(matrix, "detach") and hasattr(matrix, "cpu"):
        matrix = matrix.detach().cpu().numpy()
    arr = np.asarray(matrix)
    if arr.ndim != 2:
        raise ShapeError(f"{name} must be 2-D, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise DTypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def as_vector64(vector: Any, length: int, name: str) -> np.ndarray:
    if hasattr(vector, "detach") and hasattr(vector, "cpu"):
        vector = vector.detach().cpu().numpy()
    arr = np.asarray(vector)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ShapeError(f"{name} must have shape ({length},), got {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise DTypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def check_weighting(weighting: str) -> str:
    from .errors import ParameterError

    if weighting not in ("weighted", "balanced"):
        raise ParameterError(f"weighting must be 'weighted' or 'balanced', got {weighting!r}")
    return weighting
