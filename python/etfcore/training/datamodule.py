"""``ClassificationDataModule``: one LightningDataModule for every dataset etfcore trains on.

The training split goes through, in this order: label selection and relabelling (``classes``,
``label_map``), a stratified seeded validation split (``val_fraction``), then long-tail
subsampling (``imbalance_ratio``). The held-out (test) split gets the same labels and is never
subsampled, so it stays as balanced as the dataset's own test split. Everything is seeded by
``seed``: the same arguments give the same samples in the same order.

>>> dm = ClassificationDataModule(dataset="digits", imbalance_ratio=0.1, val_fraction=0.1,
...                               batch_size=64, seed=0).prepare()
>>> dm.num_classes, dm.input_shape, dm.train_counts.tolist()
(10, (64,), [102, 78, 61, 47, 36, 28, 21, 17, 13, 10])
>>> x, y = next(iter(dm.train_dataloader())); x.shape, y.dtype
(torch.Size([64, 64]), torch.int64)
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import lightning
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, TensorDataset

from ..errors import LabelError, ParameterError
from . import datasets as D

DatasetSpec = Union[str, Tuple[Dataset, Dataset]]

#: Default ``image_size`` per dataset (others: 224).
NATIVE_SIZE = {"cifar10": 32, "cifar100": 32, "cifar100-coarse": 32, "svhn": 32, "stl10": 96}


class EpochSeededSampler(RandomSampler):
    """A random permutation per epoch that is a function of ``(seed, epoch)`` only: Lightning calls
    :meth:`set_epoch` before every epoch, so a run resumed at epoch ``e`` shuffles exactly as the
    uninterrupted run did. (Under DDP, Lightning replaces it by a ``DistributedSampler``, as for
    any ``RandomSampler``.)"""

    def __init__(self, data_source: Dataset, seed: int) -> None:
        super().__init__(data_source)
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(len(self.data_source), generator=gen).tolist())


class RelabelledSubset(Dataset):
    """``base[indices[i]]`` with label ``labels[i]`` (int64) and an optional input transform.
    ``targets`` holds the labels (read without loading any input)."""

    def __init__(
        self,
        base: Dataset,
        indices: np.ndarray,
        labels: np.ndarray,
        transform: Optional[Callable] = None,
    ) -> None:
        self.base, self.transform = base, transform
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        x = self.base[int(self.indices[i])][0]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.targets[i])


def label_lookup(
    num_original: int,
    classes: Optional[Sequence[int]] = None,
    label_map: Optional[Sequence[int]] = None,
) -> np.ndarray:
    """Original label → new label (``-1``: dropped).

    - ``classes`` only: class ``classes[j]`` becomes ``j``, the others are dropped;
    - ``label_map`` only: ``c`` becomes ``label_map[c]`` (a negative entry drops ``c``);
    - both: ``classes`` selects, ``label_map`` relabels.

    >>> label_lookup(5, classes=[3, 1]).tolist()
    [-1, 1, -1, 0, -1]
    >>> label_lookup(4, label_map=[1, 1, 0, -1]).tolist()
    [1, 1, 0, -1]
    """
    lut = np.arange(num_original, dtype=np.int64)
    if label_map is not None:
        m = np.asarray(label_map, dtype=np.int64)
        if m.ndim != 1 or m.size < num_original:
            raise ParameterError(
                f"label_map must have one entry per original label (≥ {num_original}), "
                f"got {m.size}"
            )
        lut = m[:num_original].copy()
    if classes is not None:
        c = np.asarray(classes, dtype=np.int64)
        if c.ndim != 1 or c.size == 0 or len(np.unique(c)) != c.size:
            raise ParameterError(f"classes must be distinct original labels, got {list(c)}")
        if c.min() < 0 or c.max() >= num_original:
            raise LabelError(f"classes must lie in 0..{num_original - 1}, got {list(c)}")
        keep = np.full(num_original, -1, dtype=np.int64)
        keep[c] = lut[c] if label_map is not None else np.arange(c.size)
        lut = keep
    new = lut[lut >= 0]
    if new.size == 0:
        raise ParameterError("classes/label_map keep no class")
    return lut


class ClassificationDataModule(lightning.LightningDataModule):
    """Classification data for training and evaluation.

    Args:
        dataset: a name — embedded ``digits``, ``gmm``, ``mnist1d`` (no download) or an image
            dataset of :mod:`etfcore.training.datasets` (``cifar10``, ``cifar100-coarse``,
            ``imagenet-lt``, ``cub200``, …) — or a ``(train, test)`` pair of torch Datasets
            returning ``(input, integer label)``.
        data_root: where image datasets live (or are downloaded to).
        download: let torchvision download missing datasets (``prepare_data`` does it once).
        image_size: side of the square input images (default: 32 for CIFAR/SVHN, 96 for STL-10,
            224 otherwise).
        imbalance_ratio: ``ρ = n_min/n_max`` of the long-tail subsampling of the training split
            (CIFAR-LT profile ``n_k = ⌊n_max ρ^{k/(K-1)}⌋`` over the new labels); 1 = none.
        classes: original labels to keep, relabelled ``0..K'-1`` in the given order.
        label_map: original → new label (e.g. CIFAR-100 fine → 20 superclasses,
            :data:`~etfcore.training.datasets.CIFAR100_COARSE`); negative entries drop a class.
        val_fraction: fraction of each class of the training split held out as a validation
            split (stratified, seeded, taken before long-tail subsampling; 0 = none).
        batch_size, num_workers: of the data loaders.
        seed: seeds every split, the subsampling and the training loader's shuffling (a
            permutation per epoch that depends only on ``(seed, epoch)``).
        augment: random crops/flips on the training images (image datasets only).
        train_transform, test_transform: replace the default image transforms.

    After :meth:`setup` (or :meth:`prepare`, which also downloads when allowed and returns the
    module): ``num_classes``, ``train_counts``, ``input_shape``, ``train_dataset``,
    ``val_dataset`` (``None`` without a validation split; ``val_dataloader()`` is then empty),
    ``test_dataset`` and the three loaders, whose batches are ``(x, y)`` with int64 ``y``.
    """

    def __init__(
        self,
        *,
        dataset: DatasetSpec = "digits",
        data_root: str = "data",
        download: bool = False,
        image_size: Optional[int] = None,
        imbalance_ratio: float = 1.0,
        classes: Optional[Sequence[int]] = None,
        label_map: Optional[Sequence[int]] = None,
        val_fraction: float = 0.0,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        augment: bool = True,
        train_transform: Optional[Callable] = None,
        test_transform: Optional[Callable] = None,
    ) -> None:
        super().__init__()
        if isinstance(dataset, str):
            if dataset not in D.EMBEDDED and dataset not in D.URLS:
                known = ", ".join(D.EMBEDDED + tuple(sorted(D.URLS)))
                raise ParameterError(f"unknown dataset {dataset!r}; known: {known}")
        elif not (isinstance(dataset, (tuple, list)) and len(dataset) == 2):
            raise ParameterError("dataset must be a name or a (train, test) pair of Datasets")
        if not (0.0 < imbalance_ratio <= 1.0):
            raise ParameterError(f"imbalance_ratio must be in (0, 1], got {imbalance_ratio}")
        if not (0.0 <= val_fraction < 1.0):
            raise ParameterError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if batch_size < 1 or num_workers < 0:
            raise ParameterError("batch_size must be ≥ 1 and num_workers ≥ 0")
        self.dataset, self.data_root, self.download = dataset, str(data_root), bool(download)
        name = dataset if isinstance(dataset, str) else ""
        self.image_size = int(image_size or NATIVE_SIZE.get(name, 224))
        self.imbalance_ratio, self.val_fraction = float(imbalance_ratio), float(val_fraction)
        self.classes, self.label_map = classes, label_map
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.augment = bool(augment)
        self.train_transform, self.test_transform = train_transform, test_transform
        self.train_dataset: Optional[Dataset] = None
        self.val_dataset: Optional[Dataset] = None
        self.test_dataset: Optional[Dataset] = None

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        """Downloads an image dataset once (rank 0) when ``download`` is set."""
        if isinstance(self.dataset, str) and self.download and self.dataset in D.DOWNLOADABLE:
            for train in (True, False):
                D.torchvision_dataset(
                    self.dataset, self.data_root, train=train, download=True, seed=self.seed
                )

    def setup(self, stage: Optional[str] = None) -> None:
        """Builds the three splits (idempotent)."""
        if self.train_dataset is not None:
            return
        base_train, base_test, y_train, y_test = self._base()
        if y_train.size == 0 or min(y_train.min(), y_test.min(initial=0)) < 0:
            raise LabelError("datasets must hold non-negative integer labels")
        lut = label_lookup(
            int(max(y_train.max(), y_test.max(initial=0))) + 1, self.classes, self.label_map
        )
        train_idx = np.flatnonzero(lut[y_train] >= 0)
        test_idx = np.flatnonzero(lut[y_test] >= 0)
        new_train, new_test = lut[y_train[train_idx]], lut[y_test[test_idx]]
        self.num_classes = int(max(new_train.max(), new_test.max(initial=0))) + 1
        val_idx = np.zeros(0, dtype=np.int64)
        if self.val_fraction > 0:
            kept, held = D.stratified_split(new_train, self.val_fraction, seed=self.seed + 1)
            val_idx, train_idx, new_train = train_idx[held], train_idx[kept], new_train[kept]
        if self.imbalance_ratio < 1.0:
            keep = D.long_tail_indices(
                new_train, self.imbalance_ratio, seed=self.seed, num_classes=self.num_classes
            )
            train_idx, new_train = train_idx[keep], new_train[keep]
        self.train_counts = np.bincount(new_train, minlength=self.num_classes)
        tf_train, tf_test = self._transforms()
        wrap = self._wrap
        self.train_dataset = wrap(base_train, train_idx, new_train, tf_train)
        self.test_dataset = wrap(base_test, test_idx, lut[y_test[test_idx]], tf_test)
        if val_idx.size:
            self.val_dataset = wrap(base_train, val_idx, lut[y_train[val_idx]], tf_test)
        self.input_shape = tuple(self.train_dataset[0][0].shape)

    def prepare(self) -> ClassificationDataModule:
        """``prepare_data()`` then ``setup()``, for use without a Lightning Trainer."""
        self.prepare_data()
        self.setup()
        return self

    def train_dataloader(self) -> DataLoader:
        ds = self._ready(self.train_dataset)
        sampler = EpochSeededSampler(ds, self.seed)
        return self._loader(ds, sampler=sampler, drop_last=len(ds) > self.batch_size)

    def val_dataloader(self):
        self._ready(self.train_dataset)
        return [] if self.val_dataset is None else self._loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._ready(self.test_dataset))

    # ------------------------------------------------------------------ internals
    def _ready(self, ds):
        if self.train_dataset is None:
            raise ParameterError("call setup() (or prepare()) before asking for data")
        return ds

    def _loader(self, ds: Dataset, **kw) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            **kw,
        )

    def _base(self):
        if not isinstance(self.dataset, str):
            train, test = self.dataset
            return train, test, D.dataset_labels(train), D.dataset_labels(test)
        if self.dataset in D.EMBEDDED:
            xtr, ytr, xte, yte = D.embedded_arrays(self.dataset, seed=self.seed)
            return D.tensor_dataset(xtr, ytr), D.tensor_dataset(xte, yte), ytr, yte
        kw = dict(download=self.download, seed=self.seed)
        train = D.torchvision_dataset(self.dataset, self.data_root, train=True, **kw)
        test = D.torchvision_dataset(self.dataset, self.data_root, train=False, **kw)
        return train, test, D.dataset_labels(train), D.dataset_labels(test)

    def _transforms(self):
        if not isinstance(self.dataset, str) or self.dataset in D.EMBEDDED:
            return self.train_transform, self.test_transform
        tr = self.train_transform or D.image_transforms(
            self.image_size, train=True, augment=self.augment
        )
        te = self.test_transform or D.image_transforms(self.image_size, train=False)
        return tr, te

    @staticmethod
    def _wrap(base, idx, labels, transform) -> Dataset:
        if isinstance(base, TensorDataset) and transform is None:  # index the tensors once
            x = base.tensors[0][torch.from_numpy(np.asarray(idx, dtype=np.int64))]
            return TensorDataset(x, torch.from_numpy(np.asarray(labels, dtype=np.int64)))
        return RelabelledSubset(base, idx, labels, transform)


__all__ = ["ClassificationDataModule", "EpochSeededSampler", "RelabelledSubset", "label_lookup"]
