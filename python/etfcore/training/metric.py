r"""Collapse statistics as a torchmetrics :class:`~torchmetrics.Metric`.

The states are the sufficient statistics of :class:`etfcore.CollapseStats` about a fixed shift
``c`` (``x_i = h_i - c``), all float64 except the integer counts, all sum-reduced:

- ``counts[k] = n_k``, ``class_sums[k] = Σ_{y_i=k} x_i``, ``class_sq_norms[k] = Σ_{y_i=k} ‖x_i‖²``,
- ``class_unit_sums[k] = Σ_{y_i=k, h_i≠0} h_i/‖h_i‖``, ``class_zero_rows[k]`` (rows ``h_i = 0``),
- ``scatter = Σ_i x_i x_iᵀ``.

Because every state is a plain sum, merging shards or processes is a sum, and DDP
synchronisation is torchmetrics' own (``dist_reduce_fx="sum"``), once the states share one shift.
**The shift** is an argument (fixed, the same on every rank), or by default each process's first
non-empty batch mean, as the core does. At synchronisation (and in ``merge_state``/``forward``)
states about a shift ``c`` are re-expressed about the common one ``c'`` (the first process's
with data), ``d = c - c'``: ``s_k += n_k d``, ``‖x‖²`` sums ``+= 2 s_k·d + n_k ‖d‖²``,
``S += d sᵀ + s dᵀ + n d dᵀ`` (``s = Σ_k s_k``), exactly, so ``update`` needs no collective and
ranks may see different numbers of batches. Numerics: the core recovers
``Σ_W = S - Σ_k s_k s_kᵀ/n_k`` in float64; the rounding error relative to ``Σ_W`` grows like
``eps64 · ‖μ - c‖²/σ²`` (``μ`` the mean, ``σ²`` the within-class variance per coordinate):
measured 1e-11, 1e-9, 1e-7 for ``c = 0`` and an offset of 100, 1000, 10 000 σ in each of 16
coordinates, 2e-15 with ``c`` near the mean (tested against a two-pass float64 reference), which
the first batch's mean gives. The tracking callback passes the previous evaluation's global mean.

**On the device** (a GPU, or the CPU), a batch costs no host synchronisation: each chunk of rows
is shifted and its product ``xᵀx`` formed in the input precision (float32 for float32 and half
precision features, float64 for float64; TF32 only with ``allow_tf32=True``), then added to the
float64 states, as the core's own pass does; the default shift is then the first batch's mean
rounded to that precision, so ``h - c`` is formed without error. ``products="float64"`` forms
the products in float64 instead (the default on the CPU, where it costs about 2× and keeps
``Σ_W`` to float64 accuracy; float32 products give about ``1e-7 · ‖x‖²/σ²``, as the core's pass).
Labels and finiteness are checked on the device and a batch is committed only where its check
passed (a device-side select): a bad batch leaves the states exactly as they were and is
recorded, and the next :meth:`~CollapseMetrics.compute`, :meth:`~CollapseMetrics.to_core` or
``sync`` raises the typed error naming the batch (its index since the last reset) and the
problem. ``checks="eager"`` (the default on the CPU) raises in ``update`` instead.

>>> import torch
>>> m = CollapseMetrics(3, 4)
>>> m.update(torch.randn(30, 4), torch.arange(30) % 3)
>>> out = m.compute()                  # what Lightning logs: scalar tensors
>>> int(out["num_samples"]), 0 <= float(out["vci"]) <= 1
(30, True)
>>> m.compute_report()["weighting"]     # the structured result: numbers, strings, arrays
'weighted'

**In a LightningModule** (the torchmetrics idioms): ``self.val_nc(h, y)`` in ``validation_step``
always adds the batch and returns its flat dict, or an empty dict ``{}`` when the batch alone
leaves the metrics undefined (fewer than two classes present: a class-sorted loader gives such
batches; the batch is still counted); ``self.log_dict(self.val_nc.compute())`` in
``on_validation_epoch_end`` logs every scalar, synchronised across processes, then
``self.val_nc.reset()``. ``update`` is the cheaper call (no per-batch core computation). One
scalar can be logged as a metric object, ``self.log("val/nc1", self.val_nc["nc1"])``, with the
item taken once in ``__init__`` (see
[`CollapseMetricsItem`][etfcore.training.metric.CollapseMetricsItem]).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.metric import CompositionalMetric
from torchmetrics.utilities.distributed import gather_all_tensors

from .._validation import as_count, torch_device
from ..errors import (
    DTypeError,
    LabelError,
    NonFiniteError,
    ParameterError,
    ShapeError,
    TooFewClassesError,
)
from ..stats import CollapseStats

#: Rows per chunk product: each chunk's ``xᵀx`` is formed in the product precision, then added
#: in float64 (as the core's pass does), so float32 rounding does not grow with the batch size.
CHUNK_ROWS = 8192

# The failure record (an int64 state): which batch, what went wrong, and where.
_BATCH, _CODE, _LO, _HI, _ROW, _COL, _RANK = range(7)
_OK, _BAD_LABEL, _NON_FINITE = 0, 1, 2


def _first(stacked: torch.Tensor) -> torch.Tensor:
    """The shift's reduction: all ranks' shifts are equal after re-expression; keep one."""
    return stacked[0]


def _first_failure(stacked: torch.Tensor) -> torch.Tensor:
    """The failure records' reduction: the first rank's (or state's) recorded failure, if any."""
    return stacked[(stacked[:, _CODE] != _OK).to(torch.uint8).argmax()]


def check_batch(features: torch.Tensor, labels: torch.Tensor, num_classes: int, dim: int) -> None:
    """Raises etfcore's typed errors for a batch whose types or shapes are wrong (what is known
    without reading the data; labels and finiteness are checked by :func:`batch_record`)."""
    if not isinstance(features, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise DTypeError("features and labels must be torch tensors")
    if not features.is_floating_point():
        raise DTypeError(f"features must be floating point, got {features.dtype}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise DTypeError(f"labels must be integers, got {labels.dtype}")
    if features.dim() != 2 or features.shape[1] != dim:
        raise ShapeError(f"features must be (n, {dim}), got {tuple(features.shape)}")
    if labels.shape != (features.shape[0],):
        raise ShapeError(f"labels must be ({features.shape[0]},), got {tuple(labels.shape)}")


def batch_record(
    h: torch.Tensor, y: torch.Tensor, num_classes: int, batch: int, rank: int
) -> torch.Tensor:
    """The failure record of a non-empty batch, computed on its device without a host
    synchronisation: ``[batch, code, label min, label max, row, column, rank]`` (code 0: fine,
    1: a label outside ``0..K-1``, 2: a non-finite feature at ``row, column``, the first one)."""
    lo, hi = y.min(), y.max()
    labels_ok = (lo >= 0) & (hi < num_classes)
    bad = ~torch.isfinite(h)
    first = bad.reshape(-1).to(torch.uint8).argmax()
    code = torch.where(labels_ok, torch.where(bad.any(), _NON_FINITE, _OK), _BAD_LABEL)
    scalar = lambda v: torch.full((), v, dtype=torch.int64, device=h.device)  # noqa: E731
    fields = [scalar(batch), code, lo, hi, first // h.shape[1], first % h.shape[1], scalar(rank)]
    return torch.stack([f.to(torch.int64) for f in fields])


def failure_error(record: List[int], num_classes: int) -> Optional[ValueError]:
    """The typed error a failure record stands for (``None`` when it records none)."""
    batch, code, lo, hi, row, col, rank = record
    where = f"batch {batch}" + (f" on rank {rank}" if rank else "")
    if code == _BAD_LABEL:
        return LabelError(
            f"{where}: labels must lie in 0..{num_classes - 1}, got range [{lo}, {hi}]; "
            "the batch was not added"
        )
    if code == _NON_FINITE:
        return NonFiniteError(
            f"{where}: features contain a non-finite value at row {row}, column {col}; "
            "the batch was not added"
        )
    return None


@contextlib.contextmanager
def _tf32(device: torch.device, allow: bool) -> Iterator[None]:
    """CUDA float32 products in TF32 only when ``allow`` (restores the global setting)."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


class CollapseMetrics(Metric):
    r"""Streaming collapse statistics of features ``(n, p)`` with labels in ``0..K-1``;
    :meth:`compute` returns every numeric metric of :meth:`etfcore.CollapseStats.metrics` (plus
    NC3 and Yang et al.'s NC cosine statistics when ``classifier`` is given), computed by the Rust
    core, as a flat dict of 0-dim float64 tensors on the metric's device under the same names
    (``vci``, ``nc1``, ``nc1_rank``, ``num_samples``, ...), ready for ``self.log_dict``;
    :meth:`compute_report` returns the structured result (also ``weighting``, ``precision``,
    ``nc3_cosines`` and ``global_mean``, as Python numbers, strings and arrays).

    ``shift``: the fixed centre ``c`` of the accumulation (``(p,)``; default: the first non-empty
    batch's mean), see the module docstring. ``classifier``: ``(K, p)`` class vectors for NC3 and
    the cosine statistics. ``products``: ``"input"`` (chunk products in the features' precision,
    at least float32, accumulated in float64), ``"float64"``, or ``"auto"`` (float64 on the CPU,
    the input precision elsewhere). ``allow_tf32``: let CUDA form float32 products in TF32
    (about 1e-3 relative error per product; off by default). ``checks``: ``"deferred"`` (a bad
    batch is skipped on the device and the next ``compute``/``to_core``/``sync`` raises),
    ``"eager"`` (``update`` raises at once, one host synchronisation per batch), or ``"auto"``
    (eager on the CPU, deferred elsewhere).

    Examples
    --------
    >>> import torch, etfcore as ec
    >>> W = torch.from_numpy(ec.etf(3, 4, seed=0)).float()
    >>> m = CollapseMetrics(3, 4, classifier=W)
    >>> m.update(torch.randn(60, 4), torch.arange(60) % 3)
    >>> sorted(k for k in m.compute() if k.startswith("nc_cos"))[:2]
    ['nc_cos_classifier_mean', 'nc_cos_classifier_std']
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    counts: torch.Tensor
    class_sums: torch.Tensor
    class_sq_norms: torch.Tensor
    class_unit_sums: torch.Tensor
    class_zero_rows: torch.Tensor
    scatter: torch.Tensor
    shift: torch.Tensor
    failure: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        shift: Optional[Any] = None,
        classifier: Optional[Any] = None,
        products: str = "auto",
        allow_tf32: bool = False,
        checks: str = "auto",
        **kwargs: Any,
    ) -> None:
        num_classes = as_count(num_classes, "num_classes")
        dim = as_count(dim, "dim")
        super().__init__(**kwargs)
        if products not in ("auto", "input", "float64"):
            raise ParameterError(f"products must be 'auto', 'input' or 'float64', got {products!r}")
        if checks not in ("auto", "eager", "deferred"):
            raise ParameterError(f"checks must be 'auto', 'eager' or 'deferred', got {checks!r}")
        self.products, self.allow_tf32, self.checks = products, bool(allow_tf32), checks
        self.num_classes, self.dim = int(num_classes), int(dim)
        k, p = self.num_classes, self.dim
        f64 = dict(dtype=torch.float64)
        self.add_state("counts", torch.zeros(k, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("class_sums", torch.zeros(k, p, **f64), dist_reduce_fx="sum")
        self.add_state("class_sq_norms", torch.zeros(k, **f64), dist_reduce_fx="sum")
        self.add_state("class_unit_sums", torch.zeros(k, p, **f64), dist_reduce_fx="sum")
        self.add_state("class_zero_rows", torch.zeros(k, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("scatter", torch.zeros(p, p, **f64), dist_reduce_fx="sum")
        # Batches of features coarser than float64 (their count, summed across processes): any
        # makes the core's default pseudo-inverse cut follow float32's epsilon.
        self.add_state("coarse_batches", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        c = torch.zeros(p, **f64) if shift is None else torch.as_tensor(shift, **f64).clone()
        if c.shape != (p,) or not bool(torch.isfinite(c).all()):
            raise ShapeError(f"shift must be a finite ({p},) vector, got shape {tuple(c.shape)}")
        # a state (not saved in state_dict), so reset/sync/unsync restore it with the sums
        self.add_state("shift", c, dist_reduce_fx=_first)
        # the first skipped batch since the last reset (code 0: none), see batch_record
        self.add_state("failure", torch.zeros(7, dtype=torch.int64), dist_reduce_fx=_first_failure)
        self._fixed_shift = shift is not None
        self._batch_index = 0
        self._in_forward = False
        self.classifier = (
            None
            if classifier is None
            else np.asarray(torch.as_tensor(classifier).detach().cpu().double())
        )
        if self.classifier is not None and self.classifier.shape != (k, p):
            raise ShapeError(f"classifier must be ({k}, {p}), got {self.classifier.shape}")

    def to(self, *args: Any, **kwargs: Any) -> CollapseMetrics:
        """``Module.to``, with the device checked first (an unknown name, CUDA on a machine
        without it, a device index it lacks: :class:`~etfcore.ParameterError`)."""
        if "device" in kwargs and kwargs["device"] is not None:
            kwargs["device"] = torch_device(kwargs["device"])
        elif args and isinstance(args[0], (str, torch.device, int)) and not isinstance(
            args[0], bool
        ):
            args = (torch_device(args[0]), *args[1:])
        return super().to(*args, **kwargs)

    def _product_dtype(self, features: torch.Tensor) -> torch.dtype:
        on_cpu = self.scatter.device.type == "cpu"
        if features.dtype == torch.float64 or self.products == "float64":
            return torch.float64
        return torch.float64 if self.products == "auto" and on_cpu else torch.float32

    def _deferred(self) -> bool:
        return self.checks == "deferred" or (
            self.checks == "auto" and self.scatter.device.type != "cpu"
        )

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Adds a batch when its labels lie in ``0..K-1`` and its features are finite; a bad
        batch leaves the states as they were (see ``checks`` for when the error is raised)."""
        check_batch(features, labels, self.num_classes, self.dim)
        batch, self._batch_index = self._batch_index, self._batch_index + 1
        if features.shape[0] == 0:
            return
        dev = self.scatter.device
        h = features.detach().to(device=dev)
        y = labels.detach().to(device=dev, dtype=torch.int64)
        dist = torch.distributed
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        record = batch_record(h, y, self.num_classes, batch, rank)
        if not self._deferred():
            error = failure_error(record.tolist(), self.num_classes)
            if error is not None:
                raise error
        ok = record[_CODE] == _OK
        fresh = (self.failure[_CODE] == _OK) & ~ok
        self.failure = torch.where(fresh, record, self.failure)
        self._accumulate(h, y.clamp(0, self.num_classes - 1), ok)

    def _accumulate(self, h: torch.Tensor, y: torch.Tensor, ok: torch.Tensor) -> None:
        """Adds the batch's sums where ``ok`` (a 0-dim device flag): chunk products in the
        product precision about the shift rounded to it, re-expressed about the shift in f64."""
        k, p = self.num_classes, self.dim
        f64 = torch.float64
        dt = self._product_dtype(h)
        hw = h.to(dt)
        if self._fixed_shift:
            shift = self.shift
        else:
            first = self.counts.sum() == 0
            mean = hw.to(f64).mean(0).to(dt).to(f64)  # representable in the product precision
            shift = torch.where(first & ok, mean, self.shift)
        w = shift.to(dt)  # the working centre; delta = w - shift is 0 for the default shift
        n_k = torch.zeros(k, dtype=torch.int64, device=h.device)
        s_k = torch.zeros(k, p, dtype=f64, device=h.device)
        q_k = torch.zeros(k, dtype=f64, device=h.device)
        u_k = torch.zeros(k, p, dtype=f64, device=h.device)
        z_k = torch.zeros(k, dtype=torch.int64, device=h.device)
        S = torch.zeros(p, p, dtype=f64, device=h.device)
        n_k.index_add_(0, y, torch.ones_like(y))
        for i0 in range(0, h.shape[0], CHUNK_ROWS):
            yc = y[i0 : i0 + CHUNK_ROWS]
            x = hw[i0 : i0 + CHUNK_ROWS] - w
            with _tf32(h.device, self.allow_tf32):
                S += (x.T @ x).to(f64)
            x64 = x.to(f64)
            s_k.index_add_(0, yc, x64)
            q_k.index_add_(0, yc, (x64 * x64).sum(1))
            h64 = h[i0 : i0 + CHUNK_ROWS].to(f64)
            norms = h64.norm(dim=1)
            nz = norms > 0
            inv = torch.where(nz, 1.0 / torch.where(nz, norms, 1.0), 0.0)
            u_k.index_add_(0, yc, h64 * inv[:, None])
            z_k.index_add_(0, yc, (~nz).to(torch.int64))
        if dt != f64:
            d = w.to(f64) - shift
            s, n = s_k.sum(0), n_k.to(f64)
            q_k += 2 * (s_k @ d) + n * (d @ d)
            s_k += n[:, None] * d
            S += torch.outer(d, s) + torch.outer(s, d) + n.sum() * torch.outer(d, d)
        # commit only where the batch passed its check (NaNs in a skipped batch are dropped)
        self.counts += n_k * ok
        self.class_zero_rows += z_k * ok
        self.coarse_batches += ok & (h.dtype != f64)
        for state, add in (
            (self.class_sums, s_k),
            (self.class_sq_norms, q_k),
            (self.class_unit_sums, u_k),
            (self.scatter, S),
        ):
            state += add.masked_fill_(~ok, 0.0)
        if not self._fixed_shift:
            self.shift = shift

    def reset(self) -> None:
        """Clears the states, the recorded failure and the batch index."""
        super().reset()
        if not self._in_forward:
            self._batch_index = 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """torchmetrics' ``forward``: the batch merged into the states, and the batch's own
        metrics returned (the flat dict of :meth:`compute`), or ``{}`` where they are undefined
        for the batch alone (fewer than two classes in it) — the batch is counted either way.
        The states are kept as they were when the batch is rejected (bad labels, non-finite
        features: the typed error is raised)."""
        saved, count = self._copy_state_dict(), self._update_count
        self._in_forward = True
        try:
            return super().forward(*args, **kwargs)
        except ValueError:
            for attr, value in saved.items():
                setattr(self, attr, value)
            self._update_count = count
            raise
        finally:
            self._in_forward = False

    def raise_recorded_failure(self) -> None:
        """Raises the typed error of the first batch skipped since the last reset, if any
        (one host synchronisation)."""
        error = failure_error(self.failure.tolist(), self.num_classes)
        if error is not None:
            raise error

    def sync(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """torchmetrics' synchronisation, then the recorded failure of any rank is raised (the
        local states restored first)."""
        super().sync(*args, **kwargs)
        try:
            self.raise_recorded_failure()
        except ValueError:
            if self._is_synced:
                self.unsync()
            raise

    def _rebase(self, shift: torch.Tensor) -> None:
        """Re-expresses the states about ``shift`` (exact up to rounding)."""
        shift = shift.to(self.shift)
        d = self.shift - shift
        n = self.counts.to(torch.float64)
        s = self.class_sums.sum(0)
        self.class_sq_norms = self.class_sq_norms + 2 * (self.class_sums @ d) + n * (d @ d)
        self.class_sums = self.class_sums + n[:, None] * d
        self.scatter = (
            self.scatter + torch.outer(d, s) + torch.outer(s, d) + n.sum() * torch.outer(d, d)
        )
        self.shift = shift.clone()

    def _sync_dist(self, dist_sync_fn: Callable = gather_all_tensors, process_group=None) -> None:
        group = process_group or self.process_group
        shifts = dist_sync_fn(self.shift, group=group)
        totals = dist_sync_fn(self.counts.sum().reshape(1), group=group)
        common = next((c for c, n in zip(shifts, totals) if int(n) > 0), self.shift)
        self._rebase(common)  # then every rank's states share one shift: sums are merges
        super()._sync_dist(dist_sync_fn, process_group)

    def _reduce_states(self, incoming_state: Dict[str, Any]) -> None:
        if int(incoming_state["counts"].sum()) > 0:
            self._rebase(incoming_state["shift"])
        else:
            incoming_state = {**incoming_state, "shift": self.shift}
        super()._reduce_states(incoming_state)

    def to_core(self) -> CollapseStats:
        """The current (local, or synchronised inside :meth:`compute`) states as the core's
        :class:`etfcore.CollapseStats` (copies ``O(K·p + p²)`` numbers to the host). Its
        precision is float32 when any batch arrived in float32 or a half precision (the default
        pseudo-inverse cut is then ``p·eps(float32)``; pass an explicit ``rtol`` to the metrics
        for half-precision features), float64 otherwise. Raises the recorded failure of a
        skipped batch, if any."""
        self.raise_recorded_failure()
        cpu = lambda t: t.detach().cpu().numpy()  # noqa: E731
        empty = int(self.counts.sum()) == 0
        return CollapseStats.from_parts(
            self.num_classes,
            self.dim,
            shift=None if empty else cpu(self.shift),
            class_counts=cpu(self.counts),
            class_sums=cpu(self.class_sums),
            class_sq_norms=cpu(self.class_sq_norms),
            class_unit_sums=cpu(self.class_unit_sums),
            class_zero_rows=cpu(self.class_zero_rows),
            scatter=cpu(self.scatter),
            precision="float32" if int(self.coarse_batches) else "float64",
        )

    def compute(self) -> Dict[str, torch.Tensor]:
        """Every numeric collapse metric as a flat dict of 0-dim float64 tensors on the
        metric's device (what ``self.log_dict`` takes), named as :meth:`compute_report` names
        them; strings and arrays are left out. Inside ``forward`` (a batch alone), ``{}`` when
        fewer than two classes are present; otherwise that raises
        :class:`~etfcore.TooFewClassesError`."""
        try:
            report = self._report()  # torchmetrics' compute wrapper has synchronised the states
        except TooFewClassesError:
            if self._in_forward:
                return {}
            raise
        return scalar_metrics(report, self.scatter.device)

    def __getitem__(self, name: str) -> CollapseMetricsItem:  # type: ignore[override]
        """One named scalar of [`compute`][etfcore.training.metric.CollapseMetrics.compute] as a
        torchmetrics `Metric` of its own that shares these states, for Lightning's
        ``self.log(name, metric)`` (which logs a metric object only when its ``compute()`` is a
        tensor). The same object for the same name.

        Parameters
        ----------
        name : str
            A key of ``compute()`` (``"nc1"``, ``"vci"``, ...); an unknown one raises
            `ParameterError` when computed, naming the keys.

        Returns
        -------
        CollapseMetricsItem

        Examples
        --------
        >>> import torch
        >>> m = CollapseMetrics(3, 4)
        >>> m.update(torch.randn(30, 4), torch.arange(30) % 3)
        >>> m["nc1"] is m["nc1"], bool(m["nc1"].compute() == m.compute()["nc1"])
        (True, True)
        """
        if not isinstance(name, str):
            raise ParameterError(f"a collapse metric is selected by name, got {name!r}")
        items = self.__dict__.setdefault("_items", {})  # not a submodule: no module cycle
        if name not in items:
            items[name] = CollapseMetricsItem(self, name)
        return items[name]

    def compute_report(self) -> Dict[str, Any]:
        """Every collapse metric, structured: Python numbers, the strings ``weighting`` and
        ``precision``, the arrays ``nc3_cosines`` (with a classifier) and ``global_mean``.
        Synchronised across processes like :meth:`compute` (the local states restored after)."""
        if self._is_synced:
            return self._report()
        with self.sync_context(should_sync=self.sync_on_compute, should_unsync=True):
            return self._report()

    def _report(self) -> Dict[str, Any]:
        stats = self.to_core()
        out = metrics_of(stats, self.classifier)
        out["global_mean"] = stats.global_mean()
        return out


class CollapseMetricsItem(CompositionalMetric):
    """One named scalar of a [`CollapseMetrics`][etfcore.training.metric.CollapseMetrics]
    (``metric[name]``): a torchmetrics composition whose ``compute()`` is
    ``metric.compute()[name]``, a 0-dim tensor, so that Lightning logs it as a metric object:
    synchronised across processes and reset by Lightning at the end of the epoch (which resets
    the shared ``metric``). ``update``/``forward`` go to ``metric``; ``forward`` returns the
    batch's value, or ``None`` when the batch alone leaves it undefined.

    Lightning finds a logged metric object among the module's attributes, once, at the first
    ``self.log`` of one: take the item in ``__init__`` (``self.val_nc1 = self.val_nc["nc1"]``),
    or pass ``metric_attribute`` (the name of the `CollapseMetrics` attribute) to ``self.log``.

    Parameters
    ----------
    metric : CollapseMetrics
        The metric whose states are shared.
    name : str
        The key of ``metric.compute()`` to return.
    """

    def __init__(self, metric: CollapseMetrics, name: str) -> None:
        super().__init__(self._select, metric, None)
        self.name = name

    def _select(self, values: Dict[str, torch.Tensor]) -> torch.Tensor:
        if self.name not in values:
            raise ParameterError(
                f"CollapseMetrics computed no {self.name!r}; it computed {sorted(values)}"
            )
        return values[self.name]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Adds the batch to the shared metric; the batch's value, or ``None`` when it is
        undefined for the batch alone (fewer than two classes in it)."""
        values = self.metric_a(*args, **kwargs)
        self._forward_cache = values.get(self.name) if values else None
        return self._forward_cache

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def scalar_metrics(report: Dict[str, Any], device: Any = "cpu") -> Dict[str, torch.Tensor]:
    """The numeric entries of a :meth:`CollapseMetrics.compute_report` dict as 0-dim float64
    tensors (booleans, strings, arrays and ``None`` left out)."""
    return {
        k: torch.tensor(float(v), dtype=torch.float64, device=device)
        for k, v in report.items()
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    }


def metrics_of(stats: CollapseStats, classifier: Optional[np.ndarray]) -> Dict[str, Any]:
    """What :meth:`CollapseMetrics.compute` reports of the core's statistics (without
    ``global_mean``): every metric, plus the NC cosine statistics when ``classifier`` is given."""
    out = stats.metrics(classifier=classifier)
    if classifier is not None:
        out.update(nc_cosine_statistics(stats, classifier))
    return out


def nc_cosine_statistics(stats: CollapseStats, classifier: np.ndarray) -> Dict[str, float]:
    r"""Yang et al.'s collapse statistics over the present classes, ``h_G`` the global (sample)
    mean, ``h_c`` the class means, ``w_k`` the classifier rows:

    - ``nc_cos_means_{mean,std}``: ``cos∠(h_c - h_G, h_k - h_G)`` over pairs ``c ≠ k``;
    - ``nc_cos_classifier_{mean,std}``: ``cos∠(h_c - h_G, w_k)`` over pairs ``c ≠ k``;
    - ``nc_cos_own_{mean,std}``: ``cos∠(h_c - h_G, w_c)`` over classes.

    Under collapse onto a simplex ETF the pair cosines tend to ``-1/(K-1)`` and their spread to 0.
    """
    present = stats.present_classes()
    m = stats.class_means()[present] - stats.global_mean()
    w = np.asarray(classifier, dtype=np.float64)[present]
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-300)  # noqa: E731
    cm, cw = unit(m) @ unit(m).T, unit(m) @ unit(w).T
    off = ~np.eye(len(present), dtype=bool)
    own = np.diag(cw)
    return {
        "nc_cos_means_mean": float(cm[off].mean()),
        "nc_cos_means_std": float(cm[off].std()),
        "nc_cos_classifier_mean": float(cw[off].mean()),
        "nc_cos_classifier_std": float(cw[off].std()),
        "nc_cos_own_mean": float(own.mean()),
        "nc_cos_own_std": float(own.std()),
    }
