"""Datasets for training (SPEC §10): the embedded digits and Gaussian mixtures as tensors,
long-tail subsampling, coarse→fine label maps, and torchvision datasets when installed."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from .. import data
from ..errors import ParameterError

# CIFAR-100 fine label → its superclass (the 20 coarse labels), in torchvision's fine-label order.
CIFAR100_COARSE = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
    0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
    18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]


def long_tail_indices(labels: np.ndarray, imbalance_ratio: float, *, seed: int) -> np.ndarray:
    """Indices of a long-tail subset: class k keeps ``n_max · ρ^{k/(K-1)}`` samples (CIFAR-LT)."""
    labels = np.asarray(labels)
    k = int(labels.max()) + 1
    n_max = int(np.bincount(labels, minlength=k).min())
    counts = data.long_tail_counts(k, n_max, imbalance_ratio)
    rng = np.random.default_rng(seed)
    keep = [rng.choice(np.flatnonzero(labels == c), size=int(counts[c]), replace=False) for c in range(k)]
    return np.sort(np.concatenate(keep))


def coarse_labels(fine: np.ndarray, mapping: Sequence[int] = CIFAR100_COARSE) -> np.ndarray:
    """Maps fine labels to coarse ones (default: CIFAR-100's 20 superclasses)."""
    return np.asarray(mapping)[np.asarray(fine)]


def split(n: int, test_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Stratification-free seeded split of ``range(n)`` into (train, test) index arrays."""
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * (1 - test_fraction)))
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def embedded(name: str, *, seed: int, imbalance_ratio: float = 1.0, test_fraction: float = 0.3) -> Dict[str, object]:
    """``digits`` (scikit-learn, no download) or ``gmm`` (10-class Gaussian mixture, p = 32) as
    tensor datasets; the training split is long-tail subsampled when ``imbalance_ratio < 1``
    (the held-out split stays balanced)."""
    if name == "digits":
        x, y = data.load_digits()
        x = x.astype(np.float32)
    elif name == "gmm":
        x, y = data.gaussian_mixture(10, 32, 200, seed=1234, mean_scale=2.0, dtype=np.float32)
    else:
        raise ParameterError(f"unknown embedded dataset {name!r}; use 'digits' or 'gmm'")
    tr, te = split(len(y), test_fraction, seed=1000 + seed)
    if imbalance_ratio < 1.0:
        tr = tr[long_tail_indices(y[tr], imbalance_ratio, seed=seed)]
    to_ds = lambda idx: TensorDataset(torch.from_numpy(np.ascontiguousarray(x[idx])), torch.from_numpy(y[idx].astype(np.int64)))  # noqa: E731
    return {
        "train": to_ds(tr),
        "test": to_ds(te),
        "num_classes": int(y.max()) + 1,
        "input_dim": int(x.shape[1]),
        "train_counts": np.bincount(y[tr], minlength=int(y.max()) + 1),
    }


TORCHVISION = ("cifar10", "cifar100", "cifar100-coarse", "stl10", "svhn", "flowers102", "pets", "dtd", "folder")


def torchvision_dataset(name: str, root: str, *, train: bool, download: bool = True, transform=None) -> Dataset:
    """CIFAR-10/100 (``cifar100-coarse``: CIFAR-100 images with the 20 superclass labels), STL-10,
    SVHN, Flowers-102, Oxford Pets, DTD or an image folder (``root/<class>/<image>``) through
    torchvision; downloads on a user's machine when ``download``."""
    try:
        import torchvision.datasets as tvd
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("these datasets need torchvision: pip install torchvision") from e
    split_name = "train" if train else "test"
    coarse = (lambda t: CIFAR100_COARSE[t]) if name == "cifar100-coarse" else None
    table = {
        "cifar10": lambda: tvd.CIFAR10(root, train=train, download=download, transform=transform),
        "cifar100": lambda: tvd.CIFAR100(root, train=train, download=download, transform=transform),
        "cifar100-coarse": lambda: tvd.CIFAR100(root, train=train, download=download, transform=transform, target_transform=coarse),
        "stl10": lambda: tvd.STL10(root, split=split_name, download=download, transform=transform),
        "svhn": lambda: tvd.SVHN(root, split=split_name, download=download, transform=transform),
        "flowers102": lambda: tvd.Flowers102(root, split=split_name, download=download, transform=transform),
        "pets": lambda: tvd.OxfordIIITPet(root, split="trainval" if train else "test", download=download, transform=transform),
        "dtd": lambda: tvd.DTD(root, split=split_name, download=download, transform=transform),
        "folder": lambda: tvd.ImageFolder(f"{root}/{split_name}", transform=transform),
    }
    if name not in table:
        raise ParameterError(f"unknown dataset {name!r}; known: {sorted(table)}")
    return table[name]()


def dataset_labels(ds: Dataset) -> np.ndarray:
    """All labels of a dataset without loading images where torchvision keeps them as a list."""
    if isinstance(ds, TensorDataset):
        return ds.tensors[1].numpy()
    if isinstance(ds, torch.utils.data.Subset):
        return dataset_labels(ds.dataset)[np.asarray(ds.indices)]
    for attr in ("targets", "labels", "_labels"):
        if hasattr(ds, attr):
            t = np.asarray(getattr(ds, attr))
            tt = getattr(ds, "target_transform", None)
            return np.array([tt(int(v)) for v in t]) if tt is not None else t
    return np.array([int(t) for _, t in ds])


def image_datasets(name: str, root: str, *, seed: int, imbalance_ratio: float = 1.0, download: bool = True, image_size: int = 32) -> Dict[str, object]:
    """Train/test splits of a torchvision dataset with the usual transforms (train: random crop with
    padding and horizontal flip; both: resize to ``image_size``, per-channel normalisation), the
    training split long-tail subsampled when ``imbalance_ratio < 1``."""
    import torchvision.transforms as T

    norm = T.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    train_tf = T.Compose([T.Resize((image_size, image_size)), T.RandomCrop(image_size, padding=image_size // 8), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    test_tf = T.Compose([T.Resize((image_size, image_size)), T.ToTensor(), norm])
    train = torchvision_dataset(name, root, train=True, download=download, transform=train_tf)
    test = torchvision_dataset(name, root, train=False, download=download, transform=test_tf)
    y = dataset_labels(train)
    k = int(max(y.max(), dataset_labels(test).max())) + 1
    if imbalance_ratio < 1.0:
        train = torch.utils.data.Subset(train, long_tail_indices(y, imbalance_ratio, seed=seed).tolist())
        y = dataset_labels(train)
    return {"train": train, "test": test, "num_classes": k, "input_shape": (3, image_size, image_size), "train_counts": np.bincount(y, minlength=k)}


def dataset_counts(ds: Dataset, num_classes: Optional[int] = None) -> np.ndarray:
    labels = dataset_labels(ds)
    return np.bincount(labels, minlength=num_classes or int(labels.max()) + 1)
