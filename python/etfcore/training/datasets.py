"""Dataset builders: embedded data (no download), the image datasets the fixed-ETF papers pretrain
or transfer on, and the index arithmetic of class subsets, label maps, long tail and stratified
splits. :class:`~etfcore.training.datamodule.ClassificationDataModule` puts them together.

- Embedded: ``digits`` (scikit-learn's 8×8 digits), ``gmm`` (a seeded 10-class Gaussian mixture,
  p = 32), ``mnist1d`` (Greydanus's MNIST-1D, 40-sample 1-D signals, generated locally by the
  ``mnist1d`` package's generator — no download).
- Images (torchvision's own classes where they exist, always constructed with the given
  ``download``): ``cifar10``, ``cifar100``, ``cifar100-coarse`` (20 superclass labels), ``svhn``,
  ``stl10``, ``flowers102``, ``pets``, ``dtd``, ``fgvc-aircraft``, ``stanford-cars``, ``food101``,
  ``caltech101``, ``sun397`` (the last two have no official split: a seeded stratified split),
  ``cub200`` (the ``CUB_200_2011`` folder with its ``images.txt`` / ``train_test_split.txt``),
  ``imagenet`` (``data_root/train/<wnid>/…`` and ``data_root/val/<wnid>/…``), ``imagenet-lt``
  (ImageNet plus the ``ImageNet_LT_{train,test}.txt`` lists of ``path label`` lines) and
  ``folder`` (``data_root/{train,test}/<class>/<image>``).

Missing files raise :class:`DatasetNotFoundError` naming the dataset, the ``data_root``, the
download URL and the ``download`` setting.
"""

from __future__ import annotations

import functools
import os
import random
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from .. import data
from ..errors import ParameterError

# CIFAR-100 fine label → its superclass (the 20 coarse labels), in torchvision's fine-label order.
# fmt: off
CIFAR100_COARSE = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3,
    15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0,
    17, 4, 18, 17, 10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19,
    2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]
# fmt: on

EMBEDDED = ("digits", "gmm", "mnist1d")

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
    "folder": "your own images as data_root/{train,test}/<class>/<image>",
}
URLS["cifar100-coarse"] = URLS["cifar100"]
IMAGE_DATASETS = tuple(URLS)
#: torchvision downloads these itself when ``download=True``.
DOWNLOADABLE = (
    "cifar10", "cifar100", "cifar100-coarse", "svhn", "stl10", "flowers102", "pets", "dtd",
    "fgvc-aircraft", "food101", "caltech101", "sun397",
)  # fmt: skip
TORCHVISION = IMAGE_DATASETS  # the name callers of the previous API use


class DatasetNotFoundError(ParameterError):
    """The files of a dataset are missing under ``data_root`` (or its download failed)."""


# ------------------------------------------------------------------ index arithmetic
def coarse_labels(fine: np.ndarray, mapping: Sequence[int] = CIFAR100_COARSE) -> np.ndarray:
    """Maps fine labels to coarse ones (default: CIFAR-100's 20 superclasses).

    >>> coarse_labels([0, 1, 99]).tolist()
    [4, 1, 13]
    """
    return np.asarray(mapping)[np.asarray(fine)]


def _rank_within_class(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rank ``0..n_c-1`` of every sample within its class (vectorised)."""
    order = np.lexsort((rng.random(labels.size), labels))
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.empty(labels.size, dtype=np.int64)
    rank[order] = np.arange(labels.size) - starts
    return rank


def take_per_class(labels: np.ndarray, counts: np.ndarray, *, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset keeping ``counts[c]`` samples of class ``c``."""
    labels = np.asarray(labels, dtype=np.int64)
    have = np.bincount(labels, minlength=len(counts))
    if (have[: len(counts)] < counts).any() or labels.max(initial=-1) >= len(counts):
        raise ParameterError(f"cannot take {list(counts)} samples per class from {list(have)}")
    rank = _rank_within_class(labels, np.random.default_rng(seed))
    return np.flatnonzero(rank < np.asarray(counts)[labels])


def long_tail_indices(
    labels: np.ndarray, imbalance_ratio: float, *, seed: int, num_classes: Optional[int] = None
) -> np.ndarray:
    """Sorted indices of a long-tail subset: class ``k`` keeps ``⌊n_max · ρ^{k/(K-1)}⌋`` samples
    (CIFAR-LT profile, :func:`etfcore.data.long_tail_counts`), ``n_max`` the smallest class
    count (so every class can supply its share), seeded.

    >>> y = np.repeat(np.arange(3), 100)
    >>> np.bincount(y[long_tail_indices(y, 0.1, seed=0)]).tolist()
    [100, 31, 10]
    """
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    have = np.bincount(labels, minlength=k)
    if (have == 0).any():
        raise ParameterError(f"long-tail subsampling needs every class, got counts {list(have)}")
    counts = data.long_tail_counts(k, int(have.min()), imbalance_ratio)
    return take_per_class(labels, counts, seed=seed)


def stratified_split(
    labels: np.ndarray, fraction: float, *, seed: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split ``(kept, held_out)`` of sorted indices: class ``c`` sends
    ``round(fraction · n_c)`` samples to ``held_out`` (at most ``n_c - 1``; none when ``n_c = 1``).

    >>> kept, held = stratified_split(np.repeat([0, 1], [10, 30]), 0.2, seed=0)
    >>> len(kept), len(held)
    (32, 8)
    """
    if not (0.0 <= fraction < 1.0):
        raise ParameterError(f"a split fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels, dtype=np.int64)
    have = np.bincount(labels)
    held_counts = np.minimum(np.rint(fraction * have).astype(np.int64), np.maximum(have - 1, 0))
    rank = _rank_within_class(labels, np.random.default_rng(seed))
    held = rank < held_counts[labels]
    return np.flatnonzero(~held), np.flatnonzero(held)


def split(n: int, test_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Stratification-free seeded split of ``range(n)`` into sorted (train, test) indices."""
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * (1 - test_fraction)))
    return np.sort(perm[:cut]), np.sort(perm[cut:])


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
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return f32(d["x"]), d["y"].astype(np.int64), f32(d["x_test"]), d["y_test"].astype(np.int64)


def embedded_arrays(
    name: str, *, seed: int = 0, test_fraction: float = 0.3
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` of an embedded dataset, float32 and int64.

    ``digits`` and ``gmm`` are split ``1 - test_fraction`` / ``test_fraction`` by a seeded
    permutation (seed ``1000 + seed``); ``mnist1d`` is the package's default generation (5000
    signals of length 40, its generator seed 42, its own 4000/1000 split) whatever ``seed``.

    >>> xtr, ytr, xte, yte = embedded_arrays("digits", seed=0)
    >>> xtr.shape, xte.shape, xtr.dtype.name, ytr.dtype.name
    ((1258, 64), (539, 64), 'float32', 'int64')
    """
    if name == "mnist1d":
        return _mnist1d(42, 5000)
    if name == "digits":
        x, y = data.load_digits()
    elif name == "gmm":
        x, y = data.gaussian_mixture(10, 32, 200, seed=1234, mean_scale=2.0)
    else:
        raise ParameterError(f"unknown embedded dataset {name!r}; use one of {EMBEDDED}")
    x, y = x.astype(np.float32), y.astype(np.int64)
    tr, te = split(len(y), test_fraction, seed=1000 + seed)
    return x[tr], y[tr], x[te], y[te]


def tensor_dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    """A ``TensorDataset`` of float32 inputs and int64 labels."""
    return TensorDataset(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
    )


def embedded(
    name: str, *, seed: int, imbalance_ratio: float = 1.0, test_fraction: float = 0.3
) -> Dict[str, object]:
    """Train/test ``TensorDataset``s of an embedded dataset, the training split long-tail
    subsampled when ``imbalance_ratio < 1`` (the held-out split stays as it is)."""
    xtr, ytr, xte, yte = embedded_arrays(name, seed=seed, test_fraction=test_fraction)
    k = int(max(ytr.max(), yte.max())) + 1
    if imbalance_ratio < 1.0:
        keep = long_tail_indices(ytr, imbalance_ratio, seed=seed, num_classes=k)
        xtr, ytr = xtr[keep], ytr[keep]
    return {
        "train": tensor_dataset(xtr, ytr),
        "test": tensor_dataset(xte, yte),
        "num_classes": k,
        "input_dim": int(xtr.shape[1]),
        "train_counts": np.bincount(ytr, minlength=k),
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
        read = lambda name: dict(  # noqa: E731
            line.split() for line in open(os.path.join(base, name)) if line.strip()
        )
        paths, labels, is_train = (
            read("images.txt"), read("image_class_labels.txt"), read("train_test_split.txt")
        )
        ids = sorted((i for i in paths if (is_train[i] == "1") == train), key=int)
        self.root, self.transform = os.path.join(base, "images"), transform
        self.samples = [paths[i] for i in ids]
        self.targets = np.asarray([int(labels[i]) - 1 for i in ids], dtype=np.int64)


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
    tr, te = stratified_split(dataset_labels(ds), test_fraction, seed=seed)
    return torch.utils.data.Subset(ds, (tr if train else te).tolist())


def _torchvision_builders(root: str, train: bool, download: bool, transform, seed: int):
    import torchvision.datasets as tvd

    sp = "train" if train else "test"
    kw = dict(transform=transform)

    def coarse(t):
        return CIFAR100_COARSE[t]

    def imagenet_lt():
        name = "ImageNet_LT_train.txt" if train else "ImageNet_LT_test.txt"
        return ImageListDataset(root, os.path.join(root, name), transform)

    def unsplit(make):
        return lambda: _split_unsplit(make(), train=train, seed=seed, test_fraction=0.2)

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
        "imagenet": lambda: tvd.ImageFolder(os.path.join(root, "train" if train else "val"), **kw),
        "imagenet-lt": imagenet_lt,
        "folder": lambda: tvd.ImageFolder(os.path.join(root, sp), **kw),
    }


def torchvision_dataset(
    name: str,
    root: str,
    *,
    train: bool,
    download: bool = False,
    transform=None,
    seed: int = 0,
) -> Dataset:
    """The training or held-out split of an image dataset (names in the module docstring),
    through torchvision's classes where they exist. ``download=True`` lets torchvision fetch the
    datasets it can (:data:`DOWNLOADABLE`). ``caltech101`` and ``sun397`` come whole: their
    held-out split is a seeded stratified 20% (``seed``). Missing files or a failed download raise
    :class:`DatasetNotFoundError` with the URL, ``data_root`` and ``download`` setting."""
    if name not in URLS:
        raise ParameterError(f"unknown dataset {name!r}; known: {', '.join(sorted(URLS))}")
    try:
        import torchvision  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("image datasets need torchvision: pip install torchvision") from e
    make = _torchvision_builders(str(root), train, bool(download), transform, seed)[name]
    try:
        return make()
    except (RuntimeError, OSError, ValueError) as e:
        if isinstance(e, ParameterError):
            raise
        raise _not_found(name, root, download, e) from None


def _not_found(name: str, root, download: bool, cause: BaseException) -> DatasetNotFoundError:
    reason = f"{type(cause).__name__}: {cause}".strip()
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
    """Train/test splits of an image dataset with :func:`image_transforms`, the training split
    long-tail subsampled when ``imbalance_ratio < 1``."""
    train = torchvision_dataset(
        name, root, train=True, download=download, seed=seed,
        transform=image_transforms(image_size, train=True),
    )  # fmt: skip
    test = torchvision_dataset(
        name, root, train=False, download=download, seed=seed,
        transform=image_transforms(image_size, train=False),
    )  # fmt: skip
    y = dataset_labels(train)
    k = int(max(y.max(), dataset_labels(test).max())) + 1
    if imbalance_ratio < 1.0:
        keep = long_tail_indices(y, imbalance_ratio, seed=seed, num_classes=k)
        train = torch.utils.data.Subset(train, keep.tolist())
        y = y[keep]
    return {
        "train": train,
        "test": test,
        "num_classes": k,
        "input_shape": (3, image_size, image_size),
        "train_counts": np.bincount(y, minlength=k),
    }


def dataset_counts(ds: Dataset, num_classes: Optional[int] = None) -> np.ndarray:
    """Per-class sample counts of a dataset."""
    labels = dataset_labels(ds)
    return np.bincount(labels, minlength=num_classes or int(labels.max()) + 1)
