"""The GPU paths, checked and timed in one call; one JSON and one Markdown report in ``--out``.

    python benches/gpu_check.py --quick --out gpu-report        # ≤ 8 min on one H100-class GPU
    python benches/gpu_check.py --out gpu-report                # the full sizes
    python benches/gpu_check.py --dry-run --out /tmp/gpu-dry    # tiny sizes on the CPU (tested)

Steps (each one's failure is recorded and the next runs):

1. ``pytest -m cuda`` (the CUDA tests of the suite; ``--dry-run`` only collects them);
2. ``TorchCollapseStats.update`` against bare ``HᵀH`` on the same device (float64 states, TF32
   off): N = 2M, p = 2 048, K = 1 000, then K = 50 000, p = 4 096 (target ≤ 1.3×);
3. the linear probe at N = 1M, p = 2 048, K = 1 000 on the device, against the CPU probe on a
   subsample (time and accuracy);
4. one ResNet-18 epoch on CIFAR-shaped synthetic data with AMP, with and without
   ``CollapseMetrics`` on the features (tracking overhead, target ≤ 5%);
5. CDNV and NC2 at K = 50 000 from the device's statistics, beside the device's own
   ``M Mᵀ`` in row blocks (the work the core does on the CPU).

The machine needs PyTorch, torchvision, Lightning and torchmetrics, and etfcore installed from
a wheel (no Rust needed): see docs/benchmarks.md, "GPU check".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from typing import Any, Callable, Dict, List

SIZES = {
    # name: (full, quick, dry-run)
    "stats_small": ((2_000_000, 2048, 1000), (500_000, 2048, 1000), (4000, 64, 10)),
    "stats_large": ((400_000, 4096, 50_000), (100_000, 4096, 50_000), (3000, 32, 500)),
    "probe": ((1_000_000, 2048, 1000), (200_000, 2048, 1000), (1000, 16, 5)),
    "epoch": ((50_000, 32, 128), (10_000, 32, 128), (64, 8, 32)),  # (images, side, batch)
}


def sync(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: Any, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` runs of ``fn`` (after one warm-up), device synchronised."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def mixture(n: int, p: int, k: int, device: Any, seed: int = 0):
    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)
    means = 3.0 * torch.randn(k, p, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    chunks = []
    for s in range(0, n, 65_536):  # never two copies of the whole array on the host
        part = means[y[s : s + 65_536]] + torch.randn(min(65_536, n - s), p, generator=g)
        chunks.append(part.to(device=device, dtype=torch.float32))
    return torch.cat(chunks), y.to(device)


def step_cuda_tests(args: argparse.Namespace) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "tests"]
    if args.dry_run:
        cmd.append("--collect-only")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.step_timeout)
    tail = (r.stdout + r.stderr).strip().splitlines()[-3:]
    return {"command": " ".join(cmd[2:]), "returncode": r.returncode, "summary": tail,
            "seconds": time.perf_counter() - t0}  # fmt: skip


def stats_step(name: str, args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    from etfcore.training import TorchCollapseStats

    n, p, k = SIZES[name][args.size_index]
    torch.backends.cuda.matmul.allow_tf32 = False
    h, y = mixture(n, p, k, args.device)
    bare = timed(lambda: h.T @ h, args.device)

    def update():
        m = TorchCollapseStats(k, p).to(args.device)
        for s in range(0, n, args.batch_rows):
            m.update(h[s : s + args.batch_rows], y[s : s + args.batch_rows])
        return m

    t = timed(update, args.device, repeats=2)
    stats = update().to_core()
    t0 = time.perf_counter()
    cdnv, nc2 = stats.cdnv(), stats.nc2()
    pairs = time.perf_counter() - t0
    means = torch.as_tensor(stats.class_means(), device=args.device, dtype=torch.float32)
    centred = means - means.mean(0)

    def device_gram():
        for s in range(0, k, 4096):
            (centred[s : s + 4096] @ centred.T).max()

    return {
        "N": n, "p": p, "K": k, "bare_xtx_s": bare, "update_s": t, "ratio": t / bare,
        "target_ratio": 1.3, "cdnv": cdnv, "nc2_equiangularity": nc2["equiangularity"],
        "cdnv_nc2_cpu_s": pairs, "device_mmT_blocks_s": timed(device_gram, args.device, 1),
    }  # fmt: skip


def step_probe(args: argparse.Namespace) -> Dict[str, Any]:
    from etfcore.transfer import linear_probe

    n, p, k = SIZES["probe"][args.size_index]
    h, y = mixture(n, p, k, "cpu", seed=1)
    h = (h / 3.0).numpy()  # overlapping classes: accuracy below 1
    y = y.numpy()
    cut = int(0.8 * n)
    t0 = time.perf_counter()
    dev = linear_probe(h[:cut], y[:cut], h[cut:], y[cut:], seed=0, device=args.device)
    t_dev = time.perf_counter() - t0
    sub = min(cut, 20_000 if not args.dry_run else 400)
    t0 = time.perf_counter()
    cpu = linear_probe(h[:sub], y[:sub], h[cut:], y[cut:], seed=0, device="cpu")
    t_cpu = time.perf_counter() - t0
    t0 = time.perf_counter()
    dev_sub = linear_probe(h[:sub], y[:sub], h[cut:], y[cut:], seed=0, device=args.device)
    t_dev_sub = time.perf_counter() - t0
    return {
        "N": n, "p": p, "K": k, "device_s": t_dev, "device_top1": dev.top1,
        "subsample": sub, "cpu_subsample_s": t_cpu, "cpu_subsample_top1": cpu.top1,
        "device_subsample_s": t_dev_sub, "device_subsample_top1": dev_sub.top1,
    }  # fmt: skip


def step_epoch(args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    from etfcore.nn import resnet
    from etfcore.training import CollapseMetrics

    images, side, batch = SIZES["epoch"][args.size_index]
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(images, 3, side, side)
    y = torch.randint(0, 10, (images,))

    def epoch(track: bool) -> float:
        torch.manual_seed(0)
        net = resnet("resnet18", small_input=True).to(device)
        head = torch.nn.Linear(512, 10).to(device)
        opt = torch.optim.SGD(list(net.parameters()) + list(head.parameters()), lr=0.05)
        metric = CollapseMetrics(10, 512).to(device) if track else None
        amp = device.type == "cuda"
        sync(device)
        t0 = time.perf_counter()
        for s in range(0, images, batch):
            xb, yb = x[s : s + batch].to(device), y[s : s + batch].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                f = net(xb)
                loss = torch.nn.functional.cross_entropy(head(f), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if metric is not None:
                metric.update(f.detach().float(), yb)
        if metric is not None:
            metric.compute()
        sync(device)
        return time.perf_counter() - t0

    epoch(False)  # warm-up (cuDNN autotuning, allocator)
    plain, tracked = epoch(False), epoch(True)
    return {"images": images, "side": side, "batch": batch, "amp": device.type == "cuda",
            "epoch_s": plain, "tracked_epoch_s": tracked, "overhead": tracked / plain - 1,
            "target_overhead": 0.05}  # fmt: skip


def environment(args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    import etfcore

    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
    return {
        "etfcore": etfcore.__version__, "torch": torch.__version__,
        "python": platform.python_version(), "device": str(dev), "device_name": name or "CPU",
        "form": "dry-run" if args.dry_run else ("quick" if args.quick else "full"),
    }  # fmt: skip


def markdown(report: Dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"# GPU check ({env['form']}) on {env['device_name']} ({env['device']})",
        "",
        f"etfcore {env['etfcore']}, torch {env['torch']}, Python {env['python']}; "
        f"{report['seconds']:.0f} s in all.",
        "",
        "| step | result |",
        "|---|---|",
    ]
    for name, out in report["steps"].items():
        if "error" in out:
            text = f"**failed**: {out['error']}"
        else:
            text = ", ".join(
                f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in out.items()
            )
        lines.append(f"| {name} | {text} |")
    return "\n".join(lines) + "\n"


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    ap.add_argument("--quick", action="store_true", help="the ≤ 8-minute form")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    ap.add_argument("--batch-rows", type=int, default=262_144, help="rows per statistics update")
    ap.add_argument("--step-timeout", type=int, default=600, help="seconds for the CUDA tests")
    args = ap.parse_args(argv)
    args.size_index = 2 if args.dry_run else (1 if args.quick else 0)
    args.device = args.device or ("cpu" if args.dry_run else "cuda")
    import torch

    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device here (use --dry-run on a CPU)", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    t_all = time.perf_counter()
    report: Dict[str, Any] = {"environment": environment(args), "steps": {}}
    steps = {
        "cuda_tests": step_cuda_tests,
        "stats_update_K1000": lambda a: stats_step("stats_small", a),
        "stats_update_K50000": lambda a: stats_step("stats_large", a),
        "linear_probe": step_probe,
        "resnet18_epoch_tracking": step_epoch,
    }
    for name, fn in steps.items():
        print(f"== {name}", flush=True)
        try:
            report["steps"][name] = fn(args)
        except Exception as e:  # a failed step is recorded; the check goes on
            report["steps"][name] = {"error": f"{type(e).__name__}: {e}",
                                     "traceback": traceback.format_exc(limit=5)}  # fmt: skip
        print(json.dumps(report["steps"][name], default=float)[:400], flush=True)
    report["seconds"] = time.perf_counter() - t_all
    with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=1, default=float)
    with open(os.path.join(args.out, "gpu_check.md"), "w") as f:
        f.write(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
