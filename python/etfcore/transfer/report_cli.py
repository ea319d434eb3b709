"""The ranking-report options of ``etfcore rank`` ([`rank_models`][etfcore.transfer.rank_models]).

`add_report_arguments` adds them to the ``rank`` parser; when any of them is given
(`report_requested`), `run_report` replaces the plain score table by the report.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, List

from .._progress import Reporter
from ..errors import ParameterError

__all__ = ["add_report_arguments", "report_requested", "run_report"]


def _sizes(text: str) -> List[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--curve takes comma-separated sample sizes, e.g. 100,1000; got {text!r}") from None
    if not sizes:
        raise argparse.ArgumentTypeError("--curve needs at least one size")
    return sizes


def add_report_arguments(parser: Any) -> None:
    g = parser.add_argument_group(
        "ranking report", "any of these options turns the output into the ranking report "
        "(τ with bootstrap intervals, regret, curves, warnings)")
    g.add_argument("--ground-truth", metavar="FILE",
                   help="ground-truth table (.csv or .json: model, target, accuracy); "
                        "candidates are matched by --names")
    g.add_argument("--target-name", metavar="NAME",
                   help="the target to read from --ground-truth (needed when it has several)")
    g.add_argument("--scores", nargs="+", metavar="NAME",
                   help="scores to compute (default: every one that applies)")
    g.add_argument("--bootstrap", type=int, default=0, metavar="B",
                   help="bootstrap resamples (within each class) for τ's 95%% interval "
                        "(default 0: none)")
    g.add_argument("--curve", type=_sizes, metavar="N1,N2,...",
                   help="subsample sizes for the score-vs-N curves")
    g.add_argument("--top-k", type=int, default=3, metavar="K",
                   help="regret of the best of the top K (default 3)")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of the sample-level scores, bootstrap and subsamples")
    g.add_argument("--format", choices=["md", "json", "csv"],
                   help="report format (default md; --json means json)")
    g.add_argument("--out", metavar="FILE",
                   help="write the report here (with --curve and csv, the curves go to "
                        "FILE's stem + '-curves.csv')")


def report_requested(args: argparse.Namespace) -> bool:
    return any(getattr(args, a, None) for a in
               ("ground_truth", "bootstrap", "curve", "format", "out", "scores"))


def run_report(args: argparse.Namespace) -> int:
    from .ground_truth import load_ground_truth
    from .model_report import rank_models

    m = len(args.candidates)
    names = args.names or [os.path.splitext(os.path.basename(c))[0] for c in args.candidates]
    for opt, vals in (("--names", names), ("--accuracies", args.accuracies),
                      ("--source-accuracies", args.source_accuracies),
                      ("--source-probs", args.source_probs)):
        if vals is not None and len(vals) != m:
            raise ParameterError(f"{opt} has {len(vals)} entries for {m} candidates")
    if args.ground_truth and args.accuracies:
        raise ParameterError("give the ground truth once: --ground-truth or --accuracies")
    gt: Any = None
    if args.ground_truth:
        gt = load_ground_truth(args.ground_truth)
    elif args.accuracies:
        gt = dict(zip(names, args.accuracies))
    fmt = args.format or ("json" if args.json else "md")
    rep = rank_models(
        dict(zip(names, args.candidates)), args.target, gt, target=args.target_name,
        scores=args.scores,
        source_accuracies=None if args.source_accuracies is None
        else dict(zip(names, args.source_accuracies)),
        source_probs=None if args.source_probs is None else dict(zip(names, args.source_probs)),
        bootstrap=args.bootstrap, curve_sizes=args.curve, top_k=args.top_k, seed=args.seed,
        progress=Reporter(enabled=not getattr(args, "quiet", False)))
    text = {"md": rep.to_markdown, "json": rep.to_json, "csv": rep.to_csv}[fmt]()
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
        if fmt == "csv" and rep.curve_sizes:
            cpath = os.path.splitext(args.out)[0] + "-curves.csv"
            with open(cpath, "w", encoding="utf-8", newline="") as f:
                f.write(rep.curves_csv())
            print(f"wrote {cpath}", file=sys.stderr)
    else:
        print(text, end="" if text.endswith("\n") else "\n")
    if args.plot:
        rep.plot(args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
