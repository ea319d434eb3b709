"""`etfcore reproduce`, `rank` and `extract` print progress lines on stderr (none with
--quiet), and each warning of a command once with its count, also from `--jobs N` workers."""

from __future__ import annotations

import os
import re
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

from etfcore.cli import main  # noqa: E402
from etfcore.experiments import (  # noqa: E402
    REGISTRY,
    Effect,
    Experiment,
    Outcome,
    Table,
    mean_std,
)


class _Warns(Experiment):
    """No training: each seed raises the same warning twice and returns a number."""

    name = "toy-warns"
    paper = "benchmark"
    claim = "seeds finish"
    paper_result = "none"

    def settings(self, options):
        return {"n": 1}

    def run_seed(self, ctx, settings, seed):
        for _ in range(2):
            warnings.warn("the toy loader has few workers", UserWarning, stacklevel=1)
        return {"x": 0.2 + 0.1 * seed}

    def summarise(self, settings, results):
        rows = [["toy", mean_std([r["x"] for r in results])]]
        return Outcome([Effect("x", tuple(r["x"] for r in results))], Table(["", "x"], rows))

    def plot(self, settings, results, fig):
        return False


@pytest.fixture
def warns():
    exp = _Warns()
    REGISTRY[exp.name] = exp
    yield exp
    REGISTRY.pop(exp.name, None)


SEED_LINE = re.compile(r"^\[(\d)/3\] toy-warns seed (\d) \((\d)/3\) (done in \S+ s|from the cache)"
                       r" · elapsed \S+ (s|min)( · ETA ~?\S+ (s|min))?$")


def _progress_lines(err):
    return [s for s in err.splitlines() if s.startswith("[") or s.startswith("reproduce:")]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_reproduce_prints_plan_seed_and_experiment_lines_and_each_warning_once(
    warns, tmp_path, capsys, jobs
):
    out = str(tmp_path / "r")
    assert main(["reproduce", "toy-warns", "--seeds", "3", "--jobs", jobs, "--out", out]) == 0
    cap = capsys.readouterr()
    lines = _progress_lines(cap.err)
    assert lines[0] == (f"reproduce: 1 experiment × 3 seeds = 3 seed runs (0 in the cache, "
                        f"3 to compute), form cpu, {jobs} job{'s' if jobs != '1' else ''}, "
                        f"cache {os.path.abspath(out)}")
    assert lines[1] == "[experiment 1/1] toy-warns: 3 seeds, 0 in the cache"
    seed_lines = [SEED_LINE.match(s) for s in lines[2:5]]
    assert all(seed_lines), lines
    assert [int(m.group(1)) for m in seed_lines] == [1, 2, 3]  # counted as they finish
    assert sorted(int(m.group(2)) for m in seed_lines) == [0, 1, 2]
    assert all("done in" in m.group(4) for m in seed_lines)
    assert "ETA" in lines[2] and "ETA" not in lines[4]  # nothing left after the last seed
    assert lines[5].startswith("[experiment 1/1] toy-warns done in ")
    # six warnings (two per seed, in this process or in the workers): shown once, counted
    assert cap.err.count("UserWarning: the toy loader has few workers") == 2
    assert "warning raised 6 times (shown once above): UserWarning: the toy loader" in cap.err
    assert "== toy-warns" in cap.out and "Traceback" not in cap.err
    # again: every seed from the cache, no warning (nothing runs)
    assert main(["reproduce", "toy-warns", "--seeds", "3", "--jobs", jobs, "--out", out]) == 0
    err = capsys.readouterr().err
    lines = _progress_lines(err)
    assert "(3 in the cache, 0 to compute)" in lines[0]
    assert all("from the cache" in s for s in lines[2:5]) and "ETA" not in err
    assert "UserWarning" not in err


def test_reproduce_quiet_prints_no_progress_but_the_warnings(warns, tmp_path, capsys):
    argv = ["reproduce", "toy-warns", "--seeds", "2", "--jobs", "1", "--quiet",
            "--out", str(tmp_path)]
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert _progress_lines(cap.err) == []
    assert "warning raised 4 times (shown once above)" in cap.err
    assert "== toy-warns" in cap.out


def _zoo(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    files = []
    for i, s in enumerate((0.3, 0.9, 1.5)):
        f = rng.normal(size=(3, 5))[y] * s + rng.normal(size=(y.size, 5))
        np.save(tmp_path / f"m{i}.npy", f)
        files.append(str(tmp_path / f"m{i}.npy"))
    np.save(tmp_path / "y.npy", y)
    return str(tmp_path / "y.npy"), files


def test_rank_prints_a_line_per_candidate_and_per_stage(tmp_path, capsys):
    y, files = _zoo(tmp_path)
    assert main(["rank", "--target", y, "--candidates", *files]) == 0
    cap = capsys.readouterr()
    lines = [s for s in cap.err.splitlines() if s.startswith("[scores")]
    assert [s.split(" done in")[0] for s in lines] == [
        "[scores 1/3] m0", "[scores 2/3] m1", "[scores 3/3] m2"]
    assert "ETA " in lines[0] and "ETA" not in lines[-1]
    assert "[scores" not in cap.out  # the table alone on stdout
    # the ranking report: candidates, then the bootstrap and the curve, each with its last line
    argv = ["rank", "--target", y, "--candidates", *files, "--accuracies", "0.5", "0.6", "0.7",
            "--scores", "hscore", "vci", "--bootstrap", "3", "--curve", "30,45"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert re.search(r"^\[scores 3/3\] m2 done in ", err, re.M)
    assert re.search(r"^\[bootstrap 3/3\] resample 3 done in ", err, re.M)
    assert re.search(r"^\[curve 2/2\] N=45 done in ", err, re.M)
    assert main(argv + ["--quiet"]) == 0
    assert "[" not in capsys.readouterr().err


def test_extract_prints_rows_rate_and_eta_per_split(tmp_path, capsys):
    from etfcore.training import TrainConfig, Trainer

    cfg = TrainConfig.from_dict(dict(classes=[0, 1, 2], epochs=1, head="linear", feature_dim=8,
                                     progress=False, accelerator="cpu", name="src"))
    trainer = Trainer(cfg, out_dir=str(tmp_path / "train"))
    trainer.fit()
    out = tmp_path / "feats"
    argv = ["extract", trainer.run_dir, "--device", "cpu", "--batch-size", "32", "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    for split in ("train", "test"):
        rows = np.load(out / f"{split}_features.npy").shape[0]
        last = [s for s in err.splitlines() if s.startswith(f"[extract {split}]")][-1]
        assert last.startswith(f"[extract {split}] {rows:,}/{rows:,} rows (100%) · ")
        assert re.search(r" · [\d,]+ rows/s · elapsed ", last), last
    assert main(argv + ["--quiet"]) == 0
    assert "[extract" not in capsys.readouterr().err
