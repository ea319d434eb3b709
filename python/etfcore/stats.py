"""Streaming, mergeable collapse statistics (SPEC §3) and the metrics computed from them (SPEC §5).

The state is the sufficient statistics ``(n_k, s_k = Σ (h_i - c), S = Σ (h_i - c)(h_i - c)ᵀ)`` for a
shift ``c`` (the mean of the first batch), plus per-class sums of squared norms (for the class
variances ``tr C_k``) and of unit vectors (for the cosine metrics). Accumulation is in float64,
one pass per batch, multithreaded in the Rust core with the GIL released; memory is
``O(K·p + p²)`` whatever the number of samples. Two statistics merge by addition after being
re-expressed to a common shift, so shards, processes and GPUs can each fill their own.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Optional, Union

import numpy as np

from . import _core
from ._validation import as_features, as_labels, as_matrix64, as_vector64, check_weighting
from .errors import IncompatibleStatsError, ParameterError

Weighting = str  # "weighted" (default) or "balanced"


@dataclasses.dataclass(frozen=True)
class PinvResult:
    """A metric computed through a pseudo-inverse, with the rank that pseudo-inverse kept.

    ``float(result)`` gives the value. ``method`` is ``"eigh"`` or ``"cholesky"`` (the fast path,
    taken only when it provably keeps every eigenvalue, i.e. gives the same result).
    ``normalizer`` is VCI's ``r`` (for the other metrics it equals ``rank``).
    """

    value: float
    rank: int
    method: str
    normalizer: int

    def __float__(self) -> float:
        return float(self.value)


@dataclasses.dataclass(frozen=True)
class NC1Split:
    """``tr(P_B Σ_W)`` (within variance inside the span of the centred means) and the rest."""

    between_span: float
    orthogonal: float
    rank: int


def _pinv(t) -> PinvResult:
    return PinvResult(float(t[0]), int(t[1]), str(t[2]), int(t[3]))


class CollapseStats:
    r"""Sufficient statistics of labelled features, updated batch by batch.

    Parameters
    ----------
    num_classes, dim:
        ``K`` and ``p``. Labels must lie in ``0..K-1``; classes without samples are ignored by
        every metric (at least two classes must have samples).
    track_class_scatter:
        Also keep each class's scatter ``S_k`` (``K·p²`` float64 values). Needed only for the
        *balanced* within-class covariance of *imbalanced* classes (which is not a function of
        ``(n_k, s_k, S)``) and for :meth:`class_covariance`.

    Conventions (SPEC §2): ``weighting="weighted"`` (default) uses ``μ_G`` the sample mean and
    class weights ``π_k = n_k/N``, so ``Σ_T = Σ_W + Σ_B`` exactly; ``"balanced"`` uses
    ``μ_G = mean_k μ_k`` and weights ``1/K``. All covariances are population (``1/N``).

    Example
    -------
    >>> import numpy as np, etfcore as ec
    >>> rng = np.random.default_rng(0)
    >>> H = rng.normal(size=(600, 16)).astype(np.float32); y = np.arange(600) % 3
    >>> stats = ec.CollapseStats(num_classes=3, dim=16)
    >>> for i in range(0, 600, 200):
    ...     _ = stats.update(H[i:i + 200], y[i:i + 200])
    >>> stats.num_samples
    600
    >>> 0.0 <= float(stats.vci()) <= 1.0
    True
    """

    __slots__ = ("_raw",)

    def __init__(self, num_classes: int, dim: int, *, track_class_scatter: bool = False) -> None:
        self._raw = _core.RawCollapseStats(int(num_classes), int(dim), bool(track_class_scatter))

    @classmethod
    def _wrap(cls, raw) -> CollapseStats:
        obj = cls.__new__(cls)
        obj._raw = raw
        return obj

    # ----------------------------------------------------------------- accumulation
    def update(self, features: Any, labels: Any) -> CollapseStats:
        """Adds a batch: ``features`` ``(n, p)`` float32/float64 (any strides, no copy), integer
        ``labels`` ``(n,)``. All-or-nothing: on error the statistics are unchanged."""
        h = as_features(features)
        y = as_labels(labels, h.shape[0])
        self._raw.update(h, y)
        return self

    def merge(self, other: CollapseStats) -> CollapseStats:
        """Adds ``other``'s statistics (same ``K``, ``p`` and options): the result equals one pass
        over both inputs, to rounding."""
        if not isinstance(other, CollapseStats):
            raise IncompatibleStatsError(f"can only merge a CollapseStats, got {type(other).__name__}")
        self._raw.merge(other._raw)
        return self

    def __iadd__(self, other: CollapseStats) -> CollapseStats:
        return self.merge(other)

    def copy(self) -> CollapseStats:
        return CollapseStats._wrap(self._raw.copy())

    def reshift(self, shift: Any) -> CollapseStats:
        """Re-expresses the statistics relative to another shift vector (exact up to rounding)."""
        self._raw.reshift([float(v) for v in as_vector64(shift, self.dim, "shift")])
        return self

    # ----------------------------------------------------------------- persistence
    def to_bytes(self) -> bytes:
        """Versioned little-endian serialisation with a checksum (see README, "Formats")."""
        return self._raw.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> CollapseStats:
        """Parses :meth:`to_bytes` output; corrupted or truncated data raise ``CorruptDataError``,
        another format version ``IncompatibleStatsError``."""
        return cls._wrap(_core.RawCollapseStats.from_bytes(bytes(data)))

    @classmethod
    def from_parts(
        cls,
        num_classes: int,
        dim: int,
        *,
        shift: Optional[Any],
        class_counts: Any,
        class_sums: Any,
        class_sq_norms: Any,
        class_unit_sums: Any,
        class_zero_rows: Any,
        scatter: Any,
    ) -> CollapseStats:
        """Statistics accumulated elsewhere (e.g. on a GPU by
        :class:`etfcore.training.TorchCollapseStats`), validated by the core."""
        f = lambda a: np.ascontiguousarray(a, dtype=np.float64).ravel()  # noqa: E731
        i = lambda a: np.ascontiguousarray(a, dtype=np.int64).ravel()  # noqa: E731
        raw = _core.RawCollapseStats.from_parts(
            int(num_classes), int(dim), None if shift is None else f(shift), i(class_counts),
            f(class_sums), f(class_sq_norms), f(class_unit_sums), i(class_zero_rows), f(scatter),
        )
        return cls._wrap(raw)

    def save(self, path: Union[str, os.PathLike]) -> None:
        with open(path, "wb") as f:
            f.write(self.to_bytes())

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> CollapseStats:
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CollapseStats) and self._raw == other._raw

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        present = int((self.class_counts > 0).sum())
        return (
            f"CollapseStats(num_classes={self.num_classes}, dim={self.dim}, "
            f"num_samples={self.num_samples}, classes_present={present})"
        )

    # ----------------------------------------------------------------- raw statistics
    @property
    def num_classes(self) -> int:
        return self._raw.num_classes

    @property
    def dim(self) -> int:
        return self._raw.dim

    @property
    def num_samples(self) -> int:
        return self._raw.num_samples

    @property
    def track_class_scatter(self) -> bool:
        return self._raw.track_class_scatter

    @property
    def class_counts(self) -> np.ndarray:
        """``n_k`` for every class (int64, length ``K``)."""
        return self._raw.class_counts

    @property
    def shift(self) -> Optional[np.ndarray]:
        """The shift ``c`` (None before the first non-empty update)."""
        return self._raw.shift

    @property
    def class_sums(self) -> np.ndarray:
        """``s_k = Σ_{y_i=k} (h_i - c)``, shape ``(K, p)``."""
        return self._raw.class_sums

    @property
    def scatter(self) -> np.ndarray:
        """``S = Σ_i (h_i - c)(h_i - c)ᵀ``, shape ``(p, p)``."""
        return self._raw.scatter

    @property
    def class_unit_sums(self) -> np.ndarray:
        """``Σ_{y_i=k} h_i/‖h_i‖``, shape ``(K, p)``."""
        return self._raw.class_unit_sums

    # ----------------------------------------------------------------- geometry
    def _geometry(self, weighting: Weighting) -> Dict[str, Any]:
        return self._raw.geometry_dict(check_weighting(weighting))

    def present_classes(self) -> np.ndarray:
        """Indices of the classes with at least one sample."""
        return np.flatnonzero(self.class_counts > 0)

    def class_means(self) -> np.ndarray:
        """``μ_k``, shape ``(K, p)``; rows of classes without samples are NaN."""
        g = self._geometry("weighted")
        out = np.full((self.num_classes, self.dim), np.nan)
        out[g["present"]] = g["class_means"]
        return out

    def global_mean(self, weighting: Weighting = "weighted") -> np.ndarray:
        """``μ_G``: the sample mean (weighted) or the mean of the class means (balanced)."""
        return self._geometry(weighting)["global_mean"]

    def class_variances(self, weighting: Weighting = "weighted") -> np.ndarray:
        """``tr C_k`` for each present class (order of :meth:`present_classes`)."""
        return self._geometry(weighting)["class_variances"]

    def total_covariance(self, weighting: Weighting = "weighted") -> np.ndarray:
        """``Σ_T = Σ_W + Σ_B`` (weighted: ``(1/N) Σ_i (h_i-μ_G)(h_i-μ_G)ᵀ``)."""
        return self._raw.total_covariance(check_weighting(weighting))

    def between_class_covariance(self, weighting: Weighting = "weighted") -> np.ndarray:
        """``Σ_B = Σ_k w_k (μ_k-μ_G)(μ_k-μ_G)ᵀ``, ``w_k = π_k`` (weighted) or ``1/K`` (balanced)."""
        return self._raw.between_class_covariance(check_weighting(weighting))

    def within_class_covariance(self, weighting: Weighting = "weighted") -> np.ndarray:
        """``Σ_W = Σ_k w_k C_k`` with ``C_k`` the class covariance (``1/n_k``)."""
        return self._raw.within_class_covariance(check_weighting(weighting))

    def class_covariance(self, k: int) -> np.ndarray:
        """``C_k`` of one class (needs ``track_class_scatter=True``)."""
        n = int(self.class_counts[k]) if 0 <= k < self.num_classes else 0
        s = self._raw.class_scatter(int(k))
        if n == 0:
            raise ParameterError(f"class {k} has no samples")
        m = self.class_sums[k] / n
        return s / n - np.outer(m, m)

    # ----------------------------------------------------------------- metrics
    def vci(
        self,
        weighting: Weighting = "weighted",
        *,
        normalizer: Union[str, int] = "min",
        rank: Optional[int] = None,
        rtol: Optional[float] = None,
    ) -> PinvResult:
        r"""Variability Collapse Index ``1 - Tr[Σ_T^† Σ_B] / r`` (paper 003).

        ``r = min(p, K-1)`` (``normalizer="min"``), the numerical rank of ``Σ_B``
        (``"numerical"``) or a given int. ``Σ_T^†`` keeps eigenvalues ``> rtol·λ_max``
        (default ``rtol = p·eps``) or exactly the top ``rank``; the rank used is returned.
        In ``[0, 1]``; 0 when ``Σ_W = 0``; invariant to invertible linear maps of the features.
        """
        return _pinv(self._raw.vci(check_weighting(weighting), normalizer, rank, rtol))

    def probe_mse(self, *, rank: Optional[int] = None, rtol: Optional[float] = None) -> PinvResult:
        r"""Minimum least-squares loss of a linear probe with bias onto one-hot labels,
        ``min_{W,b} (1/2N) Σ_i ‖W h_i + b - e_{y_i}‖²`` in closed form:
        ``½(1 - Σ_k π_k²) - ½ Σ_k π_k² (μ_k-μ_G)ᵀ Σ_T^† (μ_k-μ_G)`` (paper 003 Thm 5.1, any balance)."""
        return _pinv(self._raw.probe_mse(rank, rtol))

    def nc1(
        self, weighting: Weighting = "weighted", *, rank: Optional[int] = None, rtol: Optional[float] = None
    ) -> PinvResult:
        r"""NC1 ``Tr[Σ_W Σ_B^†] / K`` with ``Σ_B^†`` over its top ``min(p, K-1)`` eigenvalues that also
        exceed ``rtol·λ_max`` (default ``p·eps``), or exactly the top ``rank``."""
        return _pinv(self._raw.nc1(check_weighting(weighting), rank, rtol))

    def nc1_split(self, weighting: Weighting = "weighted", *, rtol: Optional[float] = None) -> NC1Split:
        """``tr(P_B Σ_W)`` and ``tr Σ_W - tr(P_B Σ_W)``, ``P_B`` the projector on span{μ_k - μ_G}."""
        a, b, r = self._raw.nc1_split(check_weighting(weighting), rtol)
        return NC1Split(float(a), float(b), int(r))

    def squared_distance(self, weighting: Weighting = "weighted") -> float:
        """``Tr Σ_W / Tr Σ_B`` (Hui et al.)."""
        return self._raw.squared_distance(check_weighting(weighting))

    def within_trace_per_dim(self, weighting: Weighting = "weighted") -> float:
        """``Tr Σ_W / p`` (paper 000 Fig. 3)."""
        return self._raw.within_trace_per_dim(check_weighting(weighting))

    def cdnv(self, weighting: Weighting = "weighted") -> float:
        """Mean over class pairs of ``(tr C_k + tr C_l) / (2‖μ_k - μ_l‖²)`` (Galanti et al.)."""
        return self._raw.cdnv(check_weighting(weighting))

    def nc2(self, weighting: Weighting = "weighted") -> Dict[str, float]:
        """Equinorm (std/mean of ``‖μ_k-μ_G‖``), equiangularity (std of pairwise cosines),
        max-equiangularity (mean ``|cos + 1/(K-1)|``) and the ETF error
        ``‖G/‖G‖_F - P_K/‖P_K‖_F‖_F`` of the centred-mean Gram ``G``."""
        a, b, c, d = self._raw.nc2(check_weighting(weighting))
        return {"equinorm": a, "equiangularity": b, "max_equiangularity": c, "etf_error": d}

    def nc3(self, classifier: Any, weighting: Weighting = "weighted"):
        """``‖W/‖W‖_F - M̄ᵀ/‖M̄‖_F‖_F²`` over present classes and the per-class cosines
        ``cos(w_k, μ_k - μ_G)``; ``classifier`` is ``(K, p)``."""
        v, cos = self._raw.nc3(check_weighting(weighting), as_matrix64(classifier, "classifier"))
        return float(v), cos

    def cosine_metrics(self) -> Dict[str, float]:
        """Kornblith et al.: ``d_within = mean_k [1 - ‖Σ_{y_i=k} ĥ_i‖²/n_k²]``,
        ``d_total = 1 - ‖Σ_i ĥ_i‖²/N²``, ``class_separation = 1 - d_within/d_total``."""
        dw, dt, sep = self._raw.cosine_metrics()
        return {"cosine_within": dw, "cosine_total": dt, "class_separation": sep}

    def nc4(self, features: Any, classifier: Any, bias: Any = None) -> float:
        """Fraction of ``features`` rows where ``argmax(W h + b)`` differs from the nearest class
        mean of these statistics (exact differences; ties to the lowest class)."""
        h = as_features(features)
        w = as_matrix64(classifier, "classifier")
        b = None if bias is None else as_vector64(bias, w.shape[0], "bias")
        return self._raw.nc4(h, w, b)

    def nearest_class_mean(self, features: Any) -> np.ndarray:
        """Index of the nearest class mean for each row (the NCC classifier)."""
        return self._raw.nearest_class_mean(as_features(features))

    def metrics(
        self,
        weighting: Weighting = "weighted",
        *,
        classifier: Any = None,
        rtol: Optional[float] = None,
    ) -> Dict[str, Any]:
        """Every metric computable from the statistics, as a flat dict (see :func:`collapse_metrics`)."""
        check_weighting(weighting)
        out: Dict[str, Any] = {
            "num_samples": self.num_samples,
            "num_classes_present": int((self.class_counts > 0).sum()),
            "dim": self.dim,
            "weighting": weighting,
        }
        v = self.vci(weighting, rtol=rtol)
        out.update(vci=v.value, vci_rank=v.rank, vci_normalizer=v.normalizer)
        p = self.probe_mse(rtol=rtol)
        out.update(probe_mse=p.value, probe_mse_rank=p.rank)
        n1 = self.nc1(weighting, rtol=rtol)
        out.update(nc1=n1.value, nc1_rank=n1.rank)
        sp = self.nc1_split(weighting, rtol=rtol)
        out.update(nc1_split_between=sp.between_span, nc1_split_orthogonal=sp.orthogonal)
        out["squared_distance"] = self.squared_distance(weighting)
        out["within_trace_per_dim"] = self.within_trace_per_dim(weighting)
        out["cdnv"] = self.cdnv(weighting)
        out.update({f"nc2_{k}": v for k, v in self.nc2(weighting).items()})
        if int(self._raw.class_zero_rows.sum()) == 0:
            out.update(self.cosine_metrics())
        if classifier is not None:
            val, cos = self.nc3(classifier, weighting)
            out.update(nc3=val, nc3_cosines=cos)
        return out

    # ----------------------------------------------------------------- transferability
    def hscore(self, *, rank: Optional[int] = None, rtol: Optional[float] = None) -> float:
        """H-score ``tr(Σ_T^† Σ_B)`` (weighted, population; see :mod:`etfcore.transfer`)."""
        from .transfer.scores import hscore_from_stats

        return hscore_from_stats(self, rank=rank, rtol=rtol)

    def logme(self, *, parity: bool = False, tol: float = 1e-12, max_iter: int = 10000):
        """LogME from the statistics (a ``LogMEResult``; ``float()`` gives the value; see
        :func:`etfcore.transfer.logme_from_stats`)."""
        from .transfer.scores import logme_from_stats

        return logme_from_stats(self, parity=parity, tol=tol, max_iter=max_iter)

    def ridge_path(self, grid: Any = None, **kw: Any):
        """The ridge least-squares probe for every ``λ``
        (see :func:`etfcore.transfer.ridge_path`)."""
        from .transfer.scores import ridge_path

        return ridge_path(self, grid, **kw)
