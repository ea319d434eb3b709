"""Penultimate features of a backbone over a dataset, and class subsets / label maps.

[`extract_features`][etfcore.transfer.extract_features] runs any ``nn.Module`` (in eval mode,
without gradients) over any ``Dataset`` or ``DataLoader`` and streams each batch's features into
statistics ([`CollapseStats`][etfcore.CollapseStats],
[`TransferabilityStats`][etfcore.transfer.TransferabilityStats], or anything with
``update(features, labels)``) and, optionally, into a memory-mapped ``.npy`` file, so the features
of a large dataset never need to be held in memory.

[`select_classes`][etfcore.transfer.select_classes] and [`map_labels`][etfcore.transfer.map_labels]
work on ``(features, labels)`` arrays and on map-style datasets whose items are ``(x, label)``.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .._io import check_free_space, commit, discard, storage_error, temp_path, verify_manifest
from .._validation import torch_device
from ..errors import CorruptDataError, ParameterError, ShapeError, require
from ..splits import (
    check_mapped,
    class_subset,
    integer_labels,
    label_table,
    map_label_array,
    stratified_validation_mask,
)


@dataclasses.dataclass
class ExtractedFeatures:
    """``features`` (``N × p`` array, a read/write memmap when ``out`` was given, or ``None`` with
    ``keep=False``), ``labels`` (int64), and the ``stats`` that were updated (or ``None``)."""

    features: Optional[np.ndarray]
    labels: np.ndarray
    stats: Any
    path: Optional[str]


def _dataset_labels(dataset: Any) -> np.ndarray:
    for attr in ("targets", "labels", "y"):
        v = getattr(dataset, attr, None)
        if v is not None and len(v) == len(dataset):
            return np.asarray(v.cpu() if hasattr(v, "cpu") else v).astype(np.int64)
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None and len(tensors) >= 2:
        return np.asarray(tensors[1].cpu()).astype(np.int64)
    return np.array([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


class _Relabelled:
    """A map-style dataset: items ``indices[i]`` of ``base`` with label ``mapping[label]``."""

    def __init__(self, base: Any, indices: np.ndarray, mapping: Mapping[int, int]):
        self.base, self.indices, self.mapping = base, indices, mapping
        src = _dataset_labels(base)[indices]
        self.targets = np.array([mapping[int(v)] for v in src], dtype=np.int64)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int):
        x, y = self.base[int(self.indices[i])][:2]
        return x, self.mapping[int(y)]


def select_classes(data: Any, labels_or_classes: Any, classes: Optional[Sequence[int]] = None):
    """Keeps the samples of ``classes`` (original labels) and relabels them ``0..K'-1`` in the
    given order ([`etfcore.splits.class_subset`][etfcore.splits.class_subset]).

    Arrays: ``select_classes(features, labels, classes) -> (features_subset, new_labels)``.
    Datasets: ``select_classes(dataset, classes) -> dataset`` whose items are
    ``(x, new_label)`` (labels read from ``dataset.targets``/``.labels``/``.tensors[1]``, or by
    indexing).

    Examples
    --------
    >>> import numpy as np
    >>> f = np.arange(12.0).reshape(6, 2); y = np.array([0, 1, 2, 0, 1, 2])
    >>> fs, ys = select_classes(f, y, [2, 0])
    >>> ys.tolist(), fs[:, 0].tolist()
    ([1, 0, 1, 0], [0.0, 4.0, 6.0, 10.0])
    """
    if classes is None:  # dataset form
        cls = [int(c) for c in np.asarray(labels_or_classes).ravel()]
        idx, _ = class_subset(_dataset_labels(data), cls)
        return _Relabelled(data, idx, {c: i for i, c in enumerate(cls)})
    lab = integer_labels(labels_or_classes)
    if int(getattr(data, "shape", [len(lab)])[0]) != lab.size:
        raise ShapeError(f"features have {data.shape[0]} rows but labels have {lab.size}")
    idx, new = class_subset(lab, classes)
    return data[idx], new


def map_labels(data: Any, mapping: Any, labels: Any = None):
    """Relabels through ``mapping`` (a sequence/array indexed by the original label, e.g. a coarse
    label for each fine label, or a dict;
    [`etfcore.splits.label_table`][etfcore.splits.label_table]).
    ``map_labels(labels, mapping) -> new labels`` for an array;
    ``map_labels(dataset, mapping) -> dataset`` of ``(x, mapping[y])``.

    Examples
    --------
    >>> import numpy as np
    >>> map_labels(np.array([0, 3, 1, 2]), [0, 0, 1, 1]).tolist()
    [0, 1, 0, 1]
    """
    table = label_table(mapping)
    if isinstance(data, np.ndarray) or hasattr(data, "detach"):
        return map_label_array(data, table)
    lab = _dataset_labels(data)
    check_mapped(lab, table)
    return _Relabelled(data, np.arange(len(lab)), table)


def extract_features(
    backbone: Any,
    data: Any,
    *,
    device: Any = "auto",
    batch_size: int = 256,
    stats: Any = None,
    out: Union[str, os.PathLike, None] = None,
    dtype: Any = np.float32,
    keep: bool = True,
    num_workers: int = 0,
    progress: Any = None,
) -> ExtractedFeatures:
    """Features ``backbone(x)`` (flattened to ``(batch, p)``) of every sample of ``data`` (a map-
    style ``Dataset`` of ``(x, label)``, read in order, or a ``DataLoader``/iterable of ``(x, y)``
    batches), under ``torch.no_grad`` with the backbone in eval mode (its mode is restored
    afterwards). Each batch updates ``stats`` (if given) and is written to ``out`` (a ``.npy`` path;
    needs ``len(dataset)``). ``out`` is written crash-safely: into a memory-mapped temporary file
    beside it (its space reserved first: a full disk is a [`StorageError`][etfcore.StorageError]
    before any row, not a SIGBUS), renamed over ``out`` only when every row is in; a failure or a
    kill leaves an earlier ``out`` as it was. With ``keep=False`` and no ``out``, only the labels
    and the statistics are returned.
    ``progress``: a stage of an `etfcore._progress.Reporter` counting rows (``unit="rows"``),
    advanced after each batch (rows done, rows/s, ETA); ``None`` (the default): silent.

    Examples
    --------
    >>> import torch, numpy as np, etfcore as ec
    >>> from etfcore import transfer
    >>> x = torch.randn(50, 8); y = torch.arange(50) % 5
    >>> ds = torch.utils.data.TensorDataset(x, y)
    >>> st = ec.CollapseStats(5, 4)
    >>> r = transfer.extract_features(torch.nn.Linear(8, 4), ds, batch_size=16, stats=st,
    ...                               device="cpu")
    >>> r.features.shape, st.num_samples
    ((50, 4), 50)
    """
    torch = require("torch", "torch", "extract_features")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
        batch_size < 1
    ):
        raise ParameterError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    dev = torch_device(device)
    loader, total = _loader(torch, data, batch_size, num_workers)
    if out is not None and total is None:
        raise ParameterError("writing to `out` needs a dataset of known length")
    was_training = backbone.training
    backbone.eval()
    backbone.to(dev)
    mm = None
    tmp: Optional[str] = None
    kept = []
    labels = []
    row = 0
    try:
        with torch.no_grad():
            for batch in loader:
                x, y = batch[0], batch[1]
                f = backbone(x.to(dev))
                f = f.reshape(f.shape[0], -1)
                # float64 asked: keep a float64 backbone's precision (no float32 round trip)
                f = (f.double() if np.dtype(dtype) == np.float64 else f.float())
                f = f.cpu().numpy().astype(dtype, copy=False)
                yy = np.asarray(y.cpu() if hasattr(y, "cpu") else y).astype(np.int64).ravel()
                if stats is not None:
                    stats.update(f, yy)
                if out is not None:
                    if mm is None:
                        tmp = temp_path(out)
                        mm = _open_reserved_memmap(tmp, os.fspath(out), dtype, (total, f.shape[1]))
                    if row + f.shape[0] > total:
                        raise ShapeError("the loader yielded more rows than len(dataset)")
                    mm[row:row + f.shape[0]] = f
                elif keep:
                    kept.append(f)
                labels.append(yy)
                row += f.shape[0]
                if progress is not None:
                    progress.done(n=int(f.shape[0]))
        if mm is not None and row != total:
            raise ShapeError(
                f"the loader yielded {row} rows but len(dataset) = {total}; the memory-mapped "
                f"file {os.fspath(out)} would keep {total - row} rows of zeros"
            )
        if mm is not None:
            try:
                mm.flush()
            except OSError as e:
                raise storage_error(e, os.fspath(out)) from None
            shape = mm.shape
            del mm
            commit(tmp, os.fspath(out))
            tmp = None
            mm = np.lib.format.open_memmap(os.fspath(out), mode="r+")
            assert mm.shape == shape
    finally:
        backbone.train(was_training)
        if tmp is not None:
            discard(tmp)
    feats = mm if mm is not None else (np.concatenate(kept) if (keep and kept) else None)
    lab = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    return ExtractedFeatures(feats, lab, stats, None if out is None else os.fspath(out))


def _open_reserved_memmap(tmp: str, out: str, dtype: Any, shape: Tuple[int, int]) -> np.ndarray:
    """A ``w+`` memmap at ``tmp`` whose blocks are reserved on disk first: writing a sparse
    memory map on a full filesystem kills the process with SIGBUS; this raises instead."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    check_free_space(os.path.dirname(os.path.abspath(tmp)), nbytes + 4096, out)
    try:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        if hasattr(os, "posix_fallocate") and nbytes:
            fd = os.open(tmp, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, os.path.getsize(tmp))
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # no reservation: go on
                    raise
            finally:
                os.close(fd)
    except OSError as e:
        discard(tmp)
        raise storage_error(e, out) from None
    return mm


def load_npy(path: Union[str, os.PathLike], what: str = "array", *, mmap: bool = True,
             checksum: bool = True) -> np.ndarray:
    """A saved ``.npy`` array (memory-mapped read-only by default), checked first against the
    ``manifest.json`` of its directory when there is one (files of ``etfcore extract``): a
    missing, truncated, damaged, stale or non-``.npy`` file is a typed error naming the path
    ([`StorageError`][etfcore.StorageError], [`CorruptDataError`][etfcore.CorruptDataError] or
    [`ParameterError`][etfcore.ParameterError]), never a traceback or a silent read."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise ParameterError(f"{what} file not found: {p}")
    if os.path.isdir(p):
        raise ParameterError(f"{what} path {p} is a directory, not a .npy file")
    verify_manifest(p, checksum=checksum)
    try:
        arr = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
    except OSError as e:
        raise storage_error(e, p, "read") from None
    except (ValueError, EOFError) as e:
        raise CorruptDataError(f"{what} file {p} is not a readable .npy file: {e}") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        raise CorruptDataError(f"{what} file {p} is not a .npy array file")
    return arr


def _loader(torch: Any, data: Any, batch_size: int, num_workers: int):
    """``(batches, total)``: a ``DataLoader`` or iterable as it is (``total`` the length of its
    dataset, if it has one), or a map-style dataset read in order."""
    if isinstance(data, torch.utils.data.DataLoader) or not hasattr(data, "__getitem__"):
        return data, (len(data.dataset) if hasattr(data, "dataset") else None)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers)
    return loader, len(data)


def split_labels(labels: Any, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified, seeded ``(train, held_out)`` split (``fraction`` held out; the mask
    of [`etfcore.splits.stratified_validation_mask`][etfcore.splits.stratified_validation_mask])."""
    m = stratified_validation_mask(integer_labels(labels), fraction, seed)
    return np.flatnonzero(~m), np.flatnonzero(m)
