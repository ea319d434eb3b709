"""Progress lines and de-duplicated warnings for long commands (private to etfcore).

A [`Reporter`][etfcore._progress.Reporter] writes one line per finished unit of work to stderr
(a seed of an experiment, a candidate model, a batch of rows), with the elapsed time and an
estimate of the time left; [`collect_warnings`][etfcore._progress.collect_warnings] shows each
distinct warning of a command once and counts its repeats;
[`record_warnings`][etfcore._progress.record_warnings] and
[`replay_warnings`][etfcore._progress.replay_warnings] carry the warnings of a worker process to
its parent. Standard library only.

The estimate (ETA) is the mean time of the units computed so far times the units still to
compute, divided by the units computed at once (``workers``). Units read from a cache count as
done but not as computed: they change neither the mean nor, when announced in advance
(``cached``), the units left to compute.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import pickle
import re
import sys
import time
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, TextIO, Tuple

#: A warning carried between processes: ``(category, message, filename, lineno, count)``.
WarningRecord = Tuple[type, str, str, int, int]

# Actions that show a warning only once per location (or module): made "always" while
# warnings are counted, so that every occurrence is seen; "ignore" and "error" stay as they are.
_ONCE_ACTIONS = ("default", "module", "once")


def format_duration(seconds: float) -> str:
    """A duration for a progress line: seconds below 90 s, minutes below 90 min, else hours.

    Parameters
    ----------
    seconds : float
        The duration in seconds (non-negative).

    Returns
    -------
    str
        ``"<1 s"``, ``"41 s"``, ``"6.2 min"``, ``"42 min"`` or ``"2.3 h"``.

    Examples
    --------
    >>> format_duration(41.2), format_duration(372), format_duration(2520), format_duration(8280)
    ('41 s', '6.2 min', '42 min', '2.3 h')
    """
    if seconds < 0.5:
        return "<1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    """Adds ``--quiet`` (no progress lines) to a command's parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The subcommand's parser.
    """
    parser.add_argument(
        "--quiet", action="store_true",
        help="no progress lines on stderr (results and warnings still print)",
    )  # fmt: skip


class Reporter:
    """Writes the progress lines of one command.

    Parameters
    ----------
    enabled : bool
        ``False``: every line is dropped (``--quiet``); the counting still happens.
    stream : file-like or None
        Where lines go; ``None`` (the default) means ``sys.stderr`` at the time of writing.
    clock : callable
        Seconds as a float, monotonic (default [`time.monotonic`][time.monotonic]); tests pass
        a fake clock.

    Examples
    --------
    >>> import io
    >>> t = iter([0.0, 0.0, 5.0, 12.0])
    >>> out = io.StringIO()
    >>> r = Reporter(stream=out, clock=lambda: next(t))
    >>> s = r.stage("", 3)
    >>> s.done("a", seconds=5.0)
    '[1/3] a done in 5 s · elapsed 5 s · ETA ~10 s'
    >>> s.done("b", cached=True)
    '[2/3] b from the cache · elapsed 12 s · ETA ~5 s'
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        stream: Optional[TextIO] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self.stream = stream
        self.clock = clock
        self.start = clock()

    def elapsed(self) -> float:
        """Seconds since the reporter was made."""
        return self.clock() - self.start

    def line(self, text: str) -> None:
        """Writes one line (nothing when disabled)."""
        if self.enabled:
            stream = self.stream if self.stream is not None else sys.stderr
            print(text, file=stream, flush=True)

    def stage(
        self,
        name: str,
        total: Optional[int],
        *,
        unit: Optional[str] = None,
        every: float = 0.0,
        workers: int = 1,
        cached: int = 0,
    ) -> Stage:
        """A counted stage of the command (its units share one ETA).

        Parameters
        ----------
        name : str
            Shown in brackets before the count (``""``: the count alone).
        total : int or None
            Units in the stage; ``None`` when unknown (no ETA then).
        unit : str or None
            ``None``: units are counted items (a line says ``done in``); a name such as
            ``"rows"``: units are amounts and a line gives the amount done and the rate.
        every : float
            At least this many seconds between two lines (the stage's last unit always gets
            its line); 0: a line per call of [`Stage.done`][etfcore._progress.Stage.done].
        workers : int
            Units computed at once (parallel processes): the time left is divided by it.
        cached : int
            Units known in advance to come from a cache: they are not counted as left to
            compute.

        Returns
        -------
        Stage
        """
        return Stage(self, name, total, unit=unit, every=every, workers=workers, cached=cached)


class Stage:
    """Counts the finished units of one stage and writes their lines (made by
    [`Reporter.stage`][etfcore._progress.Reporter.stage], which documents the parameters)."""

    def __init__(
        self,
        reporter: Reporter,
        name: str,
        total: Optional[int],
        *,
        unit: Optional[str] = None,
        every: float = 0.0,
        workers: int = 1,
        cached: int = 0,
    ) -> None:
        self.reporter = reporter
        self.name = name
        self.total = total
        self.unit = unit
        self.every = float(every)
        self.workers = max(1, int(workers))
        self.done_units = 0
        self.computed_units = 0
        self.computed_seconds = 0.0
        self.cached_pending = max(0, int(cached))
        self._mark = reporter.clock()
        self._last_line = -math.inf

    def eta(self) -> Optional[float]:
        """Estimated seconds left: the mean time of the computed units times the units left to
        compute, over ``min(workers, units left)``; ``None`` before any computed unit or
        without a total."""
        if self.total is None or self.computed_units == 0:
            return None
        left = max(0, self.total - self.done_units - self.cached_pending)
        if left == 0:
            return 0.0
        per_unit = self.computed_seconds / self.computed_units
        return left * per_unit / min(self.workers, left)

    def status(self, now: Optional[float] = None) -> str:
        """``" · elapsed 6 min · ETA ~12 min"`` at clock time ``now`` (default: the clock's
        time); the ETA only while one is known and positive."""
        now = self.reporter.clock() if now is None else now
        text = f" · elapsed {format_duration(now - self.reporter.start)}"
        eta = self.eta()
        if eta is not None and eta > 0:
            left = format_duration(eta)
            text += f" · ETA {left}" if left.startswith("<") else f" · ETA ~{left}"
        return text

    def done(
        self, label: str = "", *, n: int = 1, seconds: Optional[float] = None, cached: bool = False
    ) -> str:
        """Records ``n`` finished units and writes their line (subject to ``every``).

        Parameters
        ----------
        label : str
            What finished (``"002-long-tail-dr seed 1 (2/5)"``).
        n : int
            Units finished (rows of a batch; 1 for an item).
        seconds : float or None
            Their computing time; ``None``: the time since the previous call (or since the
            stage began).
        cached : bool
            Read from a cache: counted as done, not as computed.

        Returns
        -------
        str
            The line (returned even when it is not written).
        """
        now = self.reporter.clock()
        if seconds is None:
            seconds = now - self._mark
        self._mark = now
        self.done_units += n
        if cached:
            self.cached_pending = max(0, self.cached_pending - n)
        else:
            self.computed_units += n
            self.computed_seconds += max(0.0, float(seconds))
        line = self._format(label, seconds, cached, now)
        last = self.total is not None and self.done_units >= self.total
        if last or now - self._last_line >= self.every:
            self._last_line = now
            self.reporter.line(line)
        return line

    def _format(self, label: str, seconds: float, cached: bool, now: float) -> str:
        if self.unit is None:
            count = f"{self.done_units}/{self.total}" if self.total is not None else (
                f"{self.done_units}")
            head = f"[{self.name} {count}]" if self.name else f"[{count}]"
            what = "from the cache" if cached else f"done in {format_duration(seconds)}"
            return f"{head}{' ' + label if label else ''} {what}{self.status(now)}"
        amount = f"{self.done_units:,}"
        if self.total is not None:
            pct = 100.0 * self.done_units / self.total if self.total else 100.0
            amount += f"/{self.total:,} {self.unit} ({pct:.0f}%)"
        else:
            amount += f" {self.unit}"
        rate = ""
        if self.computed_seconds > 0:
            rate = f" · {self.computed_units / self.computed_seconds:,.0f} {self.unit}/s"
        head = f"[{self.name}]" if self.name else ""
        return f"{head}{' ' + label if label else ''} {amount}{rate}{self.status(now)}".lstrip()


# ---------------------------------------------------------------------------- warnings
def _count_every_occurrence() -> None:
    """Rewrites the warning filters (inside a ``catch_warnings`` block) so that the actions
    that show a warning once per location show every occurrence; nothing ignored is shown."""
    old = list(warnings.filters)
    warnings.resetwarnings()
    for action, message, category, module, lineno in old:
        warnings.filterwarnings(
            "always" if action in _ONCE_ACTIONS else action,
            _pattern(message),
            category,
            _pattern(module),
            lineno,
            append=True,
        )
    # what matches no filter: the default action, widened the same way (a last catch-all)
    default = warnings.defaultaction
    warnings.filterwarnings("always" if default in _ONCE_ACTIONS else default, append=True)


def _pattern(p: Any) -> str:
    """A filter's message or module as the pattern ``filterwarnings`` takes (the interpreter's
    own filters hold exact strings, ``filterwarnings`` compiled expressions)."""
    if p is None:
        return ""
    if isinstance(p, str):
        return re.escape(p) + r"\Z"
    return p.pattern


def _key(category: type, message: str) -> Tuple[str, str]:
    return (f"{category.__module__}.{category.__qualname__}", message)


class WarningCounter:
    """Counts the warnings of a command by category and message; shows the first occurrence
    of each at once and, in [`summary`][etfcore._progress.WarningCounter.summary], how often
    each was raised. Installed by [`collect_warnings`][etfcore._progress.collect_warnings]."""

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream
        self.counts: Dict[Tuple[str, str], int] = {}
        self.names: Dict[Tuple[str, str], str] = {}

    def _write(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(text)
        stream.flush()

    def show(
        self,
        message: Any,
        category: type,
        filename: str,
        lineno: int,
        file: Any = None,
        line: Optional[str] = None,
    ) -> None:
        """The ``warnings.showwarning`` hook: counts, and writes the first occurrence as
        Python would (``file:line: Category: message``)."""
        key = _key(category, str(message))
        seen = self.counts.get(key, 0)
        self.counts[key] = seen + 1
        if seen == 0:
            self.names[key] = category.__name__
            self._write(warnings.formatwarning(message, category, filename, lineno, line))

    def repeated(self) -> List[Tuple[str, str, int]]:
        """``(category name, message, count)`` of each warning raised more than once."""
        return [(self.names[k], k[1], n) for k, n in self.counts.items() if n > 1]

    def summary(self) -> str:
        """One line per warning raised more than once (empty when none was)."""
        lines = []
        for name, message, n in self.repeated():
            first = message.strip().splitlines()[0] if message.strip() else ""
            lines.append(f"warning raised {n} times (shown once above): {name}: {first}")
        return "\n".join(lines)


@contextlib.contextmanager
def collect_warnings(stream: Optional[TextIO] = None) -> Iterator[WarningCounter]:
    """Within the block, each distinct warning (category and message) is shown once, when it
    is first raised; on leaving, one line per warning raised more than once gives its count.

    The filters in force are kept (what is ignored stays ignored, ``error`` still raises);
    only the "once per location" actions are widened so that every occurrence is counted.

    Parameters
    ----------
    stream : file-like or None
        Where warnings and the summary go (default ``sys.stderr`` at the time of writing).

    Yields
    ------
    WarningCounter

    Examples
    --------
    >>> import io, warnings
    >>> out = io.StringIO()
    >>> with collect_warnings(out):
    ...     for _ in range(3):
    ...         warnings.warn("slow loader", UserWarning)
    >>> out.getvalue().count("UserWarning: slow loader")
    2
    >>> out.getvalue().splitlines()[-1]
    'warning raised 3 times (shown once above): UserWarning: slow loader'
    """
    counter = WarningCounter(stream)
    with warnings.catch_warnings():
        _count_every_occurrence()
        warnings.showwarning = counter.show
        try:
            yield counter
        finally:
            text = counter.summary()
            if text:
                counter._write(text + "\n")


def _picklable(category: type) -> bool:
    try:
        return pickle.loads(pickle.dumps(category)) is category
    except Exception:  # a class defined in a function, or in __main__ of the worker
        return False


@contextlib.contextmanager
def record_warnings() -> Iterator[List[WarningRecord]]:
    """Records every warning raised in the block (the filters in force decide what is
    ignored), for a worker process to return to its parent
    ([`replay_warnings`][etfcore._progress.replay_warnings]).

    Yields
    ------
    list of WarningRecord
        Filled on leaving the block: ``(category, message, filename, lineno, count)`` per
        distinct warning, in the order first raised; a category that cannot be pickled is
        sent as ``UserWarning`` with its name before the message.
    """
    records: List[WarningRecord] = []
    with warnings.catch_warnings(record=True) as log:
        _count_every_occurrence()
        try:
            yield records
        finally:
            index: Dict[Tuple[type, str, str, int], int] = {}
            for w in log or ():
                category, message = w.category, str(w.message)
                if not _picklable(category):
                    category, message = UserWarning, f"{w.category.__name__}: {message}"
                k = (category, message, str(w.filename), int(w.lineno))
                if k in index:
                    c, m, f, ln, n = records[index[k]]
                    records[index[k]] = (c, m, f, ln, n + 1)
                else:
                    index[k] = len(records)
                    records.append((*k, 1))


def replay_warnings(
    records: List[WarningRecord], registry: Optional[Dict[Any, Any]] = None
) -> None:
    """Raises again, in this process, the warnings a worker recorded (each as often as it was
    raised there, at its original file and line), so that this process's filters and hooks
    (e.g. [`collect_warnings`][etfcore._progress.collect_warnings]) see them.

    Parameters
    ----------
    records : list of WarningRecord
        From [`record_warnings`][etfcore._progress.record_warnings].
    registry : dict or None
        The ``__warningregistry__``-like dict that the "once per location" actions use
        (shared across calls so that, without a collector, a warning is shown once).
    """
    registry = {} if registry is None else registry
    for category, message, filename, lineno, count in records:
        for _ in range(count):
            warnings.warn_explicit(message, category, filename, lineno, registry=registry)


__all__ = [
    "Reporter",
    "Stage",
    "WarningCounter",
    "add_quiet_argument",
    "collect_warnings",
    "format_duration",
    "record_warnings",
    "replay_warnings",
]
