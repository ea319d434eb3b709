"""Streaming statistics for the transferability scores that need more than
[`CollapseStats`][etfcore.CollapseStats]: the regularised H-score and GBC."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from .. import _core
from .._validation import as_features, as_labels, as_optional_float
from ..errors import IncompatibleStatsError
from ..stats import CollapseStats, LogMEResult


class TransferabilityStats:
    r"""A [`CollapseStats`][etfcore.CollapseStats] plus the accumulators the regularised H-score and
    GBC need, relative to the same shift ``c`` (``a_i = f_i - c``): ``Σ‖a_i‖⁴``, ``Σ‖a_i‖² a_i`` and
    the per-class, per-dimension ``Σ_{y_i=k} a_i²`` (``K × p``). One streaming pass, float64,
    mergeable (another's sums are re-expressed to this shift exactly), serialisable.

    Examples
    --------
    >>> import numpy as np
    >>> from etfcore import data, transfer
    >>> x, y = data.load_digits()
    >>> a = transfer.TransferabilityStats(10, 64).update(x[:900], y[:900])
    >>> b = transfer.TransferabilityStats(10, 64).update(x[900:], y[900:])
    >>> whole = transfer.TransferabilityStats(10, 64).update(x, y)
    >>> bool(abs(a.merge(b).gbc() - whole.gbc()) < 1e-9 * abs(whole.gbc()))
    True
    """

    __slots__ = ("_raw",)

    def __init__(self, num_classes: int, dim: int) -> None:
        self._raw = _core.RawTransferabilityStats(int(num_classes), int(dim))

    @classmethod
    def _wrap(cls, raw) -> TransferabilityStats:
        obj = cls.__new__(cls)
        obj._raw = raw
        return obj

    def update(self, features: Any, labels: Any) -> TransferabilityStats:
        """Adds a batch (all-or-nothing: on error nothing changes)."""
        h = as_features(features)
        self._raw.update(h, as_labels(labels))
        return self

    def merge(self, other: TransferabilityStats) -> TransferabilityStats:
        if not isinstance(other, TransferabilityStats):
            raise IncompatibleStatsError(
                f"can only merge a TransferabilityStats, got {type(other).__name__}"
            )
        self._raw.merge(other._raw)
        return self

    def copy(self) -> TransferabilityStats:
        """An independent copy (also what ``copy.copy`` and ``copy.deepcopy`` return)."""
        return TransferabilityStats._wrap(self._raw.copy())

    def __copy__(self) -> TransferabilityStats:
        return self.copy()

    def __deepcopy__(self, memo: Dict[int, Any]) -> TransferabilityStats:
        return self.copy()

    def __reduce__(self) -> Tuple[Any, ...]:
        # Pickling (multiprocessing, Dask) goes through the versioned bytes format.
        return (_from_bytes, (self.to_bytes(),))

    def to_bytes(self) -> bytes:
        """Magic ``ETFCXFER``, version, the inner statistics' bytes, the extra sums, FNV-1a-64."""
        return self._raw.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> TransferabilityStats:
        return cls._wrap(_core.RawTransferabilityStats.from_bytes(bytes(data)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TransferabilityStats) and self._raw == other._raw

    __hash__ = None  # mutable

    @property
    def collapse_stats(self) -> CollapseStats:
        """A copy of the inner [`CollapseStats`][etfcore.CollapseStats] (every collapse metric)."""
        return CollapseStats._wrap(self._raw.collapse_stats())

    @property
    def num_samples(self) -> int:
        return self.collapse_stats.num_samples

    def hscore(self, **kw) -> float:
        return self.collapse_stats.hscore(**kw)

    def logme(self, **kw) -> LogMEResult:
        return self.collapse_stats.logme(**kw)

    def regularized_hscore(self, *, rtol: Optional[float] = None) -> float:
        """``tr(Σ_LW^{-1} (1-δ) Σ_B)``, Ledoit–Wolf ``δ = min(1, b̄²/d²)`` with
        ``d² = ‖Σ_T - μI‖_F²``, ``μ = tr Σ_T/p``, ``b̄² = (Σ_i‖f_i-μ_G‖⁴/N - ‖Σ_T‖_F²)/N``
        (scikit-learn's ``ledoit_wolf``); ``Σ_B`` population (the reference code uses ``1/(N-1)``
        for it)."""
        return float(self._raw.regularized_hscore(as_optional_float(rtol, "rtol"))[0])

    def ledoit_wolf_shrinkage(self) -> float:
        """The shrinkage ``δ`` used by
        [`regularized_hscore`][etfcore.transfer.streaming.TransferabilityStats.regularized_hscore].
        """
        return float(self._raw.regularized_hscore(None)[1])

    def gbc(self, *, var_floor: Optional[float] = None) -> float:
        """``-Σ_{k≠l} exp(-D_B(k,l))``, ``D_B = ⅛Σ_d (μ_kd-μ_ld)²/σ̄_d + ½Σ_d ln(σ̄_d/√(σ_kd σ_ld))``,
        ``σ̄ = (σ_k+σ_l)/2``, population per-class variances floored at ``var_floor`` (default
        ``1e-12 ×`` the largest)."""
        return float(self._raw.gbc(var_floor))



def _from_bytes(data: bytes) -> TransferabilityStats:
    return TransferabilityStats.from_bytes(data)
