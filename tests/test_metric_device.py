"""The device path of CollapseMetrics: chunk products in the input precision accumulated in
float64, checks on the device with a device-side commit, failures raised at compute/sync.

Runs on the CPU with ``checks="deferred", products="input"`` (what a GPU gets by default);
the CUDA tests skip without a GPU."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchmetrics")

import etfcore as ec  # noqa: E402
from etfcore.training import CollapseMetrics, TorchCollapseStats  # noqa: E402
from etfcore.training import metric as metric_mod  # noqa: E402


def cuda(test):
    """A CUDA test: selected by ``pytest -m cuda`` (benches/gpu_check.py), skipped without CUDA."""
    skip = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    return pytest.mark.cuda(skip(test))
DEVICE = dict(checks="deferred", products="input")


def within_f64(X, y, k):
    """Plain float64 numpy: Σ_W (weighted, population) of X."""
    X = np.asarray(X, dtype=np.float64)
    return sum(np.cov(X[y == c].T, bias=True) * (y == c).sum() for c in range(k)) / len(y)


def states(m):
    return {name: getattr(m, name).clone() for name in m._defaults}


def assert_states_equal(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_float32_products_match_float64_numpy_with_a_large_offset():
    H, y = ec.data.gaussian_mixture(5, 16, 400, seed=3)
    X = (H + 1e4).astype(np.float32)  # the data the metric sees
    m = CollapseMetrics(5, 16, **DEVICE)
    for i in range(0, len(y), 300):
        m.update(torch.from_numpy(X[i : i + 300]), torch.from_numpy(y[i : i + 300]))
    ref = within_f64(X, y, 5)
    got = m.to_core().within_class_covariance()
    err = np.abs(got - ref).max() / np.abs(ref).max()
    # float32 rounding of the products (as the core's own float32 pass: ~1e-6 here), far
    # from TF32's or half precision's ~1e-3
    assert err < 1e-5, err
    # the default shift is the first batch's mean rounded to float32 (h - c formed exactly)
    c = m.shift.numpy()
    assert np.array_equal(c, c.astype(np.float32).astype(np.float64))
    # float64 products on the same float32 data: float64 accuracy
    m64 = CollapseMetrics(5, 16, checks="deferred", products="float64")
    m64.update(torch.from_numpy(X), torch.from_numpy(y))
    got64 = m64.to_core().within_class_covariance()
    assert np.abs(got64 - ref).max() / np.abs(ref).max() < 1e-10
    assert m.to_core().precision == m64.to_core().precision == "float32"


def test_chunked_products_and_a_shift_that_float32_cannot_hold(monkeypatch):
    """Several chunks per batch; a fixed shift off the float32 grid is re-expressed exactly."""
    monkeypatch.setattr(metric_mod, "CHUNK_ROWS", 64)
    H, y = ec.data.gaussian_mixture(4, 12, 150, seed=5)
    X = (H + 300.0).astype(np.float32)
    shift = X.astype(np.float64).mean(0) + 0.123456789  # not a float32 value
    m = CollapseMetrics(4, 12, shift=shift, **DEVICE)
    m.update(torch.from_numpy(X), torch.from_numpy(y))
    core = m.to_core()
    Xd = X.astype(np.float64)
    ref = within_f64(Xd, y, 4)
    assert np.abs(core.within_class_covariance() - ref).max() / np.abs(ref).max() < 1e-6
    assert np.array_equal(m.shift.numpy(), shift)
    sums = np.stack([(Xd[y == c] - shift).sum(0) for c in range(4)])
    np.testing.assert_allclose(m.class_sums.numpy(), sums, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(core.global_mean(), Xd.mean(0), rtol=1e-12)


def test_half_precision_features_use_float32_products():
    H, y = ec.data.gaussian_mixture(3, 8, 200, seed=1, offset=4.0)
    Xb = torch.from_numpy(H).to(torch.bfloat16)
    m = CollapseMetrics(3, 8, **DEVICE)
    m.update(Xb, torch.from_numpy(y))
    ref = within_f64(Xb.to(torch.float64).numpy(), y, 3)
    got = m.to_core().within_class_covariance()
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-5


def test_bad_batch_leaves_the_state_unchanged_and_compute_names_it():
    H, y = ec.data.gaussian_mixture(4, 6, 50, seed=0, offset=20.0)
    X, yt = torch.from_numpy(H).float(), torch.from_numpy(y)
    m = CollapseMetrics(4, 6, **DEVICE)
    m.update(X[:100], yt[:100])
    m.update(X[100:150], yt[100:150])
    before = states(m)
    bad_labels = yt[:10].clone()
    bad_labels[3] = 7
    m.update(X[:10], bad_labels)  # batch 2: no exception here, nothing added
    assert_states_equal(states(m), {**before, "failure": m.failure})
    assert m.failure.tolist()[:4] == [2, 1, 0, 7]
    nan = X[:10].clone()
    nan[4, 5] = float("nan")
    m.update(nan, yt[:10])  # batch 3: skipped too; the first failure stays recorded
    assert_states_equal(states(m), {**before, "failure": m.failure})
    with pytest.raises(
        ec.LabelError, match=r"batch 2: labels must lie in 0\.\.3, got range \[0, 7\]"
    ):
        m.compute()
    with pytest.raises(ec.LabelError, match="batch 2"):
        m.to_core()
    m.reset()
    m.update(nan, yt[:10])
    with pytest.raises(ec.NonFiniteError, match="batch 0: .* row 4, column 5"):
        m.compute()
    m.reset()  # a reset metric works
    m.update(X, yt)
    ref = ec.CollapseStats(4, 6).update(X.numpy(), y)
    assert m.compute()["vci"] == pytest.approx(ref.vci().value, rel=1e-6)
    fresh = CollapseMetrics(4, 6, **DEVICE)  # and so does a fresh one
    fresh.update(X, yt)
    assert fresh.compute()["nc1"] == pytest.approx(ref.nc1().value, rel=1e-5)


def test_a_skipped_batch_equals_never_seeing_it():
    H, y = ec.data.gaussian_mixture(3, 5, 40, seed=2, offset=3.0)
    X, yt = torch.from_numpy(H).float(), torch.from_numpy(y)
    inf = X[:7].clone()
    inf[0, 0] = float("inf")
    a, b = CollapseMetrics(3, 5, **DEVICE), CollapseMetrics(3, 5, **DEVICE)
    a.update(inf, yt[:7])  # first batch bad: it sets neither the shift nor the sums
    a.update(X, yt)
    b.update(X, yt)
    for name in ("counts", "class_sums", "scatter", "shift", "coarse_batches"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    with pytest.raises(ec.NonFiniteError, match="batch 0"):
        a.compute()
    b.compute()


def test_update_reads_nothing_back_from_the_device(monkeypatch):
    """Deferred checks: no Python-level host read (item/tolist/bool/int/float) in update."""
    H, y = ec.data.gaussian_mixture(3, 4, 20, seed=0)
    m = CollapseMetrics(3, 4, **DEVICE)

    def forbidden(*args, **kwargs):
        raise AssertionError("host synchronisation in update")

    with monkeypatch.context() as mp:
        for name in ("item", "tolist", "__bool__", "__int__", "__float__", "nonzero", "numpy"):
            mp.setattr(torch.Tensor, name, forbidden)
        m.update(torch.from_numpy(H).float(), torch.from_numpy(y))
        m.update(torch.from_numpy(H).float(), torch.from_numpy(y) + 5)
    assert int(m.counts.sum()) == 60
    with pytest.raises(ec.LabelError, match="batch 1"):
        m.compute()


def test_eager_checks_raise_in_update_and_keep_the_state():
    m = CollapseMetrics(3, 4, checks="eager", products="input")
    m.update(torch.randn(9, 4), torch.arange(9) % 3)
    before = states(m)
    with pytest.raises(ec.LabelError, match=r"batch 1: .*range \[-1, 2\]"):
        m.update(torch.randn(3, 4), torch.tensor([0, -1, 2]))
    assert_states_equal(states(m), before)
    m.compute()


def test_forward_and_merge_keep_the_failure_and_the_states():
    H, y = ec.data.gaussian_mixture(3, 4, 30, seed=4, offset=2.0)
    X, yt = torch.from_numpy(H).float(), torch.from_numpy(y)
    m = CollapseMetrics(3, 4, **DEVICE)
    m(X[:40], yt[:40])
    before = states(m)
    with pytest.raises(ec.LabelError, match="batch 1"):
        m(X[:5], torch.tensor([0, 1, 2, 3, 0]))  # forward computes the batch value: it raises
    assert_states_equal(states(m), before)
    other = CollapseMetrics(3, 4, **DEVICE)
    other.update(X[40:], yt[40:])
    other.update(X[:3] * float("nan"), yt[:3])
    m.merge_state(other)
    with pytest.raises(ec.NonFiniteError, match="batch 1"):
        m.compute()


def test_sync_raises_the_recorded_failure_without_distribution():
    t = TorchCollapseStats(3, 4)
    t.checks = "deferred"
    t.update(torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 3]))
    with pytest.raises(ec.LabelError, match="batch 0"):
        t.sync()


def test_options_are_validated():
    with pytest.raises(ec.ParameterError, match="products"):
        CollapseMetrics(3, 4, products="float16")
    with pytest.raises(ec.ParameterError, match="checks"):
        CollapseMetrics(3, 4, checks="never")


@cuda
def test_cuda_float32_products_defer_checks_and_keep_tf32_off():
    H, y = ec.data.gaussian_mixture(5, 64, 400, seed=0, offset=1e3)
    X = H.astype(np.float32)
    m = CollapseMetrics(5, 64).to("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True  # a global setting the metric must not use
    try:
        m.update(torch.from_numpy(X).cuda(), torch.from_numpy(y).cuda())
        assert torch.backends.cuda.matmul.allow_tf32  # restored
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False
    ref = within_f64(X, y, 5)
    got = m.to_core().within_class_covariance()
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-5
    before = states(m)
    m.update(torch.from_numpy(X[:4]).cuda(), torch.tensor([0, 1, 9, 2], device="cuda"))
    assert_states_equal(
        {k: v for k, v in states(m).items() if k != "failure"},
        {k: v for k, v in before.items() if k != "failure"},
    )
    with pytest.raises(ec.LabelError, match="batch 1"):
        m.compute()
