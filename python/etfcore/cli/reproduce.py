"""`etfcore reproduce`: the papers' central claims at small scale. The experiments package owns
the arguments and the handler (`etfcore.experiments.cli`); this module only registers them."""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS = ("reproduce",)


def add_parsers(sub: Any) -> None:
    from ..experiments.cli import add_arguments

    rp = sub.add_parser(
        "reproduce",
        help="the papers' central claims at small scale: tables, figures and verdicts",
    )
    add_arguments(rp)


def run(args: argparse.Namespace) -> int:
    """Runs `etfcore reproduce`."""
    from ..experiments.cli import run as run_reproduce

    return run_reproduce(args)
