"""Streaming LogME / H-score from etfcore's statistics vs an in-memory numpy LogME (SVD of the
N×p feature matrix, the reference algorithm) and numpy H-score, on the same float32 array.

Workload (issue 7): N=200 000, p=1024, K=1000, float32 Gaussian mixture with an offset. Each
method runs in its own subprocess on the same .npy file (memory-mapped), so its peak memory
(VmHWM above the process after loading the libraries) is its own. etfcore streams the file in
chunks of 16 384 rows (plain reads into one buffer) into a CollapseStats; numpy loads the whole
matrix in float64, takes its thin SVD and all classes' projections in one pass.

    python benches/compare_scores.py           # full size
    python benches/compare_scores.py --quick   # N=20 000, p=256, K=100
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

METHODS = ["etfcore_stream", "numpy_svd", "numpy_eigh"]


def peak_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


def now_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def class_sums(a: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Per-class row sums by one sort and np.add.reduceat (every class present)."""
    order = np.argsort(y, kind="stable")
    starts = np.searchsorted(y[order], np.arange(k))
    return np.add.reduceat(a[order], starts, axis=0)


def numpy_spectrum(f: np.ndarray, y: np.ndarray, k: int, route: str):
    """``(σ, X)``: the eigenvalues of ``FᵀF`` kept (``> d·eps·σ_max``) and the class projections
    (row ``c`` = coordinates of ``Fᵀy_c`` scaled to ``uᵀy_c``), from the thin SVD of ``F``
    (the reference code's route for ``N ≤ D``) or the eigendecomposition of ``FᵀF`` (its route
    for ``N > D``)."""
    d = f.shape[1]
    if route == "svd":
        u, s, _ = np.linalg.svd(f, full_matrices=False)
        keep = s > s[0] * np.sqrt(d * np.finfo(float).eps)
        return s[keep] ** 2, class_sums(u[:, keep], y, k)  # row k = u.T @ y_k
    sig, v = np.linalg.eigh(f.T @ f)
    sig, v = sig[::-1], v[:, ::-1]
    keep = sig > sig[0] * d * np.finfo(float).eps
    sig, v = sig[keep], v[:, keep]
    return sig, (class_sums(f, y, k) @ v) / np.sqrt(sig)  # uᵀy = (vᵀFᵀy)/s


def numpy_logme(f: np.ndarray, y: np.ndarray, k: int, route: str = "svd") -> float:
    """The converged fixed point from the spectrum of F (all classes' projections at once)."""
    n = f.shape[0]
    sig, xs = numpy_spectrum(f, y, k, route)
    r = sig.size
    cnt = np.bincount(y, minlength=k).astype(np.float64)
    ev = []
    for c in range(k):
        x2 = xs[c] ** 2
        rx2 = cnt[c] - x2.sum()
        a, b = 1.0, 1.0
        for _ in range(10000):
            t = a / b
            g = np.sum(sig / (sig + t))
            m2 = np.sum(sig * x2 / (t + sig) ** 2)
            res2 = np.sum(x2 * (t / (t + sig)) ** 2) + rx2
            a, b = g / m2, (n - g) / res2
            if abs(a / b - t) / t <= 1e-12:
                break
        ev.append((r / 2 * np.log(a) + n / 2 * np.log(b) - 0.5 * np.sum(np.log(a + b * sig))
                   - b / 2 * res2 - a / 2 * m2 - n / 2 * np.log(2 * np.pi)) / n)
    return float(np.mean(ev))


def numpy_hscore(f: np.ndarray, y: np.ndarray, k: int) -> float:
    n = f.shape[0]
    mg = f.mean(0)
    fc = f - mg
    st = fc.T @ fc / n
    cnt = np.bincount(y, minlength=k).astype(np.float64)
    means = class_sums(fc, y, k) / cnt[:, None]
    sb = (means * (cnt / n)[:, None]).T @ means
    return float(np.trace(np.linalg.pinv(st, rcond=f.shape[1] * np.finfo(float).eps,
                                         hermitian=True) @ sb))


def run(method: str, path: str, k: int) -> dict:
    y = np.load(path + ".y.npy")
    if method == "etfcore_stream":
        import etfcore as ec
    base = now_mib()
    t0 = time.perf_counter()
    if method == "etfcore_stream":
        mm = np.load(path, mmap_mode="r")
        n, p, off = mm.shape[0], mm.shape[1], mm.offset
        del mm
        st = ec.CollapseStats(k, p)
        rows = 16384
        with open(path, "rb") as fh:  # plain reads into one reused buffer: no mapped pages
            fh.seek(off)
            buf = np.empty((rows, p), dtype=np.float32)
            for a in range(0, n, rows):
                m = min(rows, n - a)
                fh.readinto(memoryview(buf[:m]).cast("B"))
                st.update(buf[:m], y[a:a + m])
        t1 = time.perf_counter()
        logme = float(st.logme())
        t2 = time.perf_counter()
        h = st.hscore()
    else:
        f = np.load(path).astype(np.float64)
        t1 = time.perf_counter()
        logme = numpy_logme(f, y, k, route=method.split("_")[1])
        t2 = time.perf_counter()
        h = numpy_hscore(f, y, k)
    t3 = time.perf_counter()
    return dict(method=method, total_s=t3 - t0, pass_s=t1 - t0, logme_s=t2 - t1, hscore_s=t3 - t2,
                logme=logme, hscore=h, peak_extra_mib=peak_mib() - base)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--method")
    ap.add_argument("--path")
    ap.add_argument("--K", type=int)
    ap.add_argument("--methods", nargs="+", default=list(METHODS),
                    help="a subset of the methods (e.g. skip numpy_svd, which takes minutes)")
    args = ap.parse_args()
    if args.method:
        print(json.dumps(run(args.method, args.path, args.K)))
        return
    n, p, k = (20_000, 256, 100) if args.quick else (200_000, 1024, 1000)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "f.npy")
        y = rng.integers(0, k, size=n)
        means = rng.normal(size=(k, p)).astype(np.float32)
        f = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, p))
        for a in range(0, n, 20000):
            b = min(n, a + 20000)
            f[a:b] = 3.0 + means[y[a:b]] + rng.normal(size=(b - a, p)).astype(np.float32)
        f.flush()
        del f
        np.save(path + ".y.npy", y)
        print(f"N={n}, p={p}, K={k}, float32 array {n * p * 4 / 2**20:.0f} MiB, "
              f"cpus {os.cpu_count()}")
        res = {}
        for m in args.methods:
            out = subprocess.run([sys.executable, __file__, "--method", m, "--path", path,
                                  "--K", str(k)], capture_output=True, text=True)
            if out.returncode != 0:
                print(m, "failed:", out.stderr[-2000:])
                continue
            res[m] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{'method':<16} {'total s':>8} {'pass s':>8} {'LogME s':>8} {'H s':>6} "
          f"{'peak extra MiB':>15} {'LogME':>14} {'H-score':>12}")
    for m, r in res.items():
        print(f"{m:<16} {r['total_s']:8.2f} {r['pass_s']:8.2f} {r['logme_s']:8.2f} "
              f"{r['hscore_s']:6.2f} {r['peak_extra_mib']:15.0f} {r['logme']:14.10f} "
              f"{r['hscore']:12.6f}")
    fastest = min((m for m in res if m != "etfcore_stream"), key=lambda m: res[m]["total_s"],
                  default=None)
    if "etfcore_stream" in res and fastest is not None:
        e, s = res["etfcore_stream"], res[fastest]
        print(f"against the fastest in-memory method ({fastest}): "
              f"time ratio {s['total_s'] / e['total_s']:.2f}x, "
              f"peak memory ratio {s['peak_extra_mib'] / max(e['peak_extra_mib'], 1):.1f}x, "
              f"LogME rel diff {abs(e['logme'] - s['logme']) / abs(s['logme']):.1e}, "
              f"H-score rel diff {abs(e['hscore'] - s['hscore']) / abs(s['hscore']):.1e}")

if __name__ == "__main__":
    main()
