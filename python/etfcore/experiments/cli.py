"""`etfcore reproduce`'s arguments and handler, owned by the experiments package so that the
command-line layer only has to call two functions:

- `add_arguments` fills the `reproduce` subparser;
- `run` runs the parsed arguments and returns the exit status.

Three scale forms (`--form`; `--quick` is `--form quick`):

- `quick`: each experiment's CPU-minutes form, three seeds by default (everything in about
  23 min on two CPU cores, measured Dec 2026);
- `cpu` (the default): the form `docs/reproductions.md` shows, five seeds by default (about
  2 h 10 min on two CPU cores, measured Dec 2026);
- `gpu`: the papers' networks where an experiment has them (`--data cifar10`/`cifar100`
  with ResNet-32/18), `--accelerator gpu` unless one is given; the CIFAR python archives must
  already be unpacked under `./data` (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from typing import Any

from .._progress import Reporter, add_quiet_argument, format_duration
from .base import FORMS, RunOptions

DEFAULT_SEEDS = {"quick": 3, "cpu": 5, "gpu": 3}
"""Seeds per form when `--seeds` is not given."""


def add_arguments(rp: argparse.ArgumentParser) -> None:
    """Adds every `reproduce` argument to `rp`."""
    rp.add_argument("names", nargs="*", metavar="NAME", help="experiments to run, or `all`")
    rp.add_argument("--list", action="store_true", help="list the experiments by paper")
    rp.add_argument(
        "--form", choices=FORMS, default=None,
        help="scale form: quick (~23 min on 2 CPU cores, 3 seeds), cpu (default; ~2 h 10 min, "
        "5 seeds), gpu (the papers' networks on --data; needs a GPU)",
    )  # fmt: skip
    rp.add_argument("--quick", action="store_true", help="the same as --form quick")
    rp.add_argument(
        "--seeds", type=int, default=None,
        help="number of seeds (default: 3 quick, 5 cpu, 3 gpu)",
    )  # fmt: skip
    rp.add_argument("--seed0", type=int, default=0, help="first seed (default 0)")
    rp.add_argument(
        "--data", help="a dataset replacing the embedded default where an experiment allows it"
    )
    rp.add_argument(
        "--accelerator", default=None,
        help="Lightning accelerator (auto, cpu, gpu; default auto, gpu with --form gpu)",
    )  # fmt: skip
    rp.add_argument(
        "--jobs", type=int, default=0,
        help="worker processes, shared by all the experiments named (0: one per core)",
    )  # fmt: skip
    rp.add_argument("--out", default="out/reproduce", help="results, cached runs and figures")
    rp.add_argument("--no-cache", action="store_true", help="recompute every seed and run")
    rp.add_argument(
        "--report", metavar="FILE.md",
        help="write the combined report there, figures in FILE/figures/, linking FILE/<module>.md "
        "pages (etfcore's docs/reproductions.md is made this way)",
    )
    rp.add_argument("--progress", action="store_true", help="per-batch progress bars")
    add_quiet_argument(rp)


def options_from(args: argparse.Namespace) -> RunOptions:
    """The [`RunOptions`][etfcore.experiments.base.RunOptions] of parsed arguments (form, seeds
    and accelerator defaults).

    Examples
    --------
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> o = options_from(p.parse_args(["all", "--quick"])); o.form, o.seeds
    ('quick', (0, 1, 2))
    >>> o = options_from(p.parse_args(["all"])); o.form, len(o.seeds), o.accelerator
    ('cpu', 5, 'auto')
    >>> options_from(p.parse_args(["all", "--form", "gpu"])).accelerator
    'gpu'
    """
    form = "quick" if args.quick else (args.form or "cpu")
    if args.quick and args.form not in (None, "quick"):
        raise ValueError(f"--quick and --form {args.form} disagree")
    seeds = DEFAULT_SEEDS[form] if args.seeds is None else args.seeds
    accelerator = args.accelerator or ("gpu" if form == "gpu" else "auto")
    jobs = args.jobs or min(seeds, os.cpu_count() or 1)
    return RunOptions(
        quick=form == "quick", form=form, seeds=tuple(range(args.seed0, args.seed0 + seeds)),
        data=args.data, accelerator=accelerator, out_dir=args.out, cache=not args.no_cache,
        jobs=jobs, progress=args.progress,
    )  # fmt: skip


def plan_line(experiments: int, options: RunOptions, in_cache: int) -> str:
    """The first progress line of ``etfcore reproduce``: what will run, and where.

    Parameters
    ----------
    experiments : int
        Experiments selected.
    options : RunOptions
        The run's options (form, seeds, jobs, output directory, cache).
    in_cache : int
        Seed runs whose results are already in the cache.

    Returns
    -------
    str

    Examples
    --------
    >>> o = RunOptions(quick=True, seeds=(0, 1, 2), jobs=2, out_dir="/tmp/r")
    >>> line = plan_line(7, o, 4)
    >>> line.split(" (")[0]
    'reproduce: 7 experiments × 3 seeds = 21 seed runs'
    >>> line.split(" (")[1].split(", ")
    ['4 in the cache', '17 to compute)', 'form quick', '2 jobs', 'cache /tmp/r']
    """
    total = experiments * len(options.seeds)
    root = os.path.abspath(options.out_dir)
    cache = f"cache {root}" if options.cache else f"cache off (--no-cache), writing to {root}"
    return (
        f"reproduce: {experiments} experiment{'s' if experiments != 1 else ''} × "
        f"{len(options.seeds)} seed{'s' if len(options.seeds) != 1 else ''} = {total} seed runs "
        f"({in_cache} in the cache, {total - in_cache} to compute), form {options.form}, "
        f"{options.jobs} job{'s' if options.jobs != 1 else ''}, {cache}"
    )


def run(args: argparse.Namespace) -> int:
    """`etfcore reproduce`: --list, one or more experiments, or `all`."""
    from .base import PAPERS
    from .runner import (
        load_experiments,
        seeds_in_cache,
        select,
        summary_table,
        write_report,
    )
    from .schedule import run_experiments

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
    if (args.seeds is not None and args.seeds < 1) or args.jobs < 0:
        print("etfcore: error: --seeds must be >= 1 and --jobs >= 0", file=sys.stderr)
        return 2
    try:
        options = options_from(args)
    except ValueError as e:
        print(f"etfcore: error: {e}", file=sys.stderr)
        return 2
    experiments = select(args.names)
    for exp in experiments:  # a setting an experiment refuses (e.g. --data) fails before any run
        exp.settings(options)
    reporter = Reporter(enabled=not getattr(args, "quiet", False))
    in_cache = [len(seeds_in_cache(exp, options)) for exp in experiments]
    reporter.line(plan_line(len(experiments), options, sum(in_cache)))
    seeds = reporter.stage(
        "", len(experiments) * len(options.seeds), workers=min(options.jobs, len(options.seeds)),
        cached=sum(in_cache),
    )  # fmt: skip
    n = len(experiments)

    def on_start(i: int, exp: Any) -> None:
        head = f"[experiment {i + 1}/{n}] {exp.name}"
        reporter.line(f"{head}: {len(options.seeds)} seeds, {in_cache[i]} in the cache")

    def on_report(i: int, report: Any) -> None:
        head = f"[experiment {i + 1}/{n}] {report.experiment.name}"
        reporter.line(f"{head} done in {format_duration(report.seconds)}{seeds.status()}")
        print(f"== {report.experiment.name}", flush=True)
        print(report.text(), "\n", flush=True)

    t0 = time.perf_counter()
    reports = run_experiments(
        experiments, options, progress=seeds, on_start=on_start, on_report=on_report
    )
    wall = time.perf_counter() - t0
    if len(reports) > 1 or args.report:
        path = args.report or os.path.join(args.out, "report.md")
        argv = getattr(args, "argv", None)
        command = "etfcore reproduce " + " ".join(sys.argv[2:] if argv is None else argv)
        stem = os.path.splitext(path)[0]
        write_report(
            reports, path, command=command.strip(),
            figures_dir=os.path.join(stem, "figures") if args.report else None,
            pages_dir=stem if args.report else None, wall_seconds=wall,
        )  # fmt: skip
        print(summary_table(reports))
        print(f"\n({wall / 60:.1f} min in all; report: {path})")
    return 0


def main(argv: Any = None) -> int:
    """`python -m etfcore.experiments.cli ...` (the same as `etfcore reproduce ...`)."""
    parser = argparse.ArgumentParser(prog="etfcore reproduce")
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = None if argv is None else list(argv)
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
