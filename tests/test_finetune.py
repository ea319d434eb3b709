"""Fine-tuning a pretrained backbone: a tiny MLP pretrained on digits 0-4, fine-tuned on digits
5-9 (and a coarse label map). References in float64 numpy from the frozen pretrained backbone's
features of data selected here, not through the data module."""

import json
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

import etfcore as ec  # noqa: E402
from etfcore.cli import main  # noqa: E402
from etfcore.training import TrainConfig, Trainer, finetune, load_pretrained  # noqa: E402
from etfcore.training.datasets import embedded_arrays  # noqa: E402
from etfcore.training.finetune import config_sha256  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SOURCE = dict(
    classes=[0, 1, 2, 3, 4], epochs=2, head="linear", feature_dim=16, progress=False,
    accelerator="cpu", name="src", track_every=2,
)
TARGET = [5, 6, 7, 8, 9]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    t = Trainer(TrainConfig.from_dict(SOURCE), out_dir=str(out))
    t.fit()
    return t.run_dir


def _backbone_state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _task(lut):
    """Inputs and new labels of the digits split as the target sees it, selected with numpy."""
    xtr, ytr, xte, yte = embedded_arrays("digits")
    out = []
    for x, y in ((xtr, ytr), (xte, yte)):
        keep = lut[y] >= 0
        out += [np.asarray(x[keep], dtype=np.float32), lut[y[keep]]]
    return out


def _features(backbone, x) -> np.ndarray:
    backbone.eval()
    with torch.no_grad():
        return backbone(torch.from_numpy(x)).double().numpy()


def _centred_means(f: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """M̄ = M P / ‖M P‖₂ as a p × K matrix."""
    m = np.stack([f[y == c].mean(0) for c in range(k)], axis=1)
    mp = m @ (np.eye(k) - np.ones((k, k)) / k)
    return mp / np.linalg.norm(mp, 2)


SUBSET = np.array([-1] * 5 + [0, 1, 2, 3, 4])  # digits 5-9 -> 0-4
PARITY = np.array([0, 1] * 5)  # every digit -> even / odd


@pytest.mark.parametrize(
    "target, lut",
    [({"classes": TARGET}, SUBSET), ({"label_map": list(PARITY)}, PARITY)],
    ids=["classes", "label_map"],
)
def test_cm_head_is_the_centred_means_of_frozen_pretrained_features(source_run, target, lut):
    r = finetune(source_run, target, head="cm", train=False)
    backbone, _ = load_pretrained(source_run)
    xtr, ytr, xte, yte = _task(lut)
    k = int(lut.max()) + 1
    mbar = _centred_means(_features(backbone, xtr), ytr, k)
    w = r.module.head.weight.detach().double().numpy()
    assert w.shape == (k, 16)
    np.testing.assert_allclose(w, mbar.T, rtol=1e-5, atol=1e-6)
    # the classifier's accuracy, without any training, from numpy
    pred = (_features(backbone, xte) @ mbar).argmax(1)
    acc = (pred == yte).mean()
    per_class = np.mean([(pred[yte == c] == c).mean() for c in range(k)])
    assert r.scores["test_acc"] == pytest.approx(acc, abs=1e-12)
    assert r.scores["test_mean_class_acc"] == pytest.approx(per_class, abs=1e-12)
    assert not r.trained and r.run_dir is None and r.history == []
    # the backbone used is the pretrained one, untouched
    for k_, v in _backbone_state(backbone).items():
        assert torch.equal(r.module.backbone.state_dict()[k_], v)


def test_wicm_starts_from_centred_means_and_head_only_keeps_the_backbone(source_run, tmp_path):
    backbone, _ = load_pretrained(source_run)
    before = _backbone_state(backbone)
    xtr, ytr, _, _ = _task(SUBSET)
    mbar = _centred_means(_features(backbone, xtr), ytr, 5)
    start = finetune(source_run, {"classes": TARGET}, head="wicm", train=False)
    np.testing.assert_allclose(
        start.module.head.weight.detach().double().numpy(), mbar.T, rtol=1e-5, atol=1e-6
    )
    seen = {}

    class FirstWeights(L.Callback):
        def on_train_start(self, trainer, module):
            seen["w"] = module.head.weight.detach().double().numpy().copy()
            seen["backbone_training"] = module.backbone.training

    r = finetune(
        source_run, {"classes": TARGET, "epochs": 2}, head="wicm", head_only=True,
        out_dir=str(tmp_path), callbacks=[FirstWeights()],
    )
    np.testing.assert_allclose(seen["w"], mbar.T, rtol=1e-5, atol=1e-6)  # training starts at M̄
    assert seen["backbone_training"] is False
    after = r.module.backbone.state_dict()
    assert set(after) == set(before)
    assert any("running_mean" in k for k in before) and any("num_batches" in k for k in before)
    for k, v in before.items():  # every weight and BatchNorm buffer bit for bit
        assert torch.equal(after[k], v), k
    w = r.module.head.weight.detach().double().numpy()
    assert np.abs(w - mbar.T).max() > 1e-3  # the head did train
    assert r.config.freeze_backbone and r.trained and len(r.history) == 2


def test_whole_network_trains_the_backbone_and_records_its_source(source_run, tmp_path):
    backbone, source_cfg = load_pretrained(source_run)
    before = _backbone_state(backbone)
    modes = []

    class Mode(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            modes.append(module.backbone.training)

    r = finetune(
        source_run, {"classes": TARGET, "epochs": 1}, head="linear", out_dir=str(tmp_path),
        callbacks=[Mode()],
    )
    assert modes and all(modes)  # loaded in eval mode, trained in train mode from the first step
    after = r.module.backbone.state_dict()
    moved = [k for k, v in before.items() if not torch.equal(after[k], v)]
    assert any(k.endswith("weight") for k in moved)
    assert any(k.endswith("running_mean") for k in moved)  # BatchNorm statistics move too
    # the run directory says where the backbone came from
    assert r.run_dir.startswith(str(tmp_path)) and os.path.basename(r.run_dir) == "version_0"
    with open(os.path.join(r.run_dir, "pretrained.toml"), "rb") as f:
        rec = tomllib.load(f)
    assert rec["name"] == "src" and rec["epochs"] == 2
    assert rec["config_sha256"] == config_sha256(source_cfg)
    assert os.path.samefile(os.path.dirname(os.path.dirname(rec["checkpoint"])), source_run)
    assert TrainConfig.from_dict(rec["config"]) == source_cfg
    with open(os.path.join(r.run_dir, "config.toml"), "rb") as f:
        saved = TrainConfig.from_dict(tomllib.load(f))
    assert saved == r.config and saved.classes == TARGET and saved.name == "src-finetune"
    ck = torch.load(os.path.join(r.run_dir, "checkpoints", "last.ckpt"), weights_only=False)
    assert ck["etfcore_finetune"]["config_sha256"] == rec["config_sha256"]
    # the fine-tuned backbone reloads (and could be fine-tuned again)
    again, cfg = load_pretrained(r.run_dir)
    assert cfg == r.config
    for k, v in again.state_dict().items():
        assert torch.equal(v, after[k])
    # the reported accuracy is the final module's
    from etfcore.training.build import build_datamodule
    from etfcore.training.finetune import evaluate

    test_ds = build_datamodule(r.config).test_dataset
    assert evaluate(r.module, test_ds)["acc"] == pytest.approx(r.scores["test_acc"], abs=1e-12)


def test_target_config_and_errors(source_run, tmp_path):
    # mapping: defaults + the pretrained run's architecture and execution keys
    r = finetune(source_run, {"classes": TARGET}, head="linear", train=False)
    assert r.config.feature_dim == 16 and r.config.lr == TrainConfig().lr
    assert r.config.progress is False and r.config.accelerator == "cpu"
    with pytest.raises(ec.ShapeError, match="feature_dim=32"):
        finetune(source_run, TrainConfig(classes=TARGET), train=False)  # default width 32
    with pytest.raises(ec.ParameterError, match="backbone='cnn'"):
        finetune(source_run, {"backbone": "cnn", "classes": TARGET}, train=False)
    with pytest.raises(ec.ShapeError, match="inputs"):
        finetune(source_run, {"dataset": "gmm"}, train=False)  # 32-d inputs, not 64
    with pytest.raises(ec.ParameterError, match="nothing to train"):
        finetune(source_run, {"classes": TARGET}, head="cm", head_only=True)
    with pytest.raises(ec.ParameterError, match="neither a checkpoint"):
        finetune(str(tmp_path / "missing"), train=False)
    # a checkpoint whose backbone weights disagree with its own config
    ck = torch.load(os.path.join(source_run, "checkpoints", "last.ckpt"), weights_only=False)
    ck["etfcore_config"]["feature_dim"] = 24
    torch.save(ck, tmp_path / "bad.ckpt")
    with pytest.raises(ec.ShapeError, match="do not fit the architecture"):
        finetune(str(tmp_path / "bad.ckpt"), {"classes": TARGET}, train=False)


def test_cli_round_trip(source_run, tmp_path, capsys):
    args = ["finetune", source_run, "--set", "classes=5,6,7,8,9"]
    assert main(args + ["--head", "cm", "--no-train", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    ref = finetune(source_run, {"classes": TARGET}, head="cm", train=False)
    assert got["scores"] == pytest.approx(ref.scores, abs=1e-12)
    assert got["source"]["config_sha256"] == ref.source.config_sha256
    out = str(tmp_path / "ft")
    cmd = args + ["--set", "epochs=1", "--head", "linear", "--head-only", "--out", out]
    assert main(cmd) == 0
    text = capsys.readouterr().out
    assert "head linear, head only, 1 epoch)" in text and "mean per-class" in text
    run = text.strip().splitlines()[-1].removeprefix("run directory: ")
    assert os.path.isfile(os.path.join(run, "pretrained.toml"))
    test_line = next(s for s in text.splitlines() if s.startswith("test"))
    with open(os.path.join(run, "metrics.jsonl")) as f:
        last = [json.loads(s) for s in f][-1]
    assert float(test_line.split()[1]) == pytest.approx(last["test_acc"], abs=5e-5)
    # errors are messages, exit 2
    (tmp_path / "empty").mkdir()
    for bad in (
        ["finetune", str(tmp_path / "missing")],
        ["finetune", str(tmp_path / "empty")],  # a run directory without a checkpoint
        args + ["--set", "feature_dim=64", "--no-train"],
    ):
        assert main(bad) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("etfcore: error:") and "Traceback" not in err
    assert "feature_dim=64" in err


def test_extract_writes_the_frozen_backbones_features_and_the_probe_reads_them(
    source_run, tmp_path, capsys
):
    """`etfcore extract` on the target classes: the saved features are the pretrained backbone's
    (computed here directly on the numpy-selected samples), labels renumbered, statistics equal
    to a pass over them; `etfcore probe` then runs on the files."""
    out = tmp_path / "feats"
    code = main(["extract", source_run, "--set", "classes=5,6,7,8,9", "--device", "cpu",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    lut = np.full(10, -1)
    lut[TARGET] = np.arange(5)
    xtr, ytr, xte, yte = _task(lut)
    backbone, _ = load_pretrained(source_run)
    for split, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        f = np.load(out / f"{split}_features.npy")
        np.testing.assert_array_equal(np.load(out / f"{split}_labels.npy"), y)
        np.testing.assert_allclose(f, _features(backbone, x), rtol=1e-6, atol=1e-6)
        st = ec.CollapseStats.load(out / f"{split}_stats.bin")
        ref = ec.CollapseStats(5, f.shape[1]).update(f, y)  # one batch: another shift
        np.testing.assert_array_equal(st.class_counts, ref.class_counts)
        np.testing.assert_allclose(st.class_means(), ref.class_means(), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(float(st.vci()), float(ref.vci()), rtol=1e-5)  # f32 products
    capsys.readouterr()
    code = main(["probe", "--train", str(out / "train_features.npy"), str(out / "train_labels.npy"),
                 "--test", str(out / "test_features.npy"), str(out / "test_labels.npy"),
                 "--device", "cpu", "--json"])
    assert code == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["top1"] <= 1.0
    assert main(["extract", str(tmp_path / "missing"), "--out", str(out)]) == 2
