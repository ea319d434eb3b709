"""Command line.

    etfcore demo                          # the main job: heads and losses on digits (needs torch)
    etfcore train --preset digits-etf-hinge [--set epochs=50] [--config run.toml] [--out DIR]
                  [--accelerator gpu --devices 2 --strategy ddp] [--resume [RUN]]
    etfcore train --print-config | --list-presets
    etfcore finetune RUN [--preset P] [--config F] [--set KEY=VALUE] [--head linear|etf|cm|wicm|lwm]
                     [--head-only] [--no-train] [--out DIR] [--json]
    etfcore extract RUN [--set dataset=...] --out DIR     # a run's backbone features, for probe
    etfcore probe --train F.npy y.npy --test F.npy y.npy  # linear probe of saved features
    etfcore rank --target y.npy --candidates A.npy B.npy  # transferability scores, rank agreement
    etfcore report                        # collapse metrics of embedded data (no torch)
    etfcore report --features F.npy --labels y.npy [--classifier W.npy] [--plots DIR] [--markdown F]
    etfcore report --run DIR              # curves and a Markdown summary of a training run
    etfcore rf-curve --out fig.png        # Tiomoko Ali et al. Fig. 2 on the embedded digits
    etfcore reproduce --list | NAME ... | all [--quick] [--seeds 3] [--data D] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__, data
from .errors import EtfcoreError
from .frames import etf
from .metrics import collapse_metrics

_ROWS = [
    ("num_samples", "N"),
    ("num_classes_present", "K present"),
    ("dim", "p"),
    ("vci", "VCI"),
    ("probe_mse", "probe MSE"),
    ("nc1", "NC1 Tr[Σ_W Σ_B†]/K"),
    ("squared_distance", "Tr Σ_W / Tr Σ_B"),
    ("within_trace_per_dim", "Tr Σ_W / p"),
    ("nc1_split_between", "tr(P_B Σ_W)"),
    ("nc1_split_orthogonal", "tr Σ_W - tr(P_B Σ_W)"),
    ("cdnv", "CDNV"),
    ("class_separation", "class separation (cos)"),
    ("nc2_equinorm", "NC2 equinorm"),
    ("nc2_equiangularity", "NC2 equiangularity"),
    ("nc2_etf_error", "NC2 ETF error"),
    ("nc3", "NC3 (vs ETF)"),
    ("nc4", "NC4 (vs ETF)"),
    ("numerical_rank", "numerical rank"),
]


def _fmt(v: Any) -> str:
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def format_table(columns: List[Tuple[str, Dict[str, Any]]]) -> str:
    """Metrics of several datasets side by side, one row per metric."""
    head = ["metric"] + [name for name, _ in columns]
    rows = [head]
    for key, label in _ROWS:
        if any(key in m for _, m in columns):
            rows.append([label] + [_fmt(m.get(key, "")) for _, m in columns])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for j, r in enumerate(rows):
        cells = (c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
        lines.append("  ".join(cells))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _embedded_data():
    x, y = data.load_digits()
    yield "digits (pixels)", x, y
    for name, within in (("GMM loose", 1.0), ("GMM collapsed", 0.05)):
        counts = data.long_tail_counts(10, 200, 0.1)
        h, yy = data.gaussian_mixture(10, 64, counts, seed=0, within_scale=within)
        yield name, h, yy


def write_plots(name: str, h: np.ndarray, y: np.ndarray, out_dir: str) -> List[str]:
    """Heat map of the within-class covariance Σ_W (Tiomoko Ali et al. show tr C°/p of it) and
    the spectra of Σ_B and Σ_T (as Xu & Liu draw them) for one feature set; returns the files
    written."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .stats import CollapseStats

    os.makedirs(out_dir, exist_ok=True)
    st = CollapseStats(int(y.max()) + 1, h.shape[1]).update(h, y)
    slug = "".join(c if c.isalnum() else "_" for c in name).strip("_")
    sw = st.within_class_covariance()
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    lim = np.abs(sw).max()
    im = ax.imshow(sw, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(f"{name}: Σ_W (tr/p = {np.trace(sw) / sw.shape[0]:.3g})")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    f1 = os.path.join(out_dir, f"within_covariance_{slug}.png")
    fig.savefig(f1, dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for label, mat in (("Σ_T", st.total_covariance()), ("Σ_B", st.between_class_covariance())):
        ev = np.clip(np.linalg.eigvalsh(mat)[::-1], 1e-16, None)
        ax.semilogy(np.arange(1, ev.size + 1), ev, label=label)
    ax.set_xlabel("index")
    ax.set_ylabel("eigenvalue")
    ax.set_title(f"{name}: spectra")
    ax.legend()
    fig.tight_layout()
    f2 = os.path.join(out_dir, f"spectra_{slug}.png")
    fig.savefig(f2, dpi=110)
    plt.close(fig)
    return [f1, f2]


def markdown_table(columns: List[Tuple[str, Dict[str, Any]]]) -> str:
    """The :func:`format_table` rows as a Markdown table."""
    head = ["metric"] + [name for name, _ in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in _ROWS:
        if any(key in m for _, m in columns):
            cells = [label] + [_fmt(m.get(key, "")) for _, m in columns]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_RUN_CURVES = [
    ("train_loss", "training loss"),
    ("test_acc", "held-out accuracy"),
    ("vci", "VCI"),
    ("nc1", "NC1"),
    ("nc2_etf_error", "NC2 ETF error"),
    ("nc3", "NC3"),
]


def run_report(run_dir: str, out_dir: str) -> Tuple[str, List[str]]:
    """Metric curves over epochs and a Markdown summary of a training run (its metrics.jsonl)."""
    import os

    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        from .errors import ParameterError

        raise ParameterError(
            f"{path} not found: --run takes a run directory of `etfcore train` "
            "(OUT/NAME/version_N)"
        )
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        from .errors import ParameterError

        raise ParameterError(f"{path} has no epochs yet (the run finished none)")
    os.makedirs(out_dir, exist_ok=True)
    last = rows[-1]
    keys = sorted(k for k in last if k != "epoch")
    md = [f"# Training run `{run_dir}`", "", f"{len(rows)} epochs. Final epoch:", ""]
    md += ["| metric | value |", "|---|---|"]
    md += [f"| {k} | {_fmt(last[k])} |" for k in keys]
    tracked = [r for r in rows if "train_vci" in r]
    if tracked:
        cols = ["epoch", "train_loss", "test_acc", "train_vci", "test_vci", "train_nc1", "test_nc1"]
        md += ["", "Per tracked epoch:", ""]
        md += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        md += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in tracked]
    files = []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 3, figsize=(12, 6.4))
        for ax, (key, label) in zip(axes.ravel(), _RUN_CURVES):
            for split in ("train", "test") if key not in ("train_loss", "test_acc") else ("",):
                k = f"{split}_{key}" if split else key
                pts = [(r["epoch"], r[k]) for r in rows if k in r]
                if pts:
                    ax.plot(*zip(*pts), marker="o", ms=3, label=split or None)
            ax.set_title(label)
            ax.set_xlabel("epoch")
            if key == "nc1":
                ax.set_yscale("log")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        fig.tight_layout()
        files.append(os.path.join(out_dir, "curves.png"))
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
        md += ["", "![metric curves](curves.png)"]
    except ImportError:
        md += ["", "(matplotlib not installed: no plots)"]
    files.append(os.path.join(out_dir, "summary.md"))
    with open(files[-1], "w") as f:
        f.write("\n".join(md) + "\n")
    return "\n".join(md), files


def _report(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if args.run:
        text, files = run_report(args.run, args.plots or args.run)
        print(text)
        for f in files:
            print(f"wrote {f}", file=sys.stderr)
        return 0
    if args.features:
        h = np.load(args.features, mmap_mode="r")
        y = np.load(args.labels)
        w = np.load(args.classifier) if args.classifier else None
        sets = [(args.features, h, y, w)]
    else:
        sets = [(n, h, y, etf(10, h.shape[1], seed=0)) for n, h, y in _embedded_data()]
    cols = [
        (n, collapse_metrics(h, y, classifier=w, weighting=args.weighting)) for n, h, y, w in sets
    ]
    if args.plots:
        for n, h, y, _ in sets:
            for f in write_plots(n, np.asarray(h), np.asarray(y), args.plots):
                print(f"wrote {f}", file=sys.stderr)
    if args.markdown:
        with open(args.markdown, "w") as f:
            title = f"# Collapse metrics ({args.weighting} convention)\n\n"
            f.write(title + markdown_table(cols) + "\n")
        print(f"wrote {args.markdown}", file=sys.stderr)
    if args.json:
        plain = lambda v: v.tolist() if isinstance(v, np.ndarray) else v  # noqa: E731
        print(json.dumps({n: {k: plain(v) for k, v in m.items()} for n, m in cols}, indent=2))
    else:
        print(f"etfcore {__version__} — collapse metrics ({args.weighting} convention)\n")
        print(format_table(cols))
        print(f"\n({time.perf_counter() - t0:.2f} s)")
    return 0


def digits_binary_task(classes=(3, 8), seed: int = 0):
    """Two digit classes, labels ±1, non-constant pixels standardised and scaled by 1/√p, split
    in half."""
    x, y = data.load_digits()
    keep = np.isin(y, classes)
    x, y = x[keep], np.where(y[keep] == classes[0], 1.0, -1.0)
    perm = np.random.default_rng(seed).permutation(y.size)
    x, y = x[perm], y[perm]
    half = y.size // 2
    mu, sd = x[:half].mean(0), x[:half].std(0)
    live = sd > 1e-6  # constant pixels carry nothing and cannot be standardised
    x = (x[:, live] - mu[live]) / sd[live] / np.sqrt(live.sum())
    return x[:half], y[:half], x[half:], y[half:]


def _rf_curve(args: argparse.Namespace) -> int:
    from . import rf

    xtr, ytr, xte, yte = digits_binary_task()
    a2 = np.linspace(0.0, args.a2_max, args.points)
    curve = rf.test_mse_curve(
        xtr, ytr, xte, yte, a2,
        num_features=args.num_features, gamma=args.gamma, seeds=range(args.seeds),
    )
    print("random-feature ridge on digits 3 vs 8, sigma(t) = a2 t^2 + t")
    print(f"{'a2':>6}{'theory':>10}{'simulation':>12}{'std':>8}")
    for i in range(len(a2)):
        print(f"{a2[i]:>6.2f}{curve['theory'][i]:>10.4f}{curve['simulation_mean'][i]:>12.4f}{curve['simulation_std'][i]:>8.4f}")
    if args.out:
        title = "digits 3 vs 8: test MSE vs a2 (Tiomoko Ali et al., Fig. 2)"
        rf.plot_test_mse_curve(curve, args.out, title=title)
        print(f"wrote {args.out}")
    return 0


_TRAIN_DEPS = ("torch", "lightning", "torchmetrics", "torchvision", "tomli")
_LIGHTNING_FLAGS = ("accelerator", "devices", "strategy", "num_nodes", "precision")


def _run_to_resume(out: str, name: Optional[str]) -> str:
    """``OUT/NAME`` for a bare ``--resume``: the given name, else the only run name under OUT."""
    import glob
    import os

    from .errors import ParameterError

    if name:
        return os.path.join(out, name)
    pattern = os.path.join(out, "*", "version_*", "checkpoints", "last.ckpt")
    names = sorted({os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(p))))
                    for p in glob.glob(pattern)})
    if len(names) > 1:
        raise ParameterError(
            f"several runs under {out!r} ({', '.join(names)}): choose one with "
            "--resume OUT/NAME/version_N or --set name=NAME"
        )
    return os.path.join(out, names[0]) if names else out


def _train(args: argparse.Namespace) -> int:
    from .training.config import PRESETS, TrainConfig, describe_fields

    if args.list_presets:
        for name, kw in PRESETS.items():
            print(f"{name:<32} {', '.join(f'{k}={v}' for k, v in kw.items())}")
        return 0
    if args.print_config:
        print(describe_fields())
        return 0
    from .errors import ParameterError
    from .training.trainer import Trainer, config_from_sources, find_checkpoint, resume_config

    flags = {k: str(getattr(args, k)) for k in _LIGHTNING_FLAGS if getattr(args, k) is not None}
    if args.resume is not None:
        # The run's own config; --set/--accelerator/... may change only where it runs.
        if args.preset or args.config:
            raise ParameterError(
                "--resume continues a run with its own saved config: drop --preset/--config "
                "(choose the run with --resume OUT/NAME/version_N, or --set name=NAME)"
            )
        overrides = config_from_sources(None, None, args.set)
        ckpt = find_checkpoint(args.resume or _run_to_resume(args.out, overrides.get("name")))
        config = resume_config(ckpt, {**overrides, **flags})
        trainer = Trainer(config, out_dir=args.out)
        print(f"resuming {ckpt}", flush=True)
        trainer.fit(resume=ckpt)
    else:
        raw = config_from_sources(args.preset, args.config, args.set)
        config = TrainConfig.from_dict({**raw, **flags})
        if args.prepare_data:  # download once, before a launcher starts many processes
            from .training.build import build_datamodule

            config.validate()
            dm = build_datamodule(config)
            print(f"data ready: {config.dataset} ({dm.num_classes} classes) in {config.data_root}")
            return 0
        trainer = Trainer(config, out_dir=args.out)
        trainer.fit()
    if trainer.lightning is None or trainer.lightning.is_global_zero:
        print(f"run directory: {trainer.run_dir}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from .training.finetune import finetune
    from .training.trainer import config_from_sources

    flags = {k: str(getattr(args, k)) for k in _LIGHTNING_FLAGS if getattr(args, k) is not None}
    overrides = {**config_from_sources(args.preset, args.config, args.set), **flags}
    result = finetune(
        args.run,
        overrides,
        head=args.head,
        head_only=True if args.head_only else None,
        out_dir=args.out,
        train=not args.no_train,
    )
    if args.json:
        summary = {
            "scores": result.scores,
            "run_dir": result.run_dir,
            "config": result.config.to_dict(),
            "source": result.source.to_dict(),
        }
        print(json.dumps(summary, indent=2))
    else:
        print(result.table())
        if result.run_dir:
            print(f"run directory: {result.run_dir}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from .training.extract import extract_run_features
    from .training.trainer import config_from_sources

    overrides = config_from_sources(args.preset, args.config, args.set)
    parts = extract_run_features(
        args.run, overrides, out_dir=args.out, device=args.device, batch_size=args.batch_size
    )
    for split, r in parts.items():
        rows, dim = r.features.shape
        print(f"{split:<6} {rows:>8} × {dim:<6} -> {r.path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .training.demo import run_demo

    run_demo(
        epochs=args.epochs, seeds=range(args.seeds), out_dir=args.out,
        accelerator=args.accelerator, progress=not args.no_progress,
    )
    return 0


def _run_torch_command(args: argparse.Namespace) -> int:
    """``train``/``demo`` with every failure a user can cause as ``etfcore: error: ...``
    (exit 2) and Ctrl-C as a message (exit 130); genuine bugs keep their traceback."""
    try:
        from lightning.fabric.utilities.exceptions import MisconfigurationException
    except ImportError:  # torch/lightning missing: the command's own import says so below

        class MisconfigurationException(Exception):  # type: ignore[no-redef]
            pass

    try:
        run = {
            "train": _train, "finetune": _finetune, "extract": _extract, "demo": _demo,
            "reproduce": _reproduce,
        }  # fmt: skip
        return run[args.command](args)
    except KeyboardInterrupt as e:
        msg = str(e) or "interrupted"
        checkpoint = getattr(e, "checkpoint", None)
        if checkpoint and args.command in ("train", "finetune"):
            import os

            run = os.path.dirname(os.path.dirname(checkpoint))
            msg += f"; resume with `etfcore train --out {args.out} --resume {run}`"
        print(f"\netfcore: {msg}", file=sys.stderr)
        return 130
    except EtfcoreError as e:
        print(f"etfcore: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"etfcore: error: {e}", file=sys.stderr)
        return 2
    except MisconfigurationException as e:  # Lightning refusing what the user asked for
        print(f"etfcore: error: {e}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as e:
        text = str(e)
        if "download" in text.lower() or "url" in text.lower() or "urlopen" in text.lower():
            print(f"etfcore: error: {text}", file=sys.stderr)
            return 2
        raise
    except ImportError as e:
        hint = " (pip install 'etfcore[train]')" if e.name in _TRAIN_DEPS else ""
        print(f"etfcore: error: {e}{hint}", file=sys.stderr)
        return 2


def _reproduce(args: argparse.Namespace) -> int:
    """``etfcore reproduce``: the experiments package owns its arguments and handler."""
    from .experiments.cli import run

    return run(args)


def _lightning_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accelerator", help="Lightning accelerator: auto, cpu, gpu, ...")
    p.add_argument("--devices", help="Lightning devices: auto, a count, or a list like 0,1")
    p.add_argument("--strategy", help="Lightning strategy: auto, ddp, ddp_spawn, fsdp, ...")
    p.add_argument("--num-nodes", dest="num_nodes", type=int, help="nodes for multi-node DDP")
    p.add_argument("--precision", help="Lightning precision: 32-true, 16-mixed, bf16-mixed")


def _pretrained_run_args(p: argparse.ArgumentParser, example: str) -> None:
    """RUN and the target's --preset/--config/--set (finetune, extract)."""
    p.add_argument("run", metavar="RUN", help="a run directory or checkpoint of `etfcore train`")
    p.add_argument("--preset", help="a preset for the target (see train --list-presets)")
    p.add_argument("--config", help="a TOML file of config keys for the target")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help=f"override one config key of the target ({example})",
    )


def build_parser() -> Tuple[argparse.ArgumentParser, Dict[str, argparse.ArgumentParser]]:
    """The ``etfcore`` parser and its subcommand parsers by name."""
    parser = argparse.ArgumentParser(
        prog="etfcore", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"etfcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser(
        "report", aliases=["metrics"], help="collapse metrics of embedded data or saved features"
    )
    rep.add_argument("--features", help=".npy file of features (N, p)")
    rep.add_argument("--labels", help=".npy file of integer labels (N,)")
    rep.add_argument("--classifier", help=".npy file of classifier weights (K, p) for NC3/NC4")
    rep.add_argument("--weighting", choices=["weighted", "balanced"], default="weighted")
    rep.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rep.add_argument(
        "--plots",
        metavar="DIR",
        help="also write Σ_W heat maps and Σ_B/Σ_T spectra (with --run: where curves and "
        "summary go)",
    )
    rep.add_argument("--markdown", metavar="FILE", help="also write the metrics table as Markdown")
    rep.add_argument(
        "--run",
        metavar="DIR",
        help="report on a training run (OUT/NAME/version_N of `etfcore train`)",
    )
    cur = sub.add_parser(
        "rf-curve",
        help="random-feature ridge test MSE vs a2 on the embedded digits "
        "(Tiomoko Ali et al. Fig. 2)",
    )
    cur.add_argument("--out", help="PNG path for the plot")
    cur.add_argument("--num-features", type=int, default=512)
    cur.add_argument("--gamma", type=float, default=0.1)
    cur.add_argument("--a2-max", type=float, default=1.0)
    cur.add_argument("--points", type=int, default=6)
    cur.add_argument("--seeds", type=int, default=5)
    tr = sub.add_parser(
        "train", help="train with a fixed-ETF or learned head on Lightning (needs torch)"
    )
    tr.add_argument("--preset", help="a preset name (see --list-presets)")
    tr.add_argument("--config", help="a TOML file of config keys (see --print-config)")
    tr.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key"
    )
    _lightning_flags(tr)
    tr.add_argument("--out", default="out/train", help="runs go to OUT/NAME/version_N")
    tr.add_argument(
        "--resume", nargs="?", const="", default=None, metavar="RUN",
        help="continue the latest run under OUT, or RUN (a run directory or checkpoint)",
    )
    tr.add_argument(
        "--prepare-data", action="store_true",
        help="download/prepare the config's data and exit (do this before torchrun/srun)",
    )
    tr.add_argument("--list-presets", action="store_true", help="print the presets")
    tr.add_argument("--print-config", action="store_true", help="print every config key")
    ft = sub.add_parser(
        "finetune",
        help="fine-tune a trained run's backbone on a target task with a new head (needs torch)",
    )
    _pretrained_run_args(ft, "e.g. classes=5,6,7,8,9")
    ft.add_argument(
        "--head", choices=["linear", "etf", "cm", "wicm", "lwm"],
        help="the new head (default: the config's head); cm/wicm/lwm from the target's class "
        "means of the frozen pretrained features",
    )
    ft.add_argument(
        "--head-only", action="store_true",
        help="train the head only (backbone frozen in eval mode)",
    )
    ft.add_argument(
        "--no-train", action="store_true",
        help="only evaluate the new head (with --head cm: the centred-means classifier)",
    )
    _lightning_flags(ft)
    ft.add_argument("--out", default="out/finetune", help="runs go to OUT/NAME/version_N")
    ft.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ex = sub.add_parser(
        "extract",
        help="penultimate features of a trained run's backbone on a dataset, for probe/rank",
    )
    _pretrained_run_args(ex, "e.g. dataset=mnist1d, classes=5,6")
    ex.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda:0, ...")
    ex.add_argument("--batch-size", type=int, default=512)
    ex.add_argument(
        "--out", required=True, metavar="DIR",
        help="writes DIR/{train,val,test}_{features,labels}.npy and _stats.bin",
    )
    dm = sub.add_parser(
        "demo", help="the main job: heads and losses on digits, balanced and long-tail"
    )
    dm.add_argument("--epochs", type=int, default=30)
    dm.add_argument("--seeds", type=int, default=3)
    dm.add_argument("--out", default="out/demo")
    dm.add_argument("--accelerator", default="auto")
    dm.add_argument("--no-progress", action="store_true", help="no per-batch progress bars")
    rp = sub.add_parser(
        "reproduce",
        help="the papers' central claims at small scale: tables, figures and verdicts",
    )
    from .experiments.cli import add_arguments as reproduce_arguments

    reproduce_arguments(rp)
    from .transfer import cli as transfer_cli  # the probe/rank subcommands (transfer layer)

    transfer_cli.add_parsers(sub)
    return parser, dict(sub.choices)


def reference_markdown() -> str:
    """The CLI reference page of the documentation (``docs/cli.md``): every subcommand's
    ``--help``, at a fixed width so the page does not depend on the terminal.

    Regenerate it with ``python -c "from etfcore.cli import reference_markdown as r;
    print(r(), end='')" > docs/cli.md``; a test checks the page is current."""
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, {"COLUMNS": "100"}):
        parser, subs = build_parser()
        parts = [
            "# Command-line reference",
            "",
            "Every command of `etfcore`, as its `--help` prints it. Failures a user can cause "
            "print `etfcore: error: …` and exit with status 2; Ctrl-C during training keeps the "
            "last checkpoint and exits with 130.",
            "",
            "```text",
            parser.format_help().rstrip(),
            "```",
            "",
        ]
        seen = set()
        for name, sp in subs.items():
            if id(sp) in seen:  # an alias (metrics = report)
                continue
            seen.add(id(sp))
            parts += [f"## `etfcore {name}`", "", "```text", sp.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .transfer import cli as transfer_cli

    parser, _ = build_parser()
    args = parser.parse_args(argv)
    args.argv = None if argv is None else list(argv)[1:]
    if args.command in transfer_cli.COMMANDS:
        return transfer_cli.run(args)
    if args.command in ("train", "finetune", "extract", "demo", "reproduce"):
        return _run_torch_command(args)
    if args.command == "rf-curve":
        return _rf_curve(args)
    if args.command in ("report", "metrics"):
        if bool(args.features) != bool(args.labels):
            parser.error("--features and --labels go together")
        if args.run and args.features:
            parser.error("--run and --features are separate reports")
        try:
            return _report(args)
        except EtfcoreError as e:
            print(f"etfcore: error: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
