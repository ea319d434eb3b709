"""The ranking report (transfer.rank_models), ground-truth tables and the `etfcore rank` report
hook, against direct computations written here."""

import csv
import io
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sst

from etfcore import transfer
from etfcore.errors import CorruptDataError, ParameterError, ShapeError
from etfcore.transfer.ground_truth import GroundTruth, GroundTruthRow, load_ground_truth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_zoo(seed=0, n_per=20, k=3, d=5, spreads=(0.3, 0.6, 0.9, 1.2)):
    """Candidates whose class means are further apart the later they come (noisy enough for the
    bootstrap to move τ)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per)
    feats = {}
    for i, s in enumerate(spreads):
        mu = rng.normal(size=(k, d)) * s
        feats[f"m{i}"] = mu[y] + rng.normal(size=(y.size, d))
    return feats, y


GT = {"m0": 0.52, "m1": 0.61, "m2": 0.58, "m3": 0.74}


def scipy_tau(s, a):
    return sst.weightedtau(s, a).statistic


def test_agreement_and_regret_match_direct_computations():
    feats, y = make_zoo()
    rep = transfer.rank_models(feats, y, GT, scores=["hscore", "vci", "knn_accuracy"], top_k=2,
                               source_accuracies={"m0": .8, "m1": .7, "m2": .75, "m3": .6})
    acc = np.array([GT[c] for c in rep.candidates])
    names = rep.candidates
    # the values are the scores themselves
    for i, c in enumerate(names):
        assert rep.scores["hscore"][i] == pytest.approx(transfer.hscore(feats[c], y), rel=1e-12)
        assert rep.scores["vci"][i] == pytest.approx(transfer.vci(feats[c], y), rel=1e-12)
    assert rep.directions == {"source_accuracy": 1, "hscore": 1, "vci": -1, "knn_accuracy": 1}
    assert [a.score for a in rep.agreement][0] == "source_accuracy"
    for a in rep.agreement:
        s = rep.scores[a.score] * a.direction
        assert a.weighted_tau == pytest.approx(scipy_tau(s, acc), abs=1e-12)
        assert a.pearson == pytest.approx(sst.pearsonr(s, acc).statistic, abs=1e-12)
        assert a.spearman == pytest.approx(sst.spearmanr(s, acc).statistic, abs=1e-12)
        # regret by brute force: the candidate(s) the score puts first
        ranked = sorted(range(len(names)), key=lambda i: (-s[i], i))
        assert a.top1 == names[ranked[0]]
        assert a.regret_top1 == pytest.approx(acc.max() - acc[ranked[0]])
        assert a.regret_topk == pytest.approx(acc.max() - max(acc[ranked[:2]]))
    # lower-is-better: vci ranks exactly as hscore here (vci = 1 - h/min(p, K-1))
    ag = {a.score: a for a in rep.agreement}
    assert ag["vci"].weighted_tau == pytest.approx(ag["hscore"].weighted_tau)


def test_regret_of_a_reversed_score_is_the_accuracy_span():
    feats, y = make_zoo()
    h = {c: transfer.hscore(f, y) for c, f in feats.items()}
    # a ground truth exactly reversed against the H-score
    order = sorted(h, key=h.get)
    gt = {c: 0.9 - 0.1 * i for i, c in enumerate(order)}
    rep = transfer.rank_models(feats, y, gt, scores=["hscore"], top_k=2)
    a = rep.agreement[0]
    assert a.weighted_tau == pytest.approx(-1.0)
    assert a.regret_top1 == pytest.approx(0.9 - (0.9 - 0.1 * 3))
    assert a.regret_topk == pytest.approx(0.9 - (0.9 - 0.1 * 2))
    assert a.top1 == order[-1]


def test_bootstrap_matches_a_direct_resampling_loop_and_seeds_reproduce():
    feats, y = make_zoo(n_per=12, d=3, spreads=(0.5, 0.55, 0.6, 0.65))
    b, seed = 15, 7
    rep = transfer.rank_models(feats, y, GT, scores=["hscore"], bootstrap=b, seed=seed)
    names = rep.candidates
    acc = np.array([GT[c] for c in names])
    rng = np.random.default_rng([seed, 1])
    taus = []
    for _ in range(b):
        rows = np.sort(np.concatenate(
            [rng.choice(np.flatnonzero(y == k), size=np.sum(y == k), replace=True)
             for k in range(3)]))
        assert np.array_equal(np.bincount(y[rows]), np.bincount(y))  # within each class
        v = [transfer.hscore(feats[c][rows], y[rows]) for c in names]
        taus.append(scipy_tau(v, acc))
    np.testing.assert_allclose(rep.bootstrap_taus["hscore"], taus, atol=1e-12)
    a = rep.agreement[0]
    assert a.bootstrap_valid == b
    assert (a.tau_low, a.tau_high) == pytest.approx(tuple(np.percentile(taus, [2.5, 97.5])))
    assert np.ptp(taus) > 0  # the resamples do move τ: the interval means something
    again = transfer.rank_models(feats, y, GT, scores=["hscore"], bootstrap=b, seed=seed)
    np.testing.assert_array_equal(again.bootstrap_taus["hscore"], rep.bootstrap_taus["hscore"])
    other = transfer.rank_models(feats, y, GT, scores=["hscore"], bootstrap=b, seed=seed + 1)
    assert not np.array_equal(other.bootstrap_taus["hscore"], rep.bootstrap_taus["hscore"])


def test_curves_are_the_scores_of_stratified_subsamples():
    feats, y = make_zoo(n_per=20)
    rep = transfer.rank_models(feats, y, GT, scores=["hscore", "knn_accuracy"],
                               curve_sizes=[15, 30, 1000], seed=3)
    assert rep.curve_sizes == [15, 30, 1000]
    from etfcore.transfer._selection_common import stratified_subsample

    acc = np.array([GT[c] for c in rep.candidates])
    for n in (15, 30):
        rows = stratified_subsample(y, n, 3)
        assert rows.size <= n and set(np.unique(y[rows])) == {0, 1, 2}
        v = [transfer.hscore(feats[c][rows], y[rows]) for c in rep.candidates]
        np.testing.assert_allclose(rep.curve_scores["hscore"][str(n)], v, rtol=1e-12)
        i = rep.curve_sizes.index(n)
        assert rep.curve_taus["hscore"][i] == pytest.approx(scipy_tau(v, acc))
    # a size above N is every row: the full-data values
    np.testing.assert_allclose(rep.curve_scores["hscore"]["1000"], rep.scores["hscore"])
    again = transfer.rank_models(feats, y, GT, scores=["knn_accuracy"], curve_sizes=[15], seed=3)
    np.testing.assert_array_equal(again.curve_scores["knn_accuracy"]["15"],
                                  rep.curve_scores["knn_accuracy"]["15"])


def test_warning_n_le_d_pins_the_hscore():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 4)  # N = 12
    feats = {"a": rng.normal(size=(12, 20)), "b": rng.normal(size=(12, 30))}
    rep = transfer.rank_models(feats, y, {"a": .5, "b": .6}, scores=["hscore", "logme"])
    np.testing.assert_allclose(rep.scores["hscore"], 2.0, rtol=1e-6)  # K - 1
    assert any(w.startswith("hscore: N - 1 ≤ D") and "['a', 'b']" in w for w in rep.warnings)
    assert any(w.startswith("logme: N ≤ D") for w in rep.warnings)
    # LogME is unbounded there: it fails (NaN, listed), the other scores stay
    assert np.all(np.isnan(rep.scores["logme"]))
    assert any(w.startswith("logme failed on candidate 0") for w in rep.warnings)
    ag = {a.score: a for a in rep.agreement}
    assert math.isnan(ag["logme"].weighted_tau) and math.isnan(ag["logme"].regret_top1)
    assert "| logme | higher | —" in rep.to_markdown()
    # the H-score pinned for both: constant across the zoo as well
    assert any(w.startswith("hscore: constant across the zoo") for w in rep.warnings)
    ok = transfer.rank_models({k: v[:, :3] for k, v in feats.items()}, y, {"a": .5, "b": .6},
                              scores=["hscore", "logme"])
    assert not any("≤ D" in w for w in ok.warnings)


def test_warning_sfda_saturation_and_constant_score():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(2), 5)
    sep = {"a": np.r_[np.zeros(5), np.ones(5)][:, None] * 50 + rng.normal(size=(10, 40)),
           "b": rng.normal(size=(10, 40))}
    rep = transfer.rank_models(sep, y, {"a": .9, "b": .5}, scores=["sfda"])
    assert rep.scores["sfda"][0] >= 1 - 1e-6
    assert any(w.startswith("sfda: saturated") and "'a'" in w for w in rep.warnings)
    f = rng.normal(size=(10, 3))
    same = transfer.rank_models({"a": f, "b": f.copy()}, y, {"a": .9, "b": .5},
                                scores=["hscore"])
    assert any(w.startswith("hscore: constant across the zoo") for w in same.warnings)
    assert math.isnan(same.agreement[0].weighted_tau)


def test_zoo_normalisation_is_recorded_and_warned():
    feats, y = make_zoo()
    rep = transfer.rank_models(feats, y, GT, scores=["ncti", "etran"], etran_normalise="zscore")
    assert set(rep.normalisation) == {"ncti", "etran"}
    assert rep.normalisation["etran"].startswith("zscore")
    assert sum("zoo-relative normalisation applied" in w for w in rep.warnings) == 2
    # the combination, by hand: 0.15 z(energy) + 0.85 z(lda)
    z = transfer.normalise_scores
    want = 0.15 * z(rep.scores["etran_energy"], "zscore") + 0.85 * z(rep.scores["etran_lda"],
                                                                     "zscore")
    np.testing.assert_allclose(rep.scores["etran"], want, atol=1e-12)
    plain = transfer.rank_models(feats, y, GT, scores=["hscore"])
    assert plain.normalisation == {} and not plain.warnings


def test_formats_round_trip():
    feats, y = make_zoo()
    rep = transfer.rank_models(feats, y, GT, scores=["hscore", "vci", "gbc"], bootstrap=4,
                               curve_sizes=[20, 40], source_accuracies=dict(GT), seed=2)
    back = transfer.ModelReport.from_json(rep.to_json())
    assert back.to_dict() == rep.to_dict()
    json.loads(rep.to_json())  # strict JSON
    rows = list(csv.DictReader(io.StringIO(rep.to_csv())))
    assert rows[0]["score"] == "ground_truth"
    by = {r["score"]: r for r in rows[1:]}
    assert by["vci"]["better"] == "lower" and by["hscore"]["better"] == "higher"
    for a in rep.agreement:
        r = by[a.score]
        assert float(r["weighted_tau"]) == a.weighted_tau
        assert float(r["tau_low"]) == a.tau_low and float(r["regret_top3"]) == a.regret_topk
        assert [float(r[c]) for c in rep.candidates] == rep.scores[a.score].tolist()
    crow = list(csv.DictReader(io.StringIO(rep.curves_csv())))
    assert len(crow) == len(rep.scores) * 2 * (len(rep.candidates) + 1)
    md = rep.to_markdown()
    assert "| vci | lower |" in md and "source_accuracy (baseline)" in md
    assert md.count("| better |") == 4  # every table states the direction


def test_without_ground_truth_and_nan_in_json():
    feats, y = make_zoo()
    rep = transfer.rank_models(list(feats.values()), y, scores=["hscore"], bootstrap=3)
    assert rep.candidates == ["model0", "model1", "model2", "model3"]
    assert rep.agreement == [] and rep.bootstrap == 0
    assert any("bootstrap skipped" in w for w in rep.warnings)
    back = transfer.ModelReport.from_json(rep.to_json())
    assert back.ground_truth is None and back.to_dict() == rep.to_dict()


def test_plot_writes_a_figure(tmp_path):
    pytest.importorskip("matplotlib")
    feats, y = make_zoo()
    rep = transfer.rank_models(feats, y, GT, scores=["hscore", "vci"], curve_sizes=[20, 40])
    p = tmp_path / "r.png"
    fig = rep.plot(str(p))
    assert p.stat().st_size > 1000 and len(fig.axes) >= 3
    with pytest.raises(ParameterError):
        rep.plot(scores=["nope"])


def test_bad_input_raises_typed_errors(tmp_path):
    feats, y = make_zoo()
    with pytest.raises(ParameterError, match="at least 2"):
        transfer.rank_models({"a": feats["m0"]}, y)
    with pytest.raises(ParameterError, match="no score chosen"):
        transfer.rank_models(feats, y, scores=[])
    with pytest.raises(ParameterError, match="unknown scores"):
        transfer.rank_models(feats, y, scores=["hscore", "magic"])
    with pytest.raises(ShapeError):
        transfer.rank_models({"a": feats["m0"], "b": feats["m1"][:-1]}, y)
    with pytest.raises(ParameterError, match="lacks the candidates"):
        transfer.rank_models(feats, y, {"m0": .1, "m1": .2}, scores=["hscore"])
    with pytest.raises(ParameterError, match="source_probs"):
        transfer.rank_models(feats, y, scores=["leep"])
    with pytest.raises(ParameterError, match="not found"):
        transfer.rank_models([str(tmp_path / "x.npy"), str(tmp_path / "z.npy")], y)
    with pytest.raises(ParameterError):
        transfer.rank_models(feats, y, bootstrap=-1)
    with pytest.raises(ParameterError):
        transfer.rank_models(feats, y, scores=["hscore"], curve_sizes=[1])


# ------------------------------------------------------------------ ground-truth tables
def test_ground_truth_csv_and_json_round_trip(tmp_path):
    text = ("# source: measured by hand\n# license: CC0-1.0\n"
            "model,target,accuracy,metric,seed\n"
            "a,cifar,0.7,probe top-1,1\nb,cifar,0.8,probe top-1,1\nb,pets,0.6,,2\n")
    p = tmp_path / "gt.csv"
    p.write_text(text)
    gt = load_ground_truth(p)
    assert gt.metadata == {"source": "measured by hand", "license": "CC0-1.0"}
    assert gt.targets() == ["cifar", "pets"] and gt.models("cifar") == ["a", "b"]
    assert gt.for_target("cifar") == {"a": 0.7, "b": 0.8}
    assert gt.rows[0].metric == "probe top-1" and gt.rows[2].extra == {"seed": "2"}
    for ext in ("csv", "json"):
        q = tmp_path / f"out.{ext}"
        gt.save(str(q))
        assert load_ground_truth(q) == gt
    with pytest.raises(ParameterError, match="name one"):
        gt.for_target()
    with pytest.raises(ParameterError, match="not in the table"):
        gt.for_target("imagenet")
    with pytest.raises(ParameterError, match="no ground truth"):
        gt.accuracies(["a", "c"], "cifar")
    feats, y = make_zoo(spreads=(0.3, 1.2))
    rep = transfer.rank_models({"a": feats["m0"], "b": feats["m1"]}, y, gt, target="cifar",
                               scores=["hscore"])
    assert rep.target == "cifar" and rep.ground_truth.tolist() == [0.7, 0.8]
    assert transfer.GroundTruth.from_mapping({"a": 1, "b": 2}).for_target() == {"a": 1., "b": 2.}


@pytest.mark.parametrize("text, match", [
    ("model,accuracy\na,0.5\n", "lacks the column"),
    ("model,target,accuracy\na,t,high\n", "line 2: accuracy must be a number"),
    ("model,target,accuracy\na,t,nan\n", "finite"),
    ("model,target,accuracy\na,t,0.5\na,t,0.6\n", "appears twice"),
    ("model,target,accuracy\na,,0.5\n", "missing target"),
    ("model,target,accuracy\na,t,0.5,extra\n", "more fields"),
    ("# no colon here\nmodel,target,accuracy\n", "metadata line"),
])
def test_ground_truth_csv_errors(tmp_path, text, match):
    p = tmp_path / "gt.csv"
    p.write_text(text)
    with pytest.raises(CorruptDataError, match=match):
        load_ground_truth(p)


def test_ground_truth_json_and_file_errors(tmp_path):
    p = tmp_path / "gt.json"
    for text, match in [("{", "not valid JSON"), ('{"rows": []}', "format"),
                        ('{"format": "etfcore-ground-truth", "version": 9, "rows": []}',
                         "version"),
                        ('{"format": "etfcore-ground-truth", "version": 1, "rows": [1]}',
                         "row 0"),
                        ('{"format": "etfcore-ground-truth", "version": 1, '
                         '"rows": [{"model": 3, "target": "t", "accuracy": 1}]}', "text")]:
        p.write_text(text)
        with pytest.raises(CorruptDataError, match=match):
            load_ground_truth(p)
    with pytest.raises(ParameterError, match="not found"):
        load_ground_truth(tmp_path / "none.csv")
    with pytest.raises(ParameterError, match=".csv or .json"):
        load_ground_truth(tmp_path / "gt.txt")
    assert transfer.ground_truth.SHIPPED_TABLES == {}
    assert isinstance(GroundTruth([GroundTruthRow("a", "t", 1.0)]).to_csv(), str)


# ------------------------------------------------------------------ the CLI hook
def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    return subprocess.run([sys.executable, "-m", "etfcore.cli", "rank", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def test_cli_rank_report_on_npy_files(tmp_path):
    feats, y = make_zoo()
    np.save(tmp_path / "y.npy", y)
    for c, f in feats.items():
        np.save(tmp_path / f"{c}.npy", f)
    GroundTruth.from_mapping(GT, "toy").save(str(tmp_path / "gt.csv"))
    files = [f"{c}.npy" for c in feats]
    r = _cli("--target", "y.npy", "--candidates", *files, "--ground-truth", "gt.csv",
             "--scores", "hscore", "vci", "--bootstrap", "3", "--curve", "20,40", "--seed", "4",
             "--format", "json", "--out", "rep.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = transfer.ModelReport.from_json((tmp_path / "rep.json").read_text())
    want = transfer.rank_models(feats, y, GT, scores=["hscore", "vci"], bootstrap=3,
                                curve_sizes=[20, 40], seed=4, target="toy")
    assert got.to_dict() == want.to_dict()
    r = _cli("--target", "y.npy", "--candidates", *files, "--accuracies", "0.52", "0.61", "0.58",
             "0.74", "--scores", "hscore", "--format", "csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert next(csv.reader(io.StringIO(r.stdout)))[:2] == ["score", "better"]
    r = _cli("--target", "y.npy", "--candidates", *files, "--ground-truth", "gt.csv",
             "--target-name", "nope", cwd=tmp_path)
    assert r.returncode == 2 and "etfcore: error" in r.stderr and "nope" in r.stderr
    r = _cli("--target", "y.npy", "--candidates", *files, "--curve", "a,b", cwd=tmp_path)
    assert r.returncode == 2 and "--curve" in r.stderr


def test_default_scores_cover_every_score_and_leep_with_source_probs():
    feats, y = make_zoo(n_per=15)
    rng = np.random.default_rng(5)
    probs = {c: rng.dirichlet(np.ones(4), size=y.size) for c in feats}
    rep = transfer.rank_models(feats, y, GT, source_probs=probs)
    want = (set(transfer.MODEL_REPORT_SCORES) - {"etran"}
            | {"etran", "etran_energy", "etran_lda", "etran_svd"})
    assert set(rep.scores) == want
    for i, c in enumerate(rep.candidates):
        assert rep.scores["leep"][i] == pytest.approx(transfer.leep(probs[c], y), rel=1e-12)
        assert rep.scores["sfda"][i] == pytest.approx(transfer.sfda(feats[c], y).value,
                                                      rel=1e-12)
    assert len(rep.agreement) == len(want)
    no_probs = transfer.rank_models(feats, y, scores=None)
    assert "leep" not in no_probs.scores and "nce" not in no_probs.scores
