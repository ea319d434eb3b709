"""Embedded data that needs no download: scikit-learn's handwritten digits, seeded Gaussian
mixtures, hierarchical mixtures (coarse classes made of fine subclasses), plus the long-tail
class-count profile."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ._validation import as_float, as_index
from .errors import ParameterError, require


def long_tail_counts(num_classes: int, max_count: int, imbalance_ratio: float) -> np.ndarray:
    """CIFAR-LT profile ``n_k = floor(n_max · ρ^{k/(K-1)})`` with ``ρ = n_min/n_max`` in (0, 1].

    Examples
    --------
    >>> long_tail_counts(3, 100, 0.1).tolist()
    [100, 31, 10]
    """
    num_classes = as_index(num_classes, "num_classes")
    max_count = as_index(max_count, "max_count")
    imbalance_ratio = as_float(imbalance_ratio, "imbalance_ratio")
    if num_classes < 1 or max_count < 1:
        raise ParameterError("num_classes and max_count must be positive")
    if not (0.0 < imbalance_ratio <= 1.0):
        raise ParameterError(f"imbalance_ratio must be in (0, 1], got {imbalance_ratio}")
    if num_classes == 1:
        return np.array([max_count])
    k = np.arange(num_classes)
    profile = max_count * imbalance_ratio ** (k / (num_classes - 1))
    counts = np.floor(profile + 1e-9).astype(np.int64)
    return np.maximum(counts, 1)


def rarest_count(counts: Sequence[int], num_rarest: int) -> int:
    """The class count at or below which the ``num_rarest`` rarest classes fall: as a
    ``minor_threshold``, it makes them the minor classes (ties at that count join them).

    Examples
    --------
    >>> rarest_count([115, 89, 11, 14], 1), rarest_count([115, 89, 11, 14], 2)
    (11, 14)
    """
    ordered = np.sort(np.asarray(counts, dtype=np.int64))
    num_rarest = as_index(num_rarest, "num_rarest")
    if not 1 <= num_rarest <= len(ordered):
        raise ParameterError(f"num_rarest must be in [1, {len(ordered)}], got {num_rarest}")
    return int(ordered[num_rarest - 1])


def gaussian_mixture(
    num_classes: int,
    dim: int,
    samples_per_class: Union[int, Sequence[int]],
    *,
    seed: int,
    mean_scale: float = 3.0,
    within_scale: float = 1.0,
    means: Optional[np.ndarray] = None,
    covariance_scales: Optional[Sequence[float]] = None,
    offset: float = 0.0,
    dtype=np.float64,
) -> Tuple[np.ndarray, np.ndarray]:
    """Seeded Gaussian mixture ``h = μ_y + s_y · within_scale · z + offset``.

    Means are ``mean_scale`` times random unit vectors (or given ``means`` ``(K, p)``); each class
    has isotropic covariance ``(s_k · within_scale)² I`` (``covariance_scales`` gives ``s_k``,
    default 1). ``samples_per_class`` is an int or a per-class list (e.g.
    [`long_tail_counts`][etfcore.data.long_tail_counts]). Samples are ordered by class. Returns
    ``(features (N, p), labels (N,))``.

    Examples
    --------
    >>> H, y = gaussian_mixture(3, 5, 10, seed=0)
    >>> H.shape, np.bincount(y).tolist()
    ((30, 5), [10, 10, 10])
    """
    num_classes, dim = as_index(num_classes, "num_classes"), as_index(dim, "dim")
    rng = np.random.default_rng(as_index(seed, "seed"))
    counts = np.broadcast_to(np.asarray(samples_per_class, dtype=np.int64), (num_classes,))
    if (counts < 0).any():
        raise ParameterError("samples_per_class must be non-negative")
    if means is None:
        m = rng.standard_normal((num_classes, dim))
        m *= mean_scale / np.linalg.norm(m, axis=1, keepdims=True)
    else:
        m = np.asarray(means, dtype=np.float64)
        if m.shape != (num_classes, dim):
            raise ParameterError(f"means must have shape ({num_classes}, {dim}), got {m.shape}")
    scales = (
        np.ones(num_classes) if covariance_scales is None else np.asarray(covariance_scales, float)
    )
    y = np.repeat(np.arange(num_classes), counts)
    h = m[y] + (scales[y] * within_scale)[:, None] * rng.standard_normal((y.size, dim)) + offset
    return h.astype(dtype), y


def hierarchical_mixture(
    num_coarse: int,
    fine_per_coarse: int,
    dim: int,
    samples_per_class: Union[int, Sequence[int]],
    *,
    seed: int,
    coarse_scale: float = 3.0,
    fine_scale: float = 1.5,
    within_scale: float = 1.0,
    dtype=np.float64,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded two-level Gaussian mixture: ``C = num_coarse`` coarse classes, each made of
    ``F = fine_per_coarse`` fine subclasses.

    Fine class ``k = c·F + f`` (coarse class ``c = k // F``) has mean ``coarse_scale · u_c +
    fine_scale · v_k`` with ``u_c``, ``v_k`` independent random unit vectors, and isotropic
    covariance ``within_scale² I``. A model trained on the coarse labels alone is rewarded for
    forgetting the fine structure (``v_k``) inside each coarse class, which a fine-label task then
    needs; two seeds give two unrelated generators (a target "out of domain").
    ``samples_per_class`` is an int or a per-fine-class list. Samples are ordered by fine class.

    Returns ``(x (N, dim), fine labels (N,), coarse_of (C·F,))`` with ``coarse_of[k] = k // F``.

    Examples
    --------
    >>> x, y, coarse_of = hierarchical_mixture(2, 3, 8, 5, seed=0)
    >>> x.shape, np.bincount(y).tolist(), coarse_of.tolist()
    ((30, 8), [5, 5, 5, 5, 5, 5], [0, 0, 0, 1, 1, 1])
    """
    num_coarse = as_index(num_coarse, "num_coarse")
    fine_per_coarse = as_index(fine_per_coarse, "fine_per_coarse")
    dim = as_index(dim, "dim")
    if num_coarse < 1 or fine_per_coarse < 1 or dim < 1:
        raise ParameterError("num_coarse, fine_per_coarse and dim must be positive")
    for name, v in (("coarse_scale", coarse_scale), ("fine_scale", fine_scale),
                    ("within_scale", within_scale)):
        if not (np.isfinite(as_float(v, name)) and v >= 0):
            raise ParameterError(f"{name} must be finite and >= 0, got {v}")
    rng = np.random.default_rng(as_index(seed, "seed"))
    num_fine = num_coarse * fine_per_coarse
    coarse_of = np.arange(num_fine) // fine_per_coarse
    u = rng.standard_normal((num_coarse, dim))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = rng.standard_normal((num_fine, dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    means = coarse_scale * u[coarse_of] + fine_scale * v
    x, y = gaussian_mixture(
        num_fine, dim, samples_per_class, seed=int(rng.integers(2**31)), means=means,
        within_scale=within_scale, dtype=dtype,
    )
    return x, y, coarse_of


def load_digits(*, scale: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits (1797 images of 8×8 pixels, 10 classes), shipped with
    scikit-learn, so no download. Features ``(1797, 64)`` float64 (pixel values / 16 when
    ``scale``) and int64 labels."""
    datasets = require("sklearn.datasets", "train", "the digits data", package="scikit-learn")
    d = datasets.load_digits()
    x = d.data.astype(np.float64)
    return (x / 16.0 if scale else x), d.target.astype(np.int64)
