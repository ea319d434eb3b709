"""Lightning's conventions in run directories: one epoch count (from 1) in metrics.jsonl,
metrics.csv and checkpoint names; a resumed run's folder is an uninterrupted run's."""

import csv
import json
import os
import warnings

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

from etfcore.training import TrainConfig, Trainer, TrainingInterrupted  # noqa: E402

QUIET = dict(progress=False, accelerator="cpu")


class _StopAt(L.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


def _files(run):
    return sorted(
        os.path.relpath(os.path.join(d, f), run) for d, _, fs in os.walk(run) for f in fs
    )


def _csv(run):
    with open(os.path.join(run, "metrics.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_resumed_run_folder_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative output directories, as a user types them
    cfg = TrainConfig(epochs=4, seed=3, track_every=1, **QUIET)
    full = Trainer(cfg, out_dir="a")
    full.fit()
    part = Trainer(cfg, out_dir="b", callbacks=[_StopAt(2)])
    with pytest.raises(TrainingInterrupted):
        part.fit()
    resumed = Trainer(cfg, out_dir="b")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed.fit(resume=True)
    messages = [str(w.message) for w in caught]
    assert not any("dirpath has changed" in m or "won't be reloaded" in m for m in messages)
    assert not any("Previous log files" in m for m in messages)
    # the run path stays relative and in place
    assert resumed.run_dir == os.path.join("b", "run", "version_0") == part.run_dir
    ra, rb = full.run_dir, resumed.run_dir
    # the same files (one best checkpoint, no side file for earlier epochs)
    assert _files(rb) == _files(ra)
    best = [f for f in _files(rb) if os.path.basename(f).startswith("best-")]
    assert len(best) == 1
    # one epoch count, from 1: metrics.jsonl, metrics.csv and the checkpoint name
    rows = [json.loads(s) for s in open(os.path.join(rb, "metrics.jsonl"))]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    monitor = "val_acc" if "val_acc" in rows[0] else "test_acc"
    best_epoch = max(rows, key=lambda r: (r[monitor], -r["epoch"]))["epoch"]
    assert best == [os.path.join("checkpoints", f"best-epoch={best_epoch}.ckpt")]
    ca, cb = _csv(ra), _csv(rb)
    assert {float(r["epoch"]) for r in cb} == {1.0, 2.0, 3.0, 4.0}
    # metrics.csv continuous across the resume: the uninterrupted run's rows, in order
    assert list(cb[0]) == list(ca[0])
    drop = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert [drop(r) for r in cb] == [drop(r) for r in ca]
    assert [r["step"] for r in cb] == [r["step"] for r in ca]
