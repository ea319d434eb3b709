"""Progress lines (elapsed time, ETA) and de-duplicated warnings of long commands: the reporter
on a fake clock against the ETA formula written out here; warnings raised by several units, and
by worker processes, shown once with their count (the commands: test_progress_cli.py). This
module imports no torch: its worker processes start fast."""

from __future__ import annotations

import io
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest

from etfcore._progress import (
    Reporter,
    collect_warnings,
    format_duration,
    record_warnings,
    replay_warnings,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _eta(durations, total, done, cached_pending, workers):
    """The estimate as documented: mean of the computed units' times × units left to compute,
    over min(workers, left)."""
    left = total - done - cached_pending
    if not durations:
        return None
    return left * (sum(durations) / len(durations)) / min(workers, left) if left else 0.0


# ------------------------------------------------------------------ the reporter
def test_lines_and_eta_on_a_fake_clock():
    clock, out = FakeClock(), io.StringIO()
    rep = Reporter(stream=out, clock=clock)
    # 6 units, 2 known to come from the cache, 2 computed at once
    st = rep.stage("", 6, workers=2, cached=2)
    assert st.eta() is None  # nothing computed yet: no estimate
    steps = [("a seed 0", 40.0, False), ("a seed 1", None, True), ("a seed 2", 80.0, False),
             ("b seed 0", None, True), ("b seed 1", 30.0, False), ("b seed 2", 50.0, False)]
    durations, cached_seen = [], 0
    for i, (label, secs, cached) in enumerate(steps, 1):
        clock.t += 0.0 if cached else secs
        line = st.done(label, seconds=secs, cached=cached)
        if cached:
            cached_seen += 1
        else:
            durations.append(secs)
        expected = _eta(durations, 6, i, 2 - cached_seen, 2)
        assert st.eta() == pytest.approx(expected) if expected is not None else st.eta() is None
        assert line.startswith(f"[{i}/6] {label} ")
        assert ("from the cache" in line) == cached
        if not cached:
            assert f"done in {format_duration(secs)}" in line
        assert f"elapsed {format_duration(clock.t - 100.0)}" in line
        if expected:
            assert line.endswith(f"ETA ~{format_duration(expected)}")
        else:
            assert "ETA" not in line
    # after the first computed unit: 6 − 1 done − 2 cached ahead = 3 left, 40 s each, 2 at once
    first = out.getvalue().splitlines()[0]
    assert first == "[1/6] a seed 0 done in 40 s · elapsed 40 s · ETA ~60 s"
    # a cached unit changes neither the mean nor the units left to compute
    second = out.getvalue().splitlines()[1]
    assert second.endswith("ETA ~60 s") and "from the cache" in second
    assert len(out.getvalue().splitlines()) == 6


def test_cached_units_not_announced_count_as_left_until_they_come():
    clock = FakeClock()
    st = Reporter(stream=io.StringIO(), clock=clock).stage("", 4)
    st.done("x", seconds=10.0)
    assert st.eta() == pytest.approx(30.0)
    st.done("y", cached=True)  # instant: the mean stays 10 s, two left
    assert st.eta() == pytest.approx(20.0)


def test_rows_stage_gives_rate_and_eta_and_respects_every():
    clock, out = FakeClock(), io.StringIO()
    st = Reporter(stream=out, clock=clock).stage("extract train", 1000, unit="rows", every=5.0)
    for _ in range(10):  # 100 rows every 2 s: a line at most every 5 s, and the last
        clock.t += 2.0
        st.done(n=100)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # at 2 s (first), 8 s, 14 s, and the last at 20 s
    assert lines[0] == ("[extract train] 100/1,000 rows (10%) · 50 rows/s · elapsed 2 s · "
                        "ETA ~18 s")
    assert lines[-1] == "[extract train] 1,000/1,000 rows (100%) · 50 rows/s · elapsed 20 s"


def test_quiet_reporter_counts_but_writes_nothing():
    out = io.StringIO()
    st = Reporter(enabled=False, stream=out, clock=FakeClock()).stage("", 2)
    st.done("a", seconds=1.0)
    assert out.getvalue() == "" and st.done_units == 1


# ------------------------------------------------------------------ warnings
def _unit_a():
    warnings.warn("the loader has few workers", UserWarning, stacklevel=1)


def _unit_b():
    # the same warning as _unit_a, raised elsewhere
    warnings.warn("the loader has few workers", UserWarning, stacklevel=1)
    warnings.warn("did not converge", RuntimeWarning, stacklevel=1)


def test_warnings_of_several_units_are_shown_once_with_their_count():
    out = io.StringIO()
    with collect_warnings(out) as counter:
        for _ in range(4):
            _unit_a()
            _unit_b()
    text = out.getvalue()
    assert text.count("UserWarning: the loader has few workers") == 2  # once, then the count
    assert "warning raised 8 times (shown once above): UserWarning: the loader has few" in text
    assert "warning raised 4 times (shown once above): RuntimeWarning: did not converge" in text
    assert sorted(n for _, _, n in counter.repeated()) == [4, 8]


def test_filters_are_kept_ignored_stays_ignored_error_still_raises():
    out = io.StringIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="noise")
        with collect_warnings(out):
            for _ in range(3):
                warnings.warn("noise", UserWarning, stacklevel=1)
    assert out.getvalue() == ""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=RuntimeWarning)
        before = (list(warnings.filters), warnings.showwarning)
        with pytest.raises(RuntimeWarning), collect_warnings(out):
            warnings.warn("fatal", RuntimeWarning, stacklevel=1)
        # the warnings machinery is as it was on leaving
        assert (list(warnings.filters), warnings.showwarning) == before
    assert "fatal" not in out.getvalue()


def _warn_in_worker(n: int):
    with record_warnings() as recorded:
        for _ in range(n):
            _unit_a()
        warnings.warn("worker only", UserWarning, stacklevel=1)
    return recorded


def test_warnings_of_worker_processes_are_counted_in_the_parent():
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        records = list(pool.map(_warn_in_worker, [3, 2]))
    out = io.StringIO()
    with collect_warnings(out):
        _unit_a()  # one in the parent too
        for r in records:
            replay_warnings(r)
    text = out.getvalue()
    assert text.count("UserWarning: the loader has few workers") == 2
    assert "warning raised 6 times (shown once above): UserWarning: the loader has few" in text
    assert "warning raised 2 times (shown once above): UserWarning: worker only" in text
    # the first occurrence keeps the worker's file and line
    assert f"{os.path.basename(__file__)}:" in text.splitlines()[0]
