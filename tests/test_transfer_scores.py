"""Transferability scores, ridge path, rank agreement and MLOG against independent references."""

from __future__ import annotations

import numpy as np
import pytest

import etfcore as ec
from etfcore import transfer

scipy_stats = pytest.importorskip("scipy.stats")


def mixture(n, p, k, seed, sep=1.0, offset=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, p)) * sep
    y = rng.integers(0, k, size=n)
    y[:k] = np.arange(k)
    h = (means[y] + rng.normal(size=(n, p)) * rng.uniform(0.5, 1.5, size=p)) * scale + offset
    return h, y


def geometry(h, y):
    classes = np.unique(y)
    n = h.shape[0]
    mg = h.mean(0)
    st = (h - mg).T @ (h - mg) / n
    sb = np.zeros_like(st)
    for k in classes:
        d = h[y == k].mean(0) - mg
        sb += (y == k).sum() / n * np.outer(d, d)
    return st, sb


# ----------------------------------------------------------------------------- H-scores
def test_hscore_is_trace_pinv_and_streams():
    h, y = mixture(600, 7, 4, seed=0, offset=3.0)
    st, sb = geometry(h, y)
    ref = np.trace(np.linalg.pinv(st) @ sb)
    assert transfer.hscore(h, y) == pytest.approx(ref, rel=1e-10)
    stats = ec.CollapseStats(4, 7)
    for a in range(0, 600, 128):
        stats.update(h[a:a + 128].astype(np.float64), y[a:a + 128])
    assert stats.hscore() == pytest.approx(ref, rel=1e-10)
    v = stats.vci()
    assert stats.hscore() == pytest.approx(v.normalizer * (1 - v.value), rel=1e-10)


def test_regularized_hscore_matches_sklearn_ledoit_wolf():
    cov_mod = pytest.importorskip("sklearn.covariance")
    h, y = mixture(300, 12, 3, seed=1, offset=-2.0)
    st, sb = geometry(h, y)
    lw, delta = cov_mod.ledoit_wolf(h)
    ref = np.trace(np.linalg.pinv(lw) @ ((1 - delta) * sb))
    xs = transfer.TransferabilityStats(3, 12)
    for a in range(0, 300, 77):
        xs.update(h[a:a + 77], y[a:a + 77])
    assert xs.ledoit_wolf_shrinkage() == pytest.approx(delta, rel=1e-9)
    assert xs.regularized_hscore() == pytest.approx(ref, rel=1e-9)
    assert transfer.regularized_hscore(h, y) == pytest.approx(ref, rel=1e-9)


# ----------------------------------------------------------------------------- LogME
def logme_reference(f, y, parity):
    """LogME from the paper, in float64 with an SVD of F (independent of the statistics)."""
    n, d = f.shape
    u, s, vt = np.linalg.svd(f, full_matrices=False)
    keep = s > 1e-10 if parity else s > s[0] * 1e-7
    u, sig = u[:, keep], s[keep] ** 2
    r = sig.size
    out = []
    for k in np.unique(y):
        yk = (y == k).astype(np.float64)
        x2 = (u.T @ yk) ** 2
        rx2 = yk @ yk - x2.sum()
        alpha, beta = 1.0, 1.0

        def terms(t, x2=x2, rx2=rx2):
            gamma = np.sum(sig / (sig + t))
            m2 = np.sum(sig * x2 / (t + sig) ** 2)
            res2 = np.sum(x2 * (t / (t + sig)) ** 2) + rx2
            return gamma, m2, res2

        for _ in range(11 if parity else 100000):
            t = alpha / beta
            gamma, m2, res2 = terms(t)
            eps = 1e-5 if parity else 0.0
            alpha, beta = gamma / (m2 + eps), (n - gamma) / (res2 + eps)
            if abs(alpha / beta - t) / t <= (1e-3 if parity else 1e-14):
                break
        if not parity:
            gamma, m2, res2 = terms(alpha / beta)
            alpha, beta = gamma / m2, (n - gamma) / res2
        dd = d if parity else r
        ev = (dd / 2 * np.log(alpha) + n / 2 * np.log(beta)
              - 0.5 * np.sum(np.log(alpha + beta * sig))
              - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
        out.append(ev / n)
    return float(np.mean(out))


@pytest.mark.parametrize("parity", [False, True])
def test_logme_matches_float64_fixed_point(parity):
    h, y = mixture(500, 10, 5, seed=2, offset=0.5, sep=0.7)
    ref = logme_reference(h, y, parity)
    got = transfer.logme(h, y, parity=parity)
    assert got == pytest.approx(ref, abs=1e-8, rel=1e-8)
    res = transfer.logme_from_stats(ec.CollapseStats(5, 10).update(h, y), parity=parity)
    assert res.rank == 10 and (res.converged or parity)
    assert res.per_class.shape == (5,)


def test_logme_rank_deficient_counts_zero_eigenvalues_in_log_alpha():
    h, y = mixture(400, 6, 3, seed=3, offset=0.2)
    h = np.hstack([h, h[:, :2] + h[:, 2:4]])  # rank 6 in 8 dimensions
    ref = logme_reference(h, y, parity=False)
    assert transfer.logme(h, y) == pytest.approx(ref, rel=1e-7)
    assert transfer.logme_from_stats(ec.CollapseStats(3, 8).update(h, y)).rank == 6


def test_logme_stream_merge_float32():
    h, y = mixture(900, 16, 6, seed=4, offset=4.0)
    h32 = h.astype(np.float32)
    whole = transfer.logme(h32.astype(np.float64), y)
    a = ec.CollapseStats(6, 16).update(h32[:300], y[:300])
    b = ec.CollapseStats(6, 16).update(h32[300:], y[300:])
    whole32 = transfer.logme(h32, y)  # float32 input: the scatter is formed in float32 GEMMs
    assert whole32 == pytest.approx(whole, rel=1e-5)
    assert a.merge(b).logme().value == pytest.approx(whole32, rel=1e-6)
    h64 = ec.CollapseStats(6, 16).update(h[:300], y[:300]).merge(
        ec.CollapseStats(6, 16).update(h[300:], y[300:]))
    assert h64.logme().value == pytest.approx(transfer.logme(h, y), rel=1e-10)


# ----------------------------------------------------------------------------- GBC, LEEP, NCE
def test_gbc_brute_force_and_streaming():
    h, y = mixture(400, 5, 4, seed=5, offset=1.0)
    ks = np.unique(y)
    mu = np.array([h[y == k].mean(0) for k in ks])
    var = np.array([h[y == k].var(0) for k in ks])
    ref = 0.0
    for a in range(ks.size):
        for b in range(ks.size):
            if a != b:
                v = (var[a] + var[b]) / 2
                db = np.sum((mu[a] - mu[b]) ** 2 / v) / 8 + 0.5 * np.sum(
                    np.log(v / np.sqrt(var[a] * var[b])))
                ref -= np.exp(-db)
    assert transfer.gbc(h, y) == pytest.approx(ref, rel=1e-9)
    xa = transfer.TransferabilityStats(4, 5).update(h[:150], y[:150])
    xb = transfer.TransferabilityStats(4, 5).update(h[150:], y[150:])
    assert xa.merge(xb).gbc() == pytest.approx(ref, rel=1e-9)
    blob = xa.to_bytes()
    assert transfer.TransferabilityStats.from_bytes(blob) == xa
    with pytest.raises(ec.CorruptDataError):
        transfer.TransferabilityStats.from_bytes(blob[:-5] + b"\0" * 5)


def test_leep_and_nce_brute_force():
    rng = np.random.default_rng(6)
    n, ks, kt = 300, 7, 4
    logits = rng.normal(size=(n, ks)) * 2
    theta = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, kt, size=n)
    joint = np.zeros((kt, ks))
    for i in range(n):
        joint[y[i]] += theta[i] / n
    cond = joint / joint.sum(0)
    ref = np.mean([np.log(sum(cond[y[i], z] * theta[i, z] for z in range(ks))) for i in range(n)])
    assert transfer.leep(theta, y) == pytest.approx(ref, rel=1e-12)
    assert transfer.leep(logits, y, logits=True) == pytest.approx(ref, rel=1e-12)
    z = theta.argmax(1)
    hard = np.zeros((kt, ks))
    for i in range(n):
        hard[y[i], z[i]] += 1.0 / n
    ref_nce = sum(hard[a, b] * np.log(hard[a, b] / hard[:, b].sum())
                  for a in range(kt) for b in range(ks) if hard[a, b] > 0)
    assert transfer.nce(theta, y) == pytest.approx(ref_nce, rel=1e-12)
    with pytest.raises(ec.ParameterError, match="logits=True"):
        transfer.leep(logits, y)


def test_ncti_components_match_sklearn_pca_lda():
    decomposition = pytest.importorskip("sklearn.decomposition")
    da = pytest.importorskip("sklearn.discriminant_analysis")
    h, y = mixture(500, 80, 5, seed=7, scale=0.05)  # small variances: shrinkage above its floor
    c = transfer.ncti_components(h, y)
    pca = decomposition.PCA(n_components=64)
    x = pca.fit_transform(h)
    s = max(np.exp(-pca.explained_variance_[:32].sum()), 1e-10)
    assert c.shrinkage == pytest.approx(s, rel=1e-9) and s > 1e-3
    lda = da.LinearDiscriminantAnalysis(solver="eigen", shrinkage=float(s))
    z = lda.fit_transform(x, y)
    z = z - z.mean(0)
    assert c.seli == pytest.approx(np.linalg.norm(z, ord="nuc"), rel=1e-6)
    post = lda.predict_proba(x)
    assert c.ncc == pytest.approx(post[np.arange(500), y].mean(), rel=1e-6)
    vc = np.log(sum(np.linalg.norm(post[y == k], ord="nuc") for k in range(5)))
    assert c.vc == pytest.approx(vc, rel=1e-6)
    comps = [c, transfer.ncti_components(h[:, :70], y), transfer.ncti_components(h * 2, y)]
    s3 = transfer.ncti(comps)
    assert s3.shape == (3,) and np.all(np.isfinite(s3))
    with pytest.raises(ec.ParameterError, match="at least 2"):
        transfer.ncti(comps[:1])


def test_cm_accuracy_brute_force():
    h, y = mixture(300, 6, 3, seed=8, offset=2.0)
    mu = np.array([h[y == k].mean(0) for k in range(3)])
    m = mu - mu.mean(0)
    pred = np.argmax(h @ m.T, axis=1)
    assert transfer.cm_accuracy(h, y) == pytest.approx(np.mean(pred == y))
    assert transfer.cm_accuracy(h, y, h[:50], y[:50], chunk_rows=7) == pytest.approx(
        np.mean(pred[:50] == y[:50]))


# ----------------------------------------------------------------------------- ridge path
def test_ridge_path_matches_direct_solves():
    h, y = mixture(400, 8, 4, seed=9, offset=3.0)
    hv, yv = mixture(100, 8, 4, seed=10, offset=3.0)
    st = ec.CollapseStats(4, 8).update(h, y)
    grid = [0.0, 1e-3, 0.1, 10.0]
    path = transfer.ridge_path(st, grid, val_features=hv, val_labels=yv)
    n = h.shape[0]
    onehot = np.eye(4)[y]
    x1 = np.hstack([h, np.ones((n, 1))])
    for i, lam in enumerate(grid):
        reg = np.diag([lam * n] * 8 + [0.0])
        sol = np.linalg.solve(x1.T @ x1 + reg, x1.T @ onehot)
        w, b = sol[:8], sol[8]
        mse = 0.5 * np.mean(np.sum((h @ w + b - onehot) ** 2, 1))
        assert path.train_mse[i] == pytest.approx(mse, rel=1e-9, abs=1e-12)
        out = hv @ w + b
        assert path.validation_accuracy[i] == pytest.approx(np.mean(out.argmax(1) == yv))
        wp, bp = path.weights(lam)
        np.testing.assert_allclose(wp, w, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(bp, b, rtol=1e-7, atol=1e-9)
    assert path.train_mse[0] == pytest.approx(float(st.probe_mse()), rel=1e-10)
    default = transfer.ridge_path(st)
    assert default.grid.size == 98 and np.all(np.diff(default.train_mse) >= -1e-15)


# ----------------------------------------------------------------------------- rank agreement
def test_weighted_tau_pearson_spearman_match_scipy():
    rng = np.random.default_rng(11)
    for m in (2, 3, 5, 11, 30):
        for _ in range(5):
            x, a = rng.normal(size=m), rng.normal(size=m)
            ref = scipy_stats.weightedtau(x, a).statistic
            assert transfer.weighted_kendall_tau(x, a) == pytest.approx(ref, abs=1e-12)
            assert transfer.pearson(x, a) == pytest.approx(scipy_stats.pearsonr(x, a)[0])
            assert transfer.spearman(x, a) == pytest.approx(scipy_stats.spearmanr(x, a)[0])
    x = np.array([1, 2, 2, 3, 3, 3, 0.5, 4.0])  # ties
    a = np.array([0.3, 0.2, 0.2, 0.9, 0.1, 0.5, 0.5, 0.7])
    assert transfer.weighted_kendall_tau(x, a) == pytest.approx(
        scipy_stats.weightedtau(x, a).statistic, abs=1e-12)
    assert transfer.spearman(x, a) == pytest.approx(scipy_stats.spearmanr(x, a)[0])
    with pytest.raises(ec.ParameterError, match="at least 2"):
        transfer.weighted_kendall_tau([1.0], [2.0])


def test_mlog_matches_xu_liu_appendix_c():
    accs = [.908, .9503, .5885, .6473, .7447, .931, .7545, .7714, .849, .6244]
    assert transfer.mlog(accs, 0.754) == pytest.approx(0.3250, abs=5e-4)
    rows = {  # Table 1 rows and Table 2 (pretrain accuracy, MLOG)
        "tau=0.2": ([91.52, 95.25, 57.5, 64.1, 74.41, 92.89, 75.41, 77.65, 85.58, 63.28],
                    76.64, 0.2704),
        "lambda=10": ([89.92, 83.6, 43.39, 43.55, 72.5, 91.43, 70.29, 73.76, 78.25, 56.9],
                      77.65, -0.2375),
    }
    for accs_pct, pre, ref in rows.values():
        got = transfer.mlog(np.array(accs_pct) / 100, pre / 100)
        assert got == pytest.approx(ref, abs=5e-4)
    rep = transfer.mlog_report({f"t{i}": a for i, a in enumerate(accs)}, 0.754)
    assert rep.mean_log_odds == pytest.approx(1.445, abs=5e-4) and "MLOG" in rep.table()
    for bad in ([0.5, 1.0], [90.8, 95.0], [0.0, 0.5]):
        with pytest.raises(ec.ParameterError, match="between 0 and 1"):
            transfer.mlog(bad, 0.5)
    with pytest.raises(ec.ParameterError):
        transfer.mlog([0.5], 75.4)


def test_rank_report_with_source_baseline():
    rep = transfer.rank_report(["a", "b", "c"], {"logme": [0.1, 0.3, 0.2], "vci": [0.5, 0.2, 0.3]},
                               [0.6, 0.8, 0.7], source_accuracies=[0.7, 0.75, 0.72])
    by = {a.score: a for a in rep.agreement}
    assert by["logme"].weighted_tau == pytest.approx(1.0)
    assert by["vci"].weighted_tau == pytest.approx(1.0) and by["vci"].direction == -1
    assert "source_accuracy" in by and "weighted τ" in rep.table()
    with pytest.raises(ec.ParameterError, match="at least 2 candidate"):
        transfer.rank_report(["a"], {"logme": [0.1]})
    rep2 = transfer.rank_report(["a", "b", "c"], {"logme": [0.3, 0.1, 0.2]}, [0.6, 0.8, 0.7])
    agg = transfer.aggregate_agreement([rep, rep2])
    assert agg["logme"]["weighted_tau"] == pytest.approx(
        0.5 * (1.0 + rep2.agreement[0].weighted_tau))
    assert agg["logme"]["targets"] == 2 and agg["vci"]["targets"] == 1


def test_all_scores_streaming_equals_in_memory():
    h, y = mixture(500, 70, 4, seed=12, offset=1.0, scale=0.1)
    s = transfer.all_scores(h, y)
    xs = transfer.TransferabilityStats(4, 70)
    for a in range(0, 500, 100):
        xs.update(h[a:a + 100], y[a:a + 100])
    assert xs.hscore() == pytest.approx(s["hscore"], rel=1e-9)
    assert float(xs.logme()) == pytest.approx(s["logme"], rel=1e-9)
    assert xs.regularized_hscore() == pytest.approx(s["regularized_hscore"], rel=1e-9)
    assert xs.gbc() == pytest.approx(s["gbc"], rel=1e-9)
    assert float(xs.collapse_stats.vci()) == pytest.approx(s["vci"], rel=1e-9)


def test_label_count_must_match_rows():
    theta = np.full((100, 3), 1.0 / 3.0)
    y = np.arange(90) % 4
    for fn in (transfer.leep, transfer.nce):
        with pytest.raises(ec.ShapeError, match="90 entries but there are 100 rows"):
            fn(theta, y)
    h, y100 = mixture(100, 4, 3, seed=13)
    with pytest.raises(ec.ShapeError, match="eval_labels"):
        transfer.cm_accuracy(h, y100, h[:50], y100[:40])


def test_score_errors_are_typed():
    h, y = mixture(100, 4, 3, seed=13)
    bad = h.copy()
    bad[5, 1] = np.inf
    for fn in (transfer.logme, transfer.hscore, transfer.gbc, transfer.regularized_hscore):
        with pytest.raises(ec.NonFiniteError, match="row 5, column 1"):
            fn(bad, y)
    with pytest.raises(ec.TooFewClassesError):
        transfer.logme(h, np.zeros(100, dtype=int))
    st = ec.CollapseStats(3, 4).update(h, y)
    with pytest.raises(ec.ShapeError, match="columns"):
        transfer.ridge_path(st, [0.0], val_features=h[:, :3], val_labels=y)
    with pytest.raises(ec.LabelError, match="without training samples"):
        transfer.ridge_path(st, [0.0], val_features=h[:3], val_labels=[0, 1, 9])
    with pytest.raises(ec.ParameterError, match="grid"):
        transfer.ridge_path(st, [-1.0])
    xs = transfer.TransferabilityStats(3, 4).update(h, y)
    before = xs.to_bytes()
    with pytest.raises(ec.LabelError):
        xs.update(h[:10], np.full(10, 7))
    assert xs.to_bytes() == before  # a failed update changes nothing
    with pytest.raises(ec.IncompatibleStatsError):
        xs.merge(transfer.TransferabilityStats(3, 5))


# ----------------------------------------------------------------------------- precision, N < p
def test_float32_default_threshold_follows_input_precision():
    rng = np.random.default_rng(21)
    n, p, r = 600, 64, 20
    h = (rng.normal(size=(n, r)) @ rng.normal(size=(r, p)) + 3.0).astype(np.float32)
    y = rng.integers(0, 4, size=n)
    y[:4] = np.arange(4)
    st = ec.CollapseStats(4, p).update(h, y)
    # independent reference: the float64 geometry of the same float32 values has rank r
    sigma_t, sigma_b = geometry(h.astype(np.float64), y)
    assert np.linalg.matrix_rank(sigma_t, tol=1e-6 * np.linalg.eigvalsh(sigma_t)[-1]) == r
    v = st.vci()  # the core's metric: its pinv follows the float32 precision (rank r)
    assert v.rank == r
    assert transfer.hscore_from_stats(st) == pytest.approx(v.normalizer * (1 - v.value), rel=1e-9)
    path = transfer.ridge_path(st, [0.0])
    assert path.rank == r
    assert path.train_mse[0] == pytest.approx(float(st.probe_mse()), rel=1e-9, abs=1e-12)
    assert transfer.logme_from_stats(st).rank <= r + 1  # FᵀF: the offset adds one direction


def logme_parity_svd_reference(h, y):
    """The reference code's N ≤ D route: thin SVD of F (float64), σ = s², drop s ≤ 1e-10."""
    n, d = h.shape
    u, s, vt = np.linalg.svd(h, full_matrices=False)
    keep = s > 1e-10
    sig, u = s[keep] ** 2, u[:, keep]
    out = []
    for k in np.unique(y):
        yk = (y == k).astype(np.float64)
        x = u.T @ yk
        x2 = x ** 2
        res_x2 = yk @ yk - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = np.sum(sig / (sig + t))
            m2 = np.sum(sig * x2 / (t + sig) ** 2)
            res2 = np.sum(x2 / (1 + sig / t) ** 2) + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta)
              - 0.5 * np.sum(np.log(alpha + beta * sig))
              - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
        out.append(ev / n)
    return float(np.mean(out))


def test_logme_parity_with_fewer_samples_than_dimensions():
    h, y = mixture(50, 200, 5, seed=22, offset=0.3)
    res = transfer.logme_from_stats(ec.CollapseStats(5, 200).update(h, y), parity=True)
    assert res.rank == 50
    assert res.value == pytest.approx(logme_parity_svd_reference(h, y), rel=1e-6)
    with pytest.raises(ec.NumericalError, match="parity=True"):
        transfer.logme(h, y)  # default mode: unbounded evidence when rank(F) ≥ N


def test_score_parameters_are_validated():
    h, y = mixture(120, 5, 3, seed=23)
    for kw in ({"rtol": -1.0}, {"rank": 0}, {"rank": -1}, {"rtol": "x"}):
        with pytest.raises(ec.ParameterError):
            transfer.hscore(h, y, **kw)
    with pytest.raises(ec.ParameterError):
        transfer.regularized_hscore(h, y, rtol=-1.0)
    for kw in ({"max_iter": -1}, {"max_iter": 0}, {"tol": -1.0}, {"rtol": -1.0}):
        with pytest.raises(ec.ParameterError):
            transfer.logme(h, y, **kw)


def test_logme_float32_cut_is_relative_to_the_centred_spectrum():
    """float32 features with an offset large against their spread (as at benchmark scale): the
    mean direction inflates λ_max(FᵀF), and a cut relative to it would drop real directions. The
    cut follows the centred scatter, so LogME equals the float64 fixed point on the same
    (float32-rounded) features."""
    h, y = mixture(4000, 256, 20, seed=7, offset=30.0, sep=0.3)
    h32 = h.astype(np.float32)
    ref = logme_reference(h32.astype(np.float64), y, parity=False)
    res = transfer.logme_from_stats(ec.CollapseStats(20, 256).update(h32, y))
    assert res.rank == 256
    assert res.value == pytest.approx(ref, rel=1e-6)


def test_rank_table_shows_the_direction_of_each_score():
    rep = transfer.rank_report(["a", "b", "c"], {"logme": [0.1, 0.3, 0.2], "vci": [0.5, 0.2, 0.3]},
                               [0.6, 0.8, 0.7])
    assert "direction" in rep.table()
    agreement = [r for r in rep.table().splitlines() if r.startswith("vci ") and "flipped" in r]
    assert len(agreement) == 1 and "lower is better" in agreement[0]
    logme = [r for r in rep.table().splitlines() if r.startswith("logme ") and "better" in r]
    assert len(logme) == 1 and "higher is better" in logme[0]
