"""Nothing lost: crash-safe writes, manifests, exclusive run directories, SIGTERM, full disks.

The real-process tests run ``etfcore`` in subprocesses on the embedded digits with a tiny MLP,
and kill them (SIGKILL, SIGTERM) or run them on a full filesystem (a small tmpfs in a private
mount namespace, where the machine allows ``unshare -m``). Each process is bounded in time."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings

import numpy as np
import pytest

import etfcore as ec
from etfcore import _io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")}
ETFCORE = [sys.executable, "-m", "etfcore.cli"]
TINY = ["--set", "progress=no", "--set", "feature_dim=16", "--accelerator", "cpu"]


def _cli(*args, timeout=60, env=None):
    return subprocess.run([*ETFCORE, *map(str, args)], capture_output=True, text=True,
                          env=env or ENV, timeout=timeout)


# --------------------------------------------------------------------------- the _io helper
def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "a.txt"
    _io.write_text(path, "old\n")
    with pytest.raises(RuntimeError, match="midway"):
        with _io.atomic_write(path, "w") as f:
            f.write("new, half")
            raise RuntimeError("midway")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["a.txt"]  # no temporary left behind
    _io.write_text(path, "new\n")
    assert path.read_text() == "new\n"
    # created with the umask's mode, as open() would (not a private 0600 temp file)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_a_file_in_the_way_or_a_missing_parent_is_a_storage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ec.StorageError, match="not a directory") as info:
        _io.make_dirs(blocker)
    assert info.value.path == str(blocker)
    with pytest.raises(ec.StorageError, match=str(blocker)):
        _io.write_text(blocker / "inside.txt", "x")


def test_jsonl_whole_lines_and_a_torn_last_line(tmp_path):
    path = tmp_path / "m.jsonl"
    for epoch in (1, 2):
        _io.append_line(path, json.dumps({"epoch": epoch, "loss": 0.5 / epoch}))
    with open(path, "a") as f:
        f.write('{"epoch": 3, "lo')  # a writer killed mid-line
    with pytest.warns(UserWarning, match="damaged last line 3"):
        rows = _io.read_jsonl(path)
    assert [r["epoch"] for r in rows] == [1, 2]
    # damage before the end is not a torn write: refused, naming the file and line
    path.write_text('{"epoch": 1}\nnot json\n{"epoch": 3}\n')
    with pytest.raises(ec.CorruptDataError, match="line 2"):
        _io.read_jsonl(path)


def test_truncate_jsonl_on_resume_drops_a_torn_line(tmp_path):
    pytest.importorskip("lightning")
    from etfcore.training.callbacks import truncate_jsonl

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3, "x": ')
    with pytest.warns(UserWarning, match="damaged last line"):
        rows = truncate_jsonl(str(path), 2)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert path.read_text() == '{"epoch": 1}\n{"epoch": 2}\n'


def test_free_space_check_refuses_more_than_the_disk_has(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(ec.StorageError, match="not enough free space") as info:
        _io.check_free_space(tmp_path, free + 2**40, tmp_path / "big.npy")
    assert info.value.path.endswith("big.npy")
    _io.check_free_space(tmp_path, 1)


def test_manifest_binds_a_set_and_readers_refuse_stale_or_damaged_files(tmp_path):
    from etfcore.transfer.features import load_npy

    rng = np.random.default_rng(7)
    np.save(tmp_path / "f.npy", rng.normal(size=(20, 3)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.arange(20) % 2)
    _io.write_manifest(tmp_path, ["f.npy", "y.npy"])
    assert load_npy(tmp_path / "f.npy").shape == (20, 3)
    # same size, other content: the checksum tells
    np.save(tmp_path / "y.npy", (np.arange(20) + 1) % 2)
    with pytest.raises(ec.CorruptDataError, match="checksum.*y.npy|y.npy.*checksum"):
        load_npy(tmp_path / "y.npy")
    # truncated
    with open(tmp_path / "f.npy", "r+b") as f:
        f.truncate(100)
    with pytest.raises(ec.CorruptDataError, match="truncated or replaced"):
        load_npy(tmp_path / "f.npy")
    # a file the set does not list, and a set being replaced
    np.save(tmp_path / "other.npy", np.zeros(3))
    with pytest.raises(ec.CorruptDataError, match="stale or foreign"):
        load_npy(tmp_path / "other.npy")
    _io.mark_incomplete(tmp_path)
    with pytest.raises(ec.CorruptDataError, match="incomplete"):
        load_npy(tmp_path / "other.npy")
    # without a manifest, hand-made files are read as they are; non-.npy files are refused
    os.unlink(tmp_path / _io.MANIFEST)
    assert load_npy(tmp_path / "other.npy").shape == (3,)
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(ec.CorruptDataError, match="not a readable .npy"):
        load_npy(tmp_path / "text.npy")


def test_extract_features_failure_keeps_the_earlier_file(tmp_path):
    torch = pytest.importorskip("torch")
    from etfcore import transfer

    g = torch.Generator().manual_seed(3)
    ds = torch.utils.data.TensorDataset(torch.randn(40, 5, generator=g), torch.arange(40) % 2)
    net = torch.nn.Linear(5, 3)
    out = tmp_path / "f.npy"
    first = transfer.extract_features(net, ds, out=out, device="cpu", batch_size=8)
    before = np.array(first.features)

    class Boom(torch.nn.Module):
        calls = 0

        def forward(self, x):
            Boom.calls += 1
            if Boom.calls == 3:
                raise RuntimeError("backbone failed midway")
            return x[:, :3] * 2

    with pytest.raises(RuntimeError, match="midway"):
        transfer.extract_features(Boom(), ds, out=out, device="cpu", batch_size=8)
    np.testing.assert_array_equal(np.load(out), before)
    assert sorted(os.listdir(tmp_path)) == ["f.npy"]


# ---------------------------------------------------------------- extraction sets (in process)
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    pytest.importorskip("lightning")
    from etfcore.training import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(epochs=1, feature_dim=16, progress=False,
                      accelerator="cpu", seed=0)
    t = Trainer(cfg, out_dir=str(out))
    t.fit()
    return t.run_dir


def _probe_json(out, capsys):
    from etfcore.cli import main

    code = main(["probe", "--train", f"{out}/train_features.npy", f"{out}/train_labels.npy",
                 "--test", f"{out}/test_features.npy", f"{out}/test_labels.npy",
                 "--device", "cpu", "--json", "--seed", "0"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_new_extraction_replaces_the_whole_set(tiny_run, tmp_path, capsys):
    from etfcore.cli import main

    out = tmp_path / "feats"
    assert main(["extract", tiny_run, "--set", "val_fraction=0.2", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert (out / "val_features.npy").exists()
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["complete"] and "val_labels.npy" in doc["files"]
    # the second extraction has no validation split: the earlier val_* files go
    assert main(["extract", tiny_run, "--device", "cpu", "--out", str(out)]) == 0
    assert not (out / "val_features.npy").exists()
    assert sorted(p for p in os.listdir(out)) == sorted(
        ["manifest.json"] + [f"{s}_{k}" for s in ("train", "test")
                             for k in ("features.npy", "labels.npy", "stats.bin")]
    )
    capsys.readouterr()
    code, stdout, _ = _probe_json(out, capsys)
    assert code == 0 and 0.0 <= json.loads(stdout)["top1"] <= 1.0
    # a labels file from elsewhere (same length) is refused by probe and rank, naming it
    y = np.load(out / "test_labels.npy")
    np.save(out / "test_labels.npy", y[::-1].copy())
    code, _, err = _probe_json(out, capsys)
    assert code == 2 and "test_labels.npy" in err and "Traceback" not in err
    code = main(["rank", "--target", str(out / "test_labels.npy"), "--candidates",
                 str(out / "test_features.npy"), str(out / "test_features.npy")])
    assert code == 2 and "test_labels.npy" in capsys.readouterr().err
    # an --out that is a file is a message, not a traceback
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["extract", tiny_run, "--device", "cpu", "--out", str(blocker)]) == 2
    assert "not a directory" in capsys.readouterr().err


# -------------------------------------------------------------------- real processes, killed
_BARRIER = textwrap.dedent(
    """
    # `etfcore train`, with every process of the test held where the run's loggers are made
    # (just before the run directory is known) until all have arrived: the worst interleaving.
    import os, sys, time
    from etfcore.training import trainer
    from etfcore.cli import main

    barrier, count = sys.argv[1], int(sys.argv[2])
    real_loggers = trainer.Trainer._loggers

    def loggers(self, *a, **k):
        made = real_loggers(self, *a, **k)
        open(os.path.join(barrier, str(os.getpid())), "w").close()
        deadline = time.time() + 60
        while len(os.listdir(barrier)) < count and time.time() < deadline:
            time.sleep(0.001)
        return made

    trainer.Trainer._loggers = loggers
    sys.exit(main(sys.argv[3:]))
    """
)


@pytest.mark.slow
def test_two_train_processes_into_one_out_get_two_runs(tmp_path):
    script = tmp_path / "barrier.py"
    script.write_text(_BARRIER)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    out = tmp_path / "out"
    args = [sys.executable, str(script), str(barrier), "2",
            "train", "--set", "epochs=2", *TINY, "--out", str(out)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=ENV) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    dirs = sorted(os.listdir(out / "run"))
    assert dirs == ["version_0", "version_1"]
    printed = sorted(o[0].strip().splitlines()[-1] for o in outs)
    assert printed == [f"run directory: {out / 'run' / d}" for d in dirs]
    for d in dirs:
        run = out / "run" / d
        rows = _io.read_jsonl(run / "metrics.jsonl")
        assert [r["epoch"] for r in rows] == [1, 2]  # one run's epochs, not two interleaved
        assert (run / "config.toml").exists()
        assert (run / "checkpoints" / "last.ckpt").exists()


def _wait_for(predicate, proc, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.mark.slow
def test_kill_9_during_extract_leaves_the_earlier_extraction_whole(tiny_run, tmp_path, capsys):
    from etfcore.cli import main

    out = tmp_path / "feats"
    assert main(["extract", tiny_run, "--set", "val_fraction=0.2", "--device", "cpu",
                 "--out", str(out)]) == 0
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    capsys.readouterr()
    code, reference, _ = _probe_json(out, capsys)
    assert code == 0
    # batch size 1: the extraction takes long enough to be killed while the rows are written
    proc = subprocess.Popen(
        [*ETFCORE, "extract", tiny_run, "--device", "cpu",
         "--batch-size", "1", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)

    def files():
        found = {}
        for d, _, names in os.walk(out):
            for n in names:
                try:
                    found[os.path.join(d, n)] = os.stat(os.path.join(d, n)).st_mtime_ns
                except FileNotFoundError:
                    pass
        return found

    old = files()

    def writing():  # a new .npy file, or one rewritten: the extraction is writing rows
        return any(p.endswith(".npy") and old.get(p) != t for p, t in files().items())

    try:
        assert _wait_for(writing, proc, 60), proc.communicate()[1][-1500:]
        proc.kill()
    finally:
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    after = {n: (out / n).read_bytes() for n in os.listdir(out) if not n.startswith(".")}
    assert after == before  # the earlier set, byte for byte (val_* included)
    code, again, err = _probe_json(out, capsys)
    assert code == 0, err
    assert json.loads(again) == json.loads(reference)
    # and the next extraction succeeds over the debris
    assert main(["extract", tiny_run, "--device", "cpu", "--out", str(out)]) == 0


_KILL_DURING_SAVE = textwrap.dedent(
    """
    # Runs `etfcore train` and kills itself (SIGKILL) halfway through writing the bytes of the
    # second save of last.ckpt, whichever file the writer puts the bytes in first (the
    # checkpoint itself, a temporary file beside it, or one elsewhere moved into place).
    import builtins, os, shutil, signal, sys
    from etfcore.cli import main

    real_open, real_move = builtins.open, shutil.move
    saves = {"n": 0}

    def second_last(name):
        if "last.ckpt" not in os.path.basename(str(name)):
            return False
        saves["n"] += 1
        return saves["n"] >= 2

    def die_halfway(data, dst):
        with real_open(dst, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    class Killer:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(bytes(data)[: len(data) // 2])
            self.f.flush()
            os.fsync(self.f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    def hooked_open(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        if isinstance(file, (str, os.PathLike)) and "w" in mode and second_last(file):
            return Killer(f)
        return f

    def move(src, dst, *a, **k):  # a temporary file moved across filesystems
        if not second_last(dst):
            return real_move(src, dst, *a, **k)
        with real_open(src, "rb") as f:
            die_halfway(f.read(), dst)

    builtins.open, shutil.move = hooked_open, move
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_save_on_another_filesystem_keeps_it_resumable(tmp_path):
    shm = "/dev/shm"
    if not (os.path.isdir(shm) and os.access(shm, os.W_OK)):
        pytest.skip("no writable /dev/shm")
    if os.stat(shm).st_dev == os.stat(tempfile.gettempdir()).st_dev:
        pytest.skip("/dev/shm is on the temporary directory's filesystem")
    out = tempfile.mkdtemp(prefix="etfcore-test-", dir=shm)
    try:
        script = tmp_path / "kill_during_save.py"
        script.write_text(_KILL_DURING_SAVE)
        r = subprocess.run(
            [sys.executable, str(script), "train", "--set", "epochs=2", *TINY, "--out", out],
            capture_output=True, text=True, env=ENV, timeout=60,
        )
        assert r.returncode == -signal.SIGKILL, r.stderr[-1500:]
        last = os.path.join(out, "run", "version_0", "checkpoints", "last.ckpt")
        import torch

        ck = torch.load(last, map_location="cpu", weights_only=False)  # whole: epoch 1's
        assert ck["epoch"] == 0
        r = _cli("train", "--resume", "--out", out, timeout=60)
        assert r.returncode == 0, r.stderr[-1500:]
        rows = _io.read_jsonl(os.path.join(out, "run", "version_0", "metrics.jsonl"))
        assert [row["epoch"] for row in rows] == [1, 2]
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_sigterm_keeps_a_checkpoint_exits_143_and_resume_is_exact(tmp_path):
    import torch

    epochs = ["--set", "epochs=4", "--set", "seed=3"]
    full = _cli("train", *epochs, *TINY, "--out", tmp_path / "a", timeout=90)
    assert full.returncode == 0, full.stderr[-1500:]
    proc = subprocess.Popen([*ETFCORE, "train", *epochs, *TINY, "--out", str(tmp_path / "b")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    run = tmp_path / "b" / "run" / "version_0"
    try:
        assert _wait_for((run / "checkpoints" / "last.ckpt").exists, proc, 60)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-1500:]
    assert "SIGTERM" in err and "last checkpoint kept" in err and "--resume" in err
    assert "Traceback" not in err
    done = len(_io.read_jsonl(run / "metrics.jsonl"))
    assert 1 <= done < 4
    resumed = _cli("train", "--resume", "--out", tmp_path / "b", timeout=90)
    assert resumed.returncode == 0, resumed.stderr[-1500:]
    drop = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    ref = [drop(r) for r in _io.read_jsonl(tmp_path / "a" / "run" / "version_0" / "metrics.jsonl")]
    got = [drop(r) for r in _io.read_jsonl(run / "metrics.jsonl")]
    assert got == ref
    sa = torch.load(tmp_path / "a" / "run" / "version_0" / "checkpoints" / "last.ckpt",
                    weights_only=False)["state_dict"]
    sb = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------- a full disk
def _can_mount_private_tmpfs() -> bool:
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return False
    probe = tempfile.mkdtemp()
    try:
        mount = f"mount -t tmpfs -o size=64k tmpfs {probe}"
        r = subprocess.run(["unshare", "-m", "sh", "-c", mount], capture_output=True, timeout=10)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        os.rmdir(probe)


needs_tmpfs = pytest.mark.skipif(not _can_mount_private_tmpfs(),
                                 reason="cannot mount a private tmpfs (unshare -m) here")


def _on_full_disk(tmp_path, size_kb, before, during, leave_kb):
    """Runs shell commands in a private mount namespace with a ``size_kb`` tmpfs at DISK:
    ``before``, then fills the disk to ``leave_kb`` KiB free (a shell expression), then
    ``during``. Returns the completed process (stdout: markers the commands print)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    py = f"{sys.executable} -m etfcore.cli"
    script = textwrap.dedent(f"""
        set -u
        mount -t tmpfs -o size={size_kb}k tmpfs {disk} || exit 99
        DISK={disk}; ETF="{py}"
        {before}
        dd if=/dev/zero of=$DISK/keep bs=1k count={leave_kb} 2>/dev/null
        dd if=/dev/zero of=$DISK/fill bs=4k 2>/dev/null
        rm $DISK/keep
        {during}
    """)
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          env=ENV, timeout=120)


@pytest.mark.slow
@needs_tmpfs
def test_a_full_disk_during_extract_is_a_message_and_keeps_the_earlier_set(tiny_run, tmp_path):
    probe = ("$ETF probe --train $DISK/f/train_features.npy $DISK/f/train_labels.npy "
             "--test $DISK/f/test_features.npy $DISK/f/test_labels.npy --device cpu --json")
    # three classes first, then all ten: the new set needs more room than the disk has left
    r = _on_full_disk(
        tmp_path, 1024,
        before=f"$ETF extract {tiny_run} --set classes=0,1,2 --set val_fraction=0.2 "
               "--device cpu --out $DISK/f >/dev/null || exit 98\n"
               f"{probe} > $DISK/../before.json",
        during=f"$ETF extract {tiny_run} --device cpu --out $DISK/f\n"
               "echo EXTRACT_RC=$?\n"
               f"{probe} > $DISK/../after.json; echo PROBE_RC=$?",
        leave_kb=24,
    )
    assert r.returncode == 0, (r.stdout, r.stderr[-2000:])
    assert "EXTRACT_RC=2" in r.stdout, r.stderr[-2000:]
    assert "etfcore: error: StorageError" in r.stderr and "space" in r.stderr
    assert "Traceback" not in r.stderr
    assert "PROBE_RC=0" in r.stdout
    before = json.loads((tmp_path / "before.json").read_text())
    assert json.loads((tmp_path / "after.json").read_text()) == before


@pytest.mark.slow
@needs_tmpfs
def test_a_full_disk_during_a_checkpoint_is_a_message_and_keeps_the_last_one(tmp_path):
    last = "$DISK/o/run/version_0/checkpoints/last.ckpt"
    # a run stopped by SIGTERM after its first checkpoint, resumed on a disk too full for the
    # next one: the resumed run fails with a message, the checkpoint it started from is whole
    before = textwrap.dedent(f"""
        $ETF train --set epochs=6 {' '.join(TINY)} --out $DISK/o 2>/dev/null &
        PID=$!; N=0
        while [ ! -f {last} ] && [ $N -lt 600 ]; do sleep 0.05; N=$((N+1)); done
        kill -TERM $PID; wait $PID; echo FIRST_RC=$?
        cp {last} $DISK/../before.ckpt
        SIZE=$(stat -c %s {last})
    """)
    r = _on_full_disk(
        tmp_path, 4096, before=before,
        during=f"$ETF train --resume --out $DISK/o; echo TRAIN_RC=$?\n"
               f"cp {last} $DISK/../after.ckpt",
        leave_kb="$((SIZE / 2048))",
    )
    assert r.returncode == 0, (r.stdout, r.stderr[-2000:])
    assert "FIRST_RC=143" in r.stdout, r.stderr[-2000:]
    assert "TRAIN_RC=2" in r.stdout, r.stderr[-2000:]
    assert "etfcore: error:" in r.stderr and "space" in r.stderr.lower()
    assert "Traceback" not in r.stderr
    assert (tmp_path / "after.ckpt").read_bytes() == (tmp_path / "before.ckpt").read_bytes()


def test_warnings_module_is_quiet_by_default():
    # (read_jsonl warns only for damage; a clean file gives no warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _io.read_jsonl(os.devnull) == []


def test_lightning_writes_checkpoints_through_the_atomic_writer(tmp_path):
    pytest.importorskip("lightning")
    import torch

    from etfcore.training import TrainConfig, Trainer
    from etfcore.training.trainer import AtomicCheckpointIO, claim_version

    t = Trainer(TrainConfig(epochs=1, feature_dim=16, progress=False, accelerator="cpu"),
                out_dir=str(tmp_path / "o"))
    t.fit()
    io_plugin = t.lightning.strategy.checkpoint_io
    assert isinstance(io_plugin, AtomicCheckpointIO)
    last = os.path.join(t.run_dir, "checkpoints", "last.ckpt")
    before = open(last, "rb").read()
    # a manual save goes the same way; a failing one keeps the file and names it
    t.lightning.save_checkpoint(os.path.join(t.run_dir, "checkpoints", "manual.ckpt"))
    manual = torch.load(os.path.join(t.run_dir, "checkpoints", "manual.ckpt"),
                        weights_only=False)
    assert manual["state_dict"].keys() == t.module.state_dict().keys()
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the checkpoint directory should be")
    with pytest.raises(ec.StorageError, match="blocked"):
        io_plugin.save_checkpoint({"x": 1}, str(blocked / "last.ckpt"))
    assert open(last, "rb").read() == before
    assert not [n for n in os.listdir(os.path.dirname(last)) if ".tmp-" in n]
    # run directories are claimed one by one, never shared
    parent = tmp_path / "claims"
    assert [claim_version(str(parent)) for _ in range(3)] == [0, 1, 2]
    (parent / "version_7").mkdir()
    assert claim_version(str(parent)) == 8
