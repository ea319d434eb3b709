"""The transfer subcommands of the ``etfcore`` command line.

    etfcore probe --train F.npy y.npy --test F.npy y.npy [--json] [--plot curve.png]
    etfcore rank --target y.npy --candidates A.npy B.npy ... [--accuracies 0.71 0.74 ...]
                 [--names a b ...] [--source-accuracies ...] [--json] [--plot scatter.png]

Registered by `add_parsers` from ``etfcore.cli.build_parser``; `run` executes them
and ``etfcore.cli.main`` maps their failures: bad input prints ``etfcore: error: …`` and exits
with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, List

import numpy as np

from .._io import save_with
from .._progress import Reporter, add_quiet_argument
from ..errors import ParameterError
from .features import load_npy

COMMANDS = ("probe", "rank")


def add_parsers(sub: Any) -> None:
    pr = sub.add_parser("probe", help="linear probe of saved features (logistic regression, "
                                      "97-λ sweep on a validation split; needs torch)")
    pr.add_argument("--train", nargs=2, required=True, metavar=("F.npy", "y.npy"))
    pr.add_argument("--test", nargs=2, required=True, metavar=("F.npy", "y.npy"))
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--device", default="auto")
    pr.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    pr.add_argument("--val-fraction", type=float, default=0.2)
    pr.add_argument(
        "--cv", type=int, metavar="K",
        help="choose λ by stratified, seeded K-fold cross-validation (default: one split)",
    )
    pr.add_argument("--selection", choices=["top1", "mean_per_class"], default="top1")
    pr.add_argument("--standardize", action="store_true")
    pr.add_argument("--tol", type=float, default=1e-4)
    pr.add_argument("--chunk-rows", type=int, default=None)
    pr.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pr.add_argument("--plot", metavar="PNG", help="write the validation curve")
    rk = sub.add_parser("rank", help="rank candidate backbones for a target with every "
                                     "transferability score")
    rk.add_argument("--target", required=True, metavar="y.npy", help="target labels (N,)")
    rk.add_argument("--candidates", nargs="+", required=True, metavar="F.npy",
                    help="one feature file (N, p) per candidate backbone")
    rk.add_argument("--names", nargs="+", help="candidate names (default: file stems)")
    rk.add_argument("--accuracies", nargs="+", type=float,
                    help="ground-truth transfer accuracy of each candidate (fractions)")
    rk.add_argument("--source-accuracies", nargs="+", type=float,
                    help="each candidate's accuracy on its pretraining task (the baseline)")
    rk.add_argument("--source-probs", nargs="+", metavar="P.npy",
                    help="source-head probabilities (N, K_s) per candidate, for LEEP and NCE")
    rk.add_argument("--json", action="store_true")
    rk.add_argument("--plot", metavar="PNG", help="score-vs-accuracy scatter plots with τ")
    add_quiet_argument(rk)
    from .report_cli import add_report_arguments  # the ranking report

    add_report_arguments(rk)


def _load(path: str, what: str) -> np.ndarray:
    return load_npy(path, what)


def _probe(args: argparse.Namespace) -> int:
    from .probe import linear_probe

    ftr, ytr = _load(args.train[0], "train features"), _load(args.train[1], "train labels")
    fte, yte = _load(args.test[0], "test features"), _load(args.test[1], "test labels")
    r = linear_probe(ftr, np.asarray(ytr), fte, np.asarray(yte), seed=args.seed,
                     device=args.device, dtype=args.dtype, val_fraction=args.val_fraction,
                     cv=args.cv, selection=args.selection, standardize=args.standardize,
                     tol=args.tol,
                     chunk_rows=args.chunk_rows)
    if args.json:
        print(json.dumps(r.to_dict(), indent=1))
    else:
        rows = [("top-1 accuracy", f"{r.top1:.4f}"),
                ("mean per-class accuracy", f"{r.mean_per_class:.4f}"),
                ("chosen λ (l2)", f"{r.l2:.4g}  (grid index {r.l2_index} of {r.grid.size})"),
                (f"best validation {r.selection}", f"{r.validation_curve[r.l2_index]:.4f}"
                                                   "  (ties: the weakest λ)"),
                ("train / val / test", f"{r.num_train - r.num_val} / {r.num_val} / {r.num_test}"
                 if r.cv is None else f"{r.num_train} in {r.cv} stratified folds / {r.num_test}"),
                ("classes", str(r.classes.size)),
                ("L-BFGS iterations", f"{int(r.iterations.sum())} over the sweep, "
                                      f"{r.refit_iterations} refit"),
                ("converged (‖∇‖∞ ≤ tol)", f"{int(r.converged.sum())}/{r.converged.size}, "
                                          f"refit {r.refit_converged}"),
                ("device / dtype", f"{r.device} / {r.dtype}")]
        w = max(len(a) for a, _ in rows)
        print("\n".join(f"{a:<{w}}  {b}" for a, b in rows))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.semilogx(r.grid, r.validation_curve, marker=".")
        ax.axvline(r.l2, color="k", ls="--", lw=0.8)
        ax.set_xlabel("λ (L2 strength)")
        ax.set_ylabel(f"validation {r.selection}")
        ax.set_title(f"linear probe: test top-1 {r.top1:.3f} at λ={r.l2:.3g}")
        fig.tight_layout()
        save_with(args.plot, lambda f: fig.savefig(f, dpi=120, format="png"))
        plt.close(fig)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _rank(args: argparse.Namespace) -> int:
    from .ranking import rank_report
    from .report_cli import report_requested, run_report
    from .scores import NCTIComponents, all_scores, ncti

    if report_requested(args):
        return run_report(args)
    m = len(args.candidates)
    if m < 2:
        raise ParameterError(f"ranking needs at least 2 candidate models, got {m}")
    if args.plot and args.accuracies is None:  # before any score is computed
        raise ParameterError("--plot needs --accuracies (the ground truth on the x axis)")
    names = args.names or [os.path.splitext(os.path.basename(c))[0] for c in args.candidates]
    for opt, vals in (("--names", names), ("--accuracies", args.accuracies),
                      ("--source-accuracies", args.source_accuracies),
                      ("--source-probs", args.source_probs)):
        if vals is not None and len(vals) != m:
            raise ParameterError(f"{opt} has {len(vals)} entries for {m} candidates")
    y = np.asarray(_load(args.target, "target labels"))
    per: List[dict] = []
    comps = []
    progress = Reporter(enabled=not getattr(args, "quiet", False)).stage("scores", m)
    for i, path in enumerate(args.candidates):
        f = _load(path, "candidate features")
        probs = None if args.source_probs is None else np.asarray(
            _load(args.source_probs[i], "source probabilities"))
        s = all_scores(np.asarray(f), y, source_probs=probs)
        comps.append(NCTIComponents(s["ncti_seli"], s["ncti_ncc"], s["ncti_vc"], float("nan")))
        per.append(s)
        progress.done(names[i])
    keys = [k for k in per[0] if not k.startswith("ncti_")]
    scores = {k: [p[k] for p in per] for k in keys}
    scores["ncti"] = ncti(comps).tolist()
    rep = rank_report(names, scores, args.accuracies,
                      source_accuracies=args.source_accuracies)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=1))
    else:
        print(rep.table())
    if args.plot:
        _scatter(rep, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _scatter(rep: Any, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rep.scores)
    cols = 4
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    tau = {a.score: a.weighted_tau for a in rep.agreement}
    for ax, n in zip(axes.ravel(), names):
        ax.scatter(rep.accuracies, rep.scores[n], s=14)
        for c, x, v in zip(rep.candidates, rep.accuracies, rep.scores[n]):
            ax.annotate(c, (x, v), fontsize=6)
        ax.set_title(f"{n}  τ_w={tau.get(n, float('nan')):.3f}", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.supxlabel("transfer accuracy (ground truth)", fontsize=8)
    fig.tight_layout()
    save_with(path, lambda f: fig.savefig(f, dpi=120, format="png"))
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Runs a transfer subcommand (``etfcore.cli.main`` maps its failures to exit statuses)."""
    return _probe(args) if args.command == "probe" else _rank(args)
