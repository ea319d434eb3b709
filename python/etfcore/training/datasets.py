"""Dataset builders: embedded data (no download) and the image datasets the fixed-ETF papers
pretrain or transfer on. :class:`~etfcore.training.datamodule.ClassificationDataModule` puts
them together.

- Embedded: ``digits`` (scikit-learn's 8×8 digits), ``gmm`` (a seeded 10-class Gaussian mixture,
  p = 32), ``mnist1d`` (Greydanus's MNIST-1D, 40-sample 1-D signals, generated locally by the
  ``mnist1d`` package's generator — no download).
- Images (torchvision's own classes where they exist, always constructed with the given
  ``download``): ``cifar10``, ``cifar100``, ``cifar100-coarse`` (20 superclass labels), ``svhn``,
  ``stl10``, ``flowers102``, ``pets``, ``dtd``, ``fgvc-aircraft``, ``stanford-cars``, ``food101``,
  ``caltech101``, ``sun397`` (the last two have no official split: a stratified split seeded by
  ``split_seed``, fixed by default),
  ``cub200`` (the ``CUB_200_2011`` folder with its ``images.txt`` / ``train_test_split.txt``),
  ``imagenet`` (``data_root/train/<wnid>/…`` and ``data_root/val/<wnid>/…``), ``imagenet-lt``
  (ImageNet plus the ``ImageNet_LT_{train,test}.txt`` lists of ``path label`` lines) and
  ``folder`` (``data_root/{train,test}/<class>/<image>``). For ``imagenet`` and ``folder`` the
  class indices come from the training folder's sorted sub-folders and the held-out split reuses
  them (a class missing from it keeps its index; a class only there is an error).

The held-out split never depends on a run's ``seed``: where etfcore draws it (``digits``,
``gmm``, ``caltech101``, ``sun397``) it uses ``split_seed`` (default :data:`SPLIT_SEED`), so runs
with different seeds are evaluated on the same samples and never train on each other's test data.

:func:`etfcore.splits.plan_splits` is the one place where labels are selected and renumbered, the
training split long-tail subsampled and a validation split drawn; the datamodule and
:func:`embedded` / :func:`image_datasets` all go through it. The index arithmetic it uses
(class subsets, label maps, long tail, stratified splits) is :mod:`etfcore.splits`, shared with
the transfer layer; its names stay importable from here.

Missing files raise :class:`DatasetNotFoundError` naming the dataset, the ``data_root``, the
download URL and the ``download`` setting.
"""

from __future__ import annotations

import functools
import math
import operator
import os
import random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from .. import data
from ..errors import ParameterError
from ..splits import SplitPlan as SplitPlan  # re-exported: defined here before the toolkit
from ..splits import label_lookup as label_lookup
from ..splits import long_tail_indices as long_tail_indices
from ..splits import plan_splits, random_split, stratified_holdout
from ..splits import take_per_class as take_per_class

# CIFAR-100 fine label → its superclass (the 20 coarse labels), in torchvision's fine-label order.
CIFAR100_COARSE = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3,
    15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0,
    17, 4, 18, 17, 10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19,
    2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]

EMBEDDED = ("digits", "gmm", "mnist1d", "hier")

#: Seed of the held-out splits etfcore draws itself (fixed: independent of any run's ``seed``).
SPLIT_SEED = 0

#: Where each image dataset comes from (shown when its files are missing).
URLS: Dict[str, str] = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    "svhn": "http://ufldl.stanford.edu/housenumbers/ (train_32x32.mat, test_32x32.mat)",
    "stl10": "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
    "flowers102": "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
    "pets": "https://www.robots.ox.ac.uk/~vgg/data/pets/ (images.tar.gz, annotations.tar.gz)",
    "dtd": "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
    "fgvc-aircraft": "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/"
    "fgvc-aircraft-2013b.tar.gz",
    "stanford-cars": "https://ai.stanford.edu/~jkrause/cars/car_dataset.html (no longer served; "
    "torchvision's layout: stanford_cars/{devkit,cars_train,cars_test,"
    "cars_test_annos_withlabels.mat})",
    "food101": "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",
    "caltech101": "https://data.caltech.edu/records/mzrjq-6wc02",
    "sun397": "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
    "cub200": "https://data.caltech.edu/records/65de6-vp158 (CUB_200_2011.tgz)",
    "imagenet": "https://image-net.org/download.php (ILSVRC2012, as train/<wnid>/ and val/<wnid>/)",
    "imagenet-lt": "https://github.com/zhmiao/OpenLongTailRecognition-OLTR "
    "(ImageNet_LT_train.txt, ImageNet_LT_test.txt) over the ImageNet images",
    "folder": "your own images: data_root/train/<class>/<image> and "
    "data_root/test/<class>/<image>",
}
URLS["cifar100-coarse"] = URLS["cifar100"]
IMAGE_DATASETS = tuple(URLS)
#: torchvision downloads these itself when ``download=True``.
DOWNLOADABLE = (
    "cifar10", "cifar100", "cifar100-coarse", "svhn", "stl10", "flowers102", "pets", "dtd",
    "fgvc-aircraft", "food101", "caltech101", "sun397",
)


class DatasetNotFoundError(ParameterError):
    """The files of a dataset are missing under ``data_root`` (or its download failed)."""


# ------------------------------------------------------------------ index arithmetic
def coarse_labels(fine: np.ndarray, mapping: Sequence[int] = CIFAR100_COARSE) -> np.ndarray:
    """Maps fine labels to coarse ones (default: CIFAR-100's 20 superclasses).

    >>> coarse_labels([0, 1, 99]).tolist()
    [4, 1, 13]
    """
    return np.asarray(mapping)[np.asarray(fine)]


# The index arithmetic lives in etfcore.splits (shared with the transfer layer); these names stay
# importable from here.
def stratified_split(
    labels: np.ndarray, fraction: float, *, seed: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Alias of :func:`etfcore.splits.stratified_holdout` (its name before the toolkit):
    ``(kept, held_out)`` sorted indices, ``min(round(fraction · n_c), n_c - 1)`` of class ``c``
    held out.

    >>> kept, held = stratified_split(np.repeat([0, 1], [10, 30]), 0.2, seed=0)
    >>> len(kept), len(held)
    (32, 8)
    """
    return stratified_holdout(labels, fraction, seed=seed)


def split(n: int, test_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Alias of :func:`etfcore.splits.random_split`: a stratification-free seeded split of
    ``range(n)`` into sorted ``(train, test)`` indices."""
    return random_split(n, test_fraction, seed)


def subset(base: Dataset, idx: np.ndarray, labels: np.ndarray) -> Dataset:
    """``base`` restricted to ``idx`` with labels ``labels`` (tensors indexed once for a
    ``TensorDataset``; a :class:`RelabelledSubset` otherwise)."""
    if isinstance(base, TensorDataset):
        x = base.tensors[0][torch.from_numpy(np.asarray(idx, dtype=np.int64))]
        return TensorDataset(x, torch.from_numpy(np.asarray(labels, dtype=np.int64)))
    return RelabelledSubset(base, idx, labels)


class RelabelledSubset(Dataset):
    """``base[indices[i]]`` with label ``labels[i]`` (int64) and an optional input transform.
    ``targets`` holds the labels (read without loading any input).

    With a ``seed``, the transform's torch random draws (random crops, flips, …) are a function
    of ``(seed, epoch, sample)`` only: each call reseeds torch's CPU generator from them and
    restores its state afterwards (the process's RNG is left as it was), so augmentations do not
    depend on the number of workers, the batch or the process; :meth:`set_epoch` moves to
    another epoch."""

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
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("MNIST-1D needs the mnist1d package: pip install mnist1d") from e
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


#: Options an embedded dataset name takes after a colon, with their defaults (see
#: :func:`parse_embedded`). ``noise``, ``invert`` and ``permute`` shift the inputs of any of them.
EMBEDDED_OPTIONS: Dict[str, Dict[str, float]] = {
    "digits": {},
    "gmm": {},
    "mnist1d": {"n": 5000, "seed": 42},
    "hier": {
        "coarse": 4, "fine": 5, "dim": 64, "n": 100, "seed": 0,
        "coarse_scale": 3.0, "fine_scale": 1.5, "within_scale": 1.0,
    },
}
INPUT_SHIFTS: Dict[str, float] = {"noise": 0.0, "invert": 0.0, "permute": -1.0}


def parse_embedded(name: str) -> Tuple[str, Dict[str, float]]:
    """``"base:key=value,flag,..."`` → ``(base, options)`` with every default filled in.

    Options of the base (:data:`EMBEDDED_OPTIONS`) plus the input shifts every embedded dataset
    takes: ``noise=σ`` (Gaussian noise of ``σ`` times the training inputs' overall standard
    deviation, a fixed seed), ``invert`` (``x → max(x) − x`` with the training inputs' maximum,
    a negative image) and ``permute=s`` (a fixed
    permutation of the input coordinates drawn from seed ``s``). Unknown bases, keys or
    malformed values raise :class:`ParameterError`.

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
    """Whether ``name`` names an embedded dataset (with or without options)."""
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
    """The input shifts of :func:`parse_embedded`, the same map applied to every split; its
    parameters (the maximum of ``invert``, the scale of ``noise``) come from the training split
    (``x_parts[0]``) alone."""
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
    """``(x_train, y_train, x_test, y_test)`` of an embedded dataset, float32 and int64, fresh
    arrays on every call. ``name`` may carry options (:func:`parse_embedded`).

    ``digits``, ``gmm`` and ``hier`` are split ``1 - test_fraction`` / ``test_fraction`` by a
    permutation seeded by ``split_seed`` (fixed by default, whatever the run's seed); ``mnist1d``
    is the package's generation (``n`` signals of length 40, default 5000, its generator seed
    ``seed``, default 42, its own 80/20 split). ``hier`` is
    :func:`etfcore.data.hierarchical_mixture` with ``coarse × fine`` fine classes (labels are the
    fine classes; the coarse class of label ``k`` is ``k // fine``) and ``n`` samples per class.

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
    """A ``TensorDataset`` of float32 inputs and int64 labels."""
    return TensorDataset(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
    )


def embedded(
    name: str, *, seed: int, imbalance_ratio: float = 1.0, test_fraction: float = 0.3
) -> Dict[str, object]:
    """Train/test ``TensorDataset``s of an embedded dataset through
    :func:`~etfcore.splits.plan_splits` (the training split long-tail subsampled when
    ``imbalance_ratio < 1``; the held-out split, drawn with the fixed :data:`SPLIT_SEED`, stays
    as it is).

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


# ------------------------------------------------------------------ file formats torchvision lacks
def _pil_loader(path: str):
    from PIL import Image

    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


class ImageListDataset(Dataset):
    """Images listed in a text file of ``relative/path label`` lines (the ImageNet-LT format),
    paths relative to ``root``. ``targets`` holds the int64 labels.

    Example line: ``train/n01440764/n01440764_190.JPEG 0``.
    """

    def __init__(self, root: str, list_file: str, transform: Optional[Callable] = None) -> None:
        self.root, self.transform = root, transform
        paths, labels = [], []
        with open(list_file) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.rsplit(maxsplit=1)
                if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                    raise ParameterError(f"{list_file}:{number}: want 'path label', got {line!r}")
                paths.append(parts[0])
                labels.append(int(parts[1]))
        self.samples = paths
        self.targets = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        img = _pil_loader(os.path.join(self.root, self.samples[i]))
        return (img if self.transform is None else self.transform(img)), int(self.targets[i])


class CUB200(ImageListDataset):
    """Caltech-UCSD Birds-200-2011 in its distributed layout: ``root/CUB_200_2011/`` with
    ``images.txt`` (``id path``), ``image_class_labels.txt`` (``id class``, 1-based) and
    ``train_test_split.txt`` (``id is_train``); images under ``images/``."""

    def __init__(self, root: str, *, train: bool, transform: Optional[Callable] = None) -> None:
        base = os.path.join(root, "CUB_200_2011")

        def read(name: str) -> Dict[str, str]:
            with open(os.path.join(base, name)) as f:
                return dict(line.split() for line in f if line.strip())

        paths, labels, is_train = (
            read("images.txt"), read("image_class_labels.txt"), read("train_test_split.txt")
        )
        ids = sorted((i for i in paths if (is_train[i] == "1") == train), key=int)
        self.root, self.transform = os.path.join(base, "images"), transform
        self.samples = [paths[i] for i in ids]
        self.targets = np.asarray([int(labels[i]) - 1 for i in ids], dtype=np.int64)


class ClassFolder(Dataset):
    """Images under ``root/<class>/`` (torchvision's image extensions) with the class indices
    ``class_to_idx`` given — those of the training folder, so that a class missing from a
    held-out folder keeps the others' indices. A sub-folder not in ``class_to_idx`` is an error.
    ``samples`` holds ``(path, label)`` pairs, ``targets`` the int64 labels."""

    def __init__(
        self, root: str, class_to_idx: Dict[str, int], transform: Optional[Callable] = None
    ) -> None:
        from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

        found, _ = find_classes(root)
        extra = sorted(set(found) - set(class_to_idx))
        if extra:
            more = " …" if len(extra) > 5 else ""
            raise ParameterError(f"{root} has classes the training folder lacks: {extra[:5]}{more}")
        self.root, self.transform = root, transform
        self.class_to_idx = dict(class_to_idx)
        self.classes = sorted(self.class_to_idx, key=self.class_to_idx.__getitem__)
        self.samples = make_dataset(
            root, self.class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True
        )
        if not self.samples:
            raise FileNotFoundError(f"no images under {root}")
        self.targets = np.asarray([t for _, t in self.samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        img = _pil_loader(self.samples[i][0])
        return (img if self.transform is None else self.transform(img)), int(self.targets[i])


# ------------------------------------------------------------------ image datasets
def _to_rgb(img):
    return img.convert("RGB") if hasattr(img, "convert") else img


def image_transforms(image_size: int, *, train: bool, augment: bool = True):
    """The usual transforms: for ``image_size ≤ 64`` (CIFAR style) resize, then for training a
    random crop with padding ``image_size/8`` and a horizontal flip; for larger images (ImageNet
    style) a random resized crop and flip for training, resize to ``8/7·image_size`` and a centre
    crop for testing. Every image is made RGB and normalised with the ImageNet channel
    statistics."""
    import torchvision.transforms as T

    s = int(image_size)
    norm = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    if s <= 64:
        ops = [T.Lambda(_to_rgb), T.Resize((s, s))]
        if train and augment:
            ops += [T.RandomCrop(s, padding=s // 8), T.RandomHorizontalFlip()]
    elif train and augment:
        ops = [T.Lambda(_to_rgb), T.RandomResizedCrop(s), T.RandomHorizontalFlip()]
    else:
        ops = [T.Lambda(_to_rgb), T.Resize(int(round(s * 8 / 7))), T.CenterCrop(s)]
    return T.Compose(ops + [T.ToTensor(), norm])


def _split_unsplit(ds: Dataset, *, train: bool, seed: int, test_fraction: float) -> Dataset:
    tr, te = stratified_holdout(dataset_labels(ds), test_fraction, seed=seed)
    return torch.utils.data.Subset(ds, (tr if train else te).tolist())


def _image_folder(root: str, train_dir: str, split_dir: str, transform) -> ClassFolder:
    from torchvision.datasets.folder import find_classes

    _, class_to_idx = find_classes(os.path.join(root, train_dir))
    return ClassFolder(os.path.join(root, split_dir), class_to_idx, transform)


def _torchvision_builders(root: str, train: bool, download: bool, transform, split_seed: int):
    import torchvision.datasets as tvd

    sp = "train" if train else "test"
    kw = dict(transform=transform)
    coarse = functools.partial(operator.getitem, CIFAR100_COARSE)  # picklable

    def imagenet_lt():
        name = "ImageNet_LT_train.txt" if train else "ImageNet_LT_test.txt"
        return ImageListDataset(root, os.path.join(root, name), transform)

    def unsplit(make):
        return lambda: _split_unsplit(make(), train=train, seed=split_seed, test_fraction=0.2)

    return {
        "cifar10": lambda: tvd.CIFAR10(root, train=train, download=download, **kw),
        "cifar100": lambda: tvd.CIFAR100(root, train=train, download=download, **kw),
        "cifar100-coarse": lambda: tvd.CIFAR100(
            root, train=train, download=download, target_transform=coarse, **kw
        ),
        "svhn": lambda: tvd.SVHN(root, split=sp, download=download, **kw),
        "stl10": lambda: tvd.STL10(root, split=sp, download=download, **kw),
        "flowers102": lambda: tvd.Flowers102(root, split=sp, download=download, **kw),
        "pets": lambda: tvd.OxfordIIITPet(
            root, split="trainval" if train else "test", download=download, **kw
        ),
        "dtd": lambda: tvd.DTD(root, split=sp, download=download, **kw),
        "fgvc-aircraft": lambda: tvd.FGVCAircraft(
            root, split="trainval" if train else "test", download=download, **kw
        ),
        "stanford-cars": lambda: tvd.StanfordCars(root, split=sp, **kw),
        "food101": lambda: tvd.Food101(root, split=sp, download=download, **kw),
        "caltech101": unsplit(lambda: tvd.Caltech101(root, download=download, **kw)),
        "sun397": unsplit(lambda: tvd.SUN397(root, download=download, **kw)),
        "cub200": lambda: CUB200(root, train=train, **kw),
        "imagenet": lambda: _image_folder(root, "train", "train" if train else "val", transform),
        "imagenet-lt": imagenet_lt,
        "folder": lambda: _image_folder(root, "train", sp, transform),
    }


def torchvision_dataset(
    name: str,
    root: str,
    *,
    train: bool,
    download: bool = False,
    transform=None,
    split_seed: int = SPLIT_SEED,
) -> Dataset:
    """The training or held-out split of an image dataset (names in the module docstring),
    through torchvision's classes where they exist. ``download=True`` lets torchvision fetch the
    datasets it can (:data:`DOWNLOADABLE`). ``caltech101`` and ``sun397`` come whole: their
    held-out split is a stratified 20% seeded by ``split_seed`` (fixed by default, so it is the
    same for every run). Missing files or a failed download raise :class:`DatasetNotFoundError`
    with the URL, ``data_root`` and ``download`` setting."""
    if name not in URLS:
        raise ParameterError(f"unknown dataset {name!r}; known: {', '.join(sorted(URLS))}")
    try:
        import torchvision  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("image datasets need torchvision: pip install torchvision") from e
    make = _torchvision_builders(str(root), train, bool(download), transform, split_seed)[name]
    try:
        return make()
    except (RuntimeError, OSError, ValueError) as e:
        if isinstance(e, ParameterError):
            raise
        raise _not_found(name, root, download, e) from None


def _not_found(name: str, root, download: bool, cause: BaseException) -> DatasetNotFoundError:
    reason = f"{type(cause).__name__}: {cause}".strip()
    if name == "folder":  # the user's own images: only the layout can help
        return DatasetNotFoundError(
            f"dataset 'folder': no images found under data_root={str(root)!r} ({reason}). "
            f"Expected data_root/train/<class>/<image> and data_root/test/<class>/<image>; "
            f"there is nothing to download."
        )
    if download and name in DOWNLOADABLE:
        return DatasetNotFoundError(
            f"dataset {name!r}: downloading from {URLS[name]} into data_root={str(root)!r} failed "
            f"({reason}). On a machine without internet, copy the files there and set "
            f"download=false."
        )
    hint = (
        "or set download=true to fetch it" if name in DOWNLOADABLE else "(no automatic download)"
    )
    return DatasetNotFoundError(
        f"dataset {name!r} not found under data_root={str(root)!r} with download={download} "
        f"({reason}). Get it from {URLS[name]} and unpack it there, {hint}."
    )


def dataset_labels(ds: Dataset) -> np.ndarray:
    """All labels of a dataset as int64, read from the attribute where torchvision keeps them
    (so no image is loaded); other datasets are iterated once."""
    if isinstance(ds, TensorDataset):
        return ds.tensors[1].numpy().astype(np.int64)
    if isinstance(ds, torch.utils.data.Subset):
        return dataset_labels(ds.dataset)[np.asarray(ds.indices, dtype=np.int64)]
    found = None
    for attr in ("targets", "labels", "_labels", "y"):
        if hasattr(ds, attr) and getattr(ds, attr) is not None:
            found = np.asarray(getattr(ds, attr))
            break
    if found is None and hasattr(ds, "_samples"):  # StanfordCars: (path, label) pairs
        found = np.asarray([t for _, t in ds._samples])
    if found is None:
        return np.asarray([int(t) for _, t in ds], dtype=np.int64)
    tt = getattr(ds, "target_transform", None)
    if tt is not None:
        found = np.asarray([tt(int(v)) for v in found])
    return found.astype(np.int64)


def image_datasets(
    name: str,
    root: str,
    *,
    seed: int,
    imbalance_ratio: float = 1.0,
    download: bool = False,
    image_size: int = 32,
) -> Dict[str, object]:
    """Train/test splits of an image dataset with :func:`image_transforms`, through
    :func:`~etfcore.splits.plan_splits` (the training split long-tail subsampled when
    ``imbalance_ratio < 1``)."""
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
