r"""Streaming, mergeable collapse statistics and the metrics computed from them.

The state is the sufficient statistics $n_k$, $s_k = \sum_{y_i = k} (h_i - c)$ and
$S = \sum_i (h_i - c)(h_i - c)^\top$ for a shift $c$ (the mean of the first batch), plus per-class
sums of squared norms (for the class variances $\mathrm{tr}\, C_k$) and of unit vectors (for the
cosine metrics). Accumulation is in float64, one pass per batch, multithreaded in the Rust core
with the GIL released; memory is $O(K p + p^2)$ whatever the number of samples. Two statistics
merge by addition after being re-expressed to a common shift, so shards, processes and GPUs can
each fill their own.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _core
from .._io import write_bytes
from .._validation import (
    as_bytes,
    as_features,
    as_flat64,
    as_flat_int64,
    as_float,
    as_index,
    as_labels,
    as_labels_for_rows,
    as_matrix64,
    as_normalizer,
    as_optional_float,
    as_optional_index,
    as_str,
    as_vector64,
)
from ..errors import (
    IncompatibleStatsError,
    LabelError,
    NonFiniteError,
    ParameterError,
    ShapeError,
)
from .results import LogMEResult, NC1Split, PinvResult, RidgePath, ridge_multipliers

Weighting = str  # "weighted" (default) or "balanced"


def _pinv(t: Tuple[float, int, str, int]) -> PinvResult:
    return PinvResult(t[0], t[1], t[2], t[3])


def _from_bytes(data: bytes) -> CollapseStats:
    return CollapseStats.from_bytes(data)


# Pickles of CollapseStats name this function: keep the path the previous release wrote
# (``etfcore.stats._from_bytes``, re-exported there), so pickles load in both directions.
_from_bytes.__module__ = "etfcore.stats"


def merge_stats(*parts: CollapseStats) -> CollapseStats:
    """A new [`CollapseStats`][etfcore.CollapseStats] holding the sum of ``parts`` (left unchanged):
    the reduce step of a map-reduce over shards, equal to one pass over their union to rounding.

    Examples
    --------
    >>> import etfcore as ec
    >>> H, y = ec.data.gaussian_mixture(3, 4, 20, seed=0)
    >>> a = ec.CollapseStats(3, 4).update(H[::2], y[::2])
    >>> b = ec.CollapseStats(3, 4).update(H[1::2], y[1::2])
    >>> ec.merge_stats(a, b).num_samples, a.num_samples
    (60, 30)
    """
    if not parts:
        raise IncompatibleStatsError("merge_stats needs at least one CollapseStats")
    if not isinstance(parts[0], CollapseStats):
        raise IncompatibleStatsError(
            f"can only merge a CollapseStats, got {type(parts[0]).__name__}"
        )
    out = parts[0].copy()
    for p in parts[1:]:
        out.merge(p)
    return out


class CollapseStats:
    r"""Sufficient statistics of labelled features, updated batch by batch.

    Parameters
    ----------
    num_classes : int
        The number of classes $K$. Labels must lie in ``0..K-1``; classes without samples are
        ignored by every metric (at least two classes must have samples).
    dim : int
        The feature dimension $p$: every batch has ``dim`` columns.
    track_class_scatter : bool, default False
        Also keep each class's scatter ``S_k`` (``K·p²`` float64 values). Needed only for the
        *balanced* within-class covariance of *imbalanced* classes (which is not a function of
        ``(n_k, s_k, S)``) and for [`class_covariance`][etfcore.CollapseStats.class_covariance].

    Notes
    -----
    Conventions: ``weighting="weighted"`` (default) uses $\mu_G$ the sample mean and class
    weights $\pi_k = n_k/N$, so $\Sigma_T = \Sigma_W + \Sigma_B$ exactly; ``"balanced"`` uses
    $\mu_G = \frac1K \sum_k \mu_k$ and weights $1/K$. All covariances are population ($1/N$).

    Examples
    --------
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
        self._raw = _core.RawCollapseStats(
            as_index(num_classes, "num_classes"), as_index(dim, "dim"), bool(track_class_scatter)
        )

    @classmethod
    def _wrap(cls, raw: _core.RawCollapseStats) -> CollapseStats:
        obj = cls.__new__(cls)
        obj._raw = raw
        return obj

    # ----------------------------------------------------------------- accumulation
    def update(self, features: Any, labels: Any) -> CollapseStats:
        """Adds a batch: ``features`` ``(n, p)`` float32/float64 (any strides, no copy), integer
        ``labels`` ``(n,)``. All-or-nothing: on error the statistics are unchanged.

        Thread-safe: one object may be updated from several threads (updates serialise, every
        batch lands). Finite features whose squares overflow float64 raise ``NumericalError``
        (float32 chunks whose float32 product overflows are recomputed in float64)."""
        self._raw.update(as_features(features), as_labels(labels))
        return self

    def merge(self, other: CollapseStats) -> CollapseStats:
        """Adds ``other``'s statistics (same ``K``, ``p`` and options): the result equals one pass
        over both inputs, to rounding. ``s.merge(s)`` doubles ``s``. The precision becomes the
        coarser of the two."""
        if not isinstance(other, CollapseStats):
            raise IncompatibleStatsError(
                f"can only merge a CollapseStats, got {type(other).__name__}"
            )
        self._raw.merge(other._raw)
        return self

    def __iadd__(self, other: CollapseStats) -> CollapseStats:
        return self.merge(other)

    @property
    def buffer_bytes(self) -> int:
        """Bytes of working memory the state keeps from its last update for the next one.

        An update's per-worker partial sums and chunk buffers are reused by the next update
        instead of being allocated (and faulted in page by page) again; this is at most one
        update's working memory. [`release_buffers`][etfcore.CollapseStats.release_buffers]
        frees it; copies start without it.

        Examples
        --------
        >>> import numpy as np, etfcore as ec
        >>> st = ec.CollapseStats(3, 4).update(np.eye(3, 4), np.arange(3))
        >>> st.buffer_bytes > 0
        True
        >>> st.release_buffers(); st.buffer_bytes
        0
        """
        return self._raw.buffer_bytes()

    def release_buffers(self) -> None:
        """Frees the working memory kept between updates (the statistics do not change; the
        next update allocates it again)."""
        self._raw.release_buffers()

    def copy(self) -> CollapseStats:
        """An independent copy (also what ``copy.copy`` and ``copy.deepcopy`` return)."""
        return CollapseStats._wrap(self._raw.copy())

    def __copy__(self) -> CollapseStats:
        return self.copy()

    def __deepcopy__(self, memo: Dict[int, Any]) -> CollapseStats:
        return self.copy()

    def __reduce__(self) -> Tuple[Any, ...]:
        # Pickling (multiprocessing, Dask) goes through the versioned bytes format.
        return (_from_bytes, (self.to_bytes(),))

    def reshift(self, shift: Any) -> CollapseStats:
        """Re-expresses the statistics relative to another shift vector (exact up to rounding)."""
        self._raw.reshift(as_vector64(shift, "shift"))
        return self

    # ----------------------------------------------------------------- persistence
    def to_bytes(self) -> bytes:
        """Versioned little-endian serialisation with a checksum (see README, "Formats")."""
        return self._raw.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> CollapseStats:
        """Parses [`to_bytes`][etfcore.CollapseStats.to_bytes] output (format version 1 or 2);
        corrupted, truncated or inconsistent data raise ``CorruptDataError``, another format version
        ``IncompatibleStatsError``."""
        return cls._wrap(_core.RawCollapseStats.from_bytes(as_bytes(data)))

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
        precision: Optional[str] = None,
    ) -> CollapseStats:
        """Statistics accumulated elsewhere (e.g. on a GPU by
        `etfcore.training.TorchCollapseStats`), validated by the core. ``precision``
        (``"float32"`` or ``"float64"``, default float64) is the precision of the features they
        were accumulated from: it sets the default pseudo-inverse threshold."""
        f, i = as_flat64, as_flat_int64
        raw = _core.RawCollapseStats.from_parts(
            as_index(num_classes, "num_classes"),
            as_index(dim, "dim"),
            None if shift is None else f(shift, "shift"),
            i(class_counts, "class_counts"),
            f(class_sums, "class_sums"),
            f(class_sq_norms, "class_sq_norms"),
            f(class_unit_sums, "class_unit_sums"),
            i(class_zero_rows, "class_zero_rows"),
            f(scatter, "scatter"),
            None if precision is None else as_str(precision, "precision"),
        )
        return cls._wrap(raw)

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Writes [`to_bytes`][etfcore.CollapseStats.to_bytes] to ``path`` atomically (a kill or a
        full disk leaves an earlier file whole; failures are a
        [`StorageError`][etfcore.StorageError] naming the path)."""
        write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> CollapseStats:
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CollapseStats) and self._raw == other._raw

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        present = int((self.class_counts > 0).sum())
        return (
            f"CollapseStats(num_classes={self.num_classes}, dim={self.dim}, "
            f"num_samples={self.num_samples}, classes_present={present}, "
            f"precision={self.precision!r})"
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
    def precision(self) -> Optional[str]:
        """``"float32"`` or ``"float64"``: the precision of the features the statistics were
        built from (the coarser one after merging float32 and float64 statistics); ``None``
        before the first sample. The default pseudo-inverse threshold is ``p·eps`` of it."""
        return self._raw.precision

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
        return self._raw.geometry_dict(as_str(weighting, "weighting"))

    def present_classes(self) -> np.ndarray:
        """Indices of the classes with at least one sample."""
        return np.flatnonzero(self.class_counts > 0)

    def class_means(self) -> np.ndarray:
        """``μ_k``, shape ``(K, p)``; rows of classes without samples are NaN."""
        return self._raw.class_means()

    def global_mean(self, weighting: Weighting = "weighted") -> np.ndarray:
        """``μ_G``: the sample mean (weighted) or the mean of the class means (balanced)."""
        return self._geometry(weighting)["global_mean"]

    def class_variances(self, weighting: Weighting = "weighted") -> np.ndarray:
        """``tr C_k`` for each present class (order of
        [`present_classes`][etfcore.CollapseStats.present_classes])."""
        return self._geometry(weighting)["class_variances"]

    def total_covariance(self, weighting: Weighting = "weighted") -> np.ndarray:
        """``Σ_T = Σ_W + Σ_B`` (weighted: ``(1/N) Σ_i (h_i-μ_G)(h_i-μ_G)ᵀ``)."""
        return self._raw.total_covariance(as_str(weighting, "weighting"))

    def between_class_covariance(self, weighting: Weighting = "weighted") -> np.ndarray:
        """``Σ_B = Σ_k w_k (μ_k-μ_G)(μ_k-μ_G)ᵀ``, ``w_k = π_k`` (weighted) or ``1/K``
        (balanced)."""
        return self._raw.between_class_covariance(as_str(weighting, "weighting"))

    def within_class_covariance(self, weighting: Weighting = "weighted") -> np.ndarray:
        """``Σ_W = Σ_k w_k C_k`` with ``C_k`` the class covariance (``1/n_k``)."""
        return self._raw.within_class_covariance(as_str(weighting, "weighting"))

    def class_covariance(self, k: int) -> np.ndarray:
        """``C_k`` of one class (needs ``track_class_scatter=True`` and samples in class k)."""
        return self._raw.class_covariance(as_index(k, "k"))

    # ----------------------------------------------------------------- metrics
    def vci(
        self,
        weighting: Weighting = "weighted",
        *,
        normalizer: Union[str, int] = "min",
        rank: Optional[int] = None,
        rtol: Optional[float] = None,
    ) -> PinvResult:
        r"""Variability Collapse Index ``1 - Tr[Σ_T^† Σ_B] / r`` (Xu & Liu).

        ``r = min(p, K-1)`` (``normalizer="min"``), the numerical rank of ``Σ_B`` (``"numerical"``)
        or a given int. ``Σ_T^†`` keeps eigenvalues ``> rtol·λ_max`` (default ``rtol = p·eps`` of
        the input precision, see [`precision`][etfcore.CollapseStats.precision]) or exactly the top
        ``rank``; the rank used is returned. In ``[0, 1]``; 0 when ``Σ_W = 0``; invariant to
        invertible linear maps of the features. Identical class means raise
        ``DegenerateInputError``.
        """
        return _pinv(
            self._raw.vci(
                as_str(weighting, "weighting"),
                as_normalizer(normalizer),
                as_optional_index(rank, "rank"),
                as_optional_float(rtol, "rtol"),
            )
        )

    def probe_mse(self, *, rank: Optional[int] = None, rtol: Optional[float] = None) -> PinvResult:
        r"""Minimum least-squares loss of a linear probe with bias onto one-hot labels,
        ``min_{W,b} (1/2N) Σ_i ‖W h_i + b - e_{y_i}‖²`` in closed form:
        ``½(1 - Σ_k π_k²) - ½ Σ_k π_k² (μ_k-μ_G)ᵀ Σ_T^† (μ_k-μ_G)`` (Xu & Liu, Thm 5.1,
        generalised to any class balance)."""
        return _pinv(
            self._raw.probe_mse(as_optional_index(rank, "rank"), as_optional_float(rtol, "rtol"))
        )

    def nc1(
        self,
        weighting: Weighting = "weighted",
        *,
        rank: Optional[int] = None,
        rtol: Optional[float] = None,
    ) -> PinvResult:
        r"""NC1 ``Tr[Σ_W Σ_B^†] / K`` with ``Σ_B^†`` over its top ``min(p, K-1)`` eigenvalues
        that also exceed ``rtol·λ_max`` (default ``p·eps`` of the input precision), or exactly
        the top ``rank``."""
        return _pinv(
            self._raw.nc1(
                as_str(weighting, "weighting"),
                as_optional_index(rank, "rank"),
                as_optional_float(rtol, "rtol"),
            )
        )

    def nc1_split(
        self, weighting: Weighting = "weighted", *, rtol: Optional[float] = None
    ) -> NC1Split:
        """``tr(P_B Σ_W)`` and ``tr Σ_W - tr(P_B Σ_W)``, ``P_B`` the projector on
        span{μ_k - μ_G}."""
        a, b, r = self._raw.nc1_split(
            as_str(weighting, "weighting"), as_optional_float(rtol, "rtol")
        )
        return NC1Split(float(a), float(b), int(r))

    def squared_distance(self, weighting: Weighting = "weighted") -> float:
        """``Tr Σ_W / Tr Σ_B`` (Hui et al.); identical class means raise
        ``DegenerateInputError``."""
        return self._raw.squared_distance(as_str(weighting, "weighting"))

    def within_trace_per_dim(self, weighting: Weighting = "weighted") -> float:
        """``Tr Σ_W / p``."""
        return self._raw.within_trace_per_dim(as_str(weighting, "weighting"))

    def cdnv(self, weighting: Weighting = "weighted") -> float:
        """Mean over class pairs of ``(tr C_k + tr C_l) / (2‖μ_k - μ_l‖²)`` (Galanti et al.);
        two classes with the same mean raise ``DegenerateInputError``."""
        return self._raw.cdnv(as_str(weighting, "weighting"))

    def nc2(self, weighting: Weighting = "weighted") -> Dict[str, float]:
        """Equinorm (std/mean of ``‖μ_k-μ_G‖``), equiangularity (std of pairwise cosines),
        max-equiangularity (mean ``|cos + 1/(K-1)|``) and the ETF error
        ``‖G/‖G‖_F - P_K/‖P_K‖_F‖_F`` of the centred-mean Gram ``G``. A class mean equal to the
        global mean raises ``DegenerateInputError``."""
        a, b, c, d = self._raw.nc2(as_str(weighting, "weighting"))
        return {"equinorm": a, "equiangularity": b, "max_equiangularity": c, "etf_error": d}

    def nc3(self, classifier: Any, weighting: Weighting = "weighted") -> Tuple[float, np.ndarray]:
        """``‖W/‖W‖_F - M̄ᵀ/‖M̄‖_F‖_F²`` over present classes and the per-class cosines
        ``cos(w_k, μ_k - μ_G)``; ``classifier`` is ``(K, p)`` and finite; zero rows of present
        classes raise ``DegenerateInputError``."""
        v, cos = self._raw.nc3(
            as_str(weighting, "weighting"), as_matrix64(classifier, "classifier")
        )
        return float(v), cos

    def cosine_metrics(self) -> Dict[str, float]:
        """Kornblith et al.: ``d_within = mean_k [1 - ‖Σ_{y_i=k} ĥ_i‖²/n_k²]``,
        ``d_total = 1 - ‖Σ_i ĥ_i‖²/N²``, ``class_separation = 1 - d_within/d_total``.
        All-zero rows, or rows that all share one direction, raise ``DegenerateInputError``."""
        dw, dt, sep = self._raw.cosine_metrics()
        return {"cosine_within": dw, "cosine_total": dt, "class_separation": sep}

    def nc4(self, features: Any, classifier: Any, bias: Any = None) -> float:
        """Fraction of ``features`` rows where ``argmax(W h + b)`` differs from the nearest class
        mean of these statistics (exact differences; ties to the lowest class)."""
        return self._raw.nc4(
            as_features(features),
            as_matrix64(classifier, "classifier"),
            None if bias is None else as_vector64(bias, "bias"),
        )

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
        """Every metric computable from the statistics, as a flat dict (see
        [`collapse_metrics`][etfcore.collapse_metrics] for the keys), from one core report that
        builds ``Σ_T``'s pseudo-inverse and ``Σ_B``'s spectrum once. Degenerate statistics
        (identical class means, rows that all share one direction) raise ``DegenerateInputError``.

        Examples
        --------
        >>> import etfcore as ec
        >>> H, y = ec.data.gaussian_mixture(3, 6, 40, seed=0)
        >>> m = ec.CollapseStats(3, 6).update(H, y).metrics()
        >>> m["vci"] == ec.CollapseStats(3, 6).update(H, y).vci(), m["precision"]
        (True, 'float64')
        """
        w = as_str(weighting, "weighting")
        r = self._raw.report(
            w,
            as_optional_float(rtol, "rtol"),
            None if classifier is None else as_matrix64(classifier, "classifier"),
        )
        v, p, n1 = _pinv(r["vci"]), _pinv(r["probe_mse"]), _pinv(r["nc1"])
        out: Dict[str, Any] = {
            "num_samples": r["num_samples"],
            "num_classes_present": r["num_classes_present"],
            "dim": r["dim"],
            "weighting": w,
            "precision": r["precision"],
            "vci": v.value,
            "vci_rank": v.rank,
            "vci_normalizer": v.normalizer,
            "probe_mse": p.value,
            "probe_mse_rank": p.rank,
            "nc1": n1.value,
            "nc1_rank": n1.rank,
            "nc1_split_between": r["nc1_split"][0],
            "nc1_split_orthogonal": r["nc1_split"][1],
            "squared_distance": r["squared_distance"],
            "within_trace_per_dim": r["within_trace_per_dim"],
            "cdnv": r["cdnv"],
        }
        keys = ("equinorm", "equiangularity", "max_equiangularity", "etf_error")
        out.update({f"nc2_{k}": x for k, x in zip(keys, r["nc2"])})
        if r["cosine"] is not None:
            dw, dt, sep = r["cosine"]
            out.update(cosine_within=dw, cosine_total=dt, class_separation=sep)
        if r["nc3"] is not None:
            out.update(nc3=r["nc3"][0], nc3_cosines=r["nc3"][1])
        return out

    # ----------------------------------------------------------------- transferability
    def hscore(self, *, rank: Optional[int] = None, rtol: Optional[float] = None) -> float:
        r"""H-score ``tr(Σ_T^† Σ_B)`` (Bao et al. 2019; weighted, population), ``Σ_T^†`` under the
        package's pseudo-inverse policy: eigenvalues ``> rtol·λ_max`` (default ``rtol = p·eps``
        of the input precision) or exactly the top ``rank``. It equals ``r·(1 - VCI)`` with
        VCI's ``r``.

        Examples
        --------
        >>> import etfcore as ec
        >>> H, y = ec.data.gaussian_mixture(3, 6, 40, seed=0)
        >>> st = ec.CollapseStats(3, 6).update(H, y)
        >>> v = st.vci()
        >>> abs(st.hscore() - v.normalizer * (1 - v)) < 1e-9
        True
        """
        return float(
            _core.transfer_hscore(
                self._raw, as_optional_index(rank, "rank"), as_optional_float(rtol, "rtol")
            )[0]
        )

    def logme(
        self,
        *,
        parity: bool = False,
        tol: float = 1e-12,
        max_iter: int = 10000,
        rtol: Optional[float] = None,
    ) -> LogMEResult:
        r"""LogME (You et al. 2021) from the statistics: it needs only ``FᵀF`` (uncentred),
        ``Fᵀy_k`` and ``n_k``, which the shifted state gives exactly.

        For each class the evidence of ``y_k ≈ F m`` (no bias), prior ``m ~ N(0, α⁻¹I)``, noise
        ``N(0, β⁻¹)``, is maximised by the fixed point ``α = γ/‖m‖²``, ``β = (N-γ)/‖y_k - Fm‖²``,
        ``γ = Σ_j βσ_j/(α+βσ_j)`` (``σ_j`` eigenvalues of ``FᵀF``), iterated until the relative
        change of ``α/β`` is ``≤ tol``; the evidence per sample,
        ``[r/2 log α + N/2 log β - ½Σ log(α+βσ_j) - β/2‖y-Fm‖² - α/2‖m‖² - N/2 log 2π]/N`` (``r`` =
        rank of ``F``), is averaged over classes. ``parity=True`` reproduces the reference
        implementation instead (see
        [`etfcore.transfer.logme_from_stats`][etfcore.transfer.logme_from_stats], which documents
        the numerics). Returns a [`LogMEResult`][etfcore.stats.LogMEResult]; ``float()`` of it is
        the value.

        Examples
        --------
        >>> import etfcore as ec
        >>> x, y = ec.data.load_digits()
        >>> r = ec.CollapseStats(10, 64).update(x / 16, y).logme()
        >>> r.converged, r.classes.size, -2.0 < float(r) < 2.0
        (True, 10, True)
        """
        v, per, present, it, conv, rank = _core.transfer_logme(
            self._raw,
            bool(parity),
            as_float(tol, "tol"),
            as_index(max_iter, "max_iter"),
            as_optional_float(rtol, "rtol"),
        )
        return LogMEResult(float(v), per, present, int(it), bool(conv), int(rank), bool(parity))

    def ridge_path(
        self,
        grid: Optional[Sequence[float]] = None,
        *,
        val_features: Any = None,
        val_labels: Any = None,
        rtol: Optional[float] = None,
    ) -> RidgePath:
        r"""The least-squares probe onto one-hot labels with ridge ``λ``,
        ``min_{W,b} (1/2N) Σ ‖Wᵀf_i + b - e_{y_i}‖² + (λ/2)‖W‖²``, for every ``λ`` of ``grid``
        (default: ``0`` and ``logspace(-6, 6, 97)``), from one eigendecomposition
        ``Σ_T = V diag(σ) Vᵀ``: ``W_λ = V diag(1/(σ+λ)) Vᵀ C``, ``C = Σ_k π_k (μ_k-μ_G) e_kᵀ``,
        training loss ``½(1-Σπ_k²) - ½ Σ_j ‖(VᵀC)_j‖² (2/(σ_j+λ) - σ_j/(σ_j+λ)²)``. At ``λ = 0`` the
        pseudo-inverse policy applies and the loss is
        [`probe_mse`][etfcore.CollapseStats.probe_mse]. With validation data, also the validation
        accuracy (argmax) and loss at every ``λ``.

        Examples
        --------
        >>> import etfcore as ec
        >>> x, y = ec.data.load_digits()
        >>> st = ec.CollapseStats(10, 64).update(x, y)
        >>> path = st.ridge_path([0.0, 10.0])
        >>> bool(abs(path.train_mse[0] - float(st.probe_mse())) < 1e-10)
        True
        >>> bool(path.train_mse[1] > path.train_mse[0])
        True
        """
        lams = np.asarray(
            np.concatenate([[0.0], np.logspace(-6.0, 6.0, 97)]) if grid is None else grid,
            dtype=np.float64,
        ).ravel()
        if lams.size == 0 or not np.all(np.isfinite(lams)) or np.any(lams < 0):
            raise ParameterError(
                f"the ridge grid must be non-empty, finite and >= 0, got {lams!r}"
            )
        present, pi, mean, vals, vecs, g, rank, mse = _core.transfer_ridge_path(
            self._raw, [float(v) for v in lams], as_optional_float(rtol, "rtol")
        )
        path = RidgePath(lams, mse, int(rank), present, pi, mean, vals, vecs, g)
        if val_features is None:
            return path
        acc, vmse = self._ridge_validation(path, val_features, val_labels)
        return dataclasses.replace(path, validation_accuracy=acc, validation_mse=vmse)

    def _ridge_validation(
        self, path: RidgePath, val_features: Any, val_labels: Any
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Validation accuracy and loss of the ridge probe at every ``λ`` of ``path``."""
        h = as_features(val_features, "val_features")
        if not np.isfinite(h).all():
            row, col = np.argwhere(~np.isfinite(h))[0]
            raise NonFiniteError(f"val_features contain NaN or Inf at row {row}, column {col}")
        if h.shape[1] != self.dim:
            raise ShapeError(
                f"val_features have {h.shape[1]} columns but the statistics have dim={self.dim}"
            )
        present = path.classes
        y = as_labels_for_rows(val_labels, h.shape[0], "val_labels")
        pos = np.searchsorted(present, y)
        bad = (pos >= present.size) | (present[np.minimum(pos, present.size - 1)] != y)
        if bad.any():
            raise LabelError(
                f"val_labels contain label(s) without training samples: {np.unique(y[bad])[:5]}"
            )
        # (F_val - μ_G) V once; then each λ costs one n × p × K' product
        proj = (h.astype(np.float64) - path.global_mean) @ path.eigenvectors
        acc = np.empty(path.grid.size)
        vmse = np.empty(path.grid.size)
        onehot = np.zeros((h.shape[0], present.size))
        onehot[np.arange(h.shape[0]), pos] = 1.0
        for i, lam in enumerate(path.grid):
            d = ridge_multipliers(path.eigenvalues, path.rank, lam)
            out = proj @ (d[:, None] * path.projected_targets) + path.priors
            acc[i] = float(np.mean(out.argmax(1) == pos))
            vmse[i] = 0.5 * float(np.mean(np.sum((out - onehot) ** 2, axis=1)))
        return acc, vmse
