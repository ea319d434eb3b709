"""Dataset builders: embedded data (no download) and the image datasets the fixed-ETF papers
pretrain or transfer on.
[`ClassificationDataModule`][etfcore.training.datamodule.ClassificationDataModule] puts them
together.

- Embedded: `digits` (scikit-learn's 8×8 digits), `gmm` (a seeded 10-class Gaussian mixture,
  p = 32), `mnist1d` (Greydanus's MNIST-1D, 40-sample 1-D signals, generated locally by the
  `mnist1d` package's generator — no download), `hier` (a hierarchical Gaussian mixture).
- Images: [`etfcore.training.images`][etfcore.training.images] (the file formats, transforms and
  builders; its names stay importable from here), put through the same splits by
  [`image_datasets`][etfcore.training.datasets.image_datasets].

The held-out split never depends on a run's `seed`: where etfcore draws it (`digits`,
`gmm`, `caltech101`, `sun397`) it uses `split_seed` (default `SPLIT_SEED`), so runs
with different seeds are evaluated on the same samples and never train on each other's test data.

[`etfcore.splits.plan_splits`][etfcore.splits.plan_splits] is the one place where labels are
selected and renumbered, the training split long-tail subsampled and a validation split drawn;
the datamodule and [`embedded`][etfcore.training.datasets.embedded] /
[`image_datasets`][etfcore.training.datasets.image_datasets] all go through it. The index
arithmetic it uses (class subsets, label maps, long tail, stratified splits) is
[`etfcore.splits`][etfcore.splits], shared with the transfer layer; its names stay importable
from here.

Missing files raise [`DatasetNotFoundError`][etfcore.training.images.DatasetNotFoundError]
naming the dataset, the `data_root`, the download URL and the `download` setting.
"""

from __future__ import annotations

import functools
import math
import random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from .. import data
from ..errors import ParameterError, require
from ..splits import SPLIT_SEED as SPLIT_SEED
from ..splits import SplitPlan as SplitPlan  # re-exported: defined here before the toolkit
from ..splits import label_lookup as label_lookup
from ..splits import long_tail_indices as long_tail_indices
from ..splits import plan_splits, random_split, stratified_holdout
from ..splits import take_per_class as take_per_class

# The image datasets (etfcore.training.images), importable from here as before.
from .images import CIFAR100_COARSE, dataset_labels, image_transforms, torchvision_dataset
from .images import CUB200 as CUB200
from .images import DOWNLOADABLE as DOWNLOADABLE
from .images import IMAGE_DATASETS as IMAGE_DATASETS
from .images import URLS as URLS
from .images import ClassFolder as ClassFolder
from .images import DatasetNotFoundError as DatasetNotFoundError
from .images import ImageListDataset as ImageListDataset

EMBEDDED = ("digits", "gmm", "mnist1d", "hier")


# ------------------------------------------------------------------ labels and subsets
def coarse_labels(fine: np.ndarray, mapping: Sequence[int] = CIFAR100_COARSE) -> np.ndarray:
    """Map fine labels to coarse ones.

    Parameters
    ----------
    fine
        The fine labels.
    mapping
        Fine label → coarse label (default: CIFAR-100's 20 superclasses,
        [`CIFAR100_COARSE`][etfcore.training.images.CIFAR100_COARSE]).

    Examples
    --------
    >>> coarse_labels([0, 1, 99]).tolist()
    [4, 1, 13]
    """
    return np.asarray(mapping)[np.asarray(fine)]


# The index arithmetic lives in etfcore.splits (shared with the transfer layer); these names stay
# importable from here.
def stratified_split(
    labels: np.ndarray, fraction: float, *, seed: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Alias of [`etfcore.splits.stratified_holdout`][etfcore.splits.stratified_holdout] (its
    name before the toolkit).

    Parameters
    ----------
    labels
        One label per sample.
    fraction
        The fraction of each class held out.
    seed
        Seeds the draw.

    Returns
    -------
    tuple of numpy.ndarray
        `(kept, held_out)` sorted indices, `min(round(fraction · n_c), n_c - 1)` of class `c`
        held out.

    Examples
    --------
    >>> kept, held = stratified_split(np.repeat([0, 1], [10, 30]), 0.2, seed=0)
    >>> len(kept), len(held)
    (32, 8)
    """
    return stratified_holdout(labels, fraction, seed=seed)


def split(n: int, test_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Alias of [`etfcore.splits.random_split`][etfcore.splits.random_split]: a
    stratification-free seeded split of `range(n)` into sorted `(train, test)` indices.

    Parameters
    ----------
    n
        The number of samples.
    test_fraction
        The fraction in the test part.
    seed
        Seeds the draw.
    """
    return random_split(n, test_fraction, seed)


def subset(base: Dataset, idx: np.ndarray, labels: np.ndarray) -> Dataset:
    """`base` restricted to `idx` with labels `labels`.

    Parameters
    ----------
    base
        The dataset: tensors indexed once for a `TensorDataset`; a
        [`RelabelledSubset`][etfcore.training.datasets.RelabelledSubset] otherwise.
    idx
        The samples of `base` kept.
    labels
        Their new labels.
    """
    if isinstance(base, TensorDataset):
        x = base.tensors[0][torch.from_numpy(np.asarray(idx, dtype=np.int64))]
        return TensorDataset(x, torch.from_numpy(np.asarray(labels, dtype=np.int64)))
    return RelabelledSubset(base, idx, labels)


class RelabelledSubset(Dataset):
    """`base[indices[i]]` with label `labels[i]` (int64) and an optional input transform.

    Parameters
    ----------
    base
        The dataset.
    indices
        The samples of `base` kept.
    labels
        Their new labels.
    transform
        Applied to each input.
    seed
        Makes the transform's torch random draws (random crops, flips, …) a function of
        `(seed, epoch, sample)` only: each call reseeds torch's CPU generator from them and
        restores its state afterwards (the process's RNG is left as it was), so augmentations do
        not depend on the number of workers, the batch or the process; `set_epoch` moves to
        another epoch.

    Attributes
    ----------
    targets : numpy.ndarray
        The labels (read without loading any input).
    """

    def __init__(
        self,
        base: Dataset,
        indices: np.ndarray,
        labels: np.ndarray,
        transform: Optional[Callable] = None,
        *,
        seed: Optional[int] = None,
    ) -> None:
        self.base, self.transform = base, transform
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = np.asarray(labels, dtype=np.int64)
        self.seed = None if seed is None else int(seed)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.seed is not None:
            entropy = [self.seed % 2**64, self.epoch % 2**64]
            self._epoch_seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        j = int(self.indices[i])
        x = self.base[j][0]
        if self.transform is None:
            pass
        elif self.seed is None:
            x = self.transform(x)
        else:
            # the CPU generator's state saved and restored by hand: torch.random.fork_rng and
            # torch.manual_seed also visit every accelerator backend (~0.7 ms a call, measured)
            rng = torch.default_generator
            state = rng.get_state()
            rng.manual_seed((self._epoch_seed + j * 0x9E3779B97F4A7C15) % 2**63)
            try:
                x = self.transform(x)
            finally:
                rng.set_state(state)
        return x, int(self.targets[i])


# ------------------------------------------------------------------ embedded data
@functools.lru_cache(maxsize=4)
def _mnist1d(seed: int, num_samples: int) -> Tuple[np.ndarray, ...]:
    mnist1d_data = require("mnist1d.data", "train", "the MNIST-1D data", package="mnist1d")
    get_dataset_args, make_dataset = mnist1d_data.get_dataset_args, mnist1d_data.make_dataset
    args = get_dataset_args()
    args.seed, args.num_samples = int(seed), int(num_samples)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:  # the generator seeds numpy's and Python's global RNGs: restore them afterwards
        d = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    out = (
        np.array(d["x"], dtype=np.float32), np.array(d["y"], dtype=np.int64),
        np.array(d["x_test"], dtype=np.float32), np.array(d["y_test"], dtype=np.int64),
    )
    for a in out:
        a.flags.writeable = False
    return out


EMBEDDED_OPTIONS: Dict[str, Dict[str, float]] = {
    "digits": {},
    "gmm": {},
    "mnist1d": {"n": 5000, "seed": 42},
    "hier": {
        "coarse": 4, "fine": 5, "dim": 64, "n": 100, "seed": 0,
        "coarse_scale": 3.0, "fine_scale": 1.5, "within_scale": 1.0,
    },
}
"""Options an embedded dataset name takes after a colon, with their defaults (see
[`parse_embedded`][etfcore.training.datasets.parse_embedded]). `noise`, `invert` and `permute`
shift the inputs of any of them."""
INPUT_SHIFTS: Dict[str, float] = {"noise": 0.0, "invert": 0.0, "permute": -1.0}


def parse_embedded(name: str) -> Tuple[str, Dict[str, float]]:
    """`"base:key=value,flag,..."` → `(base, options)` with every default filled in.

    Options of the base ([`EMBEDDED_OPTIONS`][etfcore.training.datasets.EMBEDDED_OPTIONS]) plus
    the input shifts every embedded dataset takes: `noise=σ` (Gaussian noise of `σ` times the
    training inputs' overall standard deviation, a fixed seed), `invert` (`x → max(x) − x` with
    the training inputs' maximum, a negative image) and `permute=s` (a fixed permutation of the
    input coordinates drawn from seed `s`).

    Raises
    ------
    ParameterError
        For an unknown base or key, or a malformed value.

    Examples
    --------
    >>> parse_embedded("digits:noise=0.5,invert")
    ('digits', {'noise': 0.5, 'invert': 1.0, 'permute': -1.0})
    >>> base, options = parse_embedded("hier:fine=2,seed=3")
    >>> options["fine"], options["coarse"]
    (2.0, 4)
    """
    base, _, rest = str(name).partition(":")
    if base not in EMBEDDED_OPTIONS:
        raise ParameterError(f"unknown embedded dataset {base!r}; use one of {EMBEDDED}")
    options: Dict[str, float] = {**EMBEDDED_OPTIONS[base], **INPUT_SHIFTS}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if key not in options:
            raise ParameterError(
                f"unknown option {key!r} of dataset {base!r}; known: {sorted(options)}"
            )
        try:
            options[key] = float(value) if eq else 1.0
        except ValueError:
            raise ParameterError(f"option {key!r} of dataset {name!r} must be a number") from None
        if not math.isfinite(options[key]):
            raise ParameterError(f"option {key!r} of dataset {name!r} must be finite")
    return base, options


def is_embedded(name: object) -> bool:
    """Whether `name` names an embedded dataset (with or without options)."""
    return isinstance(name, str) and name.partition(":")[0] in EMBEDDED


def _count(options: Dict[str, float], key: str) -> int:
    v = options[key]
    if v != int(v) or v < (0 if key in ("seed", "permute") else 1):
        what = "a non-negative" if key in ("seed", "permute") else "a positive"
        raise ParameterError(f"dataset option {key!r} must be {what} integer, got {v}")
    return int(v)


def _shift_inputs(
    x_parts: Sequence[np.ndarray], options: Dict[str, float]
) -> List[np.ndarray]:
    """The input shifts of [`parse_embedded`][etfcore.training.datasets.parse_embedded], the
    same map applied to every split; its parameters (the maximum of `invert`, the scale of
    `noise`) come from the training split (`x_parts[0]`) alone."""
    out = [np.array(x, dtype=np.float32) for x in x_parts]
    if options["permute"] >= 0:
        perm = np.random.default_rng(_count(options, "permute")).permutation(out[0].shape[1])
        out = [x[:, perm] for x in out]
    if options["invert"]:
        top = float(out[0].max())
        out = [top - x for x in out]
    if options["noise"] > 0:
        sigma = options["noise"] * float(out[0].std())
        rng = np.random.default_rng(0x5EED)
        out = [x + (sigma * rng.standard_normal(x.shape)).astype(np.float32) for x in out]
    return out


def embedded_arrays(
    name: str, *, split_seed: int = SPLIT_SEED, test_fraction: float = 0.3
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The arrays of an embedded dataset, fresh on every call.

    `mnist1d` is the package's generation (`n` signals of length 40, default 5000, its
    generator seed `seed`, default 42, its own 80/20 split). `hier` is
    [`etfcore.data.hierarchical_mixture`][etfcore.data.hierarchical_mixture] with
    `coarse × fine` fine classes (labels are the fine classes; the coarse class of label `k` is
    `k // fine`) and `n` samples per class.

    Parameters
    ----------
    name
        The dataset, possibly with options
        ([`parse_embedded`][etfcore.training.datasets.parse_embedded]).
    split_seed
        Seeds the permutation that splits `digits`, `gmm` and `hier` (fixed by default,
        whatever the run's seed).
    test_fraction
        The held-out fraction of `digits`, `gmm` and `hier`.

    Returns
    -------
    tuple of numpy.ndarray
        `(x_train, y_train, x_test, y_test)`, inputs float32 and labels int64.

    Examples
    --------
    >>> xtr, ytr, xte, yte = embedded_arrays("digits")
    >>> xtr.shape, xte.shape, xtr.dtype.name, ytr.dtype.name
    ((1258, 64), (539, 64), 'float32', 'int64')
    >>> embedded_arrays("hier:coarse=2,fine=3,n=10")[0].shape
    (42, 64)
    """
    base, options = parse_embedded(name)
    if base == "mnist1d":  # the cache holds read-only arrays: hand out copies
        xtr, ytr, xte, yte = _mnist1d(_count(options, "seed"), _count(options, "n"))
        xtr, xte = _shift_inputs([xtr, xte], options)
        return xtr, ytr.copy(), xte, yte.copy()
    if base == "digits":
        x, y = data.load_digits()
    elif base == "gmm":
        x, y = data.gaussian_mixture(10, 32, 200, seed=1234, mean_scale=2.0)
    else:
        x, y, _ = data.hierarchical_mixture(
            _count(options, "coarse"), _count(options, "fine"), _count(options, "dim"),
            _count(options, "n"), seed=_count(options, "seed"),
            coarse_scale=options["coarse_scale"], fine_scale=options["fine_scale"],
            within_scale=options["within_scale"],
        )
    y = y.astype(np.int64)
    tr, te = random_split(len(y), test_fraction, seed=split_seed)
    xtr, xte = _shift_inputs([x[tr], x[te]], options)
    return xtr, y[tr], xte, y[te]


def tensor_dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    """A `TensorDataset` of inputs `x` (as float32) and labels `y` (as int64)."""
    return TensorDataset(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
    )


def embedded(
    name: str, *, seed: int, imbalance_ratio: float = 1.0, test_fraction: float = 0.3
) -> Dict[str, object]:
    """Train/test `TensorDataset`s of an embedded dataset through
    [`plan_splits`][etfcore.splits.plan_splits].

    Parameters
    ----------
    name
        The dataset, possibly with options
        ([`parse_embedded`][etfcore.training.datasets.parse_embedded]).
    seed
        Seeds the long-tail subsampling.
    imbalance_ratio
        The training split is long-tail subsampled when below 1; the held-out split, drawn
        with the fixed `SPLIT_SEED`, stays as it is.
    test_fraction
        The held-out fraction, as in
        [`embedded_arrays`][etfcore.training.datasets.embedded_arrays].

    Returns
    -------
    dict
        `train` and `test` datasets, `num_classes`, `input_dim` and `train_counts`.

    Examples
    --------
    >>> d = embedded("digits", seed=0, imbalance_ratio=0.1)
    >>> d["num_classes"], d["input_dim"], d["train_counts"].tolist()[::3], len(d["test"])
    (10, 64, [115, 53, 24, 11], 539)
    """
    xtr, ytr, xte, yte = embedded_arrays(name, test_fraction=test_fraction)
    plan = plan_splits(ytr, yte, imbalance_ratio=imbalance_ratio, seed=seed)
    return {
        "train": subset(tensor_dataset(xtr, ytr), plan.train_idx, plan.train_labels),
        "test": subset(tensor_dataset(xte, yte), plan.test_idx, plan.test_labels),
        "num_classes": plan.num_classes,
        "input_dim": int(xtr.shape[1]),
        "train_counts": plan.train_counts,
    }


def image_datasets(
    name: str,
    root: str,
    *,
    seed: int,
    imbalance_ratio: float = 1.0,
    download: bool = False,
    image_size: int = 32,
) -> Dict[str, object]:
    """Train/test splits of an image dataset through
    [`plan_splits`][etfcore.splits.plan_splits].

    Parameters
    ----------
    name
        The dataset, as in
        [`torchvision_dataset`][etfcore.training.images.torchvision_dataset].
    root
        The `data_root` the files live in.
    seed
        Seeds the long-tail subsampling.
    imbalance_ratio
        The training split is long-tail subsampled when below 1.
    download
        Let torchvision fetch the datasets it can.
    image_size
        The side of the images of
        [`image_transforms`][etfcore.training.images.image_transforms].

    Returns
    -------
    dict
        `train` and `test` datasets, `num_classes`, `input_shape` and `train_counts`.
    """
    train = torchvision_dataset(
        name, root, train=True, download=download,
        transform=image_transforms(image_size, train=True),
    )
    test = torchvision_dataset(
        name, root, train=False, download=download,
        transform=image_transforms(image_size, train=False),
    )
    plan = plan_splits(
        dataset_labels(train), dataset_labels(test), imbalance_ratio=imbalance_ratio, seed=seed
    )
    return {
        "train": subset(train, plan.train_idx, plan.train_labels),
        "test": subset(test, plan.test_idx, plan.test_labels),
        "num_classes": plan.num_classes,
        "input_shape": (3, image_size, image_size),
        "train_counts": plan.train_counts,
    }
