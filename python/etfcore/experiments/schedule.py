"""Several experiments' seeds on one pool of worker processes, packed across experiments.

Run one experiment after another with a pool each, and every experiment ends with cores idle:
with five seeds on two workers the fifth runs alone, a sixth of the time lost per experiment;
with three seeds on two workers, a quarter. `run_experiments` keeps every worker busy instead:
seed ``s`` of each experiment is a link in a chain (experiment 1, 2, … in order), the chains of
the different seeds run side by side, and a worker that finishes a link starts the next link
of its chain, or of another chain. Seed ``s`` of an experiment starts only once seed ``s`` of
the one before has finished, so a training run two experiments share (they share a run when
they train the same config, seed included) is trained once and read from the cache after.
Each experiment is summarised, in order, as soon as its seeds and those of every experiment
before it are done.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import ParameterError
from .base import Experiment, RunOptions
from .runner import (
    Report,
    _cached_entry,
    _compute_seeds,
    _json_clean,
    _run_one_seed_in_worker,
    _seed_path,
    finish_experiment,
    get_experiment,
)

__all__ = ["run_experiment", "run_experiments"]


def run_experiment(
    experiment: Any, options: Optional[RunOptions] = None, *, progress: Any = None
) -> Report:
    """Run (or read from the cache) every seed of an experiment, summarise, draw the figure
    and write `<out>/<name>/report.md`.

    Parameters
    ----------
    experiment
        A name or an instance.
    options
        How it runs (default `RunOptions()`).
    progress
        A stage of an `etfcore._progress.Reporter` counting seeds: each seed, computed or read
        from the cache, calls its `done` as it finishes (with `options.jobs > 1`, as the worker
        processes finish). `None` (the default): no progress lines.

    Returns
    -------
    Report

    Raises
    ------
    ParameterError
        For an unknown name or no seed.
    """
    options = options or RunOptions()
    exp = get_experiment(experiment) if isinstance(experiment, str) else experiment
    if not options.seeds:
        raise ParameterError("at least one seed is needed")
    if options.jobs > 1:  # worker processes: the scheduler that packs seeds owns them
        return run_experiments([exp], options, progress=progress)[0]
    t0 = time.perf_counter()
    settings = _json_clean(exp.settings(options))
    by_seed, computed, recorded, unrecorded = _compute_seeds(exp, options, settings, progress)
    return finish_experiment(exp, options, settings, by_seed, computed, recorded, t0,
                             unrecorded)  # fmt: skip


class _Pending:
    """One experiment's seeds as they arrive."""

    def __init__(self, exp: Experiment, options: RunOptions) -> None:
        self.exp = exp
        self.settings = _json_clean(exp.settings(options))
        self.where = (type(exp).__module__, type(exp).__qualname__)
        self.results: Dict[int, Dict[str, Any]] = {}
        self.computed = 0.0
        self.recorded = 0.0
        self.unrecorded = 0  # cached seeds without a recorded CPU time
        self.t0: Optional[float] = None  # when its first seed was dispatched or read

    def touch(self) -> bool:
        """Marks the experiment started; `True` the first time."""
        if self.t0 is None:
            self.t0 = time.perf_counter()
            return True
        return False


def run_experiments(
    experiments: Sequence[Experiment],
    options: RunOptions,
    *,
    progress: Any = None,
    on_start: Optional[Callable[[int, Experiment], None]] = None,
    on_report: Optional[Callable[[int, Report], None]] = None,
) -> List[Report]:
    """Every experiment's reports, in order, its seeds computed (or read from the cache) with
    ``options.jobs`` worker processes shared by all of them (see the module's text); with
    ``options.jobs <= 1``, one experiment after the other in this process.

    Parameters
    ----------
    experiments
        The experiments, in the order their reports come back.
    options
        How they run (seeds, jobs, cache, output directory).
    progress
        A stage of an `etfcore._progress.Reporter` counting seeds (its ``done`` is called once
        per seed of every experiment, computed or read from the cache), or `None`.
    on_start
        Called with ``(index, experiment)`` when an experiment's first seed starts or is read.
    on_report
        Called with ``(index, report)`` as each experiment is summarised, in order.

    Returns
    -------
    list of Report
        One per experiment, as `run_experiment` returns it.

    Raises
    ------
    ParameterError
        With no seed. A seed that fails raises its error here once the seeds already running
        have finished (they are cached; the queued ones are dropped).
    """
    if not options.seeds:
        raise ParameterError("at least one seed is needed")
    if options.jobs <= 1:
        reports = []
        for i, exp in enumerate(experiments):
            if on_start:
                on_start(i, exp)
            reports.append(run_experiment(exp, options, progress=progress))
            if on_report:
                on_report(i, reports[-1])
        return reports
    pending = [_Pending(exp, options) for exp in experiments]
    seeds = list(options.seeds)
    reports: List[Report] = []

    def started(i: int) -> None:
        if pending[i].touch() and on_start:
            on_start(i, pending[i].exp)

    def record(i: int, seed: int, result: Dict[str, Any], cpu: Optional[float], wall: float,
               cached: bool) -> None:  # fmt: skip
        p = pending[i]
        p.results[seed] = result
        if cpu is None:
            p.unrecorded += 1
        else:
            p.recorded += cpu
        p.computed += wall
        if progress is not None:
            label = f"{p.exp.name} seed {seed} ({len(p.results)}/{len(seeds)})"
            progress.done(label, seconds=wall, cached=cached)

    def finish_ready() -> None:
        while len(reports) < len(pending) and len(pending[len(reports)].results) == len(seeds):
            i = len(reports)
            p = pending[i]
            assert p.t0 is not None
            reports.append(finish_experiment(
                p.exp, options, p.settings, p.results, p.computed, p.recorded, p.t0,
                p.unrecorded,
            ))  # fmt: skip
            if on_report:
                on_report(i, reports[-1])

    futures: Dict[Future, Tuple[int, int]] = {}
    with ProcessPoolExecutor(options.jobs, mp_context=get_context("spawn")) as pool:

        def advance(seed: int, i: int) -> None:
            """Seed `seed` from experiment `i` on: cached links are read, the first link to
            compute is submitted."""
            while i < len(pending):
                started(i)
                p = pending[i]
                path = _seed_path(options, p.exp, p.settings, seed)
                entry = _cached_entry(path) if options.cache else None
                if entry is None:
                    fut = pool.submit(_run_one_seed_in_worker, p.where, options, p.settings, seed)
                    futures[fut] = (i, seed)
                    return
                record(i, seed, entry[0], entry[1], 0.0, cached=True)
                i += 1

        from .._progress import replay_warnings

        registry: Dict[Any, Any] = {}  # a worker's warning is shown once, as in one process
        try:
            for seed in seeds:
                advance(seed, 0)
            finish_ready()
            while futures:
                done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for fut in done:
                    i, seed = futures.pop(fut)
                    result, wall, cpu, warned = fut.result()
                    replay_warnings(warned, registry)
                    record(i, seed, result, cpu, wall, cached=False)
                    advance(seed, i + 1)
                finish_ready()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # seeds running finish and are cached
            raise
    return reports
