"""Linear probe against scikit-learn on the same objective, split and λ."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import etfcore as ec

torch = pytest.importorskip("torch")
sklearn_lm = pytest.importorskip("sklearn.linear_model")

from etfcore import transfer  # noqa: E402


def mixture(n, p, k, seed, sep=1.0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, p)) * sep
    y = np.arange(n) % k
    return means[y] + rng.normal(size=(n, p)), y


def test_import_transfer_does_not_import_torch():
    code = "import sys, etfcore.transfer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("lam", [1e-3, 1e-1, 10.0])
def test_single_fit_matches_sklearn(lam):
    x, y = mixture(240, 6, 4, seed=1)
    w, b, _, ok = transfer.fit_logistic(x, y, lam, tol=1e-7)
    m = sklearn_lm.LogisticRegression(C=1.0 / (lam * x.shape[0]), tol=1e-12, max_iter=10000)
    m.fit(x, y)
    assert ok
    scale = max(1.0, np.abs(m.coef_).max())
    np.testing.assert_allclose(w, m.coef_, atol=3e-6 * scale)
    np.testing.assert_allclose(b, m.intercept_ - m.intercept_.mean(), atol=3e-6 * scale)


@pytest.mark.parametrize("lam", [1e-2, 1.0])
def test_two_classes_match_sklearn_binary_at_c_2_over_lam_n(lam):
    # scikit-learn fits one binary logit w for K = 2; the softmax pair is (-w/2, +w/2), and the
    # penalty (λ/2)(‖w/2‖² + ‖w/2‖²) = (λ/4)‖w‖² makes C = 2/(λN)
    x, y = mixture(200, 5, 2, seed=3, sep=0.7)
    w, b, _, ok = transfer.fit_logistic(x, y, lam, tol=1e-7)
    m = sklearn_lm.LogisticRegression(C=2.0 / (lam * x.shape[0]), tol=1e-12, max_iter=10000)
    m.fit(x, y)
    assert ok
    scale = max(1.0, np.abs(m.coef_).max())
    np.testing.assert_allclose(w[1] - w[0], m.coef_[0], atol=3e-6 * scale)
    np.testing.assert_allclose(w[0] + w[1], 0.0, atol=3e-6 * scale)
    np.testing.assert_allclose(b[1] - b[0], m.intercept_[0], atol=3e-6 * scale)


def test_streamed_chunks_equal_resident():
    x, y = mixture(300, 5, 3, seed=2)
    w1, b1, _, _ = transfer.fit_logistic(x, y, 0.05, tol=1e-7)
    w2, b2, _, _ = transfer.fit_logistic(x, y, 0.05, tol=1e-7, chunk_rows=37)
    np.testing.assert_allclose(w1, w2, atol=1e-7)
    np.testing.assert_allclose(b1, b2, atol=1e-7)


def test_probe_sweep_matches_sklearn_on_same_split():
    x, y = mixture(400, 6, 4, seed=3, sep=0.6)
    xtr, ytr, xte, yte = x[:300], y[:300], x[300:], y[300:]
    grid = np.logspace(-4, 1, 6)
    r = transfer.linear_probe(xtr, ytr, xte, yte, seed=5, grid=grid, dtype="float64", tol=1e-7)
    mask = transfer.stratified_split(ytr, 0.2, seed=5)
    mean = xtr.mean(0)
    curve = []
    for lam in grid:
        xs = xtr[~mask] - mean
        m = sklearn_lm.LogisticRegression(C=1.0 / (lam * xs.shape[0]), tol=1e-12, max_iter=10000)
        m.fit(xs, ytr[~mask])
        curve.append((m.predict(xtr[mask] - mean) == ytr[mask]).mean())
    np.testing.assert_allclose(r.validation_curve, curve)
    best = int(np.flatnonzero(np.array(curve) == max(curve))[0])  # ties: the weakest λ
    assert r.l2 == grid[best] and r.l2_index == best
    m = sklearn_lm.LogisticRegression(C=1.0 / (grid[best] * 300), tol=1e-12, max_iter=10000)
    m.fit(xtr - mean, ytr)
    pred = m.predict(xte - mean)
    assert r.top1 == pytest.approx((pred == yte).mean())
    per = [(pred[yte == k] == k).mean() for k in range(4)]
    np.testing.assert_allclose(r.per_class_accuracy, per)
    assert r.mean_per_class == pytest.approx(np.mean(per))
    assert r.converged.all() and r.refit_converged
    assert r.iterations.shape == (6,) and r.device == "cpu" and r.dtype == "float64"


def test_probe_kfold_matches_sklearn_fold_by_fold():
    x, y = mixture(330, 5, 3, seed=8, sep=0.5)
    xtr, ytr, xte, yte = x[:270], y[:270], x[270:], y[270:]
    grid = np.logspace(-3, 1, 5)
    kw = dict(grid=grid, dtype="float64", tol=1e-7, cv=3)
    r = transfer.linear_probe(xtr, ytr, xte, yte, seed=2, **kw)
    fold = ec.splits.stratified_folds(ytr, 3, seed=2)
    mean = xtr.mean(0)
    want = np.empty((3, grid.size))
    for f in range(3):
        tr, va = fold != f, fold == f
        for j, lam in enumerate(grid):
            m = sklearn_lm.LogisticRegression(C=1.0 / (lam * tr.sum()), tol=1e-12, max_iter=10000)
            m.fit(xtr[tr] - mean, ytr[tr])
            want[f, j] = (m.predict(xtr[va] - mean) == ytr[va]).mean()
    np.testing.assert_allclose(r.fold_curves, want)
    np.testing.assert_allclose(r.validation_curve, want.mean(0))
    assert r.l2_index == int(np.flatnonzero(want.mean(0) == want.mean(0).max())[0])
    assert r.cv == 3 and r.num_val == 270 and r.to_dict()["fold_curves"] == want.tolist()
    again = transfer.linear_probe(xtr, ytr, xte, yte, seed=2, **kw)  # seeded: the same folds
    np.testing.assert_array_equal(again.fold_curves, r.fold_curves)
    other = transfer.linear_probe(xtr, ytr, xte, yte, seed=3, **kw)
    assert not np.array_equal(other.fold_curves, r.fold_curves)
    single = transfer.linear_probe(xtr, ytr, xte, yte, seed=2, grid=grid)
    assert single.cv is None and single.fold_curves is None and single.num_val == 54


def test_stratified_folds_are_balanced_seeded_and_checked():
    y = np.repeat([3, 5, 9], [7, 11, 5])
    f = ec.splits.stratified_folds(y, 5, seed=0)
    for c in (3, 5, 9):
        counts = np.bincount(f[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    sizes = np.bincount(f, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    np.testing.assert_array_equal(f, ec.splits.stratified_folds(y, 5, seed=0))
    assert not np.array_equal(f, ec.splits.stratified_folds(y, 5, seed=1))
    with pytest.raises(ec.LabelError, match="class 9 has 5"):
        ec.splits.stratified_folds(y, 6, seed=0)
    with pytest.raises(ec.ParameterError, match="2 folds"):
        ec.splits.stratified_folds(y, 1, seed=0)


def test_ties_take_the_weakest_regularisation():
    """Well-separated classes: validation accuracy is 1 on a whole plateau of the grid; the
    documented rule takes its weakest end (the smallest λ), not its strongest."""
    x, y = mixture(240, 4, 3, seed=6, sep=6.0)
    grid = np.logspace(-4, 1, 11)
    for cv in (None, 4):
        r = transfer.linear_probe(x[:180], y[:180], x[180:], y[180:], seed=0, grid=grid, cv=cv)
        tied = np.flatnonzero(r.validation_curve == r.validation_curve.max())
        assert tied.size >= 3, r.validation_curve  # the situation the rule is for
        assert r.l2_index == tied[0] and r.l2 == grid[tied[0]]
    assert transfer.select_strength([0.5, 0.9, 0.9, 0.7]) == 1


def test_probe_default_grid_memmap_stream_and_labels(tmp_path):
    x, y = mixture(260, 4, 3, seed=4, sep=0.8)
    y = np.array([10, 20, 30])[y]  # arbitrary integer labels
    path = tmp_path / "f.npy"
    np.save(path, x.astype(np.float32))
    mm = np.load(path, mmap_mode="r")
    r0 = transfer.linear_probe(mm[:200], y[:200], mm[200:], y[200:], seed=0)
    assert r0.grid.size == 97 and r0.validation_curve.shape == (97,)
    assert r0.grid[0] == pytest.approx(1e-6) and r0.grid[-1] == pytest.approx(1e6)
    assert r0.dtype == "float32" and r0.top1 > 0.5
    grid = np.logspace(-2, 2, 9)
    kw = dict(seed=0, dtype="float64", tol=1e-7, grid=grid)
    r1 = transfer.linear_probe(mm[:200], y[:200], mm[200:], y[200:], **kw)
    r2 = transfer.linear_probe(mm[:200], y[:200], mm[200:], y[200:], chunk_rows=23, **kw)
    np.testing.assert_array_equal(r1.classes, [10, 20, 30])
    np.testing.assert_allclose(r1.validation_curve, r2.validation_curve)
    assert r1.l2 == r2.l2 and r1.top1 == r2.top1
    np.testing.assert_allclose(r1.weight, r2.weight, atol=1e-5)
    tx = torch.from_numpy(np.array(mm))
    r3 = transfer.linear_probe(tx[:200], torch.from_numpy(y[:200]), tx[200:], y[200:], **kw)
    assert r3.l2 == r1.l2 and r3.top1 == r1.top1
    assert isinstance(r1.to_dict()["validation_curve"], list)


def test_probe_errors():
    x, y = mixture(100, 4, 2, seed=5)
    with pytest.raises(ec.ShapeError, match="columns"):
        transfer.linear_probe(x, y, x[:, :3], y, seed=0)
    with pytest.raises(ec.LabelError, match="never seen"):
        transfer.linear_probe(x, y, x, y + 1, seed=0)
    yy = y.copy()
    yy[0] = 7  # a class with a single sample cannot be split
    with pytest.raises(ec.LabelError, match="class 7"):
        transfer.linear_probe(x, yy, x, y, seed=0)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ec.NonFiniteError, match="row 3, column 2"):
        transfer.linear_probe(bad, y, x, y, seed=0)
    for grid in ([1.0, 0.0], [], [1.0, np.inf]):
        with pytest.raises(ec.ParameterError, match="grid"):
            transfer.linear_probe(x, y, x, y, seed=0, grid=grid)
    with pytest.raises(ec.TooFewClassesError):
        transfer.linear_probe(x, np.zeros(100, dtype=int), x, np.zeros(100, dtype=int), seed=0)


def test_probe_without_torch_says_how_to_install():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from etfcore import transfer\n"
        "print(transfer.logme(np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2))\n"
        "try:\n"
        "    transfer.linear_probe(\n"
        "        np.zeros((4, 2)), [0, 1, 0, 1], np.zeros((2, 2)), [0, 1], seed=0\n"
        "    )\n"
        "except ImportError as e:\n"
        "    print('ImportError:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "ImportError: etfcore.transfer.linear_probe needs PyTorch" in out.stdout


def test_cli_probe_takes_cv(tmp_path, capsys):
    from etfcore.cli import main

    x, y = mixture(200, 4, 2, seed=9, sep=2.0)
    paths = {}
    for name, arr in [("ftr", x[:150]), ("ytr", y[:150]), ("fte", x[150:]), ("yte", y[150:])]:
        paths[name] = str(tmp_path / f"{name}.npy")
        np.save(paths[name], arr)
    args = ["probe", "--train", paths["ftr"], paths["ytr"], "--test", paths["fte"], paths["yte"],
            "--device", "cpu", "--json"]
    assert main(args + ["--cv", "3"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["cv"] == 3 and len(out["fold_curves"]) == 3 and out["num_val"] == 150
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["cv"] is None
