"""Image datasets: the file formats torchvision lacks, the usual transforms, and one builder for
every image dataset the fixed-ETF papers pretrain or transfer on (torchvision's own classes where
they exist, always constructed with the given `download`):

`cifar10`, `cifar100`, `cifar100-coarse` (20 superclass labels), `svhn`, `stl10`,
`flowers102`, `pets`, `dtd`, `fgvc-aircraft`, `stanford-cars`, `food101`,
`caltech101`, `sun397` (the last two have no official split: a stratified split seeded by
`split_seed`, fixed by default), `cub200` (the `CUB_200_2011` folder with its
`images.txt` / `train_test_split.txt`), `imagenet` (`data_root/train/<wnid>/…` and
`data_root/val/<wnid>/…`), `imagenet-lt` (ImageNet plus the `ImageNet_LT_{train,test}.txt`
lists of `path label` lines) and `folder` (`data_root/{train,test}/<class>/<image>`). For
`imagenet` and `folder` the class indices come from the training folder's sorted sub-folders
and the held-out split reuses them (a class missing from it keeps its index; a class only there
is an error).

Missing files raise [`DatasetNotFoundError`][etfcore.training.images.DatasetNotFoundError]
naming the dataset, the `data_root`, the download URL and the `download` setting. Every name here
is also importable from [`etfcore.training.datasets`][etfcore.training.datasets].

Examples
--------
>>> sorted(DOWNLOADABLE)[:3], "cub200" in URLS
(['caltech101', 'cifar10', 'cifar100'], True)
"""

from __future__ import annotations

import functools
import operator
import os
from typing import Callable, Dict, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from ..errors import ParameterError, require
from ..splits import SPLIT_SEED, stratified_holdout

CIFAR100_COARSE = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3,
    15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0,
    17, 4, 18, 17, 10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19,
    2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]
"""CIFAR-100 fine label → its superclass (the 20 coarse labels), in torchvision's fine-label
order."""

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
"""Where each image dataset comes from (shown when its files are missing)."""
URLS["cifar100-coarse"] = URLS["cifar100"]
IMAGE_DATASETS = tuple(URLS)
DOWNLOADABLE = (
    "cifar10", "cifar100", "cifar100-coarse", "svhn", "stl10", "flowers102", "pets", "dtd",
    "fgvc-aircraft", "food101", "caltech101", "sun397",
)
"""torchvision downloads these itself when `download=True`."""


class DatasetNotFoundError(ParameterError):
    """The files of a dataset are missing under `data_root` (or its download failed)."""


# ------------------------------------------------------------------ file formats torchvision lacks
def _pil_loader(path: str):
    from PIL import Image

    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


class ImageListDataset(Dataset):
    """Images listed in a text file of `relative/path label` lines (the ImageNet-LT format).

    Example line: `train/n01440764/n01440764_190.JPEG 0`.

    Parameters
    ----------
    root
        The folder the paths are relative to.
    list_file
        The text file.
    transform
        Applied to each image (a PIL image, made RGB).

    Attributes
    ----------
    samples : list of str
        The relative paths.
    targets : numpy.ndarray
        The int64 labels.

    Raises
    ------
    ParameterError
        For a line that is not `path label`, naming the file and line.
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
    """Caltech-UCSD Birds-200-2011 in its distributed layout.

    `root/CUB_200_2011/` with `images.txt` (`id path`), `image_class_labels.txt` (`id class`,
    1-based) and `train_test_split.txt` (`id is_train`); images under `images/`.

    Parameters
    ----------
    root
        The folder holding `CUB_200_2011/`.
    train
        The training split (else the test split).
    transform
        Applied to each image.
    """

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
    """Images under `root/<class>/` (torchvision's image extensions) with given class indices.

    Parameters
    ----------
    root
        The folder of class sub-folders.
    class_to_idx
        Class name → index: those of the training folder, so that a class missing from a
        held-out folder keeps the others' indices.
    transform
        Applied to each image.

    Attributes
    ----------
    samples : list of tuple
        `(path, label)` pairs.
    targets : numpy.ndarray
        The int64 labels.

    Raises
    ------
    ParameterError
        For a sub-folder not in `class_to_idx`.
    FileNotFoundError
        When there is no image.
    """

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
    """The usual image transforms.

    For `image_size ≤ 64` (CIFAR style) resize, then for training a random crop with padding
    `image_size/8` and a horizontal flip; for larger images (ImageNet style) a random resized
    crop and flip for training, resize to `8/7·image_size` and a centre crop for testing. Every
    image is made RGB and normalised with the ImageNet channel statistics.

    Parameters
    ----------
    image_size
        The side of the square output images.
    train
        The training transform (else the test transform).
    augment
        Random crops and flips in the training transform.
    """
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
    """The training or held-out split of an image dataset, through torchvision's classes where
    they exist.

    Parameters
    ----------
    name
        The dataset (the names in the [module documentation][etfcore.training.images]).
    root
        The `data_root` the files live in.
    train
        The training split (else the held-out split).
    download
        Let torchvision fetch the datasets it can
        ([`DOWNLOADABLE`][etfcore.training.images.DOWNLOADABLE]).
    transform
        Applied to each image.
    split_seed
        `caltech101` and `sun397` come whole: their held-out split is a stratified 20% seeded by
        `split_seed` (fixed by default, so it is the same for every run).

    Raises
    ------
    ParameterError
        For an unknown `name`.
    DatasetNotFoundError
        For missing files or a failed download, with the URL, `data_root` and `download`
        setting.
    """
    if name not in URLS:
        raise ParameterError(f"unknown dataset {name!r}; known: {', '.join(sorted(URLS))}")
    require("torchvision", "train", "image datasets")
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
    """All labels of a dataset as int64.

    They are read from the attribute where torchvision keeps them (so no image is loaded);
    other datasets are iterated once.
    """
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
