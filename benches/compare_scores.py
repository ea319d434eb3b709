"""Streaming LogME / H-score from etfcore's statistics vs an in-memory numpy LogME (SVD of the
N×p feature matrix, the reference algorithm) and numpy H-score, on the same float32 array.

Workload: N=200 000, p=1024, K=1000, float32 Gaussian mixture with an offset. Each
method runs in its own subprocess on the same .npy file (memory-mapped), so its peak memory
(VmHWM above the process after loading the libraries) is its own. etfcore streams the file in
chunks of 16 384 rows (plain reads into one buffer) into a CollapseStats; numpy loads the whole
matrix in float64, takes its thin SVD and all classes' projections in one pass.

    python benches/compare_scores.py           # full size
    python benches/compare_scores.py --quick   # N=20 000, p=256, K=100

``--suite streaming``: every streaming score (H-score, regularised H-score, LogME, GBC,
RankMe, LiDAR) from one pass of a :class:`~etfcore.transfer.TransferabilityStats` over the file in
chunks, side by side with the fastest in-memory numpy formulation of each (the whole matrix in
float64, one BLAS Gram ``FᵀF`` or the per-class sums it needs; each numpy score in its own
subprocess, so each peak memory is its own). The etfcore time of a score is the shared pass plus
that score's own work from the statistics. Full size N = 1 000 000, p = 2048, K = 1000 (an 8 GiB
float32 file, 16 GiB in float64 for numpy: run it on a machine with the memory, not in CI):

    python benches/compare_scores.py --suite streaming           # N=1M, p=2048, K=1000
    python benches/compare_scores.py --suite streaming --quick   # N=20 000, p=256, K=100

``--suite streaming --full``: no file. Chunk ``i`` of the data is drawn from
``numpy.random.default_rng([seed, 1, i])`` (float32, ``3 + μ_y + N(0, I)``, the class means from
``default_rng([seed, 0])``), so the etfcore process generates and streams one chunk at a time
and never holds ``N × D``, while every numpy process draws the same chunks into one float64
matrix first (the in-memory formulations need it). Generation is timed apart and left out of
both sides' times. Scores: the six above plus PED-LogME, PED-GBC (``ped_from_stats``) and EMMS
(``emms_from_stats``). ``--rows N`` overrides ``N`` (any suite):

    python benches/compare_scores.py --suite streaming --full                 # 1M x 2048, K=1000
    python benches/compare_scores.py --suite streaming --full --rows 100000   # a mid-size check
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
STREAMING_SCORES = ["hscore", "regularized_hscore", "logme", "gbc", "rankme", "lidar"]


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


def numpy_moments(f: np.ndarray, y: np.ndarray, k: int):
    """``(n, π, μ_G, class means, Σ_T, Σ_B)`` of an in-memory float64 matrix (one Gram)."""
    n = f.shape[0]
    cnt = np.bincount(y, minlength=k).astype(np.float64)
    mg = f.mean(0)
    st = f.T @ f / n - np.outer(mg, mg)
    means = class_sums(f, y, k) / cnt[:, None]
    dm = means - mg
    sb = (dm * (cnt / n)[:, None]).T @ dm
    return n, cnt / n, mg, means, st, sb


def numpy_regularized_hscore(f: np.ndarray, y: np.ndarray, k: int) -> float:
    """Ledoit–Wolf shrunk ``Σ_T`` (scikit-learn's ``ledoit_wolf`` formula),
    ``tr(Σ_LW⁻¹(1-δ)Σ_B)``."""
    n, _, mg, _, st, sb = numpy_moments(f, y, k)
    p = f.shape[1]
    mu = np.trace(st) / p
    d2 = np.sum((st - mu * np.eye(p)) ** 2)
    sq = np.einsum("ij,ij->i", f, f) - 2 * f @ mg + mg @ mg  # ‖f_i - μ_G‖²
    b2 = (np.sum(sq ** 2) / n - np.sum(st ** 2)) / n
    delta = min(1.0, b2 / d2) if d2 > 0 else 1.0
    lw = (1 - delta) * st + delta * mu * np.eye(p)
    return float(np.trace(np.linalg.solve(lw, (1 - delta) * sb)))


def numpy_gbc(f: np.ndarray, y: np.ndarray, k: int) -> float:
    """``-Σ_{k≠l} exp(-D_B(k,l))`` with diagonal class Gaussians (population variances floored at
    ``1e-12 ×`` the largest), one class against all others at a time."""
    cnt = np.bincount(y, minlength=k).astype(np.float64)
    means = class_sums(f, y, k) / cnt[:, None]
    var = class_sums(f * f, y, k) / cnt[:, None] - means ** 2
    var = np.maximum(var, 1e-12 * var.max())
    lv = np.log(var)
    total = 0.0
    for c in range(k):
        sbar = 0.5 * (var[c] + var)
        db = (0.125 * np.sum((means[c] - means) ** 2 / sbar, axis=1)
              + 0.5 * np.sum(np.log(sbar) - 0.5 * (lv[c] + lv), axis=1))
        db[c] = np.inf
        total += float(np.sum(np.exp(-db)))
    return -total


def _entropy_rank(v: np.ndarray, eps: float = 1e-7) -> float:
    p = v / v.sum() + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def numpy_rankme(f: np.ndarray, y: np.ndarray, k: int) -> float:
    """Singular values of F from the eigenvalues of the uncentred second moment ``FᵀF/N``."""
    n = f.shape[0]
    lam = np.linalg.eigvalsh(f.T @ f / n)[::-1]
    lam = np.where(lam > lam[0] * lam.size * np.finfo(np.float32).eps, lam, 0.0)
    return _entropy_rank(np.sqrt(lam[:min(n, lam.size)]))


def numpy_lidar(f: np.ndarray, y: np.ndarray, k: int, delta: float = 1e-4) -> float:
    _, _, _, _, st, sb = numpy_moments(f, y, k)
    sw = st - sb
    lam, vec = np.linalg.eigh(sw + delta * np.eye(sw.shape[0]))
    isq = vec / np.sqrt(lam)
    mid = isq.T @ sb @ isq
    return _entropy_rank(np.clip(np.linalg.eigvalsh(0.5 * (mid + mid.T)), 0.0, None))


NUMPY_SCORES = {
    "hscore": numpy_hscore,
    "regularized_hscore": numpy_regularized_hscore,
    "logme": lambda f, y, k: numpy_logme(f, y, k, route="eigh"),
    "gbc": numpy_gbc,
    "rankme": numpy_rankme,
    "lidar": numpy_lidar,
}


def numpy_emms(f: np.ndarray, y: np.ndarray, k: int) -> float:
    """EMMS with one-hot targets: standardised features (column moments from one Gram ``FᵀF``),
    the least-squares residual from the eigendecomposition of ``X̃ᵀX̃`` and the class sums."""
    n, p = f.shape
    cnt = np.bincount(y, minlength=k).astype(np.float64)
    pri = cnt / n
    mg = f.mean(0)
    st = f.T @ f / n - np.outer(mg, mg)
    sd = np.sqrt(np.clip(np.diag(st), 0.0, None)) + 1e-8
    lam, vec = np.linalg.eigh(n * st / np.outer(sd, sd))
    keep = lam > lam[-1] * p * np.finfo(np.float32).eps
    hat = (np.eye(k) - pri) / (np.sqrt(pri * (1 - pri)) + 1e-8)  # standardised one-hot rows
    dm = (class_sums(f, y, k) - cnt[:, None] * mg) / sd
    proj = vec[:, keep].T @ (dm.T @ hat)
    fit = float(np.sum(proj * proj / lam[keep][:, None]))
    return -(float(np.sum(cnt[:, None] * hat * hat)) - fit) / (n * k)


def numpy_ped(f: np.ndarray, y: np.ndarray, k: int, score: str) -> float:
    """PED (nsigma 0.6, step 0.1, exit ratio 0.5, 6 steps, std floor 1e-3): class moments from
    the matrix, the descent on the class means (distances from their Gram), the features moved
    in place, then LogME or GBC of the moved matrix."""
    n = f.shape[0]
    cnt = np.bincount(y, minlength=k).astype(np.float64)
    cs = class_sums(f, y, k)
    csq = class_sums(f * f, y, k)
    mg = cs.sum(0) / n
    sd = np.maximum(np.sqrt(np.clip(csq.sum(0) / n - mg ** 2, 0, None)), 1e-3)
    means = cs / cnt[:, None]
    var = np.clip(csq / cnt[:, None] - means ** 2, 0, None)
    mu = (means - mg) / sd
    radius = np.sqrt((var / sd ** 2).sum(1))
    total = np.zeros_like(mu)
    first = None
    for _ in range(6):
        sq = np.sum(mu * mu, 1)
        dist = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2 * mu @ mu.T, 0, None))
        over = np.maximum(0.6 * (radius[:, None] + radius[None, :]) - dist, 0.0)
        np.fill_diagonal(over, 0.0)
        w = np.divide(np.minimum(0.005 * over, over), dist, out=np.zeros_like(over),
                      where=dist > 0)
        shift = w.sum(1)[:, None] * mu - w @ mu
        tot = float(np.abs(shift).sum())
        first = tot if first is None else first
        if first == 0 or tot / first <= 0.5:
            break
        mu += shift
        total += shift
    f += (total * sd)[y]
    return numpy_logme(f, y, k, route="eigh") if score == "logme" else numpy_gbc(f, y, k)


FULL_SCORES = STREAMING_SCORES + ["ped_logme", "ped_gbc", "emms"]
NUMPY_SCORES.update({
    "ped_logme": lambda f, y, k: numpy_ped(f, y, k, "logme"),
    "ped_gbc": lambda f, y, k: numpy_ped(f, y, k, "gbc"),
    "emms": numpy_emms,
})
CHUNK_ROWS = 8192


def generated_chunks(n: int, p: int, k: int, seed: int = 0):
    """``(features, labels)`` chunks of ``CHUNK_ROWS`` rows, each from its own seeded generator
    (float32 ``3 + μ_y + N(0, I)``): the same rows whoever draws them, one chunk at a time."""
    means = np.random.default_rng([seed, 0]).standard_normal((k, p), dtype=np.float32)
    for i, a in enumerate(range(0, n, CHUNK_ROWS)):
        rng = np.random.default_rng([seed, 1, i])
        m = min(CHUNK_ROWS, n - a)
        y = rng.integers(0, k, m)
        f = rng.standard_normal((m, p), dtype=np.float32)
        f += means[y]
        f += 3.0
        yield f, y


def run_generated(method: str, n: int, p: int, k: int) -> dict:
    """``etfcore_stream``: generate and stream chunk by chunk, then every score from the
    statistics; ``numpy_<score>``: draw every chunk into one float64 matrix, then that score.
    Generation time is measured apart and excluded."""
    from etfcore import transfer

    base = now_mib()
    gen_s = 0.0
    if method == "etfcore_stream":
        xs = transfer.TransferabilityStats(k, p)
        pass_s = 0.0
        t = time.perf_counter()
        for f, y in generated_chunks(n, p, k):
            t1 = time.perf_counter()
            gen_s += t1 - t
            xs.update(f, y)
            t = time.perf_counter()
            pass_s += t - t1
        st = xs.collapse_stats
        funcs = {
            "hscore": xs.hscore, "regularized_hscore": xs.regularized_hscore,
            "logme": lambda: float(xs.logme()), "gbc": xs.gbc,
            "rankme": lambda: transfer.rankme_from_stats(st).value,
            "lidar": lambda: transfer.lidar_from_stats(st).value,
            "ped_logme": lambda: transfer.ped_from_stats(xs, score="logme").value,
            "ped_gbc": lambda: transfer.ped_from_stats(xs, score="gbc").value,
            "emms": lambda: transfer.emms_from_stats(st).value,
        }
        out = {"method": method, "pass_s": pass_s, "gen_s": gen_s, "scores": {}}
        for name, fn in funcs.items():
            t = time.perf_counter()
            v = float(fn())
            out["scores"][name] = {"value": v, "score_s": time.perf_counter() - t}
        out["peak_extra_mib"] = peak_mib() - base
        return out
    name = method[len("numpy_"):]
    f = np.empty((n, p), dtype=np.float64)
    y = np.empty(n, dtype=np.int64)
    t = time.perf_counter()
    a = 0
    for fc, yc in generated_chunks(n, p, k):
        f[a:a + len(yc)] = fc
        y[a:a + len(yc)] = yc
        a += len(yc)
    gen_s = time.perf_counter() - t
    t = time.perf_counter()
    v = float(NUMPY_SCORES[name](f, y, k))
    return {"method": method, "gen_s": gen_s, "load_s": 0.0, "score_s": time.perf_counter() - t,
            "value": v, "peak_extra_mib": peak_mib() - base}


def generated_suite(n: int, p: int, k: int, scores=FULL_SCORES) -> None:
    res = {}
    for m in ["etfcore_stream"] + [f"numpy_{s}" for s in scores]:
        out = subprocess.run([sys.executable, __file__, "--method", m, "--suite", "streaming",
                              "--full", "--rows", str(n), "--dim", str(p), "--K", str(k)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(m, "failed:", out.stderr[-2000:])
            continue
        res[m] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {m}: done", flush=True)
    report(res, scores, target=True)


def report(res: dict, scores, target: bool = False) -> None:
    """The side-by-side table: time and peak memory of each score, their ratios, agreement, and
    (``target``) whether the full-size target (≥ 5× faster at ≤ 1/10 the memory) is met."""
    e = res.get("etfcore_stream")
    if e is None:
        return
    print(f"etfcore: one pass {e['pass_s']:.2f} s, peak extra {e['peak_extra_mib']:.0f} MiB "
          f"(shared by every score)" + (f"; generation {e['gen_s']:.2f} s not counted"
                                        if "gen_s" in e else ""))
    print(f"{'score':<20} {'etfcore s':>10} {'numpy s':>9} {'speed-up':>9} {'etfcore MiB':>12} "
          f"{'numpy MiB':>10} {'mem ratio':>10} {'rel diff':>9}" + ("  target" if target else ""))
    for s in scores:
        r = res.get(f"numpy_{s}")
        if r is None:
            continue
        es = e["pass_s"] + e["scores"][s]["score_s"]
        ns = r["load_s"] + r["score_s"]
        ev, nv = e["scores"][s]["value"], r["value"]
        em, nm = e["peak_extra_mib"], r["peak_extra_mib"]
        ok = ns / es >= 5 and nm / max(em, 1) >= 10
        print(f"{s:<20} {es:10.2f} {ns:9.2f} {ns / es:8.1f}x {em:12.0f} {nm:10.0f} "
              f"{nm / max(em, 1):9.1f}x {abs(ev - nv) / max(abs(nv), 1e-300):9.1e}"
              + (f"  {'met' if ok else 'not met'}" if target else ""))


def run_streaming(method: str, path: str, k: int) -> dict:
    """``etfcore_stream``: one chunked pass, then every score from the statistics (each timed);
    ``numpy_<score>``: load the matrix in float64 and compute that one score."""
    y = np.load(path + ".y.npy")
    from etfcore import transfer

    base = now_mib()
    t0 = time.perf_counter()
    if method == "etfcore_stream":
        mm = np.load(path, mmap_mode="r")
        n, p, off = mm.shape[0], mm.shape[1], mm.offset
        del mm
        xs = transfer.TransferabilityStats(k, p)
        rows = 16384
        with open(path, "rb") as fh:
            fh.seek(off)
            buf = np.empty((rows, p), dtype=np.float32)
            for a in range(0, n, rows):
                m = min(rows, n - a)
                fh.readinto(memoryview(buf[:m]).cast("B"))
                xs.update(buf[:m], y[a:a + m])
        pass_s = time.perf_counter() - t0
        st = xs.collapse_stats
        funcs = {
            "hscore": xs.hscore, "regularized_hscore": xs.regularized_hscore,
            "logme": lambda: float(xs.logme()), "gbc": xs.gbc,
            "rankme": lambda: transfer.rankme_from_stats(st).value,
            "lidar": lambda: transfer.lidar_from_stats(st).value,
        }
        out = {"method": method, "pass_s": pass_s, "scores": {}}
        for name, fn in funcs.items():
            t = time.perf_counter()
            v = float(fn())
            out["scores"][name] = {"value": v, "score_s": time.perf_counter() - t}
        out["peak_extra_mib"] = peak_mib() - base
        return out
    name = method[len("numpy_"):]
    f = np.load(path).astype(np.float64)
    load_s = time.perf_counter() - t0
    t = time.perf_counter()
    v = float(NUMPY_SCORES[name](f, y, k))
    return {"method": method, "load_s": load_s, "score_s": time.perf_counter() - t, "value": v,
            "peak_extra_mib": peak_mib() - base}


def streaming_suite(path: str, k: int) -> None:
    res = {}
    for m in ["etfcore_stream"] + [f"numpy_{s}" for s in STREAMING_SCORES]:
        out = subprocess.run([sys.executable, __file__, "--method", m, "--path", path, "--K",
                              str(k), "--suite", "streaming"], capture_output=True, text=True)
        if out.returncode != 0:
            print(m, "failed:", out.stderr[-2000:])
            continue
        res[m] = json.loads(out.stdout.strip().splitlines()[-1])
    report(res, STREAMING_SCORES)


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
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--method")
    ap.add_argument("--path")
    ap.add_argument("--K", type=int)
    ap.add_argument("--methods", nargs="+", default=list(METHODS),
                    help="a subset of the methods (e.g. skip numpy_svd, which takes minutes)")
    ap.add_argument("--full", action="store_true",
                    help="with --suite streaming: N=1M, D=2048, K=1000 generated chunk by chunk "
                         "(no file; the streaming side never holds N x D)")
    ap.add_argument("--rows", type=int, help="override N")
    ap.add_argument("--scores", nargs="+", choices=FULL_SCORES,
                    help="with --full: only these scores' numpy processes and rows (etfcore's "
                         "one pass serves every score anyway)")
    ap.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--suite", choices=["logme", "streaming"], default="logme",
                    help="logme: LogME/H-score methods; streaming: every streaming "
                         "score against its fastest numpy formulation")
    args = ap.parse_args()
    if args.method and args.full:
        print(json.dumps(run_generated(args.method, args.rows, args.dim, args.K)))
        return
    if args.full:
        if args.suite != "streaming":
            ap.error("--full goes with --suite streaming")
        n, p, k = args.rows or 1_000_000, 2048, 1000
        print(f"N={n}, D={p}, K={k}, generated in chunks of {CHUNK_ROWS} rows (float32; numpy "
              f"materialises {n * p * 8 / 2**20:.0f} MiB in float64), cpus {os.cpu_count()}, "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        generated_suite(n, p, k, args.scores or FULL_SCORES)
        return
    if args.method:
        fn = run_streaming if args.suite == "streaming" else run
        print(json.dumps(fn(args.method, args.path, args.K)))
        return
    if args.suite == "streaming":
        n, p, k = (20_000, 256, 100) if args.quick else (1_000_000, 2048, 1000)
    else:
        n, p, k = (20_000, 256, 100) if args.quick else (200_000, 1024, 1000)
    n = args.rows or n
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
        if args.suite == "streaming":
            streaming_suite(path, k)
            return
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
