"""The Lightning training engine: config parsing, mixup for every loss, CollapseMetrics (also
under a real 2-process gloo run), run directories, exact resume, Ctrl-C, the CLI."""

import json
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

import etfcore as ec  # noqa: E402
from etfcore.training import (  # noqa: E402
    CollapseMetrics,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    load_pretrained,
)
from etfcore.training import config as config_mod  # noqa: E402
from etfcore.training.build import build_datamodule, build_module  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIET = dict(progress=False, accelerator="cpu")


# ---------------------------------------------------------------- typed config
def test_booleans_and_numbers_parse_by_type():
    for text, want in [("no", False), ("0", False), ("off", False), ("yes", True), ("1", True)]:
        assert TrainConfig.from_dict({"projector": text}).projector is want
    assert TrainConfig.from_dict({"amp": "0"}).amp is False
    assert TrainConfig.from_dict({"epochs": "3", "lr": "1e-2"}).epochs == 3
    assert TrainConfig.from_dict({"classes": "3,5,8"}).classes == [3, 5, 8]
    assert TrainConfig.from_dict({"tau_plus": "none"}).tau_plus is None
    with pytest.raises(ec.ParameterError, match="projector must be a boolean"):
        TrainConfig.from_dict({"projector": "maybe"})
    with pytest.raises(ec.ParameterError, match="epochs must be an integer"):
        TrainConfig.from_dict({"epochs": "2.5"})
    with pytest.raises(ec.ParameterError, match="unknown config key"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ec.ParameterError, match="needs normalize_features"):
        TrainConfig.from_dict({"loss": "dot_regression"})


def test_print_config_documents_every_field():
    text = config_mod.describe_fields()
    for f in config_mod.TrainConfig.fields():
        line = next(s for s in text.splitlines() if s.startswith(f.name + " "))
        assert len(line.split()) >= 4, line  # name, type, default, doc


def test_every_preset_is_a_valid_config():
    for kw in config_mod.PRESETS.values():
        TrainConfig.from_dict(kw)


def test_toml_falls_back_to_tomli_before_311(tmp_path, monkeypatch):
    try:
        tomli = __import__("tomli")
    except ImportError:  # the same API: stand in for tomli on 3.11+
        tomli = __import__("tomllib")
    path = tmp_path / "c.toml"
    path.write_text('loss = "hinge_ce"\nepochs = 2\n')
    monkeypatch.setattr(config_mod.sys, "version_info", (3, 9, 0))
    monkeypatch.setitem(sys.modules, "tomli", tomli)
    monkeypatch.setitem(sys.modules, "tomllib", None)  # `import tomllib` would fail
    assert config_mod.load_toml(str(path)) == {"loss": "hinge_ce", "epochs": 2}
    path.write_text("loss = \n")
    with pytest.raises(ec.ParameterError, match="not valid TOML"):
        config_mod.load_toml(str(path))


# ---------------------------------------------------------------- the training step
def _module(**kw):
    cfg = TrainConfig(**{**QUIET, **kw})
    torch.manual_seed(0)
    return build_module(cfg, build_datamodule(cfg))


@pytest.mark.parametrize(
    "kw",
    [
        dict(loss="dot_regression", normalize_features=True),
        dict(loss="hinge_ce"),
        dict(loss="generalised_labels", imbalance_ratio=0.1),
        dict(loss="label_smoothing"),
        dict(loss="weighted_ce", imbalance_ratio=0.1),
        dict(loss="ce"),
    ],
)
def test_mixup_applies_to_every_loss(kw, monkeypatch):
    """The training step returns λ·L(out, y) + (1-λ)·L(out, y_π) on the mixed batch, with the
    loss's own hard-label form, for every loss (the mixing itself is etfcore.nn.mixup's)."""
    from etfcore.training import module as module_mod

    m = _module(mixup_alpha=0.7, **kw)
    m.eval()  # BatchNorm in eval mode: the same features in both computations
    m.log = lambda *a, **k: None
    x, y = torch.randn(16, 64), torch.arange(16) % 10
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    lam = 0.3
    xm = lam * x + (1 - lam) * x[perm]
    calls = []

    def fake_mixup(x_, y_, alpha, generator):
        calls.append(alpha)
        return xm, y_[perm], lam

    monkeypatch.setattr(module_mod.enn, "mixup", fake_mixup)
    got = m.training_step((x, y), 0)
    out = m.outputs(m.features(xm)).float()
    want = lam * m.criterion(out, y) + (1 - lam) * m.criterion(out, y[perm])
    assert calls == [0.7]
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, m.criterion(out, y))  # the permuted term matters
    # the real mixup returns a mixed batch, permuted labels and λ in (0, 1)
    xm2, yp, lam2 = module_mod.enn.mixup(x, y, 0.7, generator=torch.Generator().manual_seed(3))
    assert xm2.shape == x.shape and sorted(yp.tolist()) == sorted(y.tolist()) and 0 < lam2 < 1


def test_mixup_keeps_label_smoothing_and_class_weight_normalisation():
    m = _module(loss="label_smoothing", label_smoothing=0.2, mixup_alpha=1.0)
    logits = torch.randn(8, 10)
    y, yp = torch.arange(8), torch.arange(8).flip(0)
    ref = lambda t: torch.nn.functional.cross_entropy(logits, t, label_smoothing=0.2)  # noqa: E731
    got = 0.3 * m.criterion(logits, y) + 0.7 * m.criterion(logits, yp)
    torch.testing.assert_close(got, 0.3 * ref(y) + 0.7 * ref(yp))
    w = _module(loss="weighted_ce", imbalance_ratio=0.1, mixup_alpha=1.0)
    cw = w.criterion.class_weights

    def wce(t):  # the weighted mean: Σ w_y ℓ / Σ w_y
        nll = -torch.log_softmax(logits, 1)[torch.arange(8), t]
        return (cw[t] * nll).sum() / cw[t].sum()

    got = 0.3 * w.criterion(logits, y) + 0.7 * w.criterion(logits, yp)
    torch.testing.assert_close(got, 0.3 * wce(y) + 0.7 * wce(yp))


def test_warmup_schedule():
    from etfcore.training.module import WarmupSchedule

    s = WarmupSchedule("step", total=100, warmup=0, step_every=10, gamma=0.5)
    assert [s(0), s(10), s(25)] == [1.0, 0.5, 0.25]
    c = WarmupSchedule("cosine", total=100, warmup=20)
    assert c(19) == 1.0 and c(60) == pytest.approx(0.5) and c(100) == 0.0


# ---------------------------------------------------------------- CollapseMetrics
def test_collapse_metrics_equals_core_and_validates():
    H, y = ec.data.gaussian_mixture(4, 6, [30, 20, 10, 40], seed=0, offset=50.0)
    m = CollapseMetrics(4, 6, shift=np.full(6, 49.0))
    for i in range(0, 100, 33):
        m.update(torch.from_numpy(H[i : i + 33]), torch.from_numpy(y[i : i + 33]))
    ref = ec.CollapseStats(4, 6).update(H, y)
    got = m.compute()
    np.testing.assert_allclose(m.to_core().total_covariance(), ref.total_covariance(), atol=1e-11)
    assert got["vci"] == pytest.approx(ref.vci().value, rel=1e-10)
    assert got["nc1"] == pytest.approx(ref.nc1().value, rel=1e-9)
    before = m.to_core().to_bytes()
    with pytest.raises(ec.DTypeError):
        m.update(torch.randn(2, 6), torch.tensor([0.0, 1.0]))
    with pytest.raises(ec.DTypeError):
        m.update(torch.randn(2, 6), torch.tensor([True, False]))
    with pytest.raises(ec.LabelError):
        m.update(torch.randn(2, 6), torch.tensor([0, 4]))
    bad = torch.randn(2, 6)
    bad[1, 2] = float("nan")
    with pytest.raises(ec.NonFiniteError, match="row 1, column 2"):
        m.update(bad, torch.tensor([0, 1]))
    assert m.to_core().to_bytes() == before


def test_fixed_shift_error_follows_the_documented_bound():
    """Relative error of Σ_W ≤ 10·eps64·(1 + ‖μ - c‖²/σ²) against a two-pass float64 reference."""
    H, y = ec.data.gaussian_mixture(5, 16, 400, seed=1)
    for offset in (0.0, 1e3, 1e4):
        X = H + offset
        ref = sum(np.cov(X[y == k].T, bias=True) * (y == k).sum() for k in range(5)) / len(y)
        sigma2 = np.trace(ref) / 16
        for shift in (None, X.mean(0) + 1.0):
            m = CollapseMetrics(5, 16, shift=shift)
            m.update(torch.from_numpy(X), torch.from_numpy(y))
            got = m.to_core().within_class_covariance()
            c = X.mean(0) if shift is None else shift  # default: the first batch's mean
            bound = 10 * np.finfo(np.float64).eps * (1 + ((X.mean(0) - c) ** 2).sum() / sigma2)
            assert np.abs(got - ref).max() / np.abs(ref).max() <= bound, (offset, shift)


def test_nc_cosine_statistics_against_numpy():
    H, y = ec.data.gaussian_mixture(5, 8, 40, seed=2)
    W = ec.etf(5, 8, seed=1)
    m = CollapseMetrics(5, 8, classifier=torch.from_numpy(W))
    m.update(torch.from_numpy(H), torch.from_numpy(y))
    got = m.compute()
    mu = np.stack([H[y == k].mean(0) for k in range(5)]) - H.mean(0)
    u = mu / np.linalg.norm(mu, axis=1, keepdims=True)
    wn = W / np.linalg.norm(W, axis=1, keepdims=True)
    off = ~np.eye(5, dtype=bool)
    assert got["nc_cos_means_std"] == pytest.approx((u @ u.T)[off].std(), rel=1e-9)
    assert got["nc_cos_classifier_mean"] == pytest.approx((u @ wn.T)[off].mean(), rel=1e-9)
    assert got["nc_cos_own_std"] == pytest.approx(np.diag(u @ wn.T).std(), rel=1e-9)


DDP_METRIC = r"""
import sys, socket
import numpy as np, torch, torch.distributed as dist, torch.multiprocessing as mp
import etfcore as ec
from etfcore.training import CollapseMetrics

def work(rank, world, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    H, y = ec.data.gaussian_mixture(4, 6, [30, 20, 10, 40], seed=0, offset=5.0)
    m = CollapseMetrics(4, 6)  # each rank's own first-batch shift, made common at sync
    mine = np.arange(len(y)) % world == rank
    for i in range(0, int(mine.sum()), 7 + rank):  # ranks see different numbers of batches
        m.update(torch.from_numpy(H[mine][i:i + 7 + rank] + rank),
                 torch.from_numpy(y[mine][i:i + 7 + rank]))
    vci = float(m.compute()["vci"])
    assert m.compute_report()["vci"] == vci  # synchronised too, the local states kept
    with m.sync_context():
        blob = m.to_core().to_bytes()
    if rank == 0:
        open(out, "wb").write(blob)
        open(out + ".vci", "w").write(repr(vci))
    dist.destroy_process_group()

if __name__ == "__main__":
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    mp.spawn(work, args=(2, port, sys.argv[1]), nprocs=2, join=True)
"""


def test_ddp_synced_collapse_metrics_equal_one_pass_over_the_union(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_METRIC)
    out = tmp_path / "stats.bin"
    subprocess.run([sys.executable, str(script), str(out)], check=True, timeout=180)
    synced = ec.CollapseStats.from_bytes(out.read_bytes())
    H, y = ec.data.gaussian_mixture(4, 6, [30, 20, 10, 40], seed=0, offset=5.0)
    H2 = H.copy()
    H2[1::2] += 1  # what rank 1 saw
    ref = ec.CollapseStats(4, 6).update(H2, y)
    np.testing.assert_array_equal(synced.class_counts, ref.class_counts)
    np.testing.assert_allclose(synced.total_covariance(), ref.total_covariance(), atol=1e-12)
    assert float((tmp_path / "stats.bin.vci").read_text()) == pytest.approx(
        ref.vci().value, rel=1e-12
    )


# ---------------------------------------------------------------- runs
def test_run_logs_metrics_that_match_the_core_and_runs_stay_apart(tmp_path):
    cfg = TrainConfig(epochs=2, **QUIET)
    a = Trainer(cfg, out_dir=str(tmp_path))
    hist = a.fit()
    b = Trainer(cfg, out_dir=str(tmp_path))
    b.fit()
    assert a.run_dir.endswith("version_0") and b.run_dir.endswith("version_1")
    rows = [json.loads(s) for s in open(os.path.join(a.run_dir, "metrics.jsonl"))]
    assert [r["epoch"] for r in rows] == [1, 2]  # the second run did not append here
    # logged VCI equals the core's on features extracted independently
    dm = a.datamodule
    a.module.eval()
    with torch.no_grad():
        x, y = dm.train_dataset.tensors
        H = a.module.features(x).double().numpy()
    core = ec.CollapseStats(10, 32).update(H, y.numpy())
    assert hist[-1]["train_vci"] == pytest.approx(core.vci().value, rel=1e-6)
    assert hist[-1]["train_nc1"] == pytest.approx(core.nc1().value, rel=1e-5)
    # the bounded-sample metrics are logged too (all 1258 rows fit the default sample)
    rank = ec.numerical_rank_of(H, y.numpy())[0]
    assert hist[-1]["train_numerical_rank"] == pytest.approx(rank, rel=1e-4)
    assert rows[-1]["train_minor_acc"] is None  # NaN (no minor class) is null, not NaN
    text = open(os.path.join(a.run_dir, "metrics.jsonl")).read()
    assert "NaN" not in text
    for f in ("config.toml", "metrics.csv", "checkpoints/last.ckpt"):
        assert os.path.exists(os.path.join(a.run_dir, f)), f
    saved = config_mod.load_toml(os.path.join(a.run_dir, "config.toml"))
    assert TrainConfig.from_dict(saved) == cfg  # the saved config re-runs the same run
    backbone, config = load_pretrained(a.run_dir)
    assert config == cfg
    assert load_pretrained(os.path.join(a.run_dir, "checkpoints", "last.ckpt"))[1] == cfg
    (tmp_path / "empty").mkdir()
    with pytest.raises(ec.ParameterError, match="no checkpoint"):
        load_pretrained(str(tmp_path / "empty"))
    with pytest.raises(ec.ParameterError, match="neither a checkpoint file nor a run directory"):
        load_pretrained(str(tmp_path / "missing"))
    with torch.no_grad():
        torch.testing.assert_close(backbone(x[:5]), a.module.backbone.eval()(x[:5]))


class _StopAt(L.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


def test_interrupted_and_resumed_run_is_bit_for_bit_the_uninterrupted_one(tmp_path):
    cfg = TrainConfig(epochs=4, seed=1, mixup_alpha=0.4, track_every=2, **QUIET)
    full = Trainer(cfg, out_dir=str(tmp_path / "a"))
    h_full = full.fit()
    part = Trainer(cfg, out_dir=str(tmp_path / "b"), callbacks=[_StopAt(2)])
    with pytest.raises(TrainingInterrupted) as info:
        part.fit()
    assert info.value.checkpoint.endswith("last.ckpt")
    resumed = Trainer(cfg, out_dir=str(tmp_path / "b"))
    h_res = resumed.fit(resume=True)
    assert resumed.run_dir == part.run_dir
    assert [r["train_loss"] for r in h_res] == [r["train_loss"] for r in h_full]
    sa, sb = full.module.state_dict(), resumed.module.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    rows = [json.loads(s) for s in open(os.path.join(resumed.run_dir, "metrics.jsonl"))]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    # the tracked metrics too (the tracker's shifts travel in the checkpoint)
    ref = [json.loads(s) for s in open(os.path.join(full.run_dir, "metrics.jsonl"))]
    drop = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert [drop(r) for r in rows] == [drop(r) for r in ref]
    other = Trainer(cfg.replace(lr=0.3), out_dir=str(tmp_path / "b"))
    with pytest.raises(ec.ParameterError, match="different configuration \\(lr\\)"):
        other.fit(resume=True)
    # more processes would change the steps per epoch the schedule was laid out for
    for key, value in [("devices", "2"), ("num_nodes", 2), ("strategy", "ddp")]:
        moved = Trainer(cfg.replace(**{key: value}), out_dir=str(tmp_path / "b"))
        with pytest.raises(ec.ParameterError, match=f"different configuration \\({key}\\)"):
            moved.fit(resume=True)


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")}
    return subprocess.run(
        [sys.executable, "-m", "etfcore.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        **kw,
    )


def test_cli_errors_are_messages(tmp_path, capsys):
    from etfcore.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 2\n")
    cases = [
        ["train", "--preset", "nope"],
        ["train", "--config", str(tmp_path / "missing.toml")],
        ["train", "--config", str(bad)],
        ["train", "--set", "amp=maybe"],
        ["train", "--precision", "17"],
        ["train", "--strategy", "nonsense"],
        ["train", "--set", "freeze_backbone=yes"],  # nothing left to train
        ["train", "--resume", str(tmp_path)],  # a directory with no checkpoint
        [
            "train",
            "--set",
            "dataset=cifar10",
            "--set",
            "download=false",
            "--set",
            f"data_root={tmp_path}",
        ],
    ]
    named = [
        "nope",
        "missing.toml",
        "bad.toml",
        "amp",
        "17",
        "nonsense",
        "nothing to train",
        "no checkpoint",
        "data_root",
    ]
    for args, what in zip(cases, named):
        assert main(args + ["--out", str(tmp_path / "o")]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("etfcore: error:") and what in err, (args, err)
        assert "Traceback" not in err
    # --resume takes the run's own config, and looks only at the run's name
    for other in (["--preset", "digits-etf-dr"], ["--config", str(bad)]):
        assert main(["train", "--resume", *other, "--out", str(tmp_path / "o")]) == 2
        assert "drop --preset/--config" in capsys.readouterr().err
    for name in ("a", "b"):
        (tmp_path / "o" / name / "version_0" / "checkpoints").mkdir(parents=True)
        (tmp_path / "o" / name / "version_0" / "checkpoints" / "last.ckpt").write_text("x")
    assert main(["train", "--resume", "--out", str(tmp_path / "o")]) == 2
    assert "several runs" in capsys.readouterr().err
    assert main(["train", "--resume", "--set", "name=b", "--out", str(tmp_path / "o")]) == 2
    assert "o/b/version_0/checkpoints/last.ckpt" in capsys.readouterr().err  # unreadable: b's
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    assert main(["report", "--run", str(tmp_path / "run")]) == 2
    assert "no epochs" in capsys.readouterr().err


def test_cli_ctrl_c_exits_130(tmp_path, monkeypatch, capsys):
    from etfcore import cli
    from etfcore.training import trainer as trainer_mod

    def interrupted(self, resume=None):
        raise TrainingInterrupted("training interrupted; last checkpoint kept: X", "X")

    monkeypatch.setattr(trainer_mod.Trainer, "fit", interrupted)
    assert cli.main(["train", "--set", "progress=no", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and f"etfcore train --out {tmp_path} --resume" in err

    def interrupted_early(self, resume=None):  # before any epoch: nothing to resume
        raise TrainingInterrupted("training interrupted; no epoch finished, nothing kept", None)

    monkeypatch.setattr(trainer_mod.Trainer, "fit", interrupted_early)
    assert cli.main(["train", "--set", "progress=no", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" not in err


def test_cli_projector_no_and_amp_zero(tmp_path):
    from etfcore.cli import main

    args = [
        "train",
        "--set",
        "epochs=1",
        "--set",
        "progress=no",
        "--set",
        "projector=no",
        "--set",
        "amp=0",
        "--accelerator",
        "cpu",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    ck = torch.load(str(tmp_path / "run/version_0/checkpoints/last.ckpt"), weights_only=False)
    assert ck["etfcore_config"]["projector"] is False and ck["etfcore_config"]["amp"] is False
    assert not any(k.startswith("head.projector") for k in ck["state_dict"])
    # --resume takes the run's own config; changing what it computes is refused
    assert main(["train", "--resume", "--set", "lr=0.3", "--out", str(tmp_path)]) == 2
    assert main(["train", "--resume", "--set", "progress=no", "--out", str(tmp_path)]) == 0
    assert os.listdir(tmp_path / "run") == ["version_0"]


@pytest.mark.slow
def test_cli_ddp_two_processes_on_cpu(tmp_path):
    r = _cli(
        "train",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--set",
        "epochs=1",
        "--set",
        "progress=false",
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    runs = os.listdir(tmp_path / "run")
    assert runs == ["version_0"]  # both processes wrote into one run
    rows = [json.loads(s) for s in open(tmp_path / "run/version_0/metrics.jsonl")]
    assert len(rows) == 1 and rows[0]["train_num_samples"] == 1258  # each sample once
    assert math.isfinite(rows[0]["test_vci"])


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_ctrl_c_keeps_the_checkpoint_and_exits_130(tmp_path):
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")}
    args = ["train", "--set", "epochs=500", "--set", "progress=no", "--accelerator", "cpu"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "etfcore.cli", *args, "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # A shell's background job inherits SIGINT ignored, and Python then installs no
        # KeyboardInterrupt handler: give the child the default disposition, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    last = tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "last checkpoint kept" in err and "Traceback" not in err
    assert torch.load(str(last), weights_only=False)["epoch"] >= 0


def test_collapse_metrics_records_the_feature_precision():
    """float32 features get the float32 pseudo-inverse cut, as the core's own pass gives them
    (N = 50 samples in p = 200 dimensions: the float64 cut would keep float32 noise as rank)."""
    import etfcore as ec
    from etfcore.training import CollapseMetrics

    rng = np.random.default_rng(0)
    h = (rng.normal(size=(50, 200)) + 10.0).astype(np.float32)
    y = np.arange(50) % 5
    core = ec.CollapseStats(5, 200).update(h, y)
    m32 = CollapseMetrics(5, 200)
    m32.update(torch.from_numpy(h), torch.from_numpy(y))
    s32 = m32.to_core()
    assert s32.precision == core.precision == "float32"
    assert s32.vci().rank == core.vci().rank
    m64 = CollapseMetrics(5, 200)
    m64.update(torch.from_numpy(h.astype(np.float64)), torch.from_numpy(y))
    assert m64.to_core().precision == "float64"


# ---------------------------------------------------------------- review fixes (issue 8)
def test_frozen_backbone_parameters_and_batchnorm_statistics_stay_bit_identical():
    cfg = TrainConfig(
        epochs=2, backbone="cnn", freeze_backbone=True, projector=True, track_every=2, **QUIET
    )
    t = Trainer(cfg)
    before = {k: v.clone() for k, v in t.module.backbone.state_dict().items()}
    assert any(k.endswith("running_mean") for k in before)
    t.fit()
    after = t.module.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not t.module.backbone.training


def test_stream_seeds_do_not_collide_across_ranks_epochs_and_streams():
    from etfcore.training.module import stream_seed

    seeds = {
        stream_seed(s, e, r, i)
        for s in range(3)
        for e in range(5)
        for r in (0, 1, 63, 64, 65)
        for i in (0, 1)
    }
    assert len(seeds) == 3 * 5 * 5 * 2
    assert all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize("precision", ["bf16-true", "64-true"])
def test_true_precision_runs_train_and_track(precision):
    cfg = TrainConfig(epochs=1, precision=precision, track_sample=64, **QUIET)
    hist = Trainer(cfg, limit_train_batches=2).fit()
    assert 0 <= hist[-1]["test_acc"] <= 1 and math.isfinite(hist[-1]["train_loss"])
    assert math.isfinite(hist[-1]["train_vci"])


def test_fit_seeds_lightning_and_loader_workers():
    os.environ.pop("PL_GLOBAL_SEED", None)
    Trainer(TrainConfig(epochs=1, seed=3, track_every=5, **QUIET), limit_train_batches=1).fit()
    # Lightning's fallback DistributedSampler takes PL_GLOBAL_SEED; workers get seeded too
    assert os.environ["PL_GLOBAL_SEED"] == "3" and os.environ["PL_SEED_WORKERS"] == "1"


def test_default_shift_is_the_first_batch_mean_and_merges_exactly():
    """Offset 1e6 σ: the default shift keeps Σ_W accurate (against a two-pass float64 reference);
    metrics merged from shards with different first-batch shifts equal one pass."""
    H, y = ec.data.gaussian_mixture(5, 16, 200, seed=3)
    X = H + 1e6
    ref = sum(np.cov(X[y == k].T, bias=True) * (y == k).sum() for k in range(5)) / len(y)
    m = CollapseMetrics(5, 16)
    for i in range(0, len(y), 300):
        m.update(torch.from_numpy(X[i : i + 300]).float(), torch.from_numpy(y[i : i + 300]))
    Xf = X.astype(np.float32).astype(np.float64)
    ref_f = sum(np.cov(Xf[y == k].T, bias=True) * (y == k).sum() for k in range(5)) / len(y)
    got = m.to_core().within_class_covariance()
    assert np.abs(got - ref_f).max() / np.abs(ref_f).max() < 1e-9
    a, b = CollapseMetrics(5, 16), CollapseMetrics(5, 16)
    a.update(torch.from_numpy(X[::2]), torch.from_numpy(y[::2]))
    b.update(torch.from_numpy(X[1::2] + 3.0), torch.from_numpy(y[1::2]))
    a.merge_state(b)
    Y = X.copy()
    Y[1::2] += 3.0
    ref2 = sum(np.cov(Y[y == k].T, bias=True) * (y == k).sum() for k in range(5)) / len(y)
    got2 = a.to_core().within_class_covariance()
    assert np.abs(got2 - ref2).max() / np.abs(ref2).max() < 1e-9
    assert np.abs(ref - ref2).max() > 1e-3  # (the shard offset matters)


def test_demo_restores_threads_and_logger_levels(monkeypatch, tmp_path):
    import logging

    from etfcore.training import demo

    monkeypatch.setattr(demo, "_run_all", lambda *a: {})
    threads, lg = torch.get_num_threads(), logging.getLogger("lightning.pytorch")
    level = lg.level
    demo.run_demo(out_dir=str(tmp_path), accelerator="cpu", progress=False)
    assert torch.get_num_threads() == threads and lg.level == level


@pytest.mark.parametrize("normalization, power", [("per_class_count", 3), ("mean", 2)])
def test_cosine_regulariser_and_mixup_through_the_training_step(monkeypatch, normalization, power):
    """training_step = λ(ℓ(y) + R(u, y)) + (1-λ)(ℓ(y_π) + R(u, y_π)) with R = weight × the mean
    over present classes of the summed pairwise cosines (self-pairs included) / n_c³ (Xu & Liu's
    "average divided by the class's count", the default) or / n_c² (the plain average), by a loop
    here."""
    from etfcore.training import module as module_mod

    m = _module(cosine_reg=10.0, mixup_alpha=0.4, cosine_reg_normalization=normalization)
    m.eval()
    m.log = lambda *a, **k: None
    x, y = torch.randn(24, 64), torch.arange(24) % 10
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(1))
    lam = 0.3
    xm = lam * x + (1 - lam) * x[perm]
    monkeypatch.setattr(module_mod.enn, "mixup", lambda x_, y_, a, generator: (xm, y_[perm], lam))
    got = m.training_step((x, y), 0)
    u = m.features(xm).detach().double()
    logits = u @ m.head.weight.double().T

    def reg(labels):
        per_class = []
        for k in labels.unique():
            uk = u[labels == k] / u[labels == k].norm(dim=1, keepdim=True)
            per_class.append(sum(float(a @ b) for a in uk for b in uk) / len(uk) ** power)
        return 10.0 * sum(per_class) / len(per_class)

    ce = torch.nn.functional.cross_entropy
    want = lam * (ce(logits, y) + reg(y)) + (1 - lam) * (ce(logits, y[perm]) + reg(y[perm]))
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_cli_prepare_data_builds_the_data_and_exits(tmp_path, capsys):
    from etfcore.cli import main

    assert main(["train", "--prepare-data", "--set", "dataset=gmm", "--out", str(tmp_path)]) == 0
    assert "data ready: gmm" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())  # nothing trained, no run directory


def test_loss_stays_float32_under_bf16_autocast():
    m = _module()
    u = torch.randn(32, 32).bfloat16()
    y = torch.arange(32) % 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = m.loss_terms(u, y, None, 1.0)
    logits = u.double() @ m.head.weight.double().T
    want = torch.nn.functional.cross_entropy(logits, y)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_metric_forward_and_reset_with_the_default_shift():
    H, y = ec.data.gaussian_mixture(4, 6, 50, seed=0, offset=1e4)
    p = np.random.default_rng(0).permutation(200)
    H, y = H[p], y[p]
    m = CollapseMetrics(4, 6)
    for i in range(0, 200, 37):  # forward: per-batch value, states merged into the running ones
        m(torch.from_numpy(H[i : i + 37]), torch.from_numpy(y[i : i + 37]))
    ref = sum(np.cov(H[y == k].T, bias=True) * (y == k).sum() for k in range(4)) / len(y)
    got = m.to_core().within_class_covariance()
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-12
    m.reset()
    m.update(torch.from_numpy(H[:5] + 1e5), torch.from_numpy(y[:5]))
    torch.testing.assert_close(m.shift, torch.from_numpy(H[:5] + 1e5).mean(0))


def test_hinge_with_small_tau_minus_on_unnormalised_features_warns_when_training_starts():
    risky = TrainConfig(**{**QUIET, "head": "etf", "loss": "hinge_ce", "tau_minus": 0.5})
    for start in (lambda: Trainer(risky), risky.warn_training_hazards):
        with pytest.warns(RuntimeWarning, match="can diverge") as caught:
            start()
        assert caught[0].filename == __file__  # points at the line that starts training
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        risky.validate()  # valid, and reading a finished run's config does not warn
        TrainConfig.from_dict(risky.to_dict())
        for ok in (risky.replace(normalize_features=True), risky.replace(tau_minus=math.pi)):
            ok.warn_training_hazards()


def test_a_non_finite_batch_loss_makes_the_epoch_loss_nan_without_warnings():
    # torchmetrics' default would drop the NaN batch from the mean and warn once per batch
    module = _module()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module.record_batch_loss(torch.tensor(1.0), 4)
        module.record_batch_loss(torch.tensor(float("nan")), 4)
        assert math.isnan(float(module.epoch_loss.compute()))
    module.epoch_loss.reset()
    module.record_batch_loss(torch.tensor(1.0), 1)  # weighted by the batch sizes
    module.record_batch_loss(torch.tensor(4.0), 3)
    assert float(module.epoch_loss.compute()) == pytest.approx(3.25, abs=1e-6)


@pytest.mark.parametrize("epochs", [30, 7])  # 7: the step ratio is not a whole number
def test_demo_settings_train_equal_steps_and_make_the_rarest_class_minor(epochs):
    from etfcore.training import demo
    from etfcore.training.build import build_datamodule

    def steps(rho, **kw):  # batches the loader really yields per epoch, times the epochs
        cfg = TrainConfig(**{**QUIET, "imbalance_ratio": rho, "last_batch": "even", **kw})
        return len(build_datamodule(cfg).train_dataloader()) * cfg.epochs, build_datamodule(cfg)

    balanced, _ = steps(1.0, **demo.setting_schedule(epochs, 1.0))
    sched = demo.setting_schedule(epochs, 0.1)
    long_tail, dm = steps(0.1, **sched)
    per_epoch = long_tail // sched["epochs"]
    assert balanced <= long_tail < balanced + per_epoch  # the fewest epochs reaching its steps
    counts = np.asarray(dm.train_counts)
    assert (counts <= sched["minor_threshold"]).sum() == 1
    assert counts.min() == sched["minor_threshold"]
