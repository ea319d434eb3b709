"""Collapse statistics at language-model scale, side by side with numpy: K = 50 000 classes (a
vocabulary), p = 4096, float32.

Synthetic float32 features are generated and streamed in chunks (never held whole): class means
of rank 64 plus unit noise and an offset, every class present, labels in random (token) order.
One process, in this order:

1. the statistics pass (`CollapseStats.update` on every chunk) against numpy's bare `HᵀH` on the
   same chunks (float32 `X.T @ X`, summed) — the time excludes generating the chunks;
2. every metric in turn (time, resident memory now and peak);
3. CDNV + NC2 (one visit of the class pairs) against numpy's `M Mᵀ` of the same centred class
   means in float32, formed in row blocks of 256 (only the blocks on and above the diagonal, the
   `K²p/2` multiply-adds the pairs need, no reduction);
4. the whole report (pass + every metric) against bare `HᵀH` + bare `M Mᵀ`.

Beside each: the multiply-adds it needs and the limit = multiply-adds ÷ the machine's measured
float32 GEMM rate (numpy's `A @ B` on 4096 × 4096, best of three).

    python benches/llm_scale.py                       # K=50 000, p=4096, N=100 000
    python benches/llm_scale.py --K 5000 --p 512 --N 20000
    python benches/llm_scale.py --skip cdnv,nc2        # leave out steps
"""

from __future__ import annotations

import argparse
import os
import resource
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


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def gemm_rate(n: int = 4096) -> float:
    """Multiply-adds per second of numpy's float32 GEMM here (best of three)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return n**3 / best


def blocked_mmt(M: np.ndarray, block: int = 256) -> None:
    """numpy's `M Mᵀ` (float32) in row blocks, the blocks on and above the diagonal only."""
    K = M.shape[0]
    for i in range(0, K, block):
        M[i : i + block] @ M[i:].T


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--K", type=int, default=50_000)
    ap.add_argument("--p", type=int, default=4096)
    ap.add_argument("--N", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=8192)
    ap.add_argument("--skip", default="", help="comma-separated steps to leave out")
    args = ap.parse_args()
    import etfcore as ec

    K, p, N = args.K, args.p, args.N
    skip = set(args.skip.split(","))
    rate = gemm_rate()
    print(f"K={K} p={p} N={N} float32, streamed in chunks of {args.chunk} rows; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"numpy float32 GEMM {rate / 1e9:.0f} G multiply-adds/s")

    rng = np.random.default_rng(0)
    y_all = rng.permutation(np.arange(N) % K)
    U = rng.normal(size=(K, 64)).astype(np.float32)
    B = (rng.normal(size=(64, p)) / 4).astype(np.float32)
    st = ec.CollapseStats(K, p)
    HtH = np.zeros((p, p), np.float32)
    t_pass = t_hth = 0.0
    c_pass = c_hth = 0.0
    for i in range(0, N, args.chunk):
        y = y_all[i : i + args.chunk]
        X = 2.0 + U[y] @ B + rng.standard_normal((len(y), p), dtype=np.float32)
        t, c = time.perf_counter(), cpu_s()
        st.update(X, y)
        t_pass += time.perf_counter() - t
        c_pass += cpu_s() - c
        t, c = time.perf_counter(), cpu_s()
        HtH += X.T @ X
        t_hth += time.perf_counter() - t
        c_hth += cpu_s() - c
    del HtH
    rows = []  # (step, etfcore s, numpy s, multiply-adds, note)
    cpu_note = f"CPU s {c_pass:.1f} vs {c_hth:.1f}"
    rows.append(("statistics pass", t_pass, t_hth, N * p * p / 2, cpu_note))
    print(f"pass done ({t_pass:.1f} s; bare HᵀH {t_hth:.1f} s); peak {mem_gib()[1]:.2f} GiB")

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
    print(f"{'metric':<24}{'time s':>9}{'RSS GiB':>10}{'peak GiB':>10}  value")
    metric_s = {}
    for name, fn in steps:
        if name in skip:
            continue
        t = time.perf_counter()
        v = fn()
        metric_s[name] = time.perf_counter() - t
        cur, peak = mem_gib()
        print(f"{name:<24}{metric_s[name]:>9.1f}{cur:>10.2f}{peak:>10.2f}  {v}", flush=True)

    pairs_s = metric_s.get("cdnv", 0.0) + metric_s.get("nc2", 0.0)
    t_mmt = float("nan")
    if "mmt" not in skip:
        M = (st.class_means() - st.global_mean()).astype(np.float32)
        t = time.perf_counter()
        blocked_mmt(M)
        t_mmt = time.perf_counter() - t
        del M
    if "cdnv" not in skip and "nc2" not in skip:
        rows.append(("CDNV + NC2", pairs_s, t_mmt, K * K * p / 2, "numpy: M Mᵀ in row blocks"))
    total = t_pass + sum(metric_s.values())
    rows.append(("pass + every metric", total, t_hth + t_mmt, N * p * p / 2 + K * K * p / 2,
                 "numpy: bare HᵀH + bare M Mᵀ"))

    print()
    print(f"{'step':<22}{'etfcore s':>10}{'numpy s':>9}{'ratio':>7}{'G madds':>9}"
          f"{'limit s':>9}  note")
    for name, ours, theirs, madds, note in rows:
        print(f"{name:<22}{ours:>10.1f}{theirs:>9.1f}{ours / theirs:>7.2f}{madds / 1e9:>9.0f}"
              f"{madds / rate:>9.1f}  {note}")


if __name__ == "__main__":
    main()
