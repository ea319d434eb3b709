"""``etfcore reproduce``: the papers' central claims at small scale (the parser and the handler,
together)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

COMMANDS = ("reproduce",)


def add_parsers(sub: Any) -> None:
    rp = sub.add_parser(
        "reproduce",
        help="the papers' central claims at small scale: tables, figures and verdicts",
    )
    rp.add_argument("names", nargs="*", metavar="NAME", help="experiments to run, or `all`")
    rp.add_argument("--list", action="store_true", help="list the experiments by paper")
    rp.add_argument("--quick", action="store_true", help="the CPU-minutes form of each one")
    rp.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    rp.add_argument("--seed0", type=int, default=0, help="first seed (default 0)")
    rp.add_argument(
        "--data", help="a dataset replacing the embedded default where an experiment allows it"
    )
    rp.add_argument("--accelerator", default="auto", help="Lightning accelerator (auto, cpu, gpu)")
    rp.add_argument("--jobs", type=int, default=0, help="seeds in parallel (0: one per core)")
    rp.add_argument("--out", default="out/reproduce", help="results, cached runs and figures")
    rp.add_argument("--no-cache", action="store_true", help="recompute every seed and run")
    rp.add_argument(
        "--report", metavar="FILE.md",
        help="write the combined report there, figures in FILE/figures/, linking FILE/<module>.md "
        "pages (etfcore's docs/reproductions.md is made this way)",
    )
    rp.add_argument("--progress", action="store_true", help="per-batch progress bars")


def run(args: argparse.Namespace) -> int:
    """Runs ``etfcore reproduce``."""
    return _reproduce(args)


def _reproduce(args: argparse.Namespace) -> int:
    """``etfcore reproduce``: --list, one or more experiments, or ``all``."""
    import os
    import textwrap

    from ..experiments import PAPERS, RunOptions, load_experiments, run_experiment, select
    from ..experiments.runner import summary_table, write_report

    if args.list:
        paper = None
        for name, exp in load_experiments().items():
            if exp.paper != paper:
                paper = exp.paper
                print(f"\n{PAPERS[paper].cite()}")
            print(f"  {name}")
            print(textwrap.fill(exp.claim, 96, initial_indent=" " * 6, subsequent_indent=" " * 6))
        return 0
    if not args.names:
        print("etfcore: error: name an experiment, `all`, or use --list", file=sys.stderr)
        return 2
    if args.seeds < 1 or args.jobs < 0:
        print("etfcore: error: --seeds must be >= 1 and --jobs >= 0", file=sys.stderr)
        return 2
    experiments = select(args.names)
    jobs = args.jobs or min(args.seeds, os.cpu_count() or 1)
    options = RunOptions(
        quick=args.quick, seeds=tuple(range(args.seed0, args.seed0 + args.seeds)),
        data=args.data, accelerator=args.accelerator, out_dir=args.out,
        cache=not args.no_cache, jobs=jobs, progress=args.progress,
    )  # fmt: skip
    for exp in experiments:  # a setting an experiment refuses (e.g. --data) fails before any run
        exp.settings(options)
    reports = []
    for exp in experiments:
        print(f"== {exp.name}", flush=True)
        reports.append(run_experiment(exp, options))
        print(reports[-1].text(), "\n", flush=True)
    if len(reports) > 1 or args.report:
        path = args.report or os.path.join(args.out, "report.md")
        command = "etfcore reproduce " + " ".join(sys.argv[2:] if args.argv is None else args.argv)
        stem = os.path.splitext(path)[0]
        write_report(
            reports, path, command=command.strip(),
            figures_dir=os.path.join(stem, "figures") if args.report else None,
            pages_dir=stem if args.report else None,
        )  # fmt: skip
        print(summary_table(reports))
        total = sum(r.seconds for r in reports)
        print(f"\n({total / 60:.1f} min in all; report: {path})")
    return 0
