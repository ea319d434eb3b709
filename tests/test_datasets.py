"""Real dataset loaders on tiny files written in their formats (no download)."""

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from etfcore.training import CIFAR100_COARSE, TrainConfig, Trainer  # noqa: E402
from etfcore.training import datasets as D  # noqa: E402


@pytest.fixture
def no_md5(monkeypatch):
    # The tiny files are in the real formats but not the real bytes: skip the MD5 integrity check.
    for cls in (torchvision.datasets.CIFAR10, torchvision.datasets.CIFAR100, torchvision.datasets.SVHN):
        monkeypatch.setattr(cls, "_check_integrity", lambda self: True, raising=False)
    for mod in (torchvision.datasets.svhn, torchvision.datasets.cifar):
        monkeypatch.setattr(mod, "check_integrity", lambda *a, **k: True)


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root, n=20, seed=0):
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _dump(d / name, {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))})
    _dump(d / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})


def write_cifar100(root, n=50, seed=0):
    rng = np.random.default_rng(seed)
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    for name in ("train", "test"):
        fine = rng.integers(0, 100, n)
        _dump(d / name, {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": list(fine), "coarse_labels": list(np.asarray(CIFAR100_COARSE)[fine])})
    _dump(d / "meta", {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"s{i}" for i in range(20)]})


def test_cifar10_format_and_training(tmp_path, no_md5):
    write_cifar10(tmp_path)
    ds = D.torchvision_dataset("cifar10", str(tmp_path), train=True, download=False)
    assert len(ds) == 100
    tr = Trainer(TrainConfig(dataset="cifar10", data_root=str(tmp_path), download=False, backbone="cnn", epochs=1, batch_size=16, progress=False))
    hist = tr.fit()
    assert np.isfinite(hist[-1]["train_loss"]) and "test_vci" in hist[-1]


def test_cifar100_coarse_labels(tmp_path, no_md5):
    write_cifar100(tmp_path)
    fine = D.torchvision_dataset("cifar100", str(tmp_path), train=True, download=False)
    coarse = D.torchvision_dataset("cifar100-coarse", str(tmp_path), train=True, download=False)
    with open(tmp_path / "cifar-100-python" / "train", "rb") as f:
        raw = pickle.load(f)
    np.testing.assert_array_equal(D.dataset_labels(fine), raw["fine_labels"])
    np.testing.assert_array_equal(D.dataset_labels(coarse), raw["coarse_labels"])
    assert coarse[3][1] == raw["coarse_labels"][3]
    np.testing.assert_array_equal(D.coarse_labels(raw["fine_labels"]), raw["coarse_labels"])


def test_svhn_format(tmp_path, no_md5):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    y = rng.integers(1, 11, (12, 1))  # SVHN stores digit 0 as label 10
    scipy_io.savemat(tmp_path / "train_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, 12), dtype=np.uint8), "y": y})
    ds = D.torchvision_dataset("svhn", str(tmp_path), train=True, download=False)
    np.testing.assert_array_equal(D.dataset_labels(ds), np.where(y.ravel() == 10, 0, y.ravel()))


def test_image_folder_and_long_tail(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 3)):
        for c in range(3):
            d = tmp_path / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / f"{i}.png")
    out = D.image_datasets("folder", str(tmp_path), seed=0, imbalance_ratio=0.25, download=False, image_size=16)
    np.testing.assert_array_equal(out["train_counts"], [12, 6, 3])
    x, y = out["train"][0]
    assert tuple(x.shape) == (3, 16, 16)


def test_resnet_backbone_with_small_stem():
    from etfcore.nn import resnet

    net = resnet("resnet18", feature_dim=64)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    assert isinstance(net.maxpool, torch.nn.Identity)
