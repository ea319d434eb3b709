"""The result types the statistics layer returns, kept apart from the accumulator so that the
transfer layer can return and re-export them without importing anything above it.

- [`PinvResult`][etfcore.PinvResult]: a metric computed through a pseudo-inverse (a ``float``
  carrying its rank).
- [`NC1Split`][etfcore.NC1Split]: ``tr(P_B Σ_W)`` and the rest of ``tr Σ_W``.
- [`LogMEResult`][etfcore.stats.LogMEResult]: LogME and its per-class evidences.
- [`RidgePath`][etfcore.stats.RidgePath]: the ridge least-squares probe for a grid of ``λ``.

Examples
--------
>>> r = PinvResult(0.5, rank=2, method="eigh", normalizer=2)
>>> float(r) * 2, r.rank
(1.0, 2)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import numpy as np

from ..errors import ParameterError


class PinvResult(float):
    """A metric computed through a pseudo-inverse: a ``float`` carrying the rank it kept.

    It is the value itself (``round``, f-strings, comparisons and ``json.dumps`` work);
    ``rank`` is the number of eigenvalues the pseudo-inverse kept, ``method`` is ``"eigh"`` or
    ``"cholesky"`` (the fast path, taken only when it provably keeps every eigenvalue, i.e.
    gives the same result), ``normalizer`` is VCI's ``r`` (for the other metrics it equals
    ``rank``). ``value`` is the plain float.

    Examples
    --------
    >>> import json
    >>> r = PinvResult(0.25, rank=3, method="eigh", normalizer=3)
    >>> r + 1, f"{r:.1f}", r.rank, json.dumps({"vci": r})
    (1.25, '0.2', 3, '{"vci": 0.25}')
    """

    __slots__ = ("rank", "method", "normalizer")
    rank: int
    method: str
    normalizer: int

    def __new__(cls, value: float, rank: int, method: str, normalizer: int) -> PinvResult:
        obj = super().__new__(cls, value)
        object.__setattr__(obj, "rank", int(rank))
        object.__setattr__(obj, "method", str(method))
        object.__setattr__(obj, "normalizer", int(normalizer))
        return obj

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("PinvResult is immutable")

    @property
    def value(self) -> float:
        """The plain float."""
        return float(self)

    def __repr__(self) -> str:
        return (
            f"PinvResult(value={float(self)!r}, rank={self.rank}, method={self.method!r}, "
            f"normalizer={self.normalizer})"
        )

    def __reduce__(self) -> Tuple[Any, ...]:
        return (PinvResult, (float(self), self.rank, self.method, self.normalizer))


@dataclasses.dataclass(frozen=True)
class NC1Split:
    """``tr(P_B Σ_W)`` (within variance inside the span of the centred means) and the rest."""

    between_span: float
    orthogonal: float
    rank: int



@dataclasses.dataclass(frozen=True)
class LogMEResult:
    """LogME with its diagnostics: ``per_class[i]`` is the evidence of class ``classes[i]``;
    ``iterations`` the largest fixed-point count over classes; ``rank`` the eigenvalues of
    ``FᵀF`` used. ``float(result)`` is ``value``, the mean of ``per_class``.

    Examples
    --------
    >>> import numpy as np
    >>> r = LogMEResult(0.5, np.array([0.4, 0.6]), np.array([0, 1]), 3, True, 2, False)
    >>> float(r) == float(np.mean(r.per_class))
    True
    """

    value: float
    per_class: np.ndarray
    classes: np.ndarray
    iterations: int
    converged: bool
    rank: int
    parity: bool

    def __float__(self) -> float:
        return float(self.value)


def ridge_multipliers(eigenvalues: np.ndarray, rank: int, lam: float) -> np.ndarray:
    """``1/(σ_j + λ)`` for every eigenvalue ``σ_j`` of ``Σ_T``; at ``λ = 0`` the pseudo-inverse
    policy: ``1/σ_j`` for the ``rank`` kept eigenvalues (the largest, first) and 0 for the rest.

    Examples
    --------
    >>> import numpy as np
    >>> ridge_multipliers(np.array([4.0, 2.0, 1e-20]), 2, 0.0).tolist()
    [0.25, 0.5, 0.0]
    >>> ridge_multipliers(np.array([4.0, 2.0]), 2, 1.0).tolist()
    [0.2, 0.3333333333333333]
    """
    if lam == 0:
        d = np.zeros_like(eigenvalues)
        d[:rank] = 1.0 / eigenvalues[:rank]
        return d
    return 1.0 / (eigenvalues + lam)


@dataclasses.dataclass(frozen=True)
class RidgePath:
    r"""The ridge least-squares probe for every ``λ`` of ``grid`` (see
    [`ridge_path`][etfcore.CollapseStats.ridge_path]): with ``Σ_T = V diag(σ) Vᵀ`` (``eigenvalues``,
    ``eigenvectors``) and ``VᵀC`` (``projected_targets``, ``C = Σ_k π_k (μ_k-μ_G) e_kᵀ``), the
    weights are ``W_λ = V diag(1/(σ+λ)) VᵀC`` and the bias ``b_λ = π - μ_Gᵀ W_λ``.

    Examples
    --------
    >>> import etfcore as ec
    >>> x, y = ec.data.load_digits()
    >>> path = ec.CollapseStats(10, 64).update(x, y).ridge_path([0.0, 1.0])
    >>> w, b = path.weights(1.0)
    >>> w.shape, b.shape, path.predict(x[:3], 1.0).shape
    ((64, 10), (10,), (3, 10))
    """

    grid: np.ndarray
    train_mse: np.ndarray
    rank: int
    classes: np.ndarray
    priors: np.ndarray
    global_mean: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    projected_targets: np.ndarray
    validation_accuracy: Optional[np.ndarray] = None
    validation_mse: Optional[np.ndarray] = None

    def weights(self, lam: float) -> Tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` with ``W`` ``p × K'`` and ``b`` ``K'``: predictions ``f @ W + b``."""
        if isinstance(lam, (bool, np.bool_, str, bytes)):
            raise ParameterError(f"λ must be a real number, got {lam!r}")
        try:
            lam = float(lam)
        except (TypeError, ValueError):
            raise ParameterError(f"λ must be a real number, got {lam!r}") from None
        if not lam >= 0 or lam == float("inf"):  # NaN fails the first test
            raise ParameterError(f"λ must be finite and >= 0, got {lam}")
        d = ridge_multipliers(self.eigenvalues, self.rank, lam)
        w = self.eigenvectors @ (d[:, None] * self.projected_targets)
        return w, self.priors - self.global_mean @ w

    def predict(self, features: Any, lam: float) -> np.ndarray:
        """Ridge-probe outputs ``f @ W_λ + b_λ`` (``n × K'``)."""
        w, b = self.weights(lam)
        return np.asarray(features, dtype=np.float64) @ w + b


# Pickles name these by module: keep the path they had before the statistics became a package
# (``etfcore.stats.PinvResult``), so pickles load in both directions across that change.
PinvResult.__module__ = "etfcore.stats"
NC1Split.__module__ = "etfcore.stats"
