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
import os
import sys
from typing import Any, Dict, Optional, Sequence, Tuple

from .. import __version__
from .._progress import collect_warnings
from ..errors import EtfcoreError, MissingDependencyError
from ..transfer import cli as transfer_cli  # the probe/rank subcommands (transfer layer)
from . import demo, reproduce, rf, train
from . import report as report_cli
from ._common import UsageError
from .report import format_table, markdown_table, run_report, write_plots
from .rf import digits_binary_task

# The command groups in the order of `etfcore --help`; each has COMMANDS, add_parsers and run.
GROUPS = (report_cli, rf, train, demo, reproduce, transfer_cli)

_TRAIN_DEPS = ("torch", "lightning", "torchmetrics", "torchvision", "tomli")

__all__ = [
    "build_parser",
    "digits_binary_task",
    "format_table",
    "main",
    "markdown_table",
    "reference_markdown",
    "run_report",
    "write_plots",
]


class _Parser(argparse.ArgumentParser):
    """argparse without prefix matching (``--device`` must not become ``--devices``); the
    subcommand parsers are of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


class _RefuseDevice(argparse.Action):
    """``--device`` on a Lightning command: refused, naming the flags Lightning takes."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None):
        parser.error(
            f"{option_string} {values} is not a flag of this command: Lightning takes "
            f"--accelerator (cpu, gpu, auto, ...) and --devices (a count or a list like 0,1); "
            f"e.g. --accelerator gpu --devices 1 for one CUDA device"
        )


def build_parser() -> Tuple[argparse.ArgumentParser, Dict[str, argparse.ArgumentParser]]:
    """The ``etfcore`` parser and its subcommand parsers by name. No parser matches
    abbreviated flags; a command with ``--accelerator`` refuses ``--device`` with a message
    naming ``--accelerator`` and ``--devices``."""
    parser = _Parser(
        prog="etfcore", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"etfcore {__version__}")
    parser.add_argument(
        "--debug", action="store_true",
        help="show the traceback of every failure (errors are one-line messages otherwise)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    for sp in sub.choices.values():
        flags = sp._option_string_actions
        if "--accelerator" in flags and "--device" not in flags:
            sp.add_argument("--device", action=_RefuseDevice, help=argparse.SUPPRESS)
    return parser, dict(sub.choices)


def reference_markdown() -> str:
    """The CLI reference page of the documentation (``docs/cli.md``): every subcommand's
    ``--help``, at a fixed width so the page does not depend on the terminal.

    Regenerate it with ``python -c "from etfcore.cli import reference_markdown as r;
    print(r(), end='')" > docs/cli.md``; a test checks the page is current."""
    from unittest import mock

    with mock.patch.dict(os.environ, {"COLUMNS": "100"}):
        parser, subs = build_parser()
        parts = [
            "# Command-line reference",
            "",
            "Every command of `etfcore`, as its `--help` prints it. Failures a user can cause "
            "print `etfcore: error: …` and exit with status 2 (`etfcore --debug …` shows the "
            "traceback); Ctrl-C during training keeps the last checkpoint and exits with 130, "
            "SIGTERM with 143 (see [Failure and recovery](failure-and-recovery.md)).",
            "",
            "Long commands report their progress on stderr, one line per finished unit: "
            "`reproduce` first says what will run (experiments × seeds, form, jobs, cache "
            "directory), then a line per seed and per experiment; `rank` a line per candidate "
            "(then per bootstrap resample and curve size, at most every 10 s); `extract` the "
            "rows done per split with rows/s (at most every 5 s). Each line gives the elapsed "
            "time and an estimate of the time left (`ETA ~12 min`): the mean time of the units "
            "computed so far times the units left (seeds found in the cache count as instant "
            "and are not counted as left), divided by the parallel jobs; an estimate, not a "
            "promise, when units differ in cost. `--quiet` turns the lines off. Every command "
            "shows each distinct warning once, when first raised (also one raised in a "
            "`--jobs` worker process), and ends with its count if it was raised again "
            "(`warning raised 27 times (shown once above): …`); warnings that Python's filters "
            "ignore (`-W ignore`, `PYTHONWARNINGS`) stay ignored.",
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


def _error_status(args: argparse.Namespace, e: BaseException) -> Optional[int]:
    """The one mapping of failures to exit statuses: every failure a user can cause prints
    ``etfcore: error: ...`` and gives 2, Ctrl-C a message and 130, SIGTERM during training a
    message and 143 (128 + the signal, as a shell reports it); anything else (a genuine bug) is
    ``None``: it keeps its traceback."""
    if isinstance(e, KeyboardInterrupt):
        msg = str(e) or "interrupted"
        checkpoint = getattr(e, "checkpoint", None)
        if checkpoint and args.command in ("train", "finetune"):
            run = os.path.dirname(os.path.dirname(checkpoint))
            msg += f"; resume with `etfcore train --out {args.out} --resume {run}`"
        print(f"\netfcore: {msg}", file=sys.stderr)
        return 128 + int(getattr(e, "signum", 2))
    if isinstance(e, (EtfcoreError, ImportError)):
        hint = ""
        if isinstance(e, ImportError) and not isinstance(e, MissingDependencyError) and (
            e.name in _TRAIN_DEPS
        ):
            hint = " (pip install 'etfcore[train]')"
        print(f"etfcore: error: {type(e).__name__}: {e}{hint}", file=sys.stderr)
        return 2
    if isinstance(e, OSError) or _is_misconfiguration(e) or (
        isinstance(e, RuntimeError) and any(w in str(e).lower() for w in ("download", "url"))
    ):
        print(f"etfcore: error: {e}", file=sys.stderr)
        return 2
    return None


def _is_misconfiguration(e: BaseException) -> bool:
    """Lightning refusing what the user asked for (checked without importing Lightning)."""
    mod = sys.modules.get("lightning.fabric.utilities.exceptions")
    cls = getattr(mod, "MisconfigurationException", None)
    return cls is not None and isinstance(e, cls)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``etfcore`` command: parses ``argv`` (default ``sys.argv[1:]``), runs the command's
    group and maps its failures to exit statuses (:func:`_error_status`). While it runs, each
    distinct warning (category and message) is shown once and, at the end, the count of each
    that was raised more than once (`etfcore._progress.collect_warnings`)."""
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    args.argv = None if argv is None else list(argv)[1:]
    group = next(g for g in GROUPS if args.command in g.COMMANDS)
    try:
        with collect_warnings():  # each distinct warning once, its repeats counted at the end
            return group.run(args)
    except UsageError as e:
        parser.error(str(e))
    except BaseException as e:
        if args.debug and not isinstance(e, SystemExit):
            raise
        status = _error_status(args, e)
        if status is None:
            raise
        return status
    return 2  # pragma: no cover - parser.error exits


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
