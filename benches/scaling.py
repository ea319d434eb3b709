"""How the statistics pass and the metrics scale with N, p and K (public Python API only).

For each sweep (one of N, p, K varies, the others fixed) the script times, on the same float32
Gaussian-mixture data, ``CollapseStats.update`` over the whole array (the pass) and
``CollapseStats.metrics()`` (every statistics metric from one report), takes the minimum of
``--repeats`` runs, fits the log–log slope of each and plots them (docs/scaling.png). The pass
should be linear in N, quadratic in p and nearly flat in K; the metrics do not depend on N.
A memory probe then measures, in fresh processes with the data streamed in batches, the peak
resident memory of the statistics + metrics at a few (p, K) and fits ``a·p² + b·K·p`` to state
the largest sizes whose statistics and metrics fit in 24 GiB (the data themselves stream).

    python benches/scaling.py            # default sweeps, a few minutes on 2 cores
    python benches/scaling.py --quick    # smaller sweeps (a smoke test)
    python benches/scaling.py --plot docs/scaling.png
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

import etfcore as ec

BASE = dict(N=100_000, p=256, K=100)
SWEEPS = {
    "N": [25_000, 50_000, 100_000, 200_000, 400_000],
    "p": [128, 256, 512, 1024, 2048],
    "K": [10, 100, 1_000, 5_000],
}
QUICK = {"N": [10_000, 20_000, 40_000], "p": [64, 128, 256], "K": [10, 100, 400]}
MEMORY_PROBES = [(1024, 100), (2048, 100), (2048, 5_000)]
GIB24 = 24 * 1024**3


def data(N, p, K, seed=0):
    """Float32 features: class means at distance ~3σ, offset 10 (as a real backbone's are)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(N) % K).astype(np.int64)
    means = rng.standard_normal((K, p), dtype=np.float32) * np.float32(3 / np.sqrt(p))
    H = rng.standard_normal((N, p), dtype=np.float32)
    H += means[y]
    H += np.float32(10.0)
    return H, y


def time_point(N, p, K, repeats):
    H, y = data(N, p, K)
    best_u = best_m = float("inf")
    for _ in range(repeats):
        s = ec.CollapseStats(K, p)
        t0 = time.perf_counter()
        s.update(H, y)
        t1 = time.perf_counter()
        s.metrics()
        t2 = time.perf_counter()
        best_u, best_m = min(best_u, t1 - t0), min(best_m, t2 - t1)
    return best_u, best_m


def slope(xs, ts):
    return float(np.polyfit(np.log(xs), np.log(ts), 1)[0])


def memory_child(p, K):
    """Peak resident MiB of statistics + metrics above the baseline (data streamed)."""
    from compare import rss_now_mib, rss_peak_mib  # benches/ is the script's directory

    rng = np.random.default_rng(0)
    base = rss_now_mib()
    s = ec.CollapseStats(K, p)
    rows = 2 * K
    for _ in range(2):  # every class present, a few rows at a time
        H = rng.standard_normal((rows, p), dtype=np.float32)
        s.update(H, np.arange(rows) % K)
        del H
    s.metrics()
    return rss_peak_mib() - base


def memory_probe():
    out = []
    for p, K in MEMORY_PROBES:
        run = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(p), str(K)],
            capture_output=True,
            text=True,
            check=True,
        )
        out.append((p, K, float(run.stdout.strip().splitlines()[-1])))
    # peak MiB ≈ a·p² + b·K·p (least squares over the probes)
    A = np.array([[p * p, K * p] for p, K, _ in out], dtype=float)
    a, b = np.linalg.lstsq(A, np.array([m for _, _, m in out]), rcond=None)[0]
    return out, a, b


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--plot", default=None, help="write the log-log figure here (png)")
    ap.add_argument("--memory-child", nargs=2, type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory_child:
        print(memory_child(*a.memory_child))
        return
    sweeps = QUICK if a.quick else SWEEPS
    base = dict(N=20_000, p=128, K=50) if a.quick else BASE
    print(
        f"etfcore scaling, float32, {os.cpu_count()} CPU threads; base {base}; min of "
        f"{a.repeats} runs (shared machine: timings vary)"
    )
    results = {}
    for var, values in sweeps.items():
        rows = []
        for v in values:
            cfg = {**base, var: v}
            tu, tm = time_point(cfg["N"], cfg["p"], cfg["K"], a.repeats)
            rows.append((v, tu, tm))
            print(
                f"  {var}={v:>8}  (N={cfg['N']}, p={cfg['p']}, K={cfg['K']})  "
                f"update {tu:8.3f} s  metrics {tm:8.3f} s",
                flush=True,
            )
        xs = [r[0] for r in rows]
        su, sm = slope(xs, [r[1] for r in rows]), slope(xs, [r[2] for r in rows])
        st = slope(xs, [r[1] + r[2] for r in rows])
        # the largest three sizes: the asymptotic order, past per-row and per-call overheads
        tu3, tm3 = (
            slope(xs[-3:], [r[1] for r in rows][-3:]),
            slope(xs[-3:], [r[2] for r in rows][-3:]),
        )
        results[var] = dict(
            rows=rows,
            slope_update=su,
            slope_metrics=sm,
            slope_total=st,
            slope_update_top3=tu3,
            slope_metrics_top3=tm3,
        )
        print(
            f"  slope in {var}: update {su:.2f}, metrics {sm:.2f}, total {st:.2f}; "
            f"largest three sizes: update {tu3:.2f}, metrics {tm3:.2f}"
        )
    probes, ca, cb = memory_probe()
    for p, K, mib in probes:
        print(f"  memory: p={p}, K={K}: statistics + metrics peak {mib:.0f} MiB")
    print(f"  fit: peak MiB ≈ {ca:.2e}·p² + {cb:.2e}·K·p")
    budget = GIB24 / 2**20
    for K in (1_000, 50_000):
        # largest p with a·p² + b·K·p ≤ 24 GiB
        pmax = (-cb * K + np.sqrt((cb * K) ** 2 + 4 * ca * budget)) / (2 * ca)
        print(
            f"  fits in 24 GiB (statistics + metrics; N unbounded, streamed): K={K}: "
            f"p ≤ {int(pmax):,}"
        )
    if a.plot:
        plot(results, a.plot)
        print(f"figure: {a.plot}")
    print(
        json.dumps(
            {k: {kk: vv for kk, vv in v.items() if kk != "rows"} for k, v in results.items()}
        )
    )


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, (var, r) in zip(axes, results.items()):
        xs = np.array([row[0] for row in r["rows"]], dtype=float)
        for col, label, key in (
            (1, "update (pass)", "slope_update"),
            (2, "metrics", "slope_metrics"),
        ):
            ts = np.array([row[col] for row in r["rows"]])
            top = r[key + "_top3"] if key + "_top3" in r else r[key]
            ax.loglog(xs, ts, "o-", label=f"{label}: slope {r[key]:.2f} (top 3: {top:.2f})")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: no overlapping labels
        ax.set_xlabel(var)
        ax.set_ylabel("seconds")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fixed = {k: v for k, v in BASE.items() if k != var}
        ax.set_title(f"vs {var} ({', '.join(f'{k}={v}' for k, v in fixed.items())})", fontsize=9)
    fig.suptitle("etfcore statistics pass and metrics, float32 (log–log)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
