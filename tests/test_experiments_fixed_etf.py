"""Tiomoko Ali et al. experiments: helpers against plain numpy, the pipeline on tiny settings, the
verdict logic on constructed results, and that the full settings build valid configs."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from etfcore.experiments import RunOptions, Verdict
from etfcore.experiments.fixed_etf_transfer import (
    ETF,
    LEARNABLE,
    SW,
    LinearActivation,
    OodTransfer,
    WithinClassCovariance,
    protocol,
    relative_excess,
    rf_inputs,
    within_of,
)


# ------------------------------------------------------------------ helpers vs numpy
def test_within_of_matches_numpy():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), [20, 30, 50])
    x = rng.normal(size=(100, 6)) * [1, 2, 3, 1, 1, 1] + 4 * np.eye(6)[y]
    got = within_of(x, y)
    mu = np.stack([x[y == k].mean(0) for k in range(3)])
    sw = sum(((x[y == k] - mu[k]) ** 2).sum() for k in range(3)) / 100
    st = ((x - x.mean(0)) ** 2).sum() / 100
    assert got["raw"] == pytest.approx(sw / 6, rel=1e-10)
    assert got["normalised"] == pytest.approx(sw / st, rel=1e-10)
    # the normalised value is scale-free, the raw one is not
    scaled = within_of(7.0 * x, y)
    assert scaled["normalised"] == pytest.approx(got["normalised"], rel=1e-10)
    assert scaled["raw"] == pytest.approx(49 * got["raw"], rel=1e-10)


def test_rf_inputs_and_relative_excess():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 5)) * 3 + 1, rng.normal(size=(10, 5))
    a[:, 2] = 5.0  # a constant coordinate is dropped
    xa, xb = rf_inputs(a, b)
    keep = [0, 1, 3, 4]
    mu, sd = a[:, keep].mean(0), a[:, keep].std(0)
    np.testing.assert_allclose(xa, (a[:, keep] - mu) / sd / 2.0)
    np.testing.assert_allclose(xb, (b[:, keep] - mu) / sd / 2.0)
    assert np.mean(np.sum(xa**2, 1)) == pytest.approx(1.0)
    assert relative_excess([2.0, 3.0, 2.5]) == pytest.approx(0.25)
    assert relative_excess([2.0, 1.0, 2.5]) == pytest.approx(-0.5)


# ------------------------------------------------------------------ verdicts on constructed results
def _transfer_result(ood_gain: float, in_gap: float, rng) -> dict:
    proto = protocol(RunOptions(quick=True))
    targets = [*proto["in_domain"], *proto["out_of_domain"]]
    (ind,) = proto["in_domain"]
    out = {"source_acc": {}, "finetune": {}, "probe": {}}
    for h in proto["heads"]:
        out["source_acc"][h] = 0.99
        for mode in ("finetune", "probe"):
            base = {t: 0.8 + 0.01 * rng.normal() for t in targets}
            if h == ETF:
                base = {t: v + (ood_gain if t != ind else in_gap) for t, v in base.items()}
            out[mode][h] = base
    # paired by seed: the other heads share the seed's level
    for mode in ("finetune", "probe"):
        for t in targets:
            level = out[mode][LEARNABLE][t]
            out[mode][SW][t] = level
            out[mode][ETF][t] = level + (ood_gain if t != ind else in_gap)
    return out


def test_ood_transfer_verdicts():
    exp, rng = OodTransfer(), np.random.default_rng(0)
    s = protocol(RunOptions(quick=True))
    holds = [_transfer_result(0.05 + 0.005 * i, 0.002 * i, rng) for i in range(3)]
    (ablation,) = s["ablations"]
    for r in holds:
        r["ablations"] = {ablation: copy.deepcopy(r)}
    o = exp.summarise(s, holds)
    assert o.verdict is Verdict.HOLDS
    assert any(ablation in n and "ETF − learnable +5.5 ± 0.5" in n for n in o.notes)
    fails = [_transfer_result(-0.05 - 0.005 * i, 0.002 * i, rng) for i in range(3)]
    o = exp.summarise(s, fails)
    assert o.verdict is Verdict.PARTLY  # better out of domain fails; comparable in domain holds
    assert [e.verdict for e in o.effects][:4] == [Verdict.DOES_NOT_HOLD] * 4
    far = [_transfer_result(0.05, 0.08 + 0.01 * i, rng) for i in range(3)]
    assert exp.summarise(s, far).effects[-1].verdict is Verdict.DOES_NOT_HOLD
    assert "paper: Flowers" in exp.summarise(s, holds).table.text()


def _within_result(etf: float, other: float) -> dict:
    s = protocol(RunOptions(quick=True))
    res = {}
    for h in s["heads"]:
        v = etf if h == ETF else other
        d = {"source": {"raw": v, "normalised": v}}
        for t in s["out_of_domain"]:
            d[f"frozen:{t}"] = d[f"finetuned:{t}"] = {"raw": v, "normalised": v}
        res[h] = d
    arm = {t: {"raw": etf, "normalised": etf} for t in s["out_of_domain"]}
    return {"within": res, "etf_target_head": arm}


def test_within_verdicts():
    exp, s = WithinClassCovariance(), protocol(RunOptions(quick=True))
    holds = [_within_result(0.01 * (1 + 0.1 * i), 0.05) for i in range(3)]
    o = exp.summarise(s, holds)
    assert o.verdict is Verdict.HOLDS and len(o.effects) == 3
    assert "fixed-ETF target head" in o.effects[1].name
    fails = [_within_result(0.05 * (1 + 0.1 * i), 0.04) for i in range(3)]
    assert exp.summarise(s, fails).verdict is Verdict.DOES_NOT_HOLD


def _curves(features_increasing: bool, i: int) -> dict:
    a2 = [0.0, 0.1, 0.25, 0.5, 1.0]
    up = [1.0 + 0.1 * a + 0.01 * i for a in a2]
    down = [1.0 - 0.3 * a + 0.01 * i for a in a2]
    u_shape = [1.0 + (a - 0.4) ** 2 - 0.16 for a in a2]
    feat = up if features_increasing else down
    c = {"raw pixels": {"simulation": u_shape, "theory": u_shape}}
    for k in LinearActivation().settings(RunOptions(quick=True))["backbones"]:
        c[k] = {"simulation": feat, "theory": feat}
    return {"curves": c}


def test_linear_activation_verdicts():
    exp = LinearActivation()
    s = exp.settings(RunOptions(quick=True))
    assert exp.summarise(s, [_curves(True, i) for i in range(3)]).verdict is Verdict.HOLDS
    o = exp.summarise(s, [_curves(False, i) for i in range(3)])
    assert o.verdict is Verdict.DOES_NOT_HOLD
    assert [e.name.split("MSE), ", 1)[1] for e in o.effects] == [
        "ETF, without 3 and 8, p = 512", "learnable, without 3 and 8, p = 512"]
    wide = exp.settings(RunOptions(quick=True))["backbones"]["ETF, without 3 and 8, p = 512"]
    assert wide["feature_dim"] == 512 and 3 not in wide["classes"] and 8 not in wide["classes"]


# ------------------------------------------------------------------ settings
def test_full_settings_build_valid_configs():
    from etfcore.experiments.fixed_etf_transfer import _source_config, _target_config
    from etfcore.training import TrainConfig
    from etfcore.training.finetune import target_config

    for quick in (True, False):
        s = protocol(RunOptions(quick=quick))
        for h in s["heads"]:
            src = TrainConfig.from_dict(_source_config(s, h, 0))
            for t in [*s["in_domain"].values(), *s["out_of_domain"].values()]:
                target_config(src, _target_config(s, t, 0))
        for cfg in LinearActivation().settings(RunOptions(quick=quick))["backbones"].values():
            TrainConfig.from_dict(cfg)
    # --data does not apply (the digits' input shifts are the targets): ignored, and said so
    with_data = protocol(RunOptions(quick=True, data="cifar100"))
    assert with_data["data_ignored"] == "cifar100"
    assert {k: v for k, v in with_data.items() if k != "data_ignored"} == {
        k: v for k, v in protocol(RunOptions(quick=True)).items() if k != "data_ignored"
    }
    la = LinearActivation().settings(RunOptions(quick=True, data="cifar100"))
    assert all(c["dataset"] == "digits" for c in la["backbones"].values())


# ------------------------------------------------------------------ pipeline, tiny
torch = pytest.importorskip("torch")
pytest.importorskip("lightning")


def test_transfer_pipeline_tiny(tmp_path):
    from etfcore.experiments import Context

    s = copy.deepcopy(protocol(RunOptions(quick=True)))
    s["source"].update(epochs=1, track_every=1)
    s["target"].update(epochs=1, track_every=1)
    s["out_of_domain"] = {"inverted": "digits:invert"}
    s["probe_grid"] = [1e-2]
    s["ablations"] = {}
    ctx = Context(RunOptions(quick=True, accelerator="cpu", out_dir=str(tmp_path)))
    r = OodTransfer().run_seed(ctx, s, 0)
    for h in s["heads"]:
        assert set(r["finetune"][h]) == {"digits 5–9", "inverted"}
        assert all(0 <= v <= 1 for v in r["probe"][h].values())
    assert OodTransfer().summarise(s, [r]).effects
    w = WithinClassCovariance().run_seed(ctx, s, 0)  # the same runs, from the cache
    assert set(w["within"][ETF]) == {"source", "frozen:inverted", "finetuned:inverted"}
    assert all(0 < v["normalised"] < 1 for v in w["within"][SW].values())
    assert 0 < w["etf_target_head"]["inverted"]["normalised"] < 1  # the fixed-ETF target arm
    assert len(WithinClassCovariance().summarise(s, [w]).effects) == 3


def test_linear_activation_pipeline_tiny(tmp_path):
    from etfcore.experiments import Context

    exp = LinearActivation()
    s = copy.deepcopy(exp.settings(RunOptions(quick=True)))
    for cfg in s["backbones"].values():
        cfg.update(epochs=1)
    s.update(a2=[0.0, 0.5], projections=1, num_features=64, gamma_ablation=[1.0])
    ctx = Context(RunOptions(quick=True, accelerator="cpu", out_dir=str(tmp_path)))
    r = exp.run_seed(ctx, s, 0)
    assert set(r["curves"]) == {"raw pixels", *s["backbones"]}
    assert all(len(c["simulation"]) == 2 for c in r["curves"].values())
    assert set(r["gamma_ablation"]["1"]) == {"raw pixels", "ETF-trained features"}
    assert exp.summarise(s, [r]).effects


def test_linear_activation_curve_matches_direct_ridge():
    """The curve's simulation is random-feature ridge computed directly in float64 numpy, and
    its theory is the deterministic equivalent (close to the simulation with many features)."""
    from etfcore import rf

    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 6))
    y = np.sign(x[:, 0] + 0.3 * rng.normal(size=60))
    s = {"a2": [0.0, 0.5], "num_features": 400, "gamma": 0.1, "projections": 2, "theory": True}
    c = LinearActivation._curve(s, x[:40], y[:40], x[40:], y[40:], seed=0)
    a, b = rf_inputs(x[:40], x[40:])
    for j, a2 in enumerate(s["a2"]):
        mses = []
        for seed in (0, 1):
            W = rf.projection(400, a.shape[1], seed=seed)
            za, zb = W @ a.T, W @ b.T  # N × n
            S, Sh = a2 * za**2 + za, a2 * zb**2 + zb
            beta = S @ np.linalg.solve(S.T @ S / 40 + 0.1 * np.eye(40), y[:40]) / 40
            mses.append(np.mean((Sh.T @ beta - y[40:]) ** 2))
        assert c["simulation"][j] == pytest.approx(np.mean(mses), rel=1e-8)
        assert c["theory"][j] == pytest.approx(c["simulation"][j], rel=0.25)
