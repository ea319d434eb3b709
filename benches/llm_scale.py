"""Collapse statistics at language-model scale: K = 50 000 classes (a vocabulary), p = 4096.

Synthetic float32 features are generated and streamed in chunks (never held whole): class
means of rank 64 plus unit noise and an offset, every class present. One process: the
statistics pass, then each metric in turn, each with its time and the process's resident
memory (current and peak, from /proc/self/status). With more classes than dimensions every
metric goes through p × p matrices; CDNV and NC2 are sums over the K(K-1)/2 class pairs and
go through blocks of the class-mean Gram (bounded memory, O(K² p) time).

    python benches/llm_scale.py                          # K=50 000, p=4096, N=150 000
    python benches/llm_scale.py --K 5000 --p 512 --N 20000
    python benches/llm_scale.py --skip cdnv,nc2          # leave out the pairwise metrics
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def mem_gib() -> tuple:
    """(current, peak) resident memory of this process in GiB."""
    cur = peak = float("nan")
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                cur = int(line.split()[1]) / 2**20
            elif line.startswith("VmHWM"):
                peak = int(line.split()[1]) / 2**20
    return cur, peak


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--K", type=int, default=50_000)
    ap.add_argument("--p", type=int, default=4096)
    ap.add_argument("--N", type=int, default=150_000)
    ap.add_argument("--chunk", type=int, default=8192)
    ap.add_argument("--skip", default="", help="comma-separated steps to leave out")
    args = ap.parse_args()
    import etfcore as ec

    K, p, N = args.K, args.p, args.N
    skip = set(args.skip.split(","))
    rng = np.random.default_rng(0)
    y_all = rng.permutation(np.arange(N) % K)
    U = rng.normal(size=(K, 64)).astype(np.float32)
    B = (rng.normal(size=(64, p)) / 4).astype(np.float32)
    print(f"K={K} p={p} N={N} float32, streamed in chunks of {args.chunk} rows")
    print(f"{'step':<28}{'time s':>9}{'RSS GiB':>10}{'peak GiB':>10}  value")
    st = ec.CollapseStats(K, p)
    gen = 0.0
    t0 = time.perf_counter()
    for i in range(0, N, args.chunk):
        g0 = time.perf_counter()
        y = y_all[i : i + args.chunk]
        X = 2.0 + U[y] @ B + rng.standard_normal((len(y), p), dtype=np.float32)
        gen += time.perf_counter() - g0
        st.update(X, y)
    upd = time.perf_counter() - t0 - gen
    print(f"{'update (all chunks)':<28}{upd:>9.1f}{mem_gib()[0]:>10.2f}{mem_gib()[1]:>10.2f}")

    steps = [
        ("covariances", lambda: st.within_class_covariance().shape),
        ("vci", lambda: st.vci()),
        ("probe_mse", lambda: st.probe_mse()),
        ("nc1", lambda: st.nc1()),
        ("nc1_split", lambda: st.nc1_split()),
        ("squared_distance", lambda: st.squared_distance()),
        ("within_trace_per_dim", lambda: st.within_trace_per_dim()),
        ("cosine_metrics", lambda: st.cosine_metrics()["class_separation"]),
        ("cdnv", lambda: st.cdnv()),
        ("nc2", lambda: st.nc2()["etf_error"]),
    ]
    for name, fn in steps:
        if name in skip:
            continue
        t = time.perf_counter()
        v = fn()
        dt = time.perf_counter() - t
        cur, peak = mem_gib()
        print(f"{name:<28}{dt:>9.1f}{cur:>10.2f}{peak:>10.2f}  {v}", flush=True)


if __name__ == "__main__":
    main()
