"""The experiment runner: verdict logic on constructed outcomes, the per-seed cache, shared
training runs, the report, and the CLI."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from etfcore.errors import ParameterError
from etfcore.experiments import (
    REGISTRY,
    Effect,
    Experiment,
    Outcome,
    RunOptions,
    Table,
    Verdict,
    combine,
    mean_std,
    run_experiment,
)
from etfcore.experiments.base import t95, t_cdf, t_quantile


# ------------------------------------------------------------------ verdicts
def test_t_quantiles_and_cdf_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for dof in (1, 2, 3, 4, 5, 9, 10, 30, 200):
        assert t95(dof) == pytest.approx(stats.t.ppf(0.95, dof), abs=1e-7)
        for p in (0.6, 0.8, 0.9, 0.975, 0.995, 0.025):
            assert t_quantile(p, dof) == pytest.approx(stats.t.ppf(p, dof), abs=1e-7)
        for x in (-4.0, -0.7, 0.0, 1.3, 6.0):
            assert t_cdf(x, dof) == pytest.approx(stats.t.cdf(x, dof), abs=1e-9)


def test_effect_interval_and_power_are_student_formulas():
    stats = pytest.importorskip("scipy.stats")
    v = (0.01, 0.04, 0.02, 0.05, 0.03)
    e = Effect("x", v)
    n, m, sd = len(v), np.mean(v), np.std(v, ddof=1)
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert e.mean == pytest.approx(m) and e.std == pytest.approx(sd)
    assert (e.lower, e.upper) == (pytest.approx(m - half), pytest.approx(m + half))
    # the interval is scipy's own two-sided confidence interval
    lo, hi = stats.t.interval(0.95, n - 1, loc=m, scale=sd / math.sqrt(n))
    assert (e.lower, e.upper) == (pytest.approx(lo), pytest.approx(hi))
    mde = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / math.sqrt(n)
    assert e.mde == pytest.approx(mde)
    eq = Effect("x", v, margin=0.1)
    assert eq.mde == pytest.approx(
        (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.9, n - 1)) * sd / math.sqrt(n))
    assert math.isinf(Effect("x", (0.3,)).mde)


def test_mde_is_the_effect_found_with_80_percent_power():
    """Simulated: a true effect equal to the MDE of a design (n, σ) has its interval above 0 in
    about 80% of repetitions (the MDE treats s as σ, so the rate is close to, not exactly, 0.8)."""
    rng = np.random.default_rng(0)
    n, sigma = 8, 1.0
    stats = pytest.importorskip("scipy.stats")
    mde = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sigma / math.sqrt(n)
    hits = [Effect("x", tuple(rng.normal(mde, sigma, n))).lower > 0 for _ in range(2000)]
    assert 0.7 < np.mean(hits) < 0.85
    none = [Effect("x", tuple(rng.normal(0.0, sigma, n))).lower > 0 for _ in range(2000)]
    assert np.mean(none) < 0.04  # the one-sided error rate of a 95% two-sided interval: 2.5%


@pytest.mark.parametrize(
    "values, min_effect, expected",
    [
        ((0.03, 0.05, 0.04), 0.0, Verdict.HOLDS),  # clearly positive
        ((0.03, 0.05, 0.04), 0.1, Verdict.PARTLY),  # significant but below the relevant size
        ((0.01, 0.06, -0.005), 0.0, Verdict.INCONCLUSIVE),  # contains 0 and positive effects
        ((0.01, 0.06, -0.005), 0.02, Verdict.INCONCLUSIVE),  # contains 0 and δ
        ((0.001, -0.001, 0.0, 0.002, -0.002), 0.02, Verdict.DOES_NOT_HOLD),  # excludes δ
        ((-0.03, -0.05, -0.04), 0.0, Verdict.DOES_NOT_HOLD),  # the opposite
        ((0.0, 0.0, 0.0), 0.0, Verdict.DOES_NOT_HOLD),  # exactly none: [0, 0]
        ((0.5,), 0.0, Verdict.INCONCLUSIVE),  # one seed: never resolved
        ((-0.5,), 0.0, Verdict.INCONCLUSIVE),
    ],
)
def test_verdict_of_constructed_effects(values, min_effect, expected):
    assert Effect("x", values, min_effect=min_effect).verdict is expected


def test_verdict_follows_the_interval_not_the_mean():
    """Same mean, spreads chosen so the interval ends fall on each side of 0 and δ."""
    base = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    delta = 0.05
    for spread, expected in ((0.01, Verdict.PARTLY), (0.2, Verdict.INCONCLUSIVE)):
        e = Effect("x", tuple(0.03 + spread * base), min_effect=delta)
        assert e.verdict is expected
        assert (e.lower > 0) == (expected is Verdict.PARTLY)
    e = Effect("x", tuple(0.0 + 0.01 * base), min_effect=delta)  # [−0.01, 0.01] < δ
    assert e.upper < delta and e.verdict is Verdict.DOES_NOT_HOLD


@pytest.mark.parametrize(
    "values, margin, expected",
    [
        ((0.004, -0.003, 0.001, 0.0, 0.002), 0.02, Verdict.HOLDS),  # inside ±Δ
        ((0.05, -0.06, 0.01, 0.04, -0.03), 0.02, Verdict.INCONCLUSIVE),  # 0 and ±Δ inside
        ((0.10, 0.11, 0.09, 0.10, 0.12), 0.02, Verdict.DOES_NOT_HOLD),  # wholly above Δ
        ((-0.10, -0.11, -0.09, -0.10, -0.12), 0.02, Verdict.DOES_NOT_HOLD),  # wholly below
        ((0.016, 0.019, 0.022, 0.02, 0.018), 0.02, Verdict.PARTLY),  # ≠ 0, straddles Δ
        ((0.025, 0.022, 0.019, 0.03, 0.02), 0.02, Verdict.DOES_NOT_HOLD),  # mean beyond Δ
    ],
)
def test_tost_equivalence_of_constructed_differences(values, margin, expected):
    e = Effect("B − A", values, margin=margin)
    assert e.verdict is expected
    if expected is Verdict.HOLDS:  # both one-sided tests reject at 2.5% (scipy's t test)
        stats = pytest.importorskip("scipy.stats")
        v = np.asarray(values)
        p_low = stats.ttest_1samp(v, -margin, alternative="greater").pvalue
        p_high = stats.ttest_1samp(v, margin, alternative="less").pvalue
        assert max(p_low, p_high) < 0.025


def test_combine_and_outcome_default():
    H, P, N, I = Verdict.HOLDS, Verdict.PARTLY, Verdict.DOES_NOT_HOLD, Verdict.INCONCLUSIVE
    assert combine([H, H]) is H
    assert combine([N, N]) is N
    assert combine([I, I]) is I
    assert combine([H, N]) is P and combine([P, N]) is P
    assert combine([H, I]) is P and combine([N, I]) is N
    table = Table(["a"], [["1"]])
    o = Outcome([Effect("x", (1.0, 1.1, 0.9)), Effect("y", (-1.0, -1.1, -0.9))], table)
    assert o.verdict is P
    with pytest.raises(ParameterError):
        combine([])


def test_bad_effects_and_tables_are_refused():
    with pytest.raises(ParameterError, match="non-finite"):
        Effect("x", (1.0, math.nan))
    with pytest.raises(ParameterError, match="no values"):
        Effect("x", ())
    with pytest.raises(ParameterError, match="cells"):
        Table(["a", "b"], [["1"]])
    with pytest.raises(ParameterError, match="margin"):
        Effect("x", (1.0, 2.0), margin=0.0)
    with pytest.raises(ParameterError, match="min_effect"):
        Effect("x", (1.0, 2.0), min_effect=-1.0)


def test_formatting():
    assert mean_std([0.5, 0.7]) == f"0.600 ± {np.std([0.5, 0.7], ddof=1):.3f}"
    assert mean_std([float("nan")]) == "—"
    t = Table(["method", "acc"], [["a|b", "1"]])
    assert "a\\|b" in t.markdown() and t.text().splitlines()[0].startswith("method")
    d = Effect("gain", (0.01, 0.02, 0.03), scale=100, unit=" points").describe()
    assert "+2 ± 1 points" in d and "inconclusive" in d
    assert "detectable ≥" in d and "95% interval" in d
    assert "TOST" in Effect("d", (0.01, 0.0, 0.02), margin=0.05).describe()


# ------------------------------------------------------------------ the runner
torch = pytest.importorskip("torch")
pytest.importorskip("lightning")


class _Toy(Experiment):
    """Trains a 1-epoch MLP on digits per seed and probes the 5–9 digits from its features."""

    name = "toy-probe"
    paper = "benchmark"
    claim = "a trained backbone's features probe well"
    paper_result = "none"

    def settings(self, options):
        return {"epochs": 1, "quick": options.quick}

    def run_seed(self, ctx, settings, seed):
        run = ctx.train({"epochs": settings["epochs"], "seed": seed, "head": "linear"})
        again = ctx.train({"epochs": settings["epochs"], "seed": seed, "head": "linear"})
        probe = ctx.probe(run, {"classes": [5, 6, 7, 8, 9]}, grid=[1e-3, 1e-1])
        return {
            "test_acc": run.final["test_acc"],
            "probe": probe.top1,
            "same_run": run.run_dir == again.run_dir,
            "run_dir": run.run_dir,
        }

    def summarise(self, settings, results):
        e = Effect("probe − chance", tuple(r["probe"] - 0.2 for r in results))
        rows = [["ours", mean_std([r["probe"] for r in results])]]
        return Outcome([e], Table(["", "probe"], rows), notes=["toy"])

    def plot(self, settings, results, fig):
        fig.add_subplot(1, 1, 1).plot([r["probe"] for r in results])
        return True


@pytest.fixture
def toy():
    exp = _Toy()
    REGISTRY[exp.name] = exp
    yield exp
    REGISTRY.pop(exp.name, None)


def test_runner_caches_seeds_and_shares_runs(toy, tmp_path):
    opts = RunOptions(quick=True, seeds=(0, 1), accelerator="cpu", out_dir=str(tmp_path))
    first = run_experiment("toy-probe", opts)
    assert len(first.results) == 2 and first.computed_seconds > 0
    assert all(r["same_run"] for r in first.results)
    assert first.results[0]["run_dir"] != first.results[1]["run_dir"]  # seeds differ
    assert all(0.2 < r["probe"] <= 1 for r in first.results)
    assert first.figure and os.path.isfile(first.figure)
    assert os.path.isfile(tmp_path / "toy-probe" / "report.md")
    second = run_experiment("toy-probe", opts)  # the cache: nothing recomputed
    assert second.computed_seconds == 0 and second.results == first.results
    # the seeds' cost survives the cache: recorded when computed, read back with the results
    entries = [json.loads(p.read_text())
               for p in sorted((tmp_path / "toy-probe").glob("*/seed_*.json"))]
    cpu = [e["cpu_seconds"] for e in entries]
    assert len(cpu) == 2 and all(c > 0 for c in cpu)
    assert first.recorded_seconds == pytest.approx(sum(cpu), rel=1e-12)
    assert second.recorded_seconds == pytest.approx(first.recorded_seconds, rel=1e-12)
    assert first.computed_seconds == pytest.approx(sum(e["seconds"] for e in entries))
    old = sorted((tmp_path / "toy-probe").glob("*/seed_*.json"))[0]  # written before CPU time
    entry = json.loads(old.read_text())
    del entry["cpu_seconds"]
    old.write_text(json.dumps(entry))
    older = run_experiment("toy-probe", opts)  # its wall time is not counted as CPU time
    assert older.recorded_seconds == pytest.approx(cpu[1], rel=1e-12)
    assert older.unrecorded_seeds == 1 and "computed before CPU time" in older.markdown()
    md = second.markdown()
    assert "toy-probe" in md and "Verdict:" in md and "| ours |" in md
    # the combined report: figures copied beside it, the module's page linked
    from etfcore.experiments import write_report

    docs = tmp_path / "docs"
    (docs / "rep").mkdir(parents=True)
    module = type(toy).__module__.rsplit(".", 1)[-1]
    (docs / "rep" / f"{module}.md").write_text("protocol")
    write_report([second], str(docs / "rep.md"), command="etfcore reproduce toy-probe",
                 figures_dir=str(docs / "rep" / "figures"), pages_dir=str(docs / "rep"))
    text = (docs / "rep.md").read_text()
    assert "(rep/figures/toy-probe.png)" in text and f"(rep/{module}.md)" in text
    assert (docs / "rep" / "figures" / "toy-probe.png").is_file()
    assert "| `toy-probe` | quick (2) |" in text and "95% interval" in text and "TOST" in text
    assert "CPU cores" in text and "(form: quick)" in text and "Scale forms" in text
    took = f"Its seeds took {first.recorded_seconds / 60:.1f} CPU-min of computing"
    assert took in text and "every seed read from the cache" in text
    # a new seed computes only that seed; --no-cache recomputes
    third = run_experiment("toy-probe", RunOptions(**{**opts.__dict__, "seeds": (0, 1, 2)}))
    assert third.results[:2] == first.results and third.computed_seconds > 0


def test_seeds_in_parallel_processes_equal_serial(toy, tmp_path):
    serial = RunOptions(quick=True, seeds=(3, 4), accelerator="cpu", out_dir=str(tmp_path / "a"))
    parallel = RunOptions(**{**serial.__dict__, "out_dir": str(tmp_path / "b"), "jobs": 2})
    a, b = run_experiment("toy-probe", serial), run_experiment("toy-probe", parallel)
    assert b.computed_seconds > 0 and b.recorded_seconds > 0  # timed in the workers too
    for ra, rb in zip(a.results, b.results):  # CPU training is deterministic given the seed
        assert ra["test_acc"] == rb["test_acc"] and ra["probe"] == rb["probe"]


class _ToyTwin(_Toy):
    """Trains the same runs as `_Toy` (same configs, seeds included) and says whether each was
    already in the cache when it asked."""

    name = "toy-twin"

    def run_seed(self, ctx, settings, seed):
        cfg = {"epochs": settings["epochs"], "seed": seed, "head": "linear"}
        key = ctx._key(ctx.config(cfg))
        was_cached = os.path.isfile(os.path.join(ctx.root, "runs", key, "history.json"))
        out = super().run_seed(ctx, settings, seed)
        return {**out, "was_cached": was_cached}


@pytest.fixture
def twin(toy):
    exp = _ToyTwin()
    REGISTRY[exp.name] = exp
    yield exp
    REGISTRY.pop(exp.name, None)


def test_experiments_packed_on_one_pool_equal_one_by_one(toy, twin, tmp_path):
    from etfcore.experiments import run_experiments

    serial = RunOptions(quick=True, seeds=(0, 1, 2), accelerator="cpu",
                        out_dir=str(tmp_path / "a"))  # fmt: skip
    packed = RunOptions(**{**serial.__dict__, "out_dir": str(tmp_path / "b"), "jobs": 2})
    order = []
    a = run_experiments([toy, twin], serial)
    b = run_experiments([toy, twin], packed, on_report=lambda i, r: order.append(i))
    assert order == [0, 1] and [r.experiment.name for r in b] == ["toy-probe", "toy-twin"]
    for ra, rb in zip(a, b):
        assert [x["probe"] for x in ra.results] == [x["probe"] for x in rb.results]
        assert rb.recorded_seconds > 0
    # seed s of the twin starts only after seed s of the toy: their shared run is trained once
    assert all(x["was_cached"] for x in b[1].results)
    assert [x["run_dir"] for x in b[1].results] == [x["run_dir"] for x in b[0].results]
    again = run_experiments([toy, twin], packed)  # everything from the cache
    assert all(r.computed_seconds == 0 for r in again)
    assert [r.results for r in again] == [r.results for r in b]


def test_duplicate_seeds_are_refused():
    with pytest.raises(ParameterError, match="distinct"):
        RunOptions(seeds=(0, 0))


def test_report_states_the_commands_wall_time(toy, tmp_path):
    from etfcore.experiments import write_report

    opts = RunOptions(quick=True, seeds=(0,), accelerator="cpu", out_dir=str(tmp_path))
    rep = run_experiment("toy-probe", opts)
    write_report([rep, rep], str(tmp_path / "r.md"), command="c", wall_seconds=90.0)
    assert "this command took 1.5 min of wall time" in (tmp_path / "r.md").read_text()
    write_report([rep, rep], str(tmp_path / "s.md"), command="c")  # one by one: the sum
    summed = f"this command took {2 * rep.seconds / 60:.1f} min of wall time"
    assert summed in (tmp_path / "s.md").read_text()


def test_cli_lists_and_refuses_unknown(toy, capsys):
    from etfcore.cli import main

    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert "toy-probe" in out and "Model selection" in out
    assert main(["reproduce", "no-such-experiment"]) == 2
    assert "unknown experiment" in capsys.readouterr().err
    assert main(["reproduce", "--quick", "--form", "cpu", "toy-probe"]) == 2
    assert "disagree" in capsys.readouterr().err


def test_forms_set_seeds_and_accelerator():
    import argparse

    from etfcore.experiments.cli import DEFAULT_SEEDS, add_arguments, options_from

    p = argparse.ArgumentParser()
    add_arguments(p)
    cases = ((["x", "--quick"], "quick"), (["x"], "cpu"), (["x", "--form", "gpu"], "gpu"))
    for argv, form in cases:
        o = options_from(p.parse_args(argv))
        assert o.form == form and o.quick == (form == "quick")
        assert len(o.seeds) == DEFAULT_SEEDS[form]
        assert o.accelerator == ("gpu" if form == "gpu" else "auto")
    assert DEFAULT_SEEDS["cpu"] >= 5
    o = options_from(p.parse_args(["x", "--seeds", "2", "--seed0", "7", "--accelerator", "cpu"]))
    assert o.seeds == (7, 8) and o.accelerator == "cpu" and o.form == "cpu"
    with pytest.raises(ParameterError):
        RunOptions(quick=True, form="cpu")


def test_the_seed_reaches_the_frame_and_run_keys_carry_the_version(tmp_path, monkeypatch):
    from etfcore.experiments import runner

    ctx = runner.Context(RunOptions(accelerator="cpu", out_dir=str(tmp_path)))
    assert ctx.config({"seed": 3}).etf_seed == 3
    assert ctx.config({"seed": 3, "etf_seed": 0}).etf_seed == 0
    cfg = ctx.config({"seed": 1})
    key = ctx._key(cfg)
    assert ctx._key(cfg.replace(progress=True, name="x")) == key  # visibility is not content
    assert ctx._key(cfg.replace(lr=0.01)) != key
    monkeypatch.setattr(runner, "RUNS_VERSION", runner.RUNS_VERSION + 1)
    assert ctx._key(cfg) != key  # a change of what runs record retrains


def test_trained_run_reads_its_network_through_public_accessors(tmp_path):
    """module(), head(), head_weights() and head_features() against the checkpoint's raw tensors
    (an independent reading: the state dict and the formula normalize(P h + b))."""
    from etfcore.experiments import runner
    from etfcore.training.checkpoints import load_module, read_checkpoint, run_config

    ctx = runner.Context(RunOptions(accelerator="cpu", out_dir=str(tmp_path)))
    run = ctx.train({"epochs": 1, "seed": 0, "head": "etf", "projector": True,
                     "normalize_features": True, "loss": "ce"})
    sd = read_checkpoint(run.run_dir)["state_dict"]
    assert run_config(run.run_dir).head == "etf"
    assert run.module() is run.module() and not run.module().training
    h = np.random.default_rng(0).normal(size=(7, run.config.feature_dim))
    p, b = sd["head.projector.weight"].double().numpy(), sd["head.projector.bias"].double().numpy()
    u = h @ p.T + b
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    np.testing.assert_allclose(run.head_features(h), u, atol=1e-5)
    np.testing.assert_allclose(run.head_weights(), sd["head.weight"].double().numpy())
    lin = ctx.train({"epochs": 1, "seed": 0, "head": "linear"})
    np.testing.assert_allclose(
        lin.head_weights(), read_checkpoint(lin.run_dir)["state_dict"]["head.linear.weight"])
    np.testing.assert_allclose(lin.head_features(h), h, atol=1e-6)  # no projector: identity
    x = torch.randn(3, 64)
    backbone, _ = lin.load()  # the trainer's own reader of the backbone
    with torch.no_grad():
        assert torch.allclose(load_module(lin.run_dir).backbone(x), backbone.eval()(x))
    with pytest.raises(ParameterError):
        read_checkpoint(str(tmp_path / "nowhere"))


def test_a_damaged_cache_entry_is_a_miss_with_a_warning(tmp_path):
    from etfcore.experiments.runner import _cached_json, _write_json

    path = tmp_path / "entry.json"
    assert _cached_json(str(path)) is None  # missing
    _write_json(str(path), {"result": {"x": 1.5}})
    assert _cached_json(str(path)) == {"result": {"x": 1.5}}
    assert not [p for p in tmp_path.iterdir() if p.name != "entry.json"]  # no temporary left
    path.write_text('{"result": {"x": 1.')  # torn by a kill mid-write
    with pytest.warns(UserWarning, match="damaged cache entry"):
        assert _cached_json(str(path)) is None
