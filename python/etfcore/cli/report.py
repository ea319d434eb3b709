"""`etfcore report` (alias `metrics`): collapse metrics of embedded data, of saved features
(table, JSON, Markdown, plots) or of a training run's `metrics.jsonl` (curves and summary)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, List, Tuple

import numpy as np

from .. import __version__, data
from .._io import make_dirs, read_jsonl, save_with, write_text
from ..errors import ParameterError
from ..frames import etf
from ..metrics import collapse_metrics
from ._common import UsageError

COMMANDS = ("report", "metrics")


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

    from ..stats import CollapseStats

    make_dirs(out_dir)
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
    save_with(f1, lambda f: fig.savefig(f, dpi=110, format="png"))
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
    save_with(f2, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)
    return [f1, f2]


def markdown_table(columns: List[Tuple[str, Dict[str, Any]]]) -> str:
    """The `format_table` rows as a Markdown table."""
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
        raise ParameterError(
            f"{path} not found: --run takes a run directory of `etfcore train` "
            "(OUT/NAME/version_N)"
        )
    rows = read_jsonl(path)  # a torn last line (a kill mid-write) is skipped with a warning
    if not rows:
        raise ParameterError(f"{path} has no epochs yet (the run finished none)")
    make_dirs(out_dir)
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
        save_with(files[-1], lambda f: fig.savefig(f, dpi=110, format="png"))
        plt.close(fig)
        md += ["", "![metric curves](curves.png)"]
    except ImportError:
        md += ["", "(matplotlib not installed: no plots)"]
    files.append(os.path.join(out_dir, "summary.md"))
    write_text(files[-1], "\n".join(md) + "\n")
    return "\n".join(md), files

def add_parsers(sub: Any) -> None:
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


def run(args: argparse.Namespace) -> int:
    """Runs `etfcore report`."""
    if bool(args.features) != bool(args.labels):
        raise UsageError("--features and --labels go together")
    if args.run and args.features:
        raise UsageError("--run and --features are separate reports")
    return _report(args)


def _report(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if args.run:
        text, files = run_report(args.run, args.plots or args.run)
        print(text)
        for f in files:
            print(f"wrote {f}", file=sys.stderr)
        return 0
    if args.features:
        from ..transfer.features import load_npy

        h = load_npy(args.features, "features")
        y = np.asarray(load_npy(args.labels, "labels"))
        w = np.asarray(load_npy(args.classifier, "classifier")) if args.classifier else None
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
        title = f"# Collapse metrics ({args.weighting} convention)\n\n"
        write_text(args.markdown, title + markdown_table(cols) + "\n")
        print(f"wrote {args.markdown}", file=sys.stderr)
    if args.json:
        plain = lambda v: v.tolist() if isinstance(v, np.ndarray) else v  # noqa: E731
        print(json.dumps({n: {k: plain(v) for k, v in m.items()} for n, m in cols}, indent=2))
    else:
        print(f"etfcore {__version__} — collapse metrics ({args.weighting} convention)\n")
        print(format_table(cols))
        print(f"\n({time.perf_counter() - t0:.2f} s)")
    return 0
