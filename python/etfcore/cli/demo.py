"""`etfcore demo`: the main job, learnable against fixed-ETF heads and losses on the embedded
digits, balanced and long-tail (needs torch)."""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS = ("demo",)


def add_parsers(sub: Any) -> None:
    dm = sub.add_parser(
        "demo", help="the main job: heads and losses on digits, balanced and long-tail"
    )
    dm.add_argument(
        "--epochs", type=int, default=30,
        help="balanced epochs; the long-tail runs train the same number of SGD steps",
    )  # fmt: skip
    dm.add_argument("--seeds", type=int, default=3)
    dm.add_argument("--out", default="out/demo")
    dm.add_argument("--accelerator", default="auto")
    dm.add_argument("--no-progress", action="store_true", help="no per-batch progress bars")


def run(args: argparse.Namespace) -> int:
    """Runs `etfcore demo`."""
    from ..training.demo import run_demo

    run_demo(
        epochs=args.epochs, seeds=range(args.seeds), out_dir=args.out,
        accelerator=args.accelerator, progress=not args.no_progress,
    )
    return 0
