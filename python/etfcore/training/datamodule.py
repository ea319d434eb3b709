"""`ClassificationDataModule`: one LightningDataModule for every dataset etfcore trains on.

The splits come from [`etfcore.splits.plan_splits`][etfcore.splits.plan_splits], in this order:
label selection and renumbering to `0..K'-1` (`classes`, `label_map`), long-tail subsampling of
the whole training split (`imbalance_ratio`), then a stratified validation split drawn from
the kept samples (`val_fraction`). The held-out (test) split gets the same labels and is never
subsampled; where etfcore draws it (`digits`, `gmm`, `caltech101`, `sun397`) its seed is
`split_seed`, fixed by default, so every run seed is evaluated on the same samples.

Everything else is seeded by `seed`: the same arguments give the same samples in the same
order. In epoch `e` the training order is a permutation that depends only on `(seed, e)`;
the training transform's random draws (crops, flips) depend only on `(seed, e, sample)`
([`RelabelledSubset`][etfcore.training.datasets.RelabelledSubset] with a seed), whatever
`num_workers`; the worker processes' own seeds come from the loader's `generator`, reseeded from
`(seed, e)` every epoch (workers are started afresh each epoch). A run resumed at an epoch
boundary therefore sees exactly the batches of the uninterrupted run; a run resumed mid-epoch
restarts that epoch's permutation from its beginning (the loader is not stateful). Random
draws of a transform outside torch's RNG (Python's `random`, numpy) are not covered.

Under DDP the training loader's sampler is a
[`SeededDistributedSampler`][etfcore.training.datamodule.SeededDistributedSampler] (a
`DistributedSampler` with this module's `seed`), which Lightning keeps as it is.

Examples
--------
>>> dm = ClassificationDataModule(dataset="digits", imbalance_ratio=0.1, val_fraction=0.1,
...                               batch_size=64, seed=0).prepare()
>>> dm.num_classes, dm.input_shape, dm.train_counts.tolist()
(10, (64,), [103, 80, 61, 48, 37, 28, 22, 17, 13, 10])
>>> x, y = next(iter(dm.train_dataloader())); x.shape, y.dtype
(torch.Size([64, 64]), torch.int64)
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import lightning
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler

from ..errors import ParameterError
from ..splits import label_lookup, plan_splits
from . import datasets as D
from .datasets import RelabelledSubset

DatasetSpec = Union[str, Tuple[Dataset, Dataset]]

NATIVE_SIZE = {"cifar10": 32, "cifar100": 32, "cifar100-coarse": 32, "svhn": 32, "stl10": 96}
"""Default `image_size` per dataset (others: 224)."""


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch `epoch` of a run seeded `seed` (a fixed mix, below $2^{63}$).

    Examples
    --------
    >>> epoch_seed(0, 1) != epoch_seed(1, 0)
    True
    """
    entropy = [int(seed) % 2**64, int(epoch) % 2**64]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) >> 1


class _EpochSeeded:
    """Shared by the samplers: `set_epoch` also reseeds `loader_generator`, the
    DataLoader's generator (it seeds the worker processes)."""

    seed: int
    epoch: int
    loader_generator: torch.Generator

    def _init_epoch(self, seed: int) -> None:
        self.seed, self.epoch = int(seed), 0
        self.loader_generator = torch.Generator()
        self._reseed()

    def _reseed(self) -> None:
        self.loader_generator.manual_seed(epoch_seed(self.seed, self.epoch) ^ 0x5EED)
        data = getattr(self, "data_source", None)
        data = getattr(self, "dataset", None) if data is None else data
        if hasattr(data, "set_epoch"):  # seeded augmentations follow the epoch
            data.set_epoch(self.epoch)


class EpochSeededSampler(_EpochSeeded, RandomSampler):
    """A random permutation per epoch that is a function of `(seed, epoch)` only.

    Lightning calls `set_epoch` before every epoch, so a run resumed at epoch `e` shuffles
    exactly as the uninterrupted run did; `set_epoch` also reseeds `loader_generator`, the
    DataLoader's generator (it seeds the worker processes).

    Parameters
    ----------
    data_source
        The dataset to sample.
    seed
        The run's seed.
    """

    def __init__(self, data_source: Dataset, seed: int) -> None:
        RandomSampler.__init__(self, data_source)
        self._init_epoch(seed)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._reseed()

    def __iter__(self):
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(len(self.data_source), generator=gen).tolist())


class SeededDistributedSampler(_EpochSeeded, DistributedSampler):
    """`DistributedSampler(shuffle=True)` seeded by the data module's `seed`.

    torch's own shards: replica `r` takes every `num_replicas`-th sample of the epoch's
    permutation of `(seed, epoch)`. Its `set_epoch` also reseeds the loader's generator. Being a
    `DistributedSampler`, Lightning does not replace it.

    Parameters
    ----------
    dataset
        The dataset to sample.
    num_replicas
        The number of processes.
    rank
        This process's rank.
    seed
        The run's seed.
    drop_last
        Drop the tail that does not divide evenly among the replicas.
    """

    def __init__(
        self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int, drop_last: bool
    ) -> None:
        DistributedSampler.__init__(
            self, dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=int(seed),
            drop_last=drop_last,
        )
        self._init_epoch(seed)

    def set_epoch(self, epoch: int) -> None:
        DistributedSampler.set_epoch(self, epoch)
        self._reseed()


class EvenBatchSampler(Sampler):
    r"""Every sample of the epoch in $\lceil N/B \rceil$ batches of near-equal size.

    Sizes differ by at most one and each is at least $\lfloor N/\lceil N/B \rceil \rfloor$
    (about $B/2$ or more when $N \ge B$): the epoch's permutation from `sampler` is cut into
    consecutive runs, so no sample is dropped and no batch is so small that batch normalisation
    fails. `sampler.set_epoch` is what Lightning calls each epoch.

    Parameters
    ----------
    sampler
        The epoch's order (e.g. an
        [`EpochSeededSampler`][etfcore.training.datamodule.EpochSeededSampler]).
    batch_size
        The largest batch size $B$.

    Examples
    --------
    >>> bs = EvenBatchSampler(EpochSeededSampler(range(130), seed=0), batch_size=64)
    >>> sizes = [len(b) for b in bs]
    >>> sizes, len(bs), sorted(i for b in bs for i in b) == list(range(130))
    ([44, 43, 43], 3, True)
    """

    def __init__(self, sampler: Sampler, batch_size: int) -> None:
        self.sampler, self.batch_size = sampler, int(batch_size)

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self):
        order = list(self.sampler)
        n_batches = -(-len(order) // self.batch_size)
        if n_batches == 0:
            return iter(())
        return iter(part.tolist() for part in np.array_split(np.asarray(order), n_batches))


#: How the training loader ends an epoch whose size is not a multiple of the batch size.
LAST_BATCH = ("drop", "even")


def _distributed(trainer) -> Optional[Tuple[int, int]]:
    """`(world_size, rank)` when training on several processes, else `None`."""
    world = getattr(trainer, "world_size", 1) if trainer is not None else 1
    if world > 1:
        return int(world), int(trainer.global_rank)
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_world_size(), dist.get_rank()
    return None


class ClassificationDataModule(lightning.LightningDataModule):
    r"""Classification data for training and evaluation.

    Parameters
    ----------
    dataset
        A name — embedded `digits`, `gmm`, `mnist1d`, `hier` (no download; options and input
        shifts after a colon, e.g. `hier:fine=4` or `digits:noise=0.5`, see
        [`parse_embedded`][etfcore.training.datasets.parse_embedded]) or an image dataset of
        [`etfcore.training.datasets`][etfcore.training.datasets] (`cifar10`, `cifar100-coarse`,
        `imagenet-lt`, `cub200`, …) — or a `(train, test)` pair of torch Datasets returning
        `(input, integer label)`.
    data_root
        Where image datasets live (or are downloaded to).
    download
        Let torchvision download missing datasets (`prepare_data` does it, once).
    image_size
        Side of the square input images (default: 32 for CIFAR/SVHN, 96 for STL-10, 224
        otherwise; see [`NATIVE_SIZE`][etfcore.training.datamodule.NATIVE_SIZE]).
    imbalance_ratio
        $\rho = n_\min/n_\max$ of the long-tail subsampling of the training split (CIFAR-LT
        profile $n_k = \lfloor n_\max \rho^{k/(K-1)} \rfloor$ over the new labels, $n_\max$
        the smallest class count of the whole training split); 1 = none.
    classes
        Original labels to keep, renumbered `0..K'-1` in the given order.
    label_map
        Original → new label (e.g. CIFAR-100 fine → 20 superclasses,
        [`CIFAR100_COARSE`][etfcore.training.images.CIFAR100_COARSE]); negative entries drop a
        class. The distinct new labels are renumbered `0..K'-1` (ascending; with `classes`, in
        the order `classes` reaches them), so no class is left empty.
    val_fraction
        Fraction of each class held out for validation, drawn (stratified, seeded) from the
        training samples the long tail kept; 0 = none.
    batch_size
        The batch size of the data loaders.
    num_workers
        The worker processes of each data loader (0: load in the main process).
    last_batch
        How a training epoch of $N$ samples ends when the batch size $B$ does not divide $N$:
        `"drop"` (default) drops the last $N \bmod B$ samples of the epoch's permutation (which
        ones changes every epoch; $\lfloor N/B \rfloor$ steps); `"even"` keeps every sample, in
        $\lceil N/B \rceil$ batches of near-equal size
        ([`EvenBatchSampler`][etfcore.training.datamodule.EvenBatchSampler]). Under DDP, `"even"`
        keeps every sample too (the distributed sampler pads with at most `world − 1` repeats;
        each rank's last batch may be smaller).
    seed
        Seeds the subsampling, the validation split, the training order and the loader's
        worker seeds (per epoch: functions of `(seed, epoch)`).
    split_seed
        Seeds the held-out split where etfcore draws it; fixed by default (`SPLIT_SEED` of
        `etfcore.splits`), independent of `seed`.
    augment
        Random crops/flips on the training images (image datasets only).
    train_transform
        Replaces the default training image transform.
    test_transform
        Replaces the default test image transform (also used for `train_eval_dataset`).

    Attributes
    ----------
    num_classes : int
        The number of classes `K'` after relabelling.
    train_counts : numpy.ndarray
        The training samples per class.
    input_shape : tuple
        The shape of one input.
    train_dataset : torch.utils.data.Dataset
        The training samples, with the training transform.
    train_eval_dataset : torch.utils.data.Dataset
        The training samples with the test transform, for evaluation.
    val_dataset : torch.utils.data.Dataset or None
        The validation samples (`None` without a validation split; `val_dataloader()` is then
        empty).
    test_dataset : torch.utils.data.Dataset
        The held-out samples.

    Raises
    ------
    ParameterError
        For an unknown dataset name or an option out of range.

    Notes
    -----
    The attributes are set by [`setup`][etfcore.training.datamodule.ClassificationDataModule.setup]
    (or [`prepare`][etfcore.training.datamodule.ClassificationDataModule.prepare], which also
    downloads when allowed and returns the module), as are the three loaders, whose batches are
    `(x, y)` with int64 `y`.
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
        last_batch: str = "drop",
        seed: int = 0,
        split_seed: int = D.SPLIT_SEED,
        augment: bool = True,
        train_transform: Optional[Callable] = None,
        test_transform: Optional[Callable] = None,
    ) -> None:
        super().__init__()
        if isinstance(dataset, str):
            if D.is_embedded(dataset):
                D.parse_embedded(dataset)  # bad options fail here, naming the option
            elif dataset not in D.URLS:
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
        if last_batch not in LAST_BATCH:
            raise ParameterError(f"last_batch must be one of {LAST_BATCH}, got {last_batch!r}")
        self.last_batch = last_batch
        self.dataset, self.data_root, self.download = dataset, str(data_root), bool(download)
        name = dataset if isinstance(dataset, str) else ""
        self.image_size = int(image_size or NATIVE_SIZE.get(name, 224))
        self.imbalance_ratio, self.val_fraction = float(imbalance_ratio), float(val_fraction)
        self.classes, self.label_map = classes, label_map
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.split_seed = int(split_seed)
        self.augment = bool(augment)
        self.train_transform, self.test_transform = train_transform, test_transform
        self.train_dataset: Optional[Dataset] = None
        self.train_eval_dataset: Optional[Dataset] = None
        self.val_dataset: Optional[Dataset] = None
        self.test_dataset: Optional[Dataset] = None

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        """Downloads an image dataset once (rank 0) when `download` is set."""
        if isinstance(self.dataset, str) and self.download and self.dataset in D.DOWNLOADABLE:
            for train in (True, False):
                D.torchvision_dataset(self.dataset, self.data_root, train=train, download=True)

    def setup(self, stage: Optional[str] = None) -> None:
        """Build the splits (idempotent; never downloads:
        [`prepare_data`][etfcore.training.datamodule.ClassificationDataModule.prepare_data]
        does)."""
        if self.train_dataset is not None:
            return
        base_train, base_test, y_train, y_test = self._base()
        plan = plan_splits(
            y_train, y_test, classes=self.classes, label_map=self.label_map,
            imbalance_ratio=self.imbalance_ratio, val_fraction=self.val_fraction, seed=self.seed,
        )
        self.num_classes = plan.num_classes
        self.train_counts = plan.train_counts
        tf_train, tf_test = self._transforms()
        wrap = self._wrap
        self.train_dataset = wrap(
            base_train, plan.train_idx, plan.train_labels, tf_train, seed=self.seed
        )
        self.train_eval_dataset = (
            self.train_dataset
            if tf_train is tf_test
            else wrap(base_train, plan.train_idx, plan.train_labels, tf_test)
        )
        self.test_dataset = wrap(base_test, plan.test_idx, plan.test_labels, tf_test)
        if plan.val_idx.size:
            self.val_dataset = wrap(base_train, plan.val_idx, plan.val_labels, tf_test)
        self.input_shape = tuple(self.train_dataset[0][0].shape)

    def prepare(self) -> ClassificationDataModule:
        """`prepare_data()` then `setup()`, for use without a Lightning Trainer."""
        self.prepare_data()
        self.setup()
        return self

    def train_dataloader(self) -> DataLoader:
        """The training loader, shuffled by a function of `(seed, epoch)`.

        Its sampler is an [`EpochSeededSampler`][etfcore.training.datamodule.EpochSeededSampler]
        on one process, a
        [`SeededDistributedSampler`][etfcore.training.datamodule.SeededDistributedSampler] (this
        rank's shard) when the attached trainer or `torch.distributed` has several processes.
        The sampler starts at the trainer's current epoch (so the first epoch of a resumed run
        is shuffled right even before Lightning calls `set_epoch`); the loader's generator
        follows the sampler's epoch.
        """
        ds = self._ready(self.train_dataset)
        keep_all = self.last_batch == "even"
        drop_last = len(ds) > self.batch_size and not keep_all
        dist = _distributed(self.trainer)
        sampler: _EpochSeeded
        if dist is None:
            sampler = EpochSeededSampler(ds, self.seed)
        else:
            world, rank = dist
            drop_last = len(ds) // world > self.batch_size and not keep_all
            # "drop": the sampler drops the epoch's last len % world samples; "even": it pads
            # with at most world − 1 repeats, so that no sample is left out
            sampler = SeededDistributedSampler(
                ds, num_replicas=world, rank=rank, seed=self.seed,
                drop_last=len(ds) >= world and not keep_all,
            )  # fmt: skip
        sampler.set_epoch(int(getattr(self.trainer, "current_epoch", 0) or 0))
        if keep_all and dist is None:
            return DataLoader(
                ds,
                batch_sampler=EvenBatchSampler(sampler, self.batch_size),
                num_workers=self.num_workers,
                pin_memory=torch.cuda.is_available(),
                generator=sampler.loader_generator,
            )
        return self._loader(
            ds, sampler=sampler, drop_last=drop_last, generator=sampler.loader_generator
        )

    def train_steps_per_epoch(self) -> int:
        """Optimiser steps in one training epoch on one process: `⌊N/B⌋` with
        `last_batch="drop"` (at least one), `⌈N/B⌉` with `"even"`."""
        n = len(self._ready(self.train_dataset))
        if self.last_batch == "even":
            return -(-n // self.batch_size)
        return max(1, n // self.batch_size) if n > self.batch_size else 1

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
        # Workers are started afresh every epoch (not persistent) so that their seeds come from
        # the generator reseeded for that epoch.
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            **kw,
        )

    def _base(self):
        if not isinstance(self.dataset, str):
            train, test = self.dataset
            return train, test, D.dataset_labels(train), D.dataset_labels(test)
        if D.is_embedded(self.dataset):
            xtr, ytr, xte, yte = D.embedded_arrays(self.dataset, split_seed=self.split_seed)
            return D.tensor_dataset(xtr, ytr), D.tensor_dataset(xte, yte), ytr, yte
        kw = dict(download=False, split_seed=self.split_seed)
        train = D.torchvision_dataset(self.dataset, self.data_root, train=True, **kw)
        test = D.torchvision_dataset(self.dataset, self.data_root, train=False, **kw)
        return train, test, D.dataset_labels(train), D.dataset_labels(test)

    def _transforms(self):
        if not isinstance(self.dataset, str) or D.is_embedded(self.dataset):
            return self.train_transform, self.test_transform
        tr = self.train_transform or D.image_transforms(
            self.image_size, train=True, augment=self.augment
        )
        te = self.test_transform or D.image_transforms(self.image_size, train=False)
        return tr, te

    @staticmethod
    def _wrap(base, idx, labels, transform, seed: Optional[int] = None) -> Dataset:
        if transform is None:
            return D.subset(base, idx, labels)
        return RelabelledSubset(base, idx, labels, transform, seed=seed)


__all__ = [
    "ClassificationDataModule",
    "EpochSeededSampler",
    "SeededDistributedSampler",
    "RelabelledSubset",
    "epoch_seed",
    "label_lookup",
]
