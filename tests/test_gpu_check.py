"""benches/gpu_check.py cannot rot: its --dry-run form (tiny sizes, CPU) runs every step and
writes both reports."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_runs_every_step(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    r = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "gpu_check.py"), "--dry-run", "--out",
         str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = report["steps"]
    assert set(steps) == {"cuda_tests", "stats_update_K1000", "stats_update_K50000",
                          "linear_probe", "resnet18_epoch_tracking"}  # fmt: skip
    failed = {k: v["error"] for k, v in steps.items() if "error" in v}
    assert not failed, failed
    assert steps["cuda_tests"]["returncode"] == 0  # the CUDA tests are collected
    assert steps["linear_probe"]["device_top1"] > 0.5
    assert report["environment"]["form"] == "dry-run"
    assert "| linear_probe |" in (tmp_path / "gpu_check.md").read_text()


def test_gpu_check_refuses_cuda_without_a_device(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    r = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "gpu_check.py"), "--quick", "--out",
         str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )  # fmt: skip
    assert r.returncode == 2 and "no CUDA device" in r.stderr
