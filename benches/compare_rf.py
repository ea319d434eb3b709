"""Empirical random-feature kernel: etfcore against numpy's ``σ(X @ W.T)`` then Gram, same run.

Workload: n=8192, p=1024, m=4096, float32, ReLU. Each method runs in its own process
(peak memory above the input is its own); both use the very same W (etfcore's seeded projection),
and the results are compared. The runs alternate (numpy, etfcore, numpy, ...) ``--repeats`` times
and the minimum of each is reported, with the process CPU time beside the wall time (on a shared
machine the wall time depends on what else runs; the CPU time much less).

    python benches/compare_rf.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from compare import rss_now_mib as now_mib  # benches/ is the script's directory
from compare import rss_peak_mib as peak_mib


def run(method, path, m):
    from etfcore import rf

    X = np.load(path + ".X.npy")
    W = np.load(path + ".W.npy") if method == "numpy" else None
    base = now_mib()
    c0 = time.process_time()
    t0 = time.perf_counter()
    if method == "numpy":
        S = np.maximum(X @ W.T, 0, dtype=np.float32)
        K = (S @ S.T) / np.float32(m)
    else:
        K = rf.kernel(X, "relu", m, seed=0)
    secs = time.perf_counter() - t0
    cpu = time.process_time() - c0
    np.save(path + f".{method}.K.npy", K[:64, :64])
    return dict(seconds=secs, cpu_seconds=cpu, peak_extra_mib=peak_mib() - base)


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--method")
    ap.add_argument("--path")
    ap.add_argument("--m", type=int)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if a.method:
        print(json.dumps(run(a.method, a.path, a.m)))
        return
    from etfcore import rf

    n, p, m = (2048, 256, 1024) if a.quick else (8192, 1024, 4096)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "d")
        np.save(
            path + ".X.npy",
            (rng.standard_normal((n, p), dtype=np.float32) / np.sqrt(p)).astype(np.float32),
        )
        np.save(path + ".W.npy", rf.projection(m, p, seed=0).astype(np.float32))
        res = {"numpy": [], "etfcore": []}
        for _ in range(a.repeats):
            for meth in ("numpy", "etfcore"):
                out = subprocess.run(
                    [sys.executable, __file__, "--method", meth, "--path", path, "--m", str(m)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                res[meth].append(json.loads(out.stdout.strip().splitlines()[-1]))
        Kn, Ke = np.load(path + ".numpy.K.npy"), np.load(path + ".etfcore.K.npy")
    err = float(np.abs(Kn - Ke).max() / np.abs(Kn).max())
    best = {
        k: {f: min(r[f] for r in runs) for f in ("seconds", "cpu_seconds", "peak_extra_mib")}
        for k, runs in res.items()
    }
    print(
        f"n={n} p={p} m={m} float32 ReLU, {os.cpu_count()} CPU threads, min of {a.repeats} "
        "alternating runs"
    )
    print(f"{'method':<10}{'time s':>9}{'CPU s':>9}{'peak extra MiB':>16}   all wall times")
    for k, r in best.items():
        walls = " ".join(f"{x['seconds']:.2f}" for x in res[k])
        print(
            f"{k:<10}{r['seconds']:>9.2f}{r['cpu_seconds']:>9.2f}{r['peak_extra_mib']:>16.0f}"
            f"   {walls}"
        )
    nb, eb = best["numpy"], best["etfcore"]
    print(
        f"speed-up {nb['seconds'] / eb['seconds']:.2f}x (CPU time "
        f"{nb['cpu_seconds'] / eb['cpu_seconds']:.2f}x), memory ratio "
        f"{eb['peak_extra_mib'] / nb['peak_extra_mib']:.2f}, max rel diff {err:.1e}"
    )
    pairs = [x["seconds"] / y["seconds"] for x, y in zip(res["numpy"], res["etfcore"])]
    print("per-pair wall speed-ups: " + " ".join(f"{r:.2f}" for r in pairs))


if __name__ == "__main__":
    main()
