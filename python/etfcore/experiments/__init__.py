"""Reproductions of the papers' central claims at small scale (`etfcore reproduce`).

One module per paper; each experiment composes the public API (training, transfer, metrics), so
each is also a worked example. [`base`][etfcore.experiments.base] defines an experiment and how its
verdict follows from the measured effect and its spread; [`runner`][etfcore.experiments.runner] runs
seeds, caches results per (experiment, settings, seed) and writes the report.

Examples
--------
>>> from etfcore.experiments import Effect, Verdict
>>> Effect("accuracy gain", (0.02, 0.03, 0.025)).verdict is Verdict.HOLDS
True
"""

from .base import (
    FORMS,
    PAPERS,
    REGISTRY,
    Effect,
    Experiment,
    Outcome,
    Paper,
    RunOptions,
    Table,
    Verdict,
    combine,
    mean_std,
    register,
)
from .runner import (
    Context,
    Report,
    TrainedRun,
    load_experiments,
    select,
    write_report,
)
from .schedule import run_experiment, run_experiments

__all__ = [
    "FORMS",
    "PAPERS",
    "REGISTRY",
    "Context",
    "Effect",
    "Experiment",
    "Outcome",
    "Paper",
    "Report",
    "RunOptions",
    "Table",
    "TrainedRun",
    "Verdict",
    "combine",
    "load_experiments",
    "mean_std",
    "register",
    "run_experiment",
    "run_experiments",
    "select",
    "write_report",
]
