"""Xu & Liu's experiments: VCI vs MLOG over two families of pretraining runs, and collapse curves.
The pipeline on tiny settings, the metric extraction against independent references, and the
verdicts on constructed results."""

from __future__ import annotations

import math

import numpy as np
import pytest

from etfcore.experiments import REGISTRY, RunOptions, Verdict
from etfcore.experiments.vci import (
    FAMILY_A,
    FAMILY_B,
    FAMILY_B_MEAN,
    clipped_accuracy,
    curves,
    run_point,
)

pytest.importorskip("torch")
pytest.importorskip("lightning")
pytest.importorskip("mnist1d")


def test_run_point_mlog_and_fuzziness():
    entry = {
        "source": {"train_vci": 0.3, "train_nc1": 0.2, "train_squared_distance": 1.5,
                   "train_cosine_within": 0.4, "test_acc": 0.8},
        "targets": {"a": {"probe_acc": 0.9, "num_test": 100},
                    "b": {"probe_acc": 1.0, "num_test": 100}},
    }  # fmt: skip
    p = run_point(entry, 5)
    logit = lambda q: math.log(q / (1 - q))  # noqa: E731
    assert p["mlog"] == pytest.approx((logit(0.9) + logit(0.995)) / 2 - logit(0.8))
    assert p["fuzziness"] == pytest.approx(1.0) and p["nc1"] == pytest.approx(0.2)
    assert p["cosine"] == pytest.approx(0.6)  # similarity = 1 − d_within
    assert clipped_accuracy(0.0, 10) == 0.05


def test_paper_pearsons_recomputed_from_appendix_c():
    """The paper column: Pearson with MLOG from Xu & Liu's App. C, Table 2."""
    mlog_a = [0.3250, 0.2704, 0.2029, 0.1711, 0.1343, 0.1161]
    vci_a = [0.796, 0.7849, 0.7552, 0.7406, 0.728, 0.7201]
    mlog_b = [0.0440, -0.0063, -0.0507, -0.1539, -0.2375]
    vci_b = [0.7216, 0.719, 0.7099, 0.6936, 0.6652]
    fuzz_b = [13.15, 14.31, 14.51, 15.22, 13.92]
    cos_a = [0.4634, 0.4856, 0.512, 0.5371, 0.5589, 0.5767]
    assert np.corrcoef(vci_a, mlog_a)[0, 1] == pytest.approx(0.99, abs=0.006)
    assert np.corrcoef(vci_b, mlog_b)[0, 1] == pytest.approx(0.98, abs=0.006)
    assert np.corrcoef(fuzz_b, mlog_b)[0, 1] == pytest.approx(-0.41, abs=0.006)
    assert np.corrcoef(cos_a, mlog_a)[0, 1] == pytest.approx(-0.99, abs=0.006)


_MLOG = {"linear-ce-t0.1": 0.27, "linear-ce-t0.2": 0.24, "linear-ce-t0.4": 0.18,
         "linear-ce-t0.6": 0.12, "linear-ce-t0.8": 0.06, "linear-ce": 0.0,
         "linear-ce-cos2.5": -0.125, "linear-ce-cos3.75": -0.19, "linear-ce-cos5": -0.25,
         "linear-ce-cos7.5": -0.375, "linear-ce-cos10": -0.5}  # fmt: skip


def _points(vci_sign=1.0, flip=True, seed=0):
    """MLOG falls with τ (family A) and with λ (family B); VCI follows MLOG times ``vci_sign``;
    the other metrics follow MLOG in family A and (``flip``) its opposite in family B."""
    rng = np.random.default_rng(seed)
    in_b = {m for m, _ in FAMILY_B if m != "linear-ce"}
    pts = {}
    for m, ml in _MLOG.items():
        ml = ml + 0.01 * rng.random()
        other = -ml if (flip and m in in_b) else ml
        pts[m] = {
            "mlog": ml,
            "vci": vci_sign * ml,
            "nc1": other,
            "fuzziness": other,
            "squared_distance": other,
            "cosine": other,
            "source_acc": 0.8,
        }
    return pts


def test_vci_verdicts_on_constructed_results():
    exp = REGISTRY["003-vci-mlog"]
    s = exp.settings(RunOptions(quick=True))
    holds = [{"points": _points(seed=i)} for i in range(3)]
    o = exp.summarise(s, holds)
    assert o.verdict is Verdict.HOLDS, [e.describe() for e in o.effects]
    fails = [{"points": _points(vci_sign=-1.0, flip=False, seed=i)} for i in range(3)]
    assert exp.summarise(s, fails).verdict is Verdict.DOES_NOT_HOLD


def test_curve_verdicts_on_constructed_results():
    exp = REGISTRY["003-collapse-curves"]

    def res(ce_last, mse_last):
        c = {k: [1.0, ce_last] for k in ("train_vci", "train_nc1", "test_vci")}
        m = {k: [1.0, mse_last] for k in ("train_vci", "train_nc1", "test_vci")}
        return {"linear-ce": c, "linear-mse": m}

    o = exp.summarise({}, [res(0.5, 0.3), res(0.55, 0.3), res(0.5, 0.35)])
    assert o.verdict is Verdict.HOLDS
    o = exp.summarise({}, [res(1.1, 1.3), res(1.2, 1.3), res(1.05, 1.4)])
    assert o.verdict is Verdict.INCONCLUSIVE  # three noisy seeds: intervals reach +0.05
    o = exp.summarise({}, [res(1.1, 1.3), res(1.12, 1.32), res(1.14, 1.35)])
    assert o.verdict is Verdict.DOES_NOT_HOLD


def test_curves_pipeline_and_history_extraction(tmp_path):
    from etfcore.experiments import Context

    exp = REGISTRY["003-collapse-curves"]
    s = exp.settings(RunOptions(quick=True))
    s["source"].update(dataset="mnist1d:n=600", epochs=3)
    ctx = Context(RunOptions(quick=True, accelerator="cpu", out_dir=str(tmp_path)))
    r = exp.run_seed(ctx, s, 0)
    run = ctx.train({**s["source"], **s["zoo"]["linear-ce"], "seed": 0})
    assert r["linear-ce"]["epoch"] == [1, 2, 3]
    assert r["linear-ce"]["train_vci"] == [h["train_vci"] for h in run.history]
    assert curves(run.history)["test_nc1"][-1] == run.final["test_nc1"]
    assert exp.summarise(s, [r]).effects


def test_vci_pipeline_on_tiny_settings(tmp_path):
    from etfcore.experiments import Context

    exp = REGISTRY["003-vci-mlog"]
    s = exp.settings(RunOptions(quick=True))
    s["source"].update(dataset="mnist1d:n=600", epochs=2, track_every=2)
    s["targets"] = {"hier-fine": s["targets"]["hier-fine"]}
    s["grid"] = [1e-2]
    # two runs per family (four runs in all) keep the test short
    s["family_a"] = [["linear-ce-t0.1", 0.1], ["linear-ce", 1.0]]
    s["family_b"] = [["linear-ce", 0.0], ["linear-ce-cos10", 10.0]]
    s["family_b_mean"] = [["linear-ce", 0.0], ["linear-ce-cosmean10", 10.0]]
    keep = {m for fam in ("family_a", "family_b", "family_b_mean") for m, _ in s[fam]}
    s["zoo"] = {m: c for m, c in s["zoo"].items() if m in keep}
    ctx = Context(RunOptions(quick=True, accelerator="cpu", out_dir=str(tmp_path)))
    r = exp.run_seed(ctx, s, 0)
    assert set(r["points"]) == keep
    assert {m for m, _ in FAMILY_A + FAMILY_B + FAMILY_B_MEAN} == set(
        exp.settings(RunOptions(quick=True))["zoo"]
    )
    p = r["points"]["linear-ce"]
    assert 0 <= p["vci"] <= 1 and math.isfinite(p["mlog"])
    assert p["fuzziness"] == pytest.approx(5 * p["nc1"])
    o = exp.summarise(s, [r])
    assert len(o.effects) == 5


def test_full_settings_build_valid_configs():
    from etfcore.training import TrainConfig

    for name in ("003-vci-mlog", "003-collapse-curves"):
        s = REGISTRY[name].settings(RunOptions(quick=False))
        for m, changes in s["zoo"].items():
            cfg = TrainConfig.from_dict({**s["source"], **changes, "seed": 0})
            assert cfg.epochs == 30 and cfg.track_every == 1, m  # 30 in both forms since Dec 2026
    s = REGISTRY["003-vci-mlog"].settings(RunOptions(quick=False))
    assert s["grid"] is None and len(s["targets"]) == 5  # the default 97-λ grid
