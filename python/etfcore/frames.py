"""Fixed classifier frames: simplex equiangular tight frames, orthogonal frames, and frames for
more classes than dimensions + 1 (random sphere codes, hypercube and orthoplex vertices, an
optimised low-coherence frame) with their coherence against the Welch bound.

Every frame is a ``(num_classes, dim)`` array whose rows are the class vectors (the layout of
``torch.nn.Linear.weight``), built in float64 by the Rust core from an explicit ``seed``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, List, Optional, Sequence, Tuple

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

    $$
    W = \sqrt{K/(K-1)}\; B\, Q', \qquad
    W W^\top = \tfrac{K}{K-1}\,(I_K - \tfrac{1}{K}\mathbf{1}\mathbf{1}^\top)
    $$

    with ``B`` the Helmert basis of $\mathbf 1^\perp$ and ``Q'`` a ``(K-1) × dim`` matrix
    with orthonormal rows drawn from the Haar measure (QR of a Gaussian matrix, signs of ``R``'s
    diagonal fixed) from ``seed``. Rows have unit norm (or ``lengths[k]``), pairwise inner
    products are exactly ``-1/(K-1)`` and the rows sum to zero. ``dim`` must be at least
    ``K-1``.

    Parameters
    ----------
    num_classes : int
        The number of classes $K \ge 2$ (rows of the frame).
    dim : int
        The dimension $p \ge K - 1$ of each class vector.
    seed : int, default 0
        Seed of the random rotation $Q'$ (ignored with ``canonical=True``).
    lengths : sequence of float, optional
        Per-class row norms (``num_classes`` finite positive values); unit norms by default.
    canonical : bool, default False
        Return the deterministic frame of public code,
        $\sqrt{K/(K-1)}\,(I_K - \tfrac1K \mathbf 1 \mathbf 1^\top)\,[I_K\ 0]$ (for
        $p = K - 1$: $\sqrt{K/(K-1)}\, B$) instead of a random rotation.
    dtype : numpy dtype, default numpy.float64
        ``float32`` or ``float64``: the dtype of the returned frame.

    Returns
    -------
    numpy.ndarray
        The ``(num_classes, dim)`` frame, rows are the class vectors.

    Raises
    ------
    DimensionError
        Fewer than two classes, or ``dim < num_classes - 1``.
    ShapeError
        ``lengths`` does not have ``num_classes`` entries.
    ParameterError
        A negative ``seed``, a length that is not finite and positive, or another ``dtype``.

    Examples
    --------
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
    r"""``(num_classes, dim)`` frame with orthonormal rows (Haar, seeded); ``dim >= num_classes``.

    Parameters
    ----------
    num_classes : int
        The number of classes $K$ (rows of the frame).
    dim : int
        The dimension $p \ge K$ of each class vector.
    seed : int, default 0
        Seed of the Haar-random rotation.
    lengths : sequence of float, optional
        Per-class row norms (``num_classes`` finite positive values); unit norms by default.
    dtype : numpy dtype, default numpy.float64
        ``float32`` or ``float64``: the dtype of the returned frame.

    Returns
    -------
    numpy.ndarray
        The ``(num_classes, dim)`` frame.

    Raises
    ------
    DimensionError
        ``dim < num_classes``.

    Examples
    --------
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


# --- Frames beyond the simplex: more classes than dimensions + 1 -------------------------------


@dataclasses.dataclass(frozen=True)
class Coherence:
    r"""How well a frame separates its classes.

    ``max_abs_cosine`` is the coherence $\max_{k\ne l} |\cos(w_k, w_l)|$,
    ``max_cosine`` the largest cosine (the closest pair of classes), and ``welch_bound``
    $\sqrt{(K-p)/(p(K-1))}$ for ``K > p`` (0 otherwise), below which no ``K`` unit vectors
    in ``p`` dimensions can go.
    """

    max_abs_cosine: float
    max_cosine: float
    welch_bound: float


def _float32(dtype: Any) -> bool:
    return _dtype(dtype) == np.dtype(np.float32)


def sphere_codes(
    num_classes: int, dim: int, seed: int = 0, *, dtype: Any = np.float64
) -> np.ndarray:
    r"""``num_classes`` unit vectors drawn uniformly on the sphere in ``dim`` dimensions.

    Normalised standard Gaussian rows from ``seed`` (ChaCha12; each block of 256 rows from its
    own stream, so the result does not depend on the number of threads), written once in the
    requested ``dtype``: a 50 000 × 4 096 float32 code takes 0.8 GB and no copy. Any
    ``num_classes`` works; the coherence is about $\sqrt{2\ln(K^2)/p}$.

    Parameters
    ----------
    num_classes : int
        The number of unit vectors $K \ge 2$ (any number, also above ``dim + 1``).
    dim : int
        Their dimension $p \ge 1$.
    seed : int, default 0
        Seed of the Gaussian draws.
    dtype : numpy dtype, default numpy.float64
        ``float32`` or ``float64``: the dtype of the returned frame.

    Returns
    -------
    numpy.ndarray
        The ``(num_classes, dim)`` frame of unit rows, in ``dtype``.

    Examples
    --------
    >>> import numpy as np, etfcore as ec
    >>> W = ec.sphere_codes(1000, 64, seed=0, dtype=np.float32)
    >>> W.shape, W.dtype, bool(np.allclose(np.linalg.norm(W, axis=1), 1, atol=1e-6))
    ((1000, 64), dtype('float32'), True)
    """
    return _core.sphere_codes(
        as_index(num_classes, "num_classes"),
        as_index(dim, "dim"),
        as_index(seed, "seed"),
        _float32(dtype),
    )


def hypercube_frame(num_classes: int, dim: int, *, dtype: Any = np.float64) -> np.ndarray:
    r"""``num_classes`` vertices of the ``d``-cube, $d = \lceil\log_2 K\rceil \le$ ``dim``.

    Row ``k`` is $\pm 1/\sqrt d$ in the first ``d`` coordinates (minus where bit ``j`` of
    ``k`` is set) and 0 after them. Cosines are $1 - 2h/d$, ``h`` the Hamming distance
    between the two labels' bits.

    Parameters
    ----------
    num_classes : int
        The number of classes $K \ge 2$.
    dim : int
        The dimension $p \ge \lceil\log_2 K\rceil$ (coordinates after the first $d$ are 0).
    dtype : numpy dtype, default numpy.float64
        ``float32`` or ``float64``: the dtype of the returned frame.

    Returns
    -------
    numpy.ndarray
        The ``(num_classes, dim)`` frame of unit rows.

    Raises
    ------
    DimensionError
        ``dim`` below $\lceil\log_2 K\rceil$.

    Examples
    --------
    >>> import numpy as np, etfcore as ec
    >>> W = ec.hypercube_frame(4, 3)
    >>> np.round(W @ W.T, 12) + 0.0
    array([[ 1.,  0.,  0., -1.],
           [ 0.,  1., -1.,  0.],
           [ 0., -1.,  1.,  0.],
           [-1.,  0.,  0.,  1.]])
    """
    return _core.vertex_frame(
        "hypercube", as_index(num_classes, "num_classes"), as_index(dim, "dim"), _float32(dtype)
    )


def orthoplex_frame(num_classes: int, dim: int, *, dtype: Any = np.float64) -> np.ndarray:
    r"""``num_classes`` vertices of the cross-polytope: rows ``2i``, ``2i+1`` are
    $\pm e_i$, so ``dim >= ceil(num_classes / 2)``. Distinct classes are orthogonal or
    opposite (largest cosine 0).

    Parameters
    ----------
    num_classes : int
        The number of classes $K \ge 2$.
    dim : int
        The dimension $p \ge \lceil K/2 \rceil$.
    dtype : numpy dtype, default numpy.float64
        ``float32`` or ``float64``: the dtype of the returned frame.

    Returns
    -------
    numpy.ndarray
        The ``(num_classes, dim)`` frame of unit rows.

    Raises
    ------
    DimensionError
        ``dim`` below $\lceil K/2 \rceil$.

    Examples
    --------
    >>> import etfcore as ec
    >>> ec.orthoplex_frame(3, 2)
    array([[ 1.,  0.],
           [-1.,  0.],
           [ 0.,  1.]])
    """
    return _core.vertex_frame(
        "orthoplex", as_index(num_classes, "num_classes"), as_index(dim, "dim"), _float32(dtype)
    )


def frame_coherence(frame: Any) -> Coherence:
    """The [`Coherence`][etfcore.Coherence] of a ``(K, p)`` frame's rows (any row lengths), exactly,
    by blocks of the cosine matrix (``K² p / 2`` multiply-adds, memory ``O(512 K)`` beside the
    rows).

    Parameters
    ----------
    frame : array_like
        A ``(K, p)`` array of class vectors (float32 or float64 are used as they are, anything
        else is converted to float64).

    Returns
    -------
    Coherence
        The largest absolute cosine, the largest cosine and the Welch bound of ``K`` and ``p``.

    Raises
    ------
    DTypeError
        ``frame`` is not two-dimensional.

    Examples
    --------
    >>> import numpy as np, etfcore as ec
    >>> c = ec.frame_coherence(ec.etf(5, 4, seed=0))
    >>> round(c.max_abs_cosine, 12), round(c.welch_bound, 12)
    (0.25, 0.25)
    """
    a = np.asarray(frame)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    return Coherence(*_core.frame_coherence(a))


def min_coherence_frame(
    num_classes: int, dim: int, seed: int = 0, *, steps: int = 500
) -> Tuple[np.ndarray, Coherence]:
    r"""A ``(K, dim)`` frame of low coherence, with its [`Coherence`][etfcore.Coherence].

    From [`sphere_codes`][etfcore.sphere_codes] of ``seed``, ``steps`` steps of projected gradient
    descent on the sphere on the smooth maximum $\tfrac1\beta\log\sum_{k\ne l} e^{\beta\cos^2_{kl}}$
    with $\beta$ rising from 10 to $10^4$; the iterate of smallest coherence is returned. Compare
    ``max_abs_cosine`` with ``welch_bound``: six classes in three dimensions reach the bound
    $1/\sqrt5$ to within 5%. It holds the ``K × K`` Gram, so ``K`` is at most 20 000; for
    vocabularies use [`sphere_codes`][etfcore.sphere_codes].

    Parameters
    ----------
    num_classes : int
        The number of classes $K$, at most 20 000.
    dim : int
        The dimension $p$ of each class vector.
    seed : int, default 0
        Seed of the starting [`sphere_codes`][etfcore.sphere_codes].
    steps : int, default 500
        The number of gradient steps.

    Returns
    -------
    frame : numpy.ndarray
        The ``(num_classes, dim)`` float64 frame of unit rows of smallest coherence seen.
    coherence : Coherence
        Its coherence, with the Welch bound to compare against.

    Raises
    ------
    DimensionError
        ``num_classes`` above 20 000 (or fewer than 2 classes).

    Examples
    --------
    >>> import etfcore as ec
    >>> W, c = ec.min_coherence_frame(6, 3, seed=0, steps=3000)
    >>> W.shape, bool(c.welch_bound <= c.max_abs_cosine < 1.05 * c.welch_bound)
    ((6, 3), True)
    """
    w, a, m, b = _core.min_coherence_frame(
        as_index(num_classes, "num_classes"),
        as_index(dim, "dim"),
        as_index(seed, "seed"),
        as_index(steps, "steps"),
    )
    return w, Coherence(a, m, b)
