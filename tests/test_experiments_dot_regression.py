"""Yang et al.'s experiments (fixed ETF + dot regression under long tail): the pipeline on tiny
settings, the configs of both forms, and the verdict logic on constructed results."""

from __future__ import annotations

import numpy as np
import pytest

from etfcore.experiments import RunOptions, Verdict, load_experiments
from etfcore.experiments import dot_regression as D


def _exp(name):
    return load_experiments()[name]


# ------------------------------------------------------------------ constructed results
def _long_tail_results(gain_strong, gain_mid, noise=(0.0, 0.004, -0.004)):
    """Per-seed results where ETF + DR beats learnable + CE by ``gain_strong`` at ρ ≤ 0.02 and
    ``gain_mid`` at ρ = 0.1 (ETF + CE sits in between)."""
    s = _exp("002-long-tail-dr").settings(RunOptions(quick=True))
    out = []
    for eps in noise:
        main = {}
        for rho in s["rhos"]:
            gain = gain_strong if rho <= 0.02 else gain_mid if rho < 1 else 0.0
            for mixup in (False, True):
                base = 0.6 + 0.3 * rho
                accs = {D.CE: base, D.ETF_CE: base + gain / 2, D.ETF_DR: base + gain + eps}
                for m, a in accs.items():
                    main[D._key(m, rho, mixup)] = {
                        "acc": a,
                        "mean_class_acc": a,
                        "minor_acc": a,
                        "major_acc": a,
                    }
        abl = {f"{rho:g}": {n: {"ce": 0.9, "dr": 0.9 + gain_mid + eps} for n in s["ablations"]}
               for rho in s["ablation_rhos"]}  # fmt: skip
        out.append({"main": main, "ablations": abl})
    return s, out


def test_long_tail_verdict_holds_when_dr_wins_most_at_strong_imbalance():
    exp = _exp("002-long-tail-dr")
    s, results = _long_tail_results(gain_strong=0.05, gain_mid=0.0)
    o = exp.summarise(s, results)
    assert o.verdict is Verdict.HOLDS
    assert len(o.effects) == 5  # 2 strong ρ × (mixup, no mixup) + growth
    assert all(e.mean == pytest.approx(0.05) for e in o.effects)
    assert any("paper (CIFAR-10)" in r[0] for r in o.table.rows)
    assert any(r[0].startswith("ablation") for r in o.table.rows)


def test_long_tail_verdict_fails_when_learnable_ce_wins():
    exp = _exp("002-long-tail-dr")
    s, results = _long_tail_results(gain_strong=-0.03, gain_mid=-0.03)
    o = exp.summarise(s, results)
    assert o.verdict is Verdict.DOES_NOT_HOLD
    assert all(e.verdict is Verdict.DOES_NOT_HOLD for e in o.effects)


def test_long_tail_small_gain_is_only_partly():
    exp = _exp("002-long-tail-dr")
    s, results = _long_tail_results(gain_strong=0.005, gain_mid=0.0, noise=(0.0, 0.0001, -0.0001))
    o = exp.summarise(s, results)  # significant but below the 1-point min_effect
    assert o.verdict is Verdict.PARTLY


def _collapse_results(diff):
    s = _exp("002-imbalanced-collapse").settings(RunOptions(quick=True))
    out = []
    for eps in (0.0, 0.01, -0.01):
        r = {}
        for m, level in ((D.CE, 0.3), (D.ETF_DR, 0.3 - diff)):
            for mixup in (True, False):
                r[D._key(m, s["collapse_rho"], mixup)] = {
                    f"{sp}_{st}": list(np.linspace(0.5, level + eps, 4))
                    for sp in ("train", "test") for st in D.COLLAPSE_STATS
                }  # fmt: skip
        out.append(r)
    return s, out


def test_collapse_verdicts_on_constructed_curves():
    exp = _exp("002-imbalanced-collapse")
    s, results = _collapse_results(0.2)
    o = exp.summarise(s, results)
    assert o.verdict is Verdict.HOLDS and len(o.effects) == 2  # the two statistics of Fig. 3
    assert o.effects[0].mean == pytest.approx(0.2)
    s, results = _collapse_results(-0.2)
    assert exp.summarise(s, results).verdict is Verdict.DOES_NOT_HOLD


# ------------------------------------------------------------------ configs
def test_configs_of_both_forms_are_valid_and_shared():
    from etfcore.training import TrainConfig

    for quick, data in ((True, None), (False, None), (False, "cifar10"), (False, "cifar100")):
        opts = RunOptions(quick=quick, data=data)
        lt = _exp("002-long-tail-dr").settings(opts)
        nc = _exp("002-imbalanced-collapse").settings(opts)
        for m in D.METHODS:
            for rho in lt["rhos"]:
                TrainConfig.from_dict(D.train_config(lt, m, rho, True, 0))
        # the collapse experiment trains exactly the long-tail experiment's configs
        for m in (D.CE, D.ETF_DR):
            a = D.train_config(lt, m, lt["collapse_rho"], True, 1)
            assert a == D.train_config(nc, m, nc["collapse_rho"], True, 1)
            assert a["track_every"] == 1
        if data is None:  # the embedded data: sizes known without a download
            cfg = TrainConfig.from_dict(D.train_config(lt, D.ETF_DR, 0.01, False, 0, epochs=3))
            assert cfg.head_batch_norm and cfg.normalize_features
            assert cfg.track_every == cfg.epochs > 3  # more epochs for the same steps
            assert cfg.etf_lengths == "class_counts_train" and cfg.loss == "dot_regression"
    big = _exp("002-long-tail-dr").settings(RunOptions(data="cifar100"))
    assert D._ablation_changes(big, "dim") == {"feature_dim": 99}
    assert TrainConfig.from_dict(
        D.train_config(_exp("002-long-tail-dr").settings(RunOptions(data="cifar10")),
                       D.CE, 0.01, True, 0)
    ).backbone == "resnet32"  # fmt: skip


def test_every_run_makes_the_balanced_runs_steps():
    """Fixed SGD steps: ⌊N_ρ/B⌋ steps per epoch times the epochs is at least the balanced run's
    steps and less than one epoch more (independently counted from the long-tail profile)."""
    from etfcore.data import long_tail_counts
    from etfcore.training.datasets import embedded_arrays

    s = dict(data="digits", batch_size=64, epochs=30)
    y = embedded_arrays("digits")[1]
    n_max = int(np.bincount(y).min())
    full = len(y) // 64 * 30
    for rho in (0.01, 0.02, 0.1):
        n = int(np.sum(long_tail_counts(10, n_max, rho)))
        assert D.train_size("digits", rho) == n
        e = D.epochs_for(s, rho)
        per_epoch = n // 64
        assert full <= e * per_epoch < full + per_epoch
    assert D.epochs_for(s, 1.0) == 30


# ------------------------------------------------------------------ the pipeline, tiny
pytest.importorskip("torch")
pytest.importorskip("lightning")


def test_pipeline_on_tiny_settings(tmp_path):
    from etfcore.experiments import Context

    ctx = Context(RunOptions(quick=True, accelerator="cpu", out_dir=str(tmp_path)))
    tiny = dict(
        data="digits", backbone="mlp", feature_dim=16, epochs=2, batch_size=128,
        rhos=[0.02], collapse_rho=0.02, lr=0.1, weight_decay=2e-4, mixup_alpha=1.0,
        ablation_rhos=[0.02], ablations=["lengths_at_test", "equal_lengths"], alt_data="digits",
        num_classes=10,
    )  # fmt: skip
    lt = _exp("002-long-tail-dr")
    r = lt.run_seed(ctx, tiny, 0)
    assert set(r["main"]) == {D._key(m, 0.02, x) for m in D.METHODS for x in (False, True)}
    assert all(0 <= v["acc"] <= 1 for v in r["main"].values())
    assert set(r["ablations"]["0.02"]) == {"lengths_at_test", "equal_lengths"}
    assert 0 <= r["ablations"]["0.02"]["lengths_at_test"]["dr"] <= 1
    o = lt.summarise(tiny, [r, r])
    assert o.table.rows and o.notes
    nc = _exp("002-imbalanced-collapse")
    c = nc.run_seed(ctx, tiny, 0)
    curve = c[D._key(D.ETF_DR, 0.02, True)]["train_nc_cos_means_std"]
    assert len(curve) == D.epochs_for(tiny, 0.02) > 2 and all(0 <= v < 2 for v in curve)
    assert len(nc.summarise(tiny, [c, c]).effects) == 2
