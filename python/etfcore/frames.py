"""Simplex equiangular tight frames and orthogonal frames.

Every frame is a ``(num_classes, dim)`` array whose rows are the class vectors (the layout of
``torch.nn.Linear.weight``), built in float64 by the Rust core from an explicit ``seed``.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import numpy as np

from . import _core
from ._validation import as_flat64, as_index
from .errors import ParameterError


def _dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ParameterError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _lengths(lengths: Optional[Sequence[float]]) -> Optional[List[float]]:
    return None if lengths is None else as_flat64(lengths, "lengths").tolist()


def etf(
    num_classes: int,
    dim: int,
    seed: int = 0,
    *,
    lengths: Optional[Sequence[float]] = None,
    canonical: bool = False,
    dtype: Any = np.float64,
) -> np.ndarray:
    r"""Simplex ETF ``W`` of shape ``(num_classes, dim)``.

    .. math::
        W = \sqrt{K/(K-1)}\; B\, Q', \qquad
        W W^\top = \tfrac{K}{K-1}\,(I_K - \tfrac{1}{K}\mathbf{1}\mathbf{1}^\top)

    with ``B`` the Helmert basis of :math:`\mathbf 1^\perp` and ``Q'`` a ``(K-1) × dim`` matrix
    with orthonormal rows drawn from the Haar measure (QR of a Gaussian matrix, signs of ``R``'s
    diagonal fixed) from ``seed``. Rows have unit norm (or ``lengths[k]``), pairwise inner
    products are exactly ``-1/(K-1)`` and the rows sum to zero. ``dim`` must be at least
    ``K-1``.

    ``canonical=True`` gives the deterministic frame of public code,
    ``sqrt(K/(K-1)) (I - 11ᵀ/K) [I_K 0]`` (for ``dim = K-1``: ``sqrt(K/(K-1)) B``).

    >>> import numpy as np, etfcore as ec
    >>> W = ec.etf(num_classes=4, dim=8, seed=0)
    >>> np.allclose(W @ W.T, 4 / 3 * (np.eye(4) - 1 / 4))
    True
    """
    w = _core.simplex_etf(
        as_index(num_classes, "num_classes"),
        as_index(dim, "dim"),
        as_index(seed, "seed"),
        _lengths(lengths),
        bool(canonical),
    )
    return w.astype(_dtype(dtype), copy=False)


def orthogonal_frame(
    num_classes: int,
    dim: int,
    seed: int = 0,
    *,
    lengths: Optional[Sequence[float]] = None,
    dtype: Any = np.float64,
) -> np.ndarray:
    """``(num_classes, dim)`` frame with orthonormal rows (Haar, seeded); ``dim >= num_classes``.

    >>> import numpy as np, etfcore as ec
    >>> W = ec.orthogonal_frame(3, 5, seed=1)
    >>> np.allclose(W @ W.T, np.eye(3))
    True
    """
    w = _core.orthogonal_frame(
        as_index(num_classes, "num_classes"),
        as_index(dim, "dim"),
        as_index(seed, "seed"),
        _lengths(lengths),
    )
    return w.astype(_dtype(dtype), copy=False)
