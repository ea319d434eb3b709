"""etfcore against its competitors, side by side in one run, on the same array.

Workload: N=200 000, p=1024, K=1000, float32 offset Gaussian mixture; every covariance
metric (Σ_T, Σ_B, Σ_W) + VCI + NC1 + probe_mse.

First table (the physical limit): each step of etfcore's pass against numpy's bare ``X.T @ X``
on the same array, float32 and float64, in one process, the two interleaved repeat by repeat;
each time is the minimum over the repeats and each ratio is that of the minima.

Second table (the competitors): each method runs in its own subprocess on the same .npy file so
that its peak memory (VmHWM above the loaded data) is its own.

    python benches/compare.py             # full size
    python benches/compare.py --quick     # N=20 000, p=256, K=100
    python benches/compare.py --steps-only --repeats 5
    python benches/compare.py --steps-only --threads 1 --clock cpu   # CPU seconds, one thread

On a shared machine the wall-clock ratio depends on what else runs; ``--threads 1 --clock cpu``
gives both sides one thread and measures the CPU time each consumed, which other processes do
not inflate.
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

METHODS = [
    "numpy_bare_xtx",
    "etfcore",
    "numpy_tuned",
    "torch_cpu",
    "per_class_loop",
    "numpy_f64_reference",
]


def rss_peak_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_now_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def vci_nc1_probe(ST, SB, SW, M, w, K, p):
    """Shared finishing step of the numpy pipelines (float64 p×p matrices)."""
    ev, V = np.linalg.eigh(ST)
    keep = ev > p * np.finfo(float).eps * ev.max()
    Z = (V[:, keep].T @ M.T) / np.sqrt(ev[keep])[:, None]
    d = (Z**2).sum(0)
    vci = 1 - (w * d).sum() / min(p, K - 1)
    probe = 0.5 * (1 - (w**2).sum()) - 0.5 * (w**2 * d).sum()
    eb, U = np.linalg.eigh(SB)
    order = np.argsort(eb)[::-1][: min(p, K - 1)]
    order = order[eb[order] > p * np.finfo(float).eps * eb.max()]
    nc1 = np.trace(U[:, order].T @ SW @ U[:, order] / eb[order]) / K
    return dict(vci=vci, nc1=nc1, probe_mse=probe)


def from_sums(S, sums, n, N, K, p):
    """Covariances and metrics from the shifted scatter ``S`` and class sums (float64 numpy)."""
    mu = sums / n[:, None]
    w = n / N
    mG = w @ mu
    ST = S / N - np.outer(mG, mG)
    M = mu - mG
    SB = (M.T * w) @ M
    return vci_nc1_probe(ST, SB, ST - SB, M, w, K, p)


def run_method(name: str, path: str, K: int) -> dict:
    X = np.load(path + ".X.npy")
    y = np.load(path + ".y.npy")
    N, p = X.shape
    # Libraries are imported before the clock starts (import time is not the method's cost).
    if name == "etfcore":
        import etfcore as ec
    elif name == "torch_cpu":
        try:
            import torch
        except ImportError:
            return dict(skipped="torch not installed")
        torch.set_num_threads(os.cpu_count() or 1)
    base = rss_now_mib()
    t0 = time.perf_counter()
    res = {}
    if name == "numpy_bare_xtx":
        G = X.T @ X
        res = dict(checksum=float(G[0, 0]))
    elif name == "etfcore":
        st = ec.CollapseStats(K, p).update(X, y)
        res = dict(vci=st.vci().value, nc1=st.nc1().value, probe_mse=st.probe_mse().value)
        st.total_covariance(), st.between_class_covariance(), st.within_class_covariance()
    elif name == "numpy_tuned":
        c = X[:4096].mean(0, dtype=np.float64).astype(np.float32)
        Xc = X - c  # one float32 copy
        S = (Xc.T @ Xc).astype(np.float64)
        order = np.argsort(y, kind="stable")
        n = np.bincount(y, minlength=K)
        starts = np.r_[0, np.cumsum(n)[:-1]]
        sums = np.add.reduceat(Xc[order].astype(np.float64), starts, axis=0)
        del Xc
        res = from_sums(S, sums, n, N, K, p)
    elif name == "torch_cpu":
        Xt = torch.from_numpy(X)
        yt = torch.from_numpy(y)
        c = Xt[:4096].double().mean(0).float()
        Xc = Xt - c
        S = (Xc.T @ Xc).double()
        sums = torch.zeros(K, p, dtype=torch.float64).index_add_(0, yt, Xc.double())
        n = torch.bincount(yt, minlength=K).double()
        res = from_sums(S.numpy(), sums.numpy(), n.numpy(), N, K, p)
    elif name == "per_class_loop":
        # What research code does: a Python loop over classes, library-default pinv.
        mG = X.mean(0, dtype=np.float64)
        SW = np.zeros((p, p))
        mus = []
        n = []
        for k in range(K):
            Hk = X[y == k].astype(np.float64)
            mu = Hk.mean(0)
            D = Hk - mu
            SW += D.T @ D
            mus.append(mu)
            n.append(len(Hk))
        SW /= N
        mu = np.array(mus)
        w = np.array(n) / N
        M = mu - mG
        SB = (M.T * w) @ M
        ST = SW + SB
        vci = 1 - np.trace(np.linalg.pinv(ST) @ SB) / min(p, K - 1)
        nc1 = np.trace(SW @ np.linalg.pinv(SB)) / K
        d = np.einsum("kp,pq,kq->k", M, np.linalg.pinv(ST), M)
        res = dict(vci=vci, nc1=nc1, probe_mse=0.5 * (1 - (w**2).sum()) - 0.5 * (w**2 * d).sum())
    elif name == "numpy_f64_reference":
        X64 = X.astype(np.float64)
        n = np.bincount(y, minlength=K)
        mu = np.zeros((K, p))
        np.add.at(mu, y, X64)
        mu /= n[:, None]
        w = n / N
        mG = X64.mean(0)
        D = X64 - mG
        ST = D.T @ D / N
        del D
        M = mu - mG
        SB = (M.T * w) @ M
        R = X64 - mu[y]
        SW = R.T @ R / N
        res = vci_nc1_probe(ST, SB, SW, M, w, K, p)
    seconds = time.perf_counter() - t0
    return dict(seconds=seconds, peak_extra_mib=rss_peak_mib() - base, **res)


def steps_table(X: np.ndarray, y: np.ndarray, K: int, repeats: int, cpu: bool) -> None:
    """Each step of etfcore's pass against numpy's bare ``X.T @ X``, interleaved, min of repeats."""
    import etfcore as ec

    N, p = X.shape
    best: dict = {}
    now = time.process_time if cpu else time.perf_counter

    def clock(name, fn):
        t0 = now()
        out = fn()
        best[name] = min(best.get(name, float("inf")), now() - t0)
        return out

    for _ in range(repeats):
        clock("bare", lambda: X.T @ X)
        st = clock("update", lambda: ec.CollapseStats(K, p).update(X, y))
        clock(
            "covariances",
            lambda s=st: (
                s.total_covariance(),
                s.between_class_covariance(),
                s.within_class_covariance(),
            ),
        )
        clock("vci", st.vci)
        clock("nc1", st.nc1)
        clock("probe_mse", st.probe_mse)
    bare = best.pop("bare")
    total = sum(best.values())
    dt = X.dtype.name
    what = "CPU s" if cpu else "s"
    print(f"{dt}: numpy's bare X.T @ X {bare:.3f} {what} (min of {repeats})")
    print(f"  {'step':<44}{'time s':>9}{'/ bare XᵀX':>12}")
    rows = [
        ("CollapseStats.update", best["update"]),
        ("covariances (Σ_T, Σ_B, Σ_W)", best["covariances"]),
        ("vci()", best["vci"]),
        ("nc1()", best["nc1"]),
        ("probe_mse()", best["probe_mse"]),
        ("all metrics after the update", total - best["update"]),
        ("all covariance metrics + VCI + NC1 + probe_mse", total),
    ]
    for name, t in rows:
        print(f"  {name:<44}{t:>9.3f}{t / bare:>12.2f}")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--K", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--skip", default="", help="comma-separated methods to skip")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the steps table")
    ap.add_argument("--steps-only", action="store_true", help="only the steps table")
    ap.add_argument("--threads", type=int, help="threads of numpy's BLAS and etfcore")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = ap.parse_args()
    if args.threads and os.environ.get("RAYON_NUM_THREADS") != str(args.threads):
        # The thread counts are read when the libraries load: start again with them set.
        env = dict(os.environ)
        for v in ("RAYON_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            env[v] = str(args.threads)
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    if args.method:
        print(json.dumps(run_method(args.method, args.path, args.K)))
        return
    N, p, K = (20_000, 256, 100) if args.quick else (200_000, 1024, 1000)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data")
        means = rng.normal(size=(K, p)).astype(np.float32) * 0.5
        y = rng.integers(0, K, size=N)
        X = np.empty((N, p), np.float32)
        for i in range(0, N, 20_000):
            X[i : i + 20_000] = (
                3.0
                + means[y[i : i + 20_000]]
                + rng.standard_normal((min(20_000, N - i), p), dtype=np.float32)
            )
        print(f"N={N} p={p} K={K}, offset Gaussian mixture; {os.cpu_count()} CPU threads\n")
        for dtype in (np.float32, np.float64):
            steps_table(X.astype(dtype, copy=False), y, K, args.repeats, args.clock == "cpu")
        if args.steps_only:
            return
        np.save(path + ".X.npy", X)
        np.save(path + ".y.npy", y)
        del X
        results = {}
        for m in METHODS:
            if m in args.skip.split(","):
                continue
            out = subprocess.run(
                [sys.executable, __file__, "--method", m, "--path", path, "--K", str(K)],
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                results[m] = dict(skipped=out.stderr.strip().splitlines()[-1])
            else:
                results[m] = json.loads(out.stdout.strip().splitlines()[-1])
    bare = results["numpy_bare_xtx"]["seconds"]
    ref = results.get("numpy_f64_reference", {})
    print(
        f"{'method':<22}{'time s':>9}{'/ bare XᵀX':>12}{'etfcore speed-up':>18}"
        f"{'peak extra MiB':>16}{'max rel err vs f64':>20}"
    )
    ours = results["etfcore"]["seconds"]
    for m, r in results.items():
        if "skipped" in r:
            print(f"{m:<22}  skipped: {r['skipped']}")
            continue
        err = ""
        if ref and "vci" in r and "vci" in ref:
            err = (
                f"{max(abs(r[k] - ref[k]) / abs(ref[k]) for k in ('vci', 'nc1', 'probe_mse')):.2e}"
            )
        print(
            f"{m:<22}{r['seconds']:>9.2f}{r['seconds'] / bare:>12.2f}{r['seconds'] / ours:>18.2f}"
            f"{r['peak_extra_mib']:>16.0f}{err:>20}"
        )
    print(f"\ninput array: {N * p * 4 / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
