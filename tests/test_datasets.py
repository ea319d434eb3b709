"""Dataset loaders on tiny files written in each dataset's own format (no download), the index
arithmetic (long tail, stratified validation split, label maps) against independent counts, and
ClassificationDataModule (only the tests that use it need lightning)."""

import json
import pickle
import types
import urllib.error
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
Image = pytest.importorskip("PIL.Image")
scipy_io = pytest.importorskip("scipy.io")
D = pytest.importorskip("etfcore.training.datasets")

import etfcore as ec  # noqa: E402

tvd = torchvision.datasets


@pytest.fixture
def DM():
    """``ClassificationDataModule``, or a skip where lightning is not installed."""
    pytest.importorskip("lightning")
    from etfcore.training.datamodule import ClassificationDataModule

    return ClassificationDataModule


@pytest.fixture
def no_md5(monkeypatch):
    # The tiny files are in the real formats but not the real bytes: skip the MD5 integrity check.
    for mod in (tvd.svhn, tvd.cifar, tvd.stl10, tvd.flowers102):
        monkeypatch.setattr(mod, "check_integrity", lambda *a, **k: True)


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _img(path, rng, size=8, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)


def write_cifar10(root, n=20, seed=0):
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        _dump(d / name, {"data": x, "labels": list(rng.integers(0, 10, n))})
    _dump(d / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})


def write_cifar100(root, n=300, seed=0):
    rng = np.random.default_rng(seed)
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    for name in ("train", "test"):
        fine = rng.permutation(np.arange(n) % 100)
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        coarse = list(np.asarray(D.CIFAR100_COARSE)[fine])
        _dump(d / name, {"data": x, "fine_labels": list(fine), "coarse_labels": coarse})
    meta = {"fine_label_names": [f"f{i}" for i in range(100)]}
    _dump(d / "meta", {**meta, "coarse_label_names": [f"s{i}" for i in range(20)]})


def _labels(name, root, train=True, **kw):
    return D.dataset_labels(D.torchvision_dataset(name, str(root), train=train, **kw))


# ---------------------------------------------------------------- formats
def test_cifar10_format(tmp_path, no_md5):
    write_cifar10(tmp_path)
    ds = D.torchvision_dataset("cifar10", str(tmp_path), train=True)
    assert len(ds) == 100
    d = tmp_path / "cifar-10-batches-py"
    raw = [_load(d / f"data_batch_{i}") for i in (1, 2)]
    np.testing.assert_array_equal(D.dataset_labels(ds)[:40], raw[0]["labels"] + raw[1]["labels"])


def _load(path):
    with open(path, "rb") as f:
        return pickle.load(f)


def test_cifar100_fine_and_coarse(tmp_path, no_md5):
    write_cifar100(tmp_path)
    raw = _load(tmp_path / "cifar-100-python" / "train")
    np.testing.assert_array_equal(_labels("cifar100", tmp_path), raw["fine_labels"])
    coarse = D.torchvision_dataset("cifar100-coarse", str(tmp_path), train=True)
    np.testing.assert_array_equal(D.dataset_labels(coarse), raw["coarse_labels"])
    assert coarse[3][1] == raw["coarse_labels"][3]
    np.testing.assert_array_equal(D.coarse_labels(raw["fine_labels"]), raw["coarse_labels"])
    # Picklable, as DataLoader workers started by spawn (macOS, Windows, CUDA) need.
    again = pickle.loads(pickle.dumps(coarse))
    assert [again[i][1] for i in range(5)] == raw["coarse_labels"][:5]


def test_cifar100_label_map_through_the_datamodule(tmp_path, no_md5, DM):
    write_cifar100(tmp_path)
    # fine → coarse by label_map: 20 classes, 15 samples each.
    dm = DM(
        dataset="cifar100", data_root=str(tmp_path), label_map=D.CIFAR100_COARSE, batch_size=8
    ).prepare()
    assert dm.num_classes == 20 and dm.train_counts.tolist() == [15] * 20
    assert dm.input_shape == (3, 32, 32)
    x, y = next(iter(dm.test_dataloader()))
    traw = _load(tmp_path / "cifar-100-python" / "test")
    np.testing.assert_array_equal(y.numpy(), traw["coarse_labels"][:8])
    assert y.dtype == torch.int64 and x.shape == (8, 3, 32, 32)


def test_svhn_format(tmp_path, no_md5):
    rng = np.random.default_rng(0)
    y = rng.integers(1, 11, (12, 1))  # SVHN stores digit 0 as label 10
    x = rng.integers(0, 256, (32, 32, 3, 12), dtype=np.uint8)
    scipy_io.savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    want = np.where(y.ravel() == 10, 0, y.ravel())
    np.testing.assert_array_equal(_labels("svhn", tmp_path), want)


def test_stl10_format(tmp_path, no_md5):
    rng = np.random.default_rng(0)
    d = tmp_path / "stl10_binary"
    d.mkdir()
    y = rng.integers(1, 11, 6).astype(np.uint8)  # stored 1..10
    rng.integers(0, 256, 6 * 3 * 96 * 96, dtype=np.uint8).tofile(d / "train_X.bin")
    y.tofile(d / "train_y.bin")
    ds = D.torchvision_dataset("stl10", str(tmp_path), train=True)
    np.testing.assert_array_equal(D.dataset_labels(ds), y - 1)
    assert np.asarray(ds[0][0]).shape == (96, 96, 3)


def test_flowers102_format(tmp_path, no_md5):
    rng = np.random.default_rng(0)
    base = tmp_path / "flowers-102"
    labels = rng.integers(1, 103, 9)
    for i in range(1, 10):
        _img(base / "jpg" / f"image_{i:05d}.jpg", rng)
    scipy_io.savemat(base / "imagelabels.mat", {"labels": labels[None, :]})
    sets = {"trnid": [[1, 4, 7]], "valid": [[2, 5]], "tstid": [[3, 6, 8, 9]]}
    sets = {k: np.array(v) for k, v in sets.items()}
    scipy_io.savemat(base / "setid.mat", sets)
    np.testing.assert_array_equal(_labels("flowers102", tmp_path), labels[[0, 3, 6]] - 1)
    np.testing.assert_array_equal(_labels("flowers102", tmp_path, False), labels[[2, 5, 7, 8]] - 1)


def test_pets_format(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "oxford-iiit-pet"
    rows = {"trainval": [("Abyssinian_1", 1), ("beagle_2", 2)], "test": [("beagle_3", 2)]}
    (base / "annotations").mkdir(parents=True)
    for split, items in rows.items():
        lines = [f"{n} {c} {1 + (c > 1)} 1" for n, c in items]
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        for n, _ in items:
            _img(base / "images" / f"{n}.jpg", rng)
    np.testing.assert_array_equal(_labels("pets", tmp_path), [0, 1])
    np.testing.assert_array_equal(_labels("pets", tmp_path, False), [1])


def test_dtd_format(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "dtd" / "dtd"
    files = {"train1": ["banded/a.jpg", "woven/b.jpg", "banded/c.jpg"], "test1": ["woven/d.jpg"]}
    (base / "labels").mkdir(parents=True)
    for split, names in files.items():
        (base / "labels" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for n in names:
            _img(base / "images" / n, rng)
    np.testing.assert_array_equal(_labels("dtd", tmp_path), [0, 1, 0])


def test_fgvc_aircraft_format(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "fgvc-aircraft-2013b" / "data"
    d.mkdir(parents=True)
    (d / "variants.txt").write_text("707-320\nA300B4\nCessna 172\n")
    rows = {
        "trainval": [("1000001", "A300B4"), ("1000002", "Cessna 172")],
        "test": [("1000003", "707-320")],
    }
    for split, items in rows.items():
        (d / f"images_variant_{split}.txt").write_text("".join(f"{i} {v}\n" for i, v in items))
        for i, _ in items:
            _img(d / "images" / f"{i}.jpg", rng)
    np.testing.assert_array_equal(_labels("fgvc-aircraft", tmp_path), [1, 2])
    np.testing.assert_array_equal(_labels("fgvc-aircraft", tmp_path, False), [0])


def test_stanford_cars_format(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    dt = [("fname", "O"), ("class", "O")]
    for split, items, mat in (
        ("train", [("00001.jpg", 3), ("00002.jpg", 1)], base / "devkit" / "cars_train_annos.mat"),
        ("test", [("00001.jpg", 2), ("00002.jpg", 3)], base / "cars_test_annos_withlabels.mat"),
    ):
        ann = np.array(items, dtype=dt)
        scipy_io.savemat(mat, {"annotations": ann[None, :]})
        for f, _ in items:
            _img(base / f"cars_{split}" / f, rng)
    names = np.array(["AM General", "Acura", "Audi"], dtype=object)
    scipy_io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": names[None, :]})
    np.testing.assert_array_equal(_labels("stanford-cars", tmp_path), [2, 0])
    np.testing.assert_array_equal(_labels("stanford-cars", tmp_path, False), [1, 2])


def test_food101_format(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "food-101"
    (base / "meta").mkdir(parents=True)
    meta = {
        "train": {"ramen": ["ramen/1", "ramen/2"], "apple_pie": ["apple_pie/3"]},
        "test": {"ramen": ["ramen/4"]},
    }
    for split, m in meta.items():
        (base / "meta" / f"{split}.json").write_text(json.dumps(m))
        for paths in m.values():
            for p in paths:
                _img(base / "images" / f"{p}.jpg", rng)
    ds = D.torchvision_dataset("food101", str(tmp_path), train=True)
    # per sample: the label is the index of the image's folder among the sorted class names
    names = sorted(meta["train"])
    want = [names.index(p.parent.name) for p in ds._image_files]
    assert want == [1, 1, 0]  # torchvision lists the images in the order of meta/train.json
    np.testing.assert_array_equal(D.dataset_labels(ds), want)
    assert [ds[i][1] for i in range(3)] == want


def test_caltech101_has_a_seeded_stratified_split(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "caltech101" / "101_ObjectCategories"
    for cat, n in (("BACKGROUND_Google", 2), ("accordion", 10), ("airplanes", 5)):
        for i in range(1, n + 1):
            _img(base / cat / f"image_{i:04d}.jpg", rng, mode="L" if i == 1 else "RGB")
    tr = _labels("caltech101", tmp_path, split_seed=3)
    te = _labels("caltech101", tmp_path, False, split_seed=3)
    assert np.bincount(tr).tolist() == [8, 4] and np.bincount(te).tolist() == [2, 1]


def test_caltech101_held_out_split_does_not_follow_the_run_seed(tmp_path, DM):
    rng = np.random.default_rng(0)
    base = tmp_path / "caltech101" / "101_ObjectCategories"
    for cat, n in (("BACKGROUND_Google", 1), ("accordion", 10), ("airplanes", 5)):
        for i in range(1, n + 1):
            _img(base / cat / f"image_{i:04d}.jpg", rng, mode="L" if i == 1 else "RGB")
    kw = dict(dataset="caltech101", data_root=str(tmp_path), image_size=16)
    a, b = DM(seed=0, **kw).prepare(), DM(seed=7, **kw).prepare()
    np.testing.assert_array_equal(a.test_dataset.indices, b.test_dataset.indices)
    x, _ = a.train_dataset[0]  # grayscale images become RGB
    assert x.shape == (3, 16, 16)


def test_sun397_format(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "SUN397"
    base.mkdir()
    (base / "ClassName.txt").write_text("/a/abbey\n/b/beach\n")
    for cat, n in (("a/abbey", 5), ("b/beach", 10)):
        for i in range(n):
            _img(base / cat / f"sun_{cat[-3:]}{i}.jpg", rng)
    tr, te = _labels("sun397", tmp_path), _labels("sun397", tmp_path, False)
    assert np.bincount(tr).tolist() == [4, 8] and np.bincount(te).tolist() == [1, 2]


def test_cub200_format(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "CUB_200_2011"
    items = [
        (1, "001.Albatross/a.jpg", 1, 1),
        (2, "002.Auklet/b.jpg", 2, 0),
        (3, "002.Auklet/c.jpg", 2, 1),
    ]
    base.mkdir()
    (base / "images.txt").write_text("".join(f"{i} {p}\n" for i, p, _, _ in items))
    (base / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, _, c, _ in items))
    (base / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, _, t in items))
    for _, p, _, _ in items:
        _img(base / "images" / p, rng)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(_labels("cub200", tmp_path), [0, 1])
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]  # files closed
    np.testing.assert_array_equal(_labels("cub200", tmp_path, False), [1])
    ds = D.torchvision_dataset("cub200", str(tmp_path), train=False)
    assert ds[0][0].size == (8, 8) and ds[0][1] == 1


def _imagenet(root, rng):
    wnids = ["n01440764", "n01443537", "n01484850"]
    for split, n in (("train", 4), ("val", 2)):
        for w in wnids:
            for i in range(n):
                _img(root / split / w / f"{w}_{i}.JPEG", rng)
    return wnids


def test_imagenet_folder_and_imagenet_lt_lists(tmp_path):
    rng = np.random.default_rng(0)
    wnids = _imagenet(tmp_path, rng)
    np.testing.assert_array_equal(_labels("imagenet", tmp_path), np.repeat([0, 1, 2], 4))
    np.testing.assert_array_equal(_labels("imagenet", tmp_path, False), np.repeat([0, 1, 2], 2))
    per_class = ((0, 4), (1, 2), (2, 1))
    lt = [(f"train/{wnids[c]}/{wnids[c]}_{i}.JPEG", c) for c, n in per_class for i in range(n)]
    (tmp_path / "ImageNet_LT_train.txt").write_text("".join(f"{p} {c}\n" for p, c in lt))
    test = [(f"val/{w}/{w}_{i}.JPEG", c) for c, w in enumerate(wnids) for i in range(2)]
    (tmp_path / "ImageNet_LT_test.txt").write_text("".join(f"{p} {c}\n" for p, c in test))
    np.testing.assert_array_equal(_labels("imagenet-lt", tmp_path), [0, 0, 0, 0, 1, 1, 2])
    np.testing.assert_array_equal(_labels("imagenet-lt", tmp_path, False), np.repeat([0, 1, 2], 2))
    (tmp_path / "ImageNet_LT_test.txt").write_text("val/x.JPEG\n")
    with pytest.raises(ec.ParameterError, match="ImageNet_LT_test.txt:1"):
        D.torchvision_dataset("imagenet-lt", str(tmp_path), train=False)


def test_image_folder_long_tail(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 3)):
        for c in range(3):
            for i in range(n):
                _img(tmp_path / split / f"class{c}" / f"{i}.png", rng)
    out = D.image_datasets("folder", str(tmp_path), seed=0, imbalance_ratio=0.25, image_size=16)
    np.testing.assert_array_equal(out["train_counts"], [12, 6, 3])
    x, _ = out["train"][0]
    assert tuple(x.shape) == (3, 16, 16)


@pytest.mark.parametrize("name,held_out", [("folder", "test"), ("imagenet", "val")])
def test_held_out_folder_keeps_the_training_class_indices(tmp_path, name, held_out):
    # train has classes a, b, c; the held-out folder lacks b: its c images are still class 2.
    rng = np.random.default_rng(0)
    for split, names in (("train", "abc"), (held_out, "ac")):
        for c in names:
            for i in range(2):
                _img(tmp_path / split / c / f"{i}.png", rng)
    np.testing.assert_array_equal(_labels(name, tmp_path), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(_labels(name, tmp_path, False), [0, 0, 2, 2])
    test = D.torchvision_dataset(name, str(tmp_path), train=False)
    assert test.classes == ["a", "b", "c"] and test[3][1] == 2
    _img(tmp_path / held_out / "d" / "0.png", rng)  # a class the training folder lacks
    with pytest.raises(ec.ParameterError, match="'d'"):
        D.torchvision_dataset(name, str(tmp_path), train=False)


# ---------------------------------------------------------------- missing files, offline
@pytest.mark.parametrize(
    "name", ["cifar10", "flowers102", "stanford-cars", "cub200", "imagenet-lt", "sun397"]
)
def test_missing_files_name_the_url_root_and_download_flag(tmp_path, name):
    with pytest.raises(D.DatasetNotFoundError) as err:
        D.torchvision_dataset(name, str(tmp_path / "nowhere"), train=True, download=False)
    msg = str(err.value)
    assert D.URLS[name].split()[0] in msg and str(tmp_path / "nowhere") in msg
    assert "download=False" in msg and isinstance(err.value, ec.EtfcoreError)
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_missing_image_folder_names_the_layout_only(tmp_path):
    with pytest.raises(D.DatasetNotFoundError) as err:
        D.torchvision_dataset("folder", str(tmp_path / "nowhere"), train=True, download=True)
    msg = str(err.value)
    assert "data_root/train/<class>/<image>" in msg and "data_root/test/<class>/<image>" in msg
    assert str(tmp_path / "nowhere") in msg and "nothing to download" in msg
    assert "download=" not in msg and "Get it from" not in msg


def test_offline_download_is_a_typed_error(tmp_path, monkeypatch, DM):
    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd.cifar, "download_and_extract_archive", offline)
    dm = DM(dataset="cifar10", data_root=str(tmp_path), download=True)
    with pytest.raises(D.DatasetNotFoundError, match="download=false") as err:
        dm.prepare()
    assert D.URLS["cifar10"] in str(err.value) and str(tmp_path) in str(err.value)


def test_only_prepare_data_downloads(tmp_path, no_md5, monkeypatch, DM):
    # setup() runs on every process: it must never download (prepare_data runs once per node).
    write_cifar10(tmp_path)
    calls, real = [], D.torchvision_dataset

    def spy(*a, **k):
        calls.append(k.get("download"))
        return real(*a, **k)

    monkeypatch.setattr(D, "torchvision_dataset", spy)
    dm = DM(dataset="cifar10", data_root=str(tmp_path), download=True)
    dm.setup("fit")
    assert calls == [False, False]
    calls.clear()
    dm.prepare_data()
    assert calls == [True, True]


# ---------------------------------------------------------------- index arithmetic
def _profile(n_max, rho, k):
    return [int(np.floor(n_max * rho ** (j / (k - 1)) + 1e-9)) for j in range(k)]


def test_long_tail_profile_counts_and_balanced_test_split(DM):
    y = np.repeat(np.arange(10), 50)
    rho = 0.02
    keep = D.long_tail_indices(y, rho, seed=0)
    assert np.bincount(y[keep]).tolist() == _profile(50, rho, 10)
    assert _profile(50, rho, 10) == [50, 32, 20, 13, 8, 5, 3, 2, 1, 1]
    assert not np.array_equal(keep, D.long_tail_indices(y, rho, seed=1))
    np.testing.assert_array_equal(keep, D.long_tail_indices(y, rho, seed=0))
    dm = DM(dataset="gmm", imbalance_ratio=0.1, seed=2).prepare()
    test_counts = np.bincount(D.dataset_labels(dm.test_dataset))
    _, ytr, _, yte = D.embedded_arrays("gmm")
    np.testing.assert_array_equal(test_counts, np.bincount(yte))  # untouched by the long tail
    assert dm.train_counts.tolist() == _profile(np.bincount(ytr).min(), 0.1, 10)


def _identified_pair(labels, seed=0):
    """A (train, test) pair of TensorDatasets whose input is the sample's index (an identity)."""
    y = torch.from_numpy(np.random.default_rng(seed).permutation(np.asarray(labels)))
    x = torch.arange(len(y), dtype=torch.float32)[:, None]
    ds = torch.utils.data.TensorDataset(x, y)
    return ds, ds


def _ids(ds):
    return set(ds.tensors[0][:, 0].long().tolist())


def test_long_tail_takes_the_whole_training_split_then_validation_from_the_kept(DM):
    # CIFAR-10-LT style: 10 classes × 50, ρ = 0.1, 20% validation. The profile's n_max is the
    # full class count (50, not 40); validation takes round(0.2 n_k) of what the long tail kept.
    pair = _identified_pair(np.repeat(np.arange(10), 50))
    n = _profile(50, 0.1, 10)
    dm = DM(dataset=pair, imbalance_ratio=0.1, val_fraction=0.2, seed=4).prepare()
    val = np.bincount(D.dataset_labels(dm.val_dataset), minlength=10)
    want_val = [min(round(0.2 * nk), nk - 1) for nk in n]
    assert val.tolist() == want_val
    assert dm.train_counts.tolist() == [nk - v for nk, v in zip(n, want_val)]
    assert (dm.train_counts + val).tolist() == n
    # train ∪ val is exactly the long-tail subset of the run without validation
    no_val = DM(dataset=pair, imbalance_ratio=0.1, seed=4).prepare()
    assert no_val.train_counts.tolist() == n
    assert not _ids(dm.train_dataset) & _ids(dm.val_dataset)
    assert _ids(dm.train_dataset) | _ids(dm.val_dataset) == _ids(no_val.train_dataset)


def test_validation_split_is_stratified_disjoint_and_seeded(DM):
    kw = dict(dataset="digits", val_fraction=0.2, seed=5)
    dm = DM(**kw).prepare()
    _, ytr, _, _ = D.embedded_arrays("digits")
    full = np.bincount(ytr)
    val = np.bincount(D.dataset_labels(dm.val_dataset), minlength=10)
    np.testing.assert_array_equal(val, np.rint(0.2 * full))
    np.testing.assert_array_equal(dm.train_counts, full - val)
    xs = lambda ds: {tuple(r) for r in ds.tensors[0].numpy().round(6)}  # noqa: E731
    assert not xs(dm.train_dataset) & xs(dm.val_dataset)
    again = DM(**kw).prepare()
    assert torch.equal(again.val_dataset.tensors[0], dm.val_dataset.tensors[0])
    b1, b2 = next(iter(dm.train_dataloader())), next(iter(again.train_dataloader()))
    assert torch.equal(b1[0], b2[0]) and torch.equal(b1[1], b2[1])
    assert dm.val_dataloader() is not None and len(dm.val_dataloader()) > 0
    assert DM(dataset="digits").prepare().val_dataloader() == []


def test_stratified_split_brute_force():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 500)
    kept, held = D.stratified_split(y, 0.3, seed=1)
    assert np.intersect1d(kept, held).size == 0 and kept.size + held.size == 500
    for c in range(7):
        assert (y[held] == c).sum() == round(0.3 * (y == c).sum())


@pytest.mark.parametrize("name", ["digits", "gmm"])
def test_held_out_split_is_the_same_for_every_run_seed(name, DM):
    # Runs with different seeds are evaluated on the same samples, and no run trains on them.
    rows = lambda ds: {tuple(r) for r in ds.tensors[0].numpy()}  # noqa: E731
    a, b = DM(dataset=name, seed=0).prepare(), DM(dataset=name, seed=1).prepare()
    assert torch.equal(a.test_dataset.tensors[0], b.test_dataset.tensors[0])
    test = rows(a.test_dataset)
    assert not test & rows(a.train_dataset) and not test & rows(b.train_dataset)
    other = DM(dataset=name, seed=0, split_seed=1).prepare()  # the split seed, on purpose
    assert rows(other.test_dataset) != test


def _reference_lookup(n, classes, label_map):
    """Original → new label in plain Python: targets numbered in the order `classes` reaches
    them, or ascending when only a label map is given; dropped = -1."""
    target = list(label_map) if label_map is not None else list(range(n))
    kept = list(classes) if classes is not None else [c for c in range(n) if target[c] >= 0]
    if classes is None:
        kept.sort(key=lambda c: target[c])
    number = {}
    for c in kept:
        if target[c] >= 0 and target[c] not in number:
            number[target[c]] = len(number)
    return [number[target[c]] if c in kept and target[c] >= 0 else -1 for c in range(n)]


def test_label_lookup_renumbers_to_consecutive_labels():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 9))
        label_map = rng.integers(-1, 12, n).tolist() if trial % 3 else None
        classes = None
        if trial % 2:
            classes = rng.permutation(n)[: rng.integers(1, n + 1)].tolist()
        want = _reference_lookup(n, classes, label_map)
        if max(want) < 0:
            with pytest.raises(ec.ParameterError):
                D.label_lookup(n, classes, label_map)
            continue
        got = D.label_lookup(n, classes, label_map)
        assert got.tolist() == want, (n, classes, label_map)
        assert sorted(set(got.tolist()) - {-1}) == list(range(max(want) + 1))  # no gap


def test_classes_subset_and_label_map_on_a_user_dataset_pair(DM):
    x = torch.randn(60, 3)
    y = torch.arange(60) % 6
    pair = (torch.utils.data.TensorDataset(x, y), torch.utils.data.TensorDataset(x[:12], y[:12]))
    dm = DM(dataset=pair, classes=[4, 1], batch_size=100).prepare()
    assert dm.num_classes == 2 and dm.train_counts.tolist() == [10, 10]
    xb, yb = next(iter(dm.test_dataloader()))
    orig = y[:12][(y[:12] == 4) | (y[:12] == 1)]
    np.testing.assert_array_equal(yb.numpy(), np.where(orig.numpy() == 4, 0, 1))
    torch.testing.assert_close(xb, x[:12][(y[:12] == 4) | (y[:12] == 1)])
    coarse = DM(dataset=pair, label_map=[0, 0, 1, 1, 2, -1]).prepare()
    assert coarse.num_classes == 3 and coarse.train_counts.tolist() == [20, 20, 10]
    # a label map with gaps: targets 0, 4, 9 become 0, 1, 2 (no empty classes)
    gaps = DM(dataset=pair, label_map=[0, 0, 4, 4, 9, -1]).prepare()
    assert gaps.num_classes == 3 and gaps.train_counts.tolist() == [20, 20, 10]
    # classes and a label map together: 4 → 2, 1 → 0, 5 → 2, numbered as classes reaches them
    both = DM(dataset=pair, classes=[4, 1, 5], label_map=[0, 0, 1, 1, 2, 2]).prepare()
    assert both.num_classes == 2 and both.train_counts.tolist() == [20, 10]
    want = {4: 0, 5: 0, 1: 1}
    yt = y[:12].numpy()
    sel = np.isin(yt, [4, 1, 5])
    np.testing.assert_array_equal(
        D.dataset_labels(both.test_dataset), [want[int(c)] for c in yt[sel]]
    )
    with pytest.raises(ec.LabelError):
        DM(dataset=pair, classes=[6]).prepare()
    with pytest.raises(ec.ParameterError):
        DM(dataset=pair, label_map=[0, 1]).prepare()


def test_mnist1d_is_generated_locally_and_leaves_global_rngs_alone(monkeypatch, DM):
    mnist1d_data = pytest.importorskip("mnist1d.data")

    def no_network(*a, **k):
        raise AssertionError("MNIST-1D must not touch the network")

    monkeypatch.setattr(mnist1d_data.requests, "get", no_network)
    D._mnist1d.cache_clear()
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    dm = DM(dataset="mnist1d", batch_size=32).prepare()
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    assert dm.input_shape == (40,) and dm.num_classes == 10
    assert len(dm.train_dataset) == 4000 and len(dm.test_dataset) == 1000
    args = mnist1d_data.get_dataset_args()
    ref = mnist1d_data.make_dataset(args)  # the package's own generation, seed 42
    np.testing.assert_allclose(dm.train_dataset.tensors[0].numpy(), ref["x"], rtol=1e-6)
    np.testing.assert_array_equal(dm.train_dataset.tensors[1].numpy(), ref["y"])
    # the cached generation is never handed out: changing one caller's arrays changes no other
    first = D.embedded_arrays("mnist1d")
    first[0][:] = 0.0
    first[1][:] = -1
    second = D.embedded_arrays("mnist1d")
    np.testing.assert_allclose(second[0], ref["x"], rtol=1e-6)
    np.testing.assert_array_equal(second[1], ref["y"])


def test_embedded_helper_goes_through_the_datamodule_pipeline(DM):
    d = D.embedded("gmm", seed=3, imbalance_ratio=0.2)
    dm = DM(dataset="gmm", seed=3, imbalance_ratio=0.2).prepare()
    assert torch.equal(d["train"].tensors[0], dm.train_dataset.tensors[0])
    assert torch.equal(d["test"].tensors[1], dm.test_dataset.tensors[1])
    np.testing.assert_array_equal(d["train_counts"], dm.train_counts)


def test_datamodule_rejects_bad_arguments(DM):
    for kw in ({"dataset": "nope"}, {"imbalance_ratio": 0.0}, {"val_fraction": 1.0}):
        with pytest.raises(ec.ParameterError):
            DM(**kw)
    with pytest.raises(ec.ParameterError, match="setup"):
        DM().train_dataloader()


# ---------------------------------------------------------------- loaders, samplers, Lightning
def _tiny_module(record=None):
    import lightning

    import etfcore.nn as enn

    class Tiny(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, self.head = enn.MLP(64, 16), enn.FixedETFHead(10, 16)
            self.loss, self.val_batches = enn.CrossEntropy(), 0

        def training_step(self, batch, _):
            x, y = batch
            if record is not None:
                record.append((self.current_epoch, y.clone()))
            return self.loss(self.head(self.net(x)), y)

        def validation_step(self, batch, _):
            self.val_batches += 1

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Tiny()


def _fit(model, dm, epochs):
    import lightning

    trainer = lightning.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    return trainer


def test_datamodule_drives_a_lightning_trainer_with_and_without_validation(DM):
    for fraction, batches in ((0.0, 0), (0.1, 2)):
        dm = DM(dataset="digits", val_fraction=fraction, batch_size=64)
        model = _tiny_module()
        trainer = _fit(model, dm, 1)
        assert model.val_batches == batches and trainer.global_step == len(dm.train_dataloader())


def test_lightning_calls_set_epoch_on_the_sampler(DM):
    dm = DM(dataset="digits", batch_size=500, seed=9)
    record = []
    _fit(_tiny_module(record), dm, 2)
    assert [e for e, _ in record] == [0, 0, 1, 1]  # 1258 samples: 2 full batches per epoch
    labels = dm.train_dataset.tensors[1]
    sampler = dm.train_dataloader().sampler
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        got = torch.cat([y for e, y in record if e == epoch])
        assert torch.equal(got, labels[order[:1000]])
    assert not torch.equal(record[0][1], record[2][1])


def test_training_order_depends_only_on_seed_and_epoch(DM):
    dm = DM(dataset="digits", batch_size=1000).prepare()
    first = dm.train_dataloader()
    orders = []
    for epoch in range(3):
        first.sampler.set_epoch(epoch)
        orders.append(next(iter(first))[1])
    assert not torch.equal(orders[0], orders[1])
    resumed = dm.train_dataloader()  # a fresh loader, as after a resume at epoch 2
    resumed.sampler.set_epoch(2)
    assert torch.equal(next(iter(resumed))[1], orders[2])
    # a loader asked for by a trainer resumed at epoch 2 starts there before any set_epoch
    dm.trainer = types.SimpleNamespace(world_size=1, global_rank=0, current_epoch=2)
    assert torch.equal(next(iter(dm.train_dataloader()))[1], orders[2])


def test_distributed_shards_partition_the_epoch_and_follow_seed_and_epoch(DM):
    from torch.utils.data import DistributedSampler

    from etfcore.training.datamodule import SeededDistributedSampler

    data = list(range(101))

    def shards(seed, epoch):
        out = []
        for rank in range(2):
            s = SeededDistributedSampler(data, num_replicas=2, rank=rank, seed=seed, drop_last=True)
            s.set_epoch(epoch)
            out.append(list(s))
        return out

    a, b = shards(3, 0)
    assert len(a) == len(b) == 50 and not set(a) & set(b) and len(set(a) | set(b)) == 100
    # torch's documented scheme: the permutation of seed + epoch, replica r takes every 2nd
    perm = torch.randperm(101, generator=torch.Generator().manual_seed(3 + 0)).tolist()[:100]
    assert a == perm[0::2] and b == perm[1::2]
    assert shards(3, 0) == [a, b] and shards(3, 1) != [a, b] and shards(4, 0) != [a, b]
    # the datamodule builds it from the attached trainer: rank, world size, seed, current epoch
    dm = DM(dataset="digits", seed=3, batch_size=64).prepare()
    dm.trainer = types.SimpleNamespace(world_size=2, global_rank=1, current_epoch=2)
    loader = dm.train_dataloader()
    s = loader.sampler
    assert isinstance(s, DistributedSampler) and (s.num_replicas, s.rank) == (2, 1)
    assert (s.seed, s.epoch, s.shuffle) == (3, 2, True)
    assert len(loader) == len(dm.train_dataset) // 2 // 64
    # Lightning replaces a sampler only when it is not a DistributedSampler already.
    from lightning.pytorch.trainer.connectors.data_connector import _DataConnector

    connector = types.SimpleNamespace(
        use_distributed_sampler=True, is_distributed=True
    )  # what Trainer(strategy="ddp") has
    fake = types.SimpleNamespace(trainer=types.SimpleNamespace(_accelerator_connector=connector))
    assert not _DataConnector._requires_distributed_sampler(fake, loader)


class _RandomInputs(torch.utils.data.Dataset):
    """Inputs drawn from the torch RNG of the process that loads them (as augmentations are)."""

    def __init__(self, n):
        self.targets = np.arange(n) % 2

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return torch.randint(0, 2**30, (1,)).float(), int(self.targets[i])


def test_worker_seeds_follow_seed_and_epoch(DM):
    calls = iter(range(1000))

    def epoch_inputs(seed, epoch):
        pair = (_RandomInputs(8), _RandomInputs(4))
        dm = DM(dataset=pair, seed=seed, batch_size=4, num_workers=1).prepare()
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        torch.manual_seed(next(calls))  # a different global RNG state on every call
        return torch.cat([x for x, _ in loader])

    e0, e1 = epoch_inputs(1, 0), epoch_inputs(1, 1)
    assert torch.equal(epoch_inputs(1, 1), e1) and torch.equal(epoch_inputs(1, 0), e0)
    assert not torch.equal(e0, e1) and not torch.equal(epoch_inputs(2, 0), e0)


class _Shift:
    """A random 'augmentation' drawing from torch's RNG (picklable, for worker processes)."""

    def __call__(self, x):
        return x + torch.rand(1)


def test_augmentations_follow_seed_epoch_and_sample_whatever_the_workers(DM):
    x = 10 * torch.arange(12, dtype=torch.float32)[:, None]  # sample i is 10 i (+ a draw < 1)
    y = torch.arange(12) % 3
    pair = (torch.utils.data.TensorDataset(x, y), torch.utils.data.TensorDataset(x, y))

    def augmented(seed, epoch, workers):
        dm = DM(dataset=pair, seed=seed, batch_size=4, num_workers=workers,
                train_transform=_Shift()).prepare()
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        torch.rand(int(torch.randint(1, 9, (1,))))  # move the global RNG on
        xs, _ = zip(*loader)
        xs = torch.cat(xs)[:, 0]
        order = (xs / 10).floor().long()  # the sample each row came from
        assert sorted(order.tolist()) == list(range(12))
        out = torch.empty(12)
        out[order] = xs - 10 * order  # the draw per sample
        return out

    a = augmented(3, 1, 0)
    assert torch.equal(augmented(3, 1, 0), a)
    assert torch.equal(augmented(3, 1, 2), a)  # two worker processes: the same draws
    assert not torch.equal(augmented(3, 2, 0), a) and not torch.equal(augmented(4, 1, 0), a)
    # the process's own RNG is left alone by the seeded transform
    dm = DM(dataset=pair, seed=3, batch_size=4, train_transform=_Shift()).prepare()
    torch.manual_seed(0)
    dm.train_dataset[0]
    after = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), after)


# ------------------------------------------------------------------ embedded names with options
def test_hierarchical_mixture_structure():
    from etfcore.data import hierarchical_mixture

    x, y, coarse_of = hierarchical_mixture(3, 4, 16, 400, seed=5, within_scale=0.1)
    assert x.shape == (4800, 16) and coarse_of.tolist() == [k // 4 for k in range(12)]
    means = np.stack([x[y == k].mean(0) for k in range(12)])
    # fine means within a coarse class are closer to each other than to other coarse classes
    d = np.linalg.norm(means[:, None] - means[None], axis=-1)
    same = coarse_of[:, None] == coarse_of[None]
    off = ~np.eye(12, dtype=bool)
    assert d[same & off].max() < d[~same].min()
    # coarse_scale places coarse centres at that norm; fine offsets at fine_scale
    x2, y2, _ = hierarchical_mixture(2, 1, 8, 2000, seed=1, coarse_scale=5.0, fine_scale=0.0)
    assert np.linalg.norm(x2[y2 == 0].mean(0)) == pytest.approx(5.0, rel=0.05)
    again = hierarchical_mixture(3, 4, 16, 400, seed=5, within_scale=0.1)[0]
    assert np.array_equal(x, again)
    with pytest.raises(ec.ParameterError):
        hierarchical_mixture(3, 4, 16, 10, seed=0, fine_scale=-1.0)


def test_parse_embedded_options_and_errors():
    base, opts = D.parse_embedded("mnist1d:n=6000,noise=0.25")
    assert base == "mnist1d" and opts["n"] == 6000 and opts["noise"] == 0.25
    for bad, match in [
        ("digits:bogus", "unknown option"),
        ("hier:fine=abc", "must be a number"),
        ("cifar7", "unknown embedded"),
        ("hier:fine=inf", "finite"),
    ]:
        with pytest.raises(ec.ParameterError, match=match):
            D.parse_embedded(bad)
    with pytest.raises(ec.ParameterError, match="a positive integer"):
        D.embedded_arrays("hier:fine=2.5")
    assert D.is_embedded("hier:fine=2") and not D.is_embedded("cifar10")


def test_input_shifts_are_the_stated_maps():
    xtr, ytr, xte, yte = D.embedded_arrays("digits")
    inv = D.embedded_arrays("digits:invert")
    top = xtr.max()  # the training split's: no statistic of the test split enters
    np.testing.assert_array_equal(inv[0], top - xtr)
    np.testing.assert_array_equal(inv[1], ytr)
    perm = D.embedded_arrays("digits:permute=3")
    order = np.random.default_rng(3).permutation(64)
    np.testing.assert_array_equal(perm[2], xte[:, order])
    zero = D.embedded_arrays("digits:permute=0")  # seed 0 is a seed like any other
    np.testing.assert_array_equal(zero[0], xtr[:, np.random.default_rng(0).permutation(64)])
    noisy = D.embedded_arrays("digits:noise=0.5")
    resid = np.concatenate([noisy[0] - xtr, noisy[2] - xte])
    sigma = 0.5 * xtr.std()
    assert resid.std() == pytest.approx(sigma, rel=0.02) and abs(resid.mean()) < 0.01
    np.testing.assert_array_equal(noisy[0], D.embedded_arrays("digits:noise=0.5")[0])


def test_hier_through_the_datamodule_with_a_coarse_label_map():
    from etfcore.training.datamodule import ClassificationDataModule

    coarse = [k // 3 for k in range(6)]
    dm = ClassificationDataModule(dataset="hier:coarse=2,fine=3,n=20", label_map=coarse, seed=0)
    dm.setup()
    assert dm.num_classes == 2 and dm.input_shape == (64,)
    assert int(dm.train_counts.sum()) + len(dm.test_dataset) == 120
    with pytest.raises(ec.ParameterError, match="unknown option"):
        ClassificationDataModule(dataset="hier:colour=2")
