"""Hostile use of the core API: threads, copies and pickling, absurd sizes, crafted blobs, overflow,
degenerate geometry, untyped arguments, bad classifiers, precision-aware thresholds.

Every assertion below failed (or crashed the interpreter) before the hardening of the core."""

from __future__ import annotations

import copy
import json
import multiprocessing
import pickle
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest

import etfcore as ec
from etfcore import rf


def _mixture(n=300, p=8, k=4, seed=0, offset=0.0, dtype=np.float64):
    H, y = ec.data.gaussian_mixture(k, p, n // k, seed=seed, offset=offset)
    return H.astype(dtype), y


def _stats(H, y, k=None, **kw):
    k = int(y.max()) + 1 if k is None else k
    return ec.CollapseStats(k, H.shape[1], **kw).update(H, y)


# ----------------------------------------------------------------------------- threads, copies


def test_one_object_updated_from_many_threads_keeps_every_batch():
    H, y = _mixture(n=4000, p=16, k=4)
    order = np.random.default_rng(0).permutation(len(y))
    H, y = H[order], y[order]
    batches = [(H[i : i + 100], y[i : i + 100]) for i in range(0, 4000, 100)]
    s = ec.CollapseStats(4, 16)
    errors = []

    def work(part):
        try:
            for h, lab in part:
                s.update(h, lab)
                s.vci()  # metrics read concurrently with updates
        except Exception as e:  # pragma: no cover - the failure being tested
            errors.append(e)

    threads = [threading.Thread(target=work, args=(batches[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    one = _stats(H, y)
    assert s.num_samples == 4000
    np.testing.assert_array_equal(s.class_counts, one.class_counts)
    np.testing.assert_allclose(s.total_covariance(), one.total_covariance(), rtol=1e-9, atol=1e-12)


def test_two_objects_merging_into_each_other_from_two_threads():
    H, y = _mixture()
    a, b = _stats(H, y), _stats(H[::2], y[::2])
    na, nb = a.num_samples, b.num_samples
    ta = threading.Thread(target=lambda: [a.merge(b) for _ in range(20)])
    tb = threading.Thread(target=lambda: [b.merge(a) for _ in range(20)])
    ta.start(), tb.start()
    ta.join(timeout=60), tb.join(timeout=60)
    assert not ta.is_alive() and not tb.is_alive()  # no deadlock
    assert a.num_samples >= na + 20 * nb and b.num_samples >= nb + 20 * na


def test_cached_geometry_follows_every_mutation():
    H, y = _mixture()
    s = _stats(H[:100], y[:100], k=4)
    first = (s.vci().value, s.class_means().copy())
    s.update(H[100:], y[100:])
    assert s.vci().value == pytest.approx(_stats(H, y).vci().value, rel=1e-10)
    assert s.vci().value != pytest.approx(first[0], rel=1e-3)
    assert not np.allclose(s.class_means(), first[1])
    s.reshift(np.zeros(H.shape[1]))
    assert s.vci() == pytest.approx(_stats(H, y).vci(), rel=1e-10)


def test_merge_with_itself_doubles():
    H, y = _mixture()
    s = _stats(H, y)
    twice = _stats(H, y).update(H, y)
    s.merge(s)
    np.testing.assert_array_equal(s.class_counts, twice.class_counts)
    np.testing.assert_allclose(s.scatter, twice.scatter, rtol=1e-10)
    s += s
    assert s.num_samples == 4 * len(y)


def test_copy_deepcopy_and_pickle_have_value_semantics():
    H, y = _mixture()
    s = _stats(H, y)
    for clone in (copy.copy(s), copy.deepcopy(s), s.copy(), pickle.loads(pickle.dumps(s))):
        assert clone == s and clone is not s
        clone.update(H[:10], y[:10])
        assert clone.num_samples == s.num_samples + 10
    assert s.num_samples == len(y)


def _worker_stats(seed):
    H, y = ec.data.gaussian_mixture(3, 5, 50, seed=seed)
    return ec.CollapseStats(3, 5).update(H, y)


def test_statistics_return_from_a_worker_process():
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        parts = pool.map(_worker_stats, [1, 2])
    total = parts[0].merge(parts[1])
    ref = _worker_stats(1).merge(_worker_stats(2))
    assert total == ref


# ----------------------------------------------------------------------------- results as floats


def test_pinv_results_behave_as_floats():
    H, y = _mixture()
    v = _stats(H, y).vci()
    assert isinstance(v, float)
    assert round(v, 3) == round(v.value, 3)
    assert f"{v:.4f}" == f"{v.value:.4f}"
    assert 0.0 <= v <= 1.0 and v == v.value and v < 2
    assert json.loads(json.dumps({"vci": v}))["vci"] == v.value
    assert v.rank == 8 and v.method in ("eigh", "cholesky") and v.normalizer == 3
    back = pickle.loads(pickle.dumps(v))
    assert back == v and back.rank == v.rank
    with pytest.raises(AttributeError):
        v.rank = 2


def test_metrics_reuse_one_report():
    H, y = _mixture(p=6, k=3)
    s = _stats(H, y, track_class_scatter=True)
    W = ec.etf(3, 6, seed=0)
    for w in ("weighted", "balanced"):
        m = s.metrics(w, classifier=W)
        assert m["vci"] == s.vci(w).value and m["nc1"] == s.nc1(w).value
        assert m["probe_mse"] == s.probe_mse().value
        assert m["cdnv"] == s.cdnv(w) and m["nc3"] == s.nc3(W, w)[0]
        assert m["precision"] == "float64"


# ----------------------------------------------------------------------------- absurd sizes


@pytest.mark.parametrize(
    "call",
    [
        lambda: ec.etf(3, 2**29),
        lambda: ec.orthogonal_frame(2, 2**30),
        lambda: ec.etf(2**40, 2**40),
        lambda: rf.projection(1, 2**30, seed=0),
        lambda: rf.projection(2**62, 2**10, seed=0),
        lambda: rf.kernel(np.ones((4, 3)), "relu", num_features=2**62, seed=0),
        lambda: ec.CollapseStats(2**62, 2**62),
        lambda: rf.expected_kernel(np.ones((2, 2)) / 2, "tanh", method="series", order=10**6),
    ],
)
def test_absurd_sizes_are_refused_up_front(call):
    with pytest.raises(ec.EtfcoreError):
        call()


def test_absurd_projection_does_not_abort_the_interpreter():
    code = (
        "import etfcore as ec\nfrom etfcore import rf\n"
        "try:\n    rf.projection(1, 2**30, seed=0)\nexcept ec.DimensionError:\n    print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-500:]


# ----------------------------------------------------------------------------- crafted blobs


def _fnv(b: bytes) -> int:
    h = 0xCBF29CE484222325
    for x in b:
        h = ((h ^ x) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _blob(version, flags, k, p, body):
    head = b"ETFCSTAT" + struct.pack("<IIQQ", version, flags, k, p) + body
    return head + struct.pack("<Q", _fnv(head))


@pytest.mark.parametrize("k,p", [(2**32, 2**24), (2**64 - 1, 2**64 - 1), (3, 2**40)])
def test_blobs_with_wrapping_headers_are_corrupt(k, p):
    with pytest.raises(ec.CorruptDataError):
        ec.CollapseStats.from_bytes(_blob(2, 3, k, p, b"\0" * 64))


def test_blob_whose_counts_wrap_is_corrupt():
    H, y = _mixture(n=8, p=1, k=2)
    b = bytearray(_stats(H, y).to_bytes())
    b[40:56] = struct.pack("<QQ", 2**64 - 1, 2)  # counts after the 32-byte header and shift
    b[-8:] = struct.pack("<Q", _fnv(bytes(b[:-8])))
    with pytest.raises(ec.CorruptDataError):
        ec.CollapseStats.from_bytes(bytes(b))


def test_version_1_blob_reads_as_float64():
    H, y = _mixture(p=3, k=2, dtype=np.float32)
    s = _stats(H, y)
    assert s.precision == "float32"
    b = s.to_bytes()
    flags = struct.unpack("<I", b[12:16])[0] & ~4
    v1 = _blob(1, flags, 2, 3, b[32:-8])
    old = ec.CollapseStats.from_bytes(v1)
    assert old.precision == "float64"
    np.testing.assert_array_equal(old.scatter, s.scatter)
    assert ec.CollapseStats.from_bytes(b) == s


# ----------------------------------------------------------------------------- overflow, degeneracy


def test_float64_squares_that_overflow_are_refused_and_leave_state():
    H, y = _mixture(p=3, k=2)
    s = _stats(H, y)
    before = s.copy()
    with pytest.raises(ec.NumericalError, match="overflow"):
        s.update(H * 1e200, y)
    assert s == before


@pytest.mark.parametrize("scale", [1e18, 1e20, 3e38])
def test_float32_products_that_overflow_are_computed_in_float64(scale):
    H, y = _mixture(p=3, k=2)
    h32 = np.clip(H / np.abs(H).max() * scale, -3.4e38, 3.4e38).astype(np.float32)
    s = _stats(h32, y)
    ref = _stats(h32.astype(np.float64), y)
    assert np.isfinite(s.scatter).all()
    np.testing.assert_allclose(s.total_covariance(), ref.total_covariance(), rtol=1e-6)


def test_identical_class_means_are_degenerate_not_nan():
    x = np.arange(12.0).reshape(4, 3)
    H = np.vstack([x, x])
    y = np.repeat([0, 1], 4)
    s = _stats(H, y)
    for metric in (s.squared_distance, s.cdnv, s.nc2, s.vci, s.nc1, s.metrics):
        with pytest.raises(ec.DegenerateInputError):
            metric()


def test_rows_sharing_one_direction_make_class_separation_degenerate():
    H = np.outer(np.arange(1.0, 7.0), [1.0, 2.0])
    s = _stats(H, np.arange(6) % 2)
    with pytest.raises(ec.DegenerateInputError, match="same direction"):
        s.cosine_metrics()


def test_subnormal_features_never_give_nan():
    H, y = _mixture(p=3, k=3)
    s = _stats(H * 1e-310, y)
    with pytest.raises(ec.DegenerateInputError, match="underflow"):
        s.squared_distance()
    for metric in (s.cdnv, s.nc2):  # their messages do not yet say "underflow"
        with pytest.raises(ec.DegenerateInputError):
            metric()
    out = s.cosine_metrics()
    ref = _stats(H, y).cosine_metrics()
    for key, val in out.items():
        assert np.isfinite(val)
        assert val == pytest.approx(ref[key], rel=1e-3, abs=1e-6), key


@pytest.mark.parametrize("scale", [1e-154, 1e150])
def test_pinv_metrics_do_not_depend_on_the_feature_scale(scale):
    H, y = _mixture(n=400, p=6, k=4, seed=3)
    ref, s = _stats(H, y), _stats(H * scale, y)
    assert s.nc1().value == pytest.approx(ref.nc1().value, rel=1e-6)
    assert s.vci().value == pytest.approx(ref.vci().value, rel=1e-6)
    assert s.probe_mse().value == pytest.approx(ref.probe_mse().value, rel=1e-6)
    assert s.nc1().rank == ref.nc1().rank


def test_pinv_psd_refuses_an_asymmetric_matrix():
    with pytest.raises(ec.ShapeError, match="symmetric"):
        ec.pinv_psd(np.array([[1.0, 2.0], [0.0, 1.0]]))
    a = np.array([[2.0, 1.0], [1.0, 2.0]])
    assert np.allclose(ec.pinv_psd(a)[0], np.linalg.inv(a))


@pytest.mark.parametrize(
    "call",
    [
        lambda X: rf.expected_kernel(X * 1e200, "relu"),
        lambda X: rf.expected_kernel(X * 1e200, "erf"),
        lambda X: rf.expected_kernel(X * 30, "exp"),
        lambda X: rf.kernel(X * 1e300, "exp", num_features=64, seed=0),
        lambda X: rf.coefficients(rf.polynomial(1e300, 1e300), tau=1e10),
    ],
)
def test_random_feature_overflow_is_an_error_not_inf_or_nan(call):
    X = np.random.default_rng(0).standard_normal((4, 3))
    try:
        out = call(X)
    except ec.NumericalError:
        return
    assert np.isfinite(np.asarray(out, dtype=float)).all()


def test_work_cap_refuses_hours_of_compute():
    with pytest.raises(ec.DimensionError, match="2\\^40"):
        rf.kernel(np.ones((4, 3)), "relu", num_features=2**40, seed=0)


def test_convention_is_named_by_authors_and_the_old_name_still_works():
    a = rf.polynomial(2.0, 0.5)
    new = rf.coefficients(a, 1.0, convention="tiomoko_ali")
    assert new == rf.coefficients(a, 1.0) == rf.coefficients(a, 1.0, convention="paper000")


# ----------------------------------------------------------------------------- untyped arguments


@pytest.mark.parametrize(
    "call",
    [
        lambda: ec.CollapseStats(-1, 3),
        lambda: ec.CollapseStats(2**64, 3),
        lambda: ec.CollapseStats(3.7, 3),
        lambda: ec.CollapseStats("3", 3),
        lambda: ec.etf(3, 4, seed=-1),
        lambda: ec.etf(3, 4, seed=2**64),
        lambda: rf.kernel(np.ones((3, 2)), "relu", num_features=-5, seed=0),
        lambda: rf.expected_kernel(np.ones((2, 2)), "tanh", method="series", order=-1),
        lambda: ec.pinv_psd(np.eye(2), rank=-1),
        lambda: ec.pinv_psd(np.eye(2), rank=float("nan")),
        lambda: ec.pinv_psd(np.eye(2), rtol=float("nan")),
        lambda: ec.pinv_psd(np.eye(2), rtol="big"),
        lambda: _stats(*_mixture()).vci(normalizer=2.5),
        lambda: _stats(*_mixture()).vci(normalizer=None),
        lambda: _stats(*_mixture()).vci(normalizer=0),
        lambda: _stats(*_mixture()).vci(weighting=3),
        lambda: _stats(*_mixture()).nc1(rank=float("nan")),
        lambda: ec.CollapseStats.from_bytes("not bytes"),
        lambda: ec.CollapseStats(2, 2).update([[1.0, 2.0], [3.0]], [0, 1]),
        lambda: ec.collapse_metrics(np.ones((4, 2)), [0, 1, 0, 1], num_classes=3.7),
    ],
)
def test_bad_arguments_raise_typed_errors(call):
    with pytest.raises(ec.EtfcoreError):
        call()


def test_bfloat16_tensors_are_a_dtype_error():
    torch = pytest.importorskip("torch")
    x = torch.ones(4, 3, dtype=torch.bfloat16)
    with pytest.raises(ec.DTypeError, match="bfloat16"):
        ec.CollapseStats(2, 3).update(x, torch.tensor([0, 1, 0, 1]))


def test_labels_length_is_checked_once_by_the_core():
    with pytest.raises(ec.ShapeError, match="features have 4 rows but labels have 3"):
        ec.CollapseStats(2, 2).update(np.ones((4, 2)), [0, 1, 0])


def test_unknown_weighting_is_reported_by_the_core():
    s = _stats(*_mixture())
    with pytest.raises(ec.ParameterError, match="weighting must be 'weighted' or 'balanced'"):
        s.vci("uniform")


# ----------------------------------------------------------------------------- classifiers


def test_classifiers_are_validated():
    H, y = _mixture(p=6, k=3)
    s = _stats(H, y)
    W = ec.etf(3, 6, seed=0)
    bad = W.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ec.NonFiniteError, match="classifier"):
        s.nc3(bad)
    with pytest.raises(ec.NonFiniteError, match="classifier"):
        s.nc4(H, bad)
    with pytest.raises(ec.NonFiniteError, match="bias"):
        s.nc4(H, W, np.array([0.0, np.inf, 0.0]))
    with pytest.raises(ec.ShapeError, match="classifier has 2 rows"):
        s.nc3(W[:2])
    with pytest.raises(ec.ShapeError, match="classifier has 2 rows"):
        s.nc4(H, W[:2])
    with pytest.raises(ec.ShapeError, match="^classifier has 5 columns"):
        s.nc3(W[:, :5])
    with pytest.raises(ec.ShapeError, match="^classifier has 5 columns"):
        ec.classifier_predictions(H, W[:, :5])
    with pytest.raises(ec.DegenerateInputError):
        s.nc3(np.zeros_like(W))


# ----------------------------------------------------------------------------- random features


def test_rf_refuses_nan_gamma_and_targets():
    X = np.random.default_rng(0).normal(size=(10, 3)) / 2
    t = np.ones(10)
    with pytest.raises(ec.ParameterError):
        rf.RandomFeatureRidge("relu", 8, float("nan"), seed=0)
    bad = t.copy()
    bad[3] = np.nan
    with pytest.raises(ec.NonFiniteError):
        rf.RandomFeatureRidge("relu", 8, 0.1, seed=0).fit(X, bad)
    with pytest.raises(ec.EtfcoreError):
        rf.ridge_test_mse_theory(X, t, X, bad, "relu", 8, 0.1)


def test_high_order_series_stays_finite_and_exact():
    X = np.random.default_rng(1).normal(size=(6, 4)) / 2
    for name in ("relu", "erf", "sign"):
        K = rf.expected_kernel(X, name, method="series", order=400)
        assert np.isfinite(K).all()
        # measured: relu 4e-16, erf 4e-16, sign 9e-9 (the discontinuous σ converges slowest)
        np.testing.assert_allclose(K, rf.expected_kernel(X, name), atol=1e-7)


# ----------------------------------------------------------------------------- precision


def test_float32_threshold_follows_the_input_precision():
    # p > N float32 features: Σ_T has rank N - 1 = 49; an f64 cut kept float32 noise as rank
    # (152 in the example) and VCI fell outside [0, 1].
    rng = np.random.default_rng(0)
    n, p, k = 50, 200, 5
    y = np.arange(n) % k
    M = rng.normal(size=(k, p)) * 3
    H = (M[y] + rng.normal(size=(n, p)) + 100.0).astype(np.float32)
    s = _stats(H, y)
    assert s.precision == "float32"
    v = s.vci()
    assert v.rank == n - 1
    # N ≤ p: a linear probe separates the classes exactly, so VCI is 0 up to rounding.
    assert abs(v) < 1e-6
    f64_cut = s.vci(rtol=p * np.finfo(np.float64).eps)
    assert f64_cut.rank > n - 1
    # Merged statistics take the coarser precision; float64 input keeps the float64 cut.
    s64 = _stats(H.astype(np.float64), y)
    assert s64.precision == "float64"
    assert s64.copy().merge(s).precision == "float32"
    assert ec.CollapseStats.from_bytes(s.to_bytes()).precision == "float32"


def test_from_parts_records_a_precision():
    H, y = _mixture(dtype=np.float32)
    s = _stats(H, y)
    parts = dict(
        shift=s.shift,
        class_counts=s.class_counts,
        class_sums=s.class_sums,
        class_sq_norms=s._raw.class_sq_norms,
        class_unit_sums=s.class_unit_sums,
        class_zero_rows=s._raw.class_zero_rows,
        scatter=s.scatter,
    )
    r = ec.CollapseStats.from_parts(s.num_classes, s.dim, precision="float32", **parts)
    assert r == s
    assert ec.CollapseStats.from_parts(s.num_classes, s.dim, **parts).precision == "float64"
    with pytest.raises(ec.ParameterError):
        ec.CollapseStats.from_parts(s.num_classes, s.dim, precision="float16", **parts)
    bad = dict(parts, class_counts=-s.class_counts)
    with pytest.raises(ec.ParameterError):
        ec.CollapseStats.from_parts(s.num_classes, s.dim, **bad)


def test_statistics_larger_than_the_machine_are_refused_before_allocation():
    """Each buffer of CollapseStats(2**16, 2**15) is under the per-object cap, but together they
    are 40 GiB: refused up front (the process would otherwise be killed while zero-filling)."""
    total = (2 * 2**16 * 2**15 + 2**30 + 3 * 2**16) * 8
    with open("/proc/meminfo") as f:
        mem = int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) * 1024
    if total <= mem * 3 // 4:  # pragma: no cover - a machine with more than 53 GiB
        pytest.skip("this machine could hold these statistics")
    with pytest.raises(ec.DimensionError, match="more than this machine can hold"):
        ec.CollapseStats(2**16, 2**15)


def test_numerical_rank_memory_does_not_grow_with_num_classes():
    """num_classes = 2**40 with two classes present: grouped by sorting, nothing sized by K;
    per-class values equal an SVD computed here."""
    rng = np.random.default_rng(0)
    h = rng.normal(size=(40, 6))
    y = np.where(np.arange(40) < 20, 3, 2**40 - 1)
    mean, per = ec.numerical_rank_of(h, y, num_classes=2**40)
    for k in (3, 2**40 - 1):
        s = np.linalg.svd(h[y == k], compute_uv=False)
        assert per[k] == pytest.approx(s.sum() ** 2 / (s**2).sum(), rel=1e-10)
    assert mean == pytest.approx((per[3] + per[2**40 - 1]) / 2)
