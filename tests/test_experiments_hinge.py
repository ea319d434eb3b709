"""The hinge-CE ("Do we need neural collapse?") experiments: one tiny seed of each pipeline, the
verdict logic on constructed per-seed results, the full-form settings, and the helpers against
independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from etfcore.experiments import RunOptions, Verdict
from etfcore.experiments.hinge_cones import CoarseToFine, frame_angle, recipe, spearman
from etfcore.experiments.hinge_long_tail import LongTailMinor
from etfcore.experiments.hinge_tau import Nc1VersusTau, tau_grid

pytest.importorskip("torch")
pytest.importorskip("lightning")


# ------------------------------------------------------------------ helpers
def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 4, 7).astype(float)
        y = rng.normal(size=7)
        y[2] = y[5]
        ref = stats.spearmanr(x, y).statistic
        if np.isfinite(ref):
            assert spearman(x, y) == pytest.approx(ref, abs=1e-10)
    assert spearman([0, 1, 2], [3, 2, 1]) == pytest.approx(-1.0)


def test_frame_angle_is_the_etf_angle():
    import etfcore

    for k in (3, 5, 10):
        w = etfcore.etf(k, 16, seed=1)
        w = w / np.linalg.norm(w, axis=1, keepdims=True)
        g = w @ w.T
        off = g[~np.eye(k, dtype=bool)]
        assert np.allclose(np.arccos(np.clip(off, -1, 1)), frame_angle(k), atol=1e-9)


def test_theorem1_recipe_builds_the_zero_gradient_loss():
    """The config's τ⁻ = θ_K − τ⁺ gives no gradient to a feature inside its cone."""
    import torch

    from etfcore.nn import FixedETFHead
    from etfcore.training import TrainConfig
    from etfcore.training.build import build_loss

    cfg = TrainConfig.from_dict(dict(recipe("hinge_thm1", tau_plus=0.4, num_classes=5)))
    head = FixedETFHead(5, 8, seed=0)
    crit = build_loss(cfg, head, np.full(5, 10))
    w = head.weight
    u = 2.0 * w[[3]] + 0.1 * torch.randn(1, 8, generator=torch.Generator().manual_seed(0))
    cos = torch.nn.functional.cosine_similarity(u, w[[3]]).item()
    assert math.acos(cos) < 0.4  # inside the cone
    u.requires_grad_()
    crit(u, torch.tensor([3])).backward()
    assert float(u.grad.abs().max()) == 0.0
    # the paper's practical τ⁻ = π keeps a gradient there
    cfg_pi = TrainConfig.from_dict(dict(recipe("hinge", tau_plus=0.4)))
    u2 = u.detach().clone().requires_grad_()
    build_loss(cfg_pi, head, np.full(5, 10))(u2, torch.tensor([3])).backward()
    assert float(u2.grad.abs().max()) > 0.0


def test_full_form_settings_build_valid_configs():
    from etfcore.training import TrainConfig

    for exp in (CoarseToFine(), Nc1VersusTau(), LongTailMinor()):
        for quick in (True, False):
            s = exp.settings(RunOptions(quick=quick))
            for cfg in exp.configs(s, 0).values():
                TrainConfig.from_dict(cfg)
    s = CoarseToFine().settings(RunOptions(quick=False, data="cifar100"))
    cfgs = CoarseToFine().configs(s, 0)
    assert all(TrainConfig.from_dict(c).label_map is not None for c in cfgs.values())
    assert len(tau_grid(False)) > len(tau_grid(True))
    assert max(tau_grid(True)) == pytest.approx(17 * math.pi / 36)


# ------------------------------------------------------------------ verdicts on constructed results
def _c2f(hinge, ce, ce_etf):
    def m(a):
        return dict(fine_probe=a, coarse_acc=0.9, train_nc1=0.1, train_rank=2.0, in_cone=0.5)

    task = dict(ce=m(ce), ce_etf=m(ce_etf), hinge=m(hinge), hinge_norm=m(hinge),
                hinge_thm1_norm=m(None))  # fmt: skip
    return {"hier": task, "digits": task}


def test_coarse_to_fine_verdicts():
    exp = CoarseToFine()
    s = exp.settings(RunOptions(quick=True))
    good = [_c2f(0.80 + d, 0.75, 0.74) for d in (0.0, 0.01, -0.005)]
    bad = [_c2f(0.70 + d, 0.75, 0.74) for d in (0.0, 0.01, -0.005)]
    assert exp.summarise(s, good).verdict is Verdict.HOLDS
    assert exp.summarise(s, bad).verdict is Verdict.DOES_NOT_HOLD


def _sweep(s, nc1_slope):
    r = {}
    for v in s["variants"]:
        for i, _ in enumerate(s["taus"]):
            r[f"{v}/{i}"] = dict(nc1=0.3 + nc1_slope * i, rank=2.0 + nc1_slope * i,
                                 test_acc=0.9, in_cone=0.5)  # fmt: skip
    for m in ("ce", "ce_etf"):
        r[f"ref/{m}"] = dict(nc1=0.3, rank=2.0, test_acc=0.9, in_cone=None)
    for c in s["class_sweep"]:
        for i, _ in enumerate(s["sweep_taus"]):
            r[f"K{c['K']}/{i}"] = dict(nc1=0.3 + nc1_slope * i, rank=2.0 + nc1_slope * i,
                                       test_acc=0.9, in_cone=0.5)  # fmt: skip
    return r


def test_nc1_vs_tau_verdicts():
    exp = Nc1VersusTau()
    s = exp.settings(RunOptions(quick=True))
    up = [_sweep(s, 0.05 + 0.01 * k) for k in range(3)]
    down = [_sweep(s, -0.05 - 0.01 * k) for k in range(3)]
    out = exp.summarise(s, up)
    assert out.verdict is Verdict.HOLDS
    assert len(out.effects) == 4  # digits and the largest K, NC1 and rank each
    assert all(e.mean == pytest.approx(1.0) for e in out.effects)
    assert [c["K"] for c in s["class_sweep"]] == [10, 30, 100]
    assert any("K = 100" in row[0] for row in out.table.rows)
    assert exp.summarise(s, down).verdict is Verdict.DOES_NOT_HOLD


def _lt(hinge_minor, base):
    def m(a):
        return dict(minor=a, major=0.95, acc=0.9, train_minor=1.0, nc1=0.1)

    return dict(ce=m(base - 0.02), ce_etf=m(base), hinge_minor=m(hinge_minor),
                hinge_all=m(hinge_minor))  # fmt: skip


def test_long_tail_verdicts():
    exp = LongTailMinor()
    s = exp.settings(RunOptions(quick=True))
    good = [_lt(0.85 + d, 0.80) for d in (0.0, 0.01, 0.02)]
    bad = [_lt(0.76 + d, 0.80) for d in (0.0, 0.01, 0.02)]
    assert exp.summarise(s, good).verdict is Verdict.HOLDS
    assert exp.summarise(s, bad).verdict is Verdict.DOES_NOT_HOLD


# ------------------------------------------------------------------ pipelines, one tiny seed
def _tiny_arch():
    return dict(backbone="mlp", feature_dim=16, batch_size=128, optimizer="sgd", lr=0.05,
                epochs=2, weight_decay=5e-4)  # fmt: skip


@pytest.fixture
def ctx(tmp_path):
    from etfcore.experiments.runner import Context

    return Context(RunOptions(quick=True, accelerator="cpu", out_dir=str(tmp_path)))


def test_coarse_to_fine_pipeline(ctx):
    exp = CoarseToFine()
    s = exp.settings(RunOptions(quick=True))
    s.update(arch=_tiny_arch(), probe_grid=[1e-3, 1e-1])
    s["methods"] = {"ce": dict(method="ce"), "hinge": dict(method="hinge")}
    s["tasks"] = [dict(name="hier", dataset="hier:n=20", coarse=[k // 5 for k in range(20)],
                       fine=20)]  # fmt: skip
    r = exp.run_seed(ctx, s, 0)
    row = r["hier"]["hinge"]
    assert 0.0 <= row["fine_probe"] <= 1.0 and 0.0 <= row["coarse_acc"] <= 1.0
    assert row["train_nc1"] >= 0 and row["train_rank"] >= 1.0
    assert 0.0 <= row["in_cone"] <= 1.0
    assert set(r["hier"]) == {"ce", "hinge"}


def test_nc1_vs_tau_pipeline(ctx):
    exp = Nc1VersusTau()
    s = exp.settings(RunOptions(quick=True))
    # the projector and the normalisation: the frame's features are rebuilt from both
    variants = {"normalized": dict(method="hinge", normalize_features=True)}
    s.update(arch=_tiny_arch(), taus=[0.0, 1.0], variants=variants, references=["ce_etf"],
             class_sweep=[dict(K=5, feature_dim=16, dataset="hier:coarse=5,fine=1,dim=16,n=10")],
             sweep_taus=[0.0, 0.5, 1.0])  # fmt: skip
    r = exp.run_seed(ctx, s, 0)
    assert set(r) == {"ref/ce_etf", "normalized/0", "normalized/1", "K5/0", "K5/1", "K5/2"}
    for v in r.values():
        assert v["nc1"] > 0 and v["rank"] >= 1.0 and 0 <= v["test_acc"] <= 1
        # NC1 of the frame's features rebuilt from the backbone's (projector, normalisation)
        # equals the training callback's, computed on the fly by another code path
        assert v["nc1"] == pytest.approx(v["tracker_nc1"], rel=1e-5)
    s["variants"]["paper"] = s["variants"]["normalized"]  # the verdict's rows
    r.update({f"paper/{i}": r[f"normalized/{i}"] for i in range(2)})
    assert len(exp.summarise(s, [r]).effects) == 4  # one seed summarises


def test_long_tail_pipeline(ctx):
    exp = LongTailMinor()
    s = exp.settings(RunOptions(quick=True))
    s.update(arch=_tiny_arch(), methods={"ce_etf": dict(method="ce_etf"),
                                         "hinge_minor": dict(method="hinge")})  # fmt: skip
    r = exp.run_seed(ctx, s, 0)
    for v in r.values():
        assert 0 <= v["minor"] <= 1 and 0 <= v["major"] <= 1
    out = exp.summarise({**s, "methods": {"ce": {}, **s["methods"]}},
                        [{**r, "ce": r["ce_etf"]}])  # fmt: skip
    assert len(out.effects) == 2


def test_diverged_runs_are_reported_not_raised():
    from etfcore.errors import NonFiniteError
    from etfcore.experiments.hinge_cones import _DIVERGED

    class Diverging:  # a context whose every training run ends with non-finite features
        def train(self, config):
            raise NonFiniteError("features contain a non-finite value")

    exp = Nc1VersusTau()
    s = exp.settings(RunOptions(quick=True))
    r = exp.run_seed(Diverging(), s, 0)
    assert all(v["diverged"] for v in r.values()) and len(r) == len(exp.configs(s, 0))
    results = [_sweep(s, 0.05) for _ in range(3)]
    for res in results:
        res.update({f"theorem1/{i}": dict(_DIVERGED) for i in (2, 3)})
    out = exp.summarise(s, results)
    assert out.verdict is Verdict.HOLDS  # the paper's rows decide; the ablation is a note
    note = next(n for n in out.notes if n.startswith("τ⁻ = θ_K"))
    assert "6 of 15 runs diverged" in note


def test_hinge_goes_to_the_papers_share_of_rarest_classes():
    """Table 4 of the paper: 1 minor class of 10 (CIFAR10-LT), 50 of 100 (CIFAR100-LT); the
    threshold is checked against counts built independently from the long-tail profile."""
    from etfcore.data import long_tail_counts
    from etfcore.training.datasets import embedded_arrays

    s = LongTailMinor().settings(RunOptions(quick=True))
    y = embedded_arrays("digits")[1]
    counts = long_tail_counts(10, int(np.bincount(y).min()), s["imbalance_ratio"])
    assert int(np.sum(counts <= s["minor_threshold"])) == 1
    big = LongTailMinor().settings(RunOptions(data="cifar100"))
    counts = long_tail_counts(100, 500, big["imbalance_ratio"])
    assert int(np.sum(counts <= big["minor_threshold"])) == 50


def test_sweep_plot_statistics_skip_diverged_runs_without_warnings():
    import warnings

    from etfcore.experiments.hinge_tau import _mean_std_of_trained

    rng = np.random.default_rng(0)
    curves = rng.normal(size=(5, 6))
    curves[[0, 3], 1] = np.nan  # two seeds diverged at one τ⁺
    curves[:, 4] = np.inf  # every seed diverged at another
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, sd = _mean_std_of_trained(curves)
    for j in (0, 1, 2, 3, 5):
        col = curves[:, j][np.isfinite(curves[:, j])]
        assert mean[j] == pytest.approx(col.mean()) and sd[j] == pytest.approx(col.std())
    assert np.isnan(mean[4]) and np.isnan(sd[4])


class _DivergingContext:
    """`train` starts like the trainer (which may warn), warns `other`, then diverges."""

    def __init__(self, other: str = ""):
        self.other = other

    def train(self, config):
        import warnings

        from etfcore.errors import NonFiniteError
        from etfcore.training import TrainConfig

        TrainConfig(**config).warn_training_hazards()
        if self.other:
            warnings.warn(self.other, UserWarning, stacklevel=2)
        raise NonFiniteError("features are not finite")


def test_train_or_diverge_silences_only_the_expected_divergence_warning():
    import warnings

    from etfcore.experiments.hinge_cones import train_or_diverge

    cfg = dict(head="etf", loss="hinge_ce", tau_minus=0.5)
    with pytest.warns(RuntimeWarning, match="can diverge"):  # the pattern matches the real text
        from etfcore.training import TrainConfig

        TrainConfig(**cfg).warn_training_hazards()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert train_or_diverge(_DivergingContext(), cfg) is None
    with pytest.warns(UserWarning, match="unrelated"):
        assert train_or_diverge(_DivergingContext("unrelated"), cfg) is None


def test_rarest_count_makes_exactly_the_rarest_classes_minor():
    from etfcore.data import long_tail_counts, rarest_count
    from etfcore.errors import ParameterError

    counts = np.random.default_rng(0).permutation(long_tail_counts(100, 500, 0.01))
    for m in (1, 10, 50):
        t = rarest_count(counts, m)
        assert (counts <= t).sum() >= m and (counts < t).sum() < m  # brute force by definition
    with pytest.raises(ParameterError, match="num_rarest"):
        rarest_count(counts, 0)
