"""Hypothesis property tests of SPEC §5's invariances."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import etfcore as ec
from conftest import ref_geometry, ref_probe_mse

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def labelled(draw, min_k=2, max_k=6, min_p=2, max_p=10):
    k = draw(st.integers(min_k, max_k))
    p = draw(st.integers(max(min_p, k), max_p))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    counts = rng.integers(p + 2, 3 * p + 5, size=k)
    means = rng.normal(size=(k, p)) * draw(st.floats(0.5, 5.0))
    y = np.repeat(np.arange(k), counts)
    H = (
        means[y]
        + rng.normal(size=(y.size, p)) * draw(st.floats(0.1, 2.0))
        + draw(st.floats(-50, 50))
    )
    perm = rng.permutation(y.size)
    return H[perm], y[perm], k, rng


def stats_of(H, y, k):
    return ec.CollapseStats(k, H.shape[1]).update(H, y)


def well_conditioned(rng, p):
    Q1 = np.linalg.qr(rng.normal(size=(p, p)))[0]
    Q2 = np.linalg.qr(rng.normal(size=(p, p)))[0]
    return Q1 @ np.diag(rng.uniform(0.3, 3.0, p)) @ Q2


@SETTINGS
@given(labelled())
def test_total_equals_within_plus_between(d):
    H, y, k, _ = d
    s = stats_of(H, y, k)
    T = s.total_covariance()
    np.testing.assert_allclose(
        T, s.within_class_covariance() + s.between_class_covariance(), atol=1e-10 * np.abs(T).max()
    )
    np.testing.assert_allclose(T, ref_geometry(H, y)["ST"], atol=1e-9 * np.abs(T).max())


@SETTINGS
@given(labelled())
def test_vci_bounds_and_invariance_under_invertible_maps(d):
    H, y, k, rng = d
    v = stats_of(H, y, k).vci().value
    assert -1e-9 <= v <= 1 + 1e-9
    A = well_conditioned(rng, H.shape[1])
    b = rng.normal(size=H.shape[1]) * 10
    v2 = stats_of(H @ A.T + b, y, k).vci().value
    assert abs(v - v2) < 1e-8


@SETTINGS
@given(labelled())
def test_nc1_invariant_under_block_maps_only(d):
    H, y, k, rng = d
    s = stats_of(H, y, k)
    n1 = s.nc1().value
    # Orthonormal basis adapted to span(Σ_B) ⊕ complement; map each block invertibly.
    g = ref_geometry(H, y)
    vals, vecs = np.linalg.eigh(g["SB"])
    order = np.argsort(vals)[::-1]
    r = min(H.shape[1], k - 1)
    U, V = vecs[:, order[:r]], vecs[:, order[r:]]
    A1 = well_conditioned(rng, r)
    A = U @ A1 @ U.T + V @ V.T * 2.5
    assert abs(stats_of(H @ A.T, y, k).nc1().value - n1) < 1e-7 * max(1, n1)


def test_nc1_not_invariant_under_general_maps_counterexample():
    # Paper 003 Obs. 4.2: a shear mixing the between-span with its complement changes NC1, not VCI.
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 200)
    H = np.c_[np.where(y == 0, -1.0, 1.0), np.zeros(400)] + rng.normal(size=(400, 2)) * [0.3, 1.0]
    A = np.array([[1.0, 3.0], [0.0, 1.0]])
    s1, s2 = stats_of(H, y, 2), stats_of(H @ A.T, y, 2)
    assert abs(s1.nc1().value - s2.nc1().value) > 0.1
    assert abs(s1.vci().value - s2.vci().value) < 1e-10


@SETTINGS
@given(labelled(), st.floats(0.01, 100.0))
def test_squared_distance_orthogonal_and_scaling(d, c):
    H, y, k, rng = d
    q = stats_of(H, y, k).squared_distance()
    Q = np.linalg.qr(rng.normal(size=(H.shape[1],) * 2))[0]
    assert abs(stats_of(c * H @ Q.T, y, k).squared_distance() - q) < 1e-9 * q


@SETTINGS
@given(labelled())
def test_cosine_metrics_invariant_to_positive_row_scaling(d):
    H, y, k, rng = d
    a = stats_of(H, y, k).cosine_metrics()
    b = stats_of(H * rng.uniform(0.01, 100, size=(H.shape[0], 1)), y, k).cosine_metrics()
    for key in a:
        assert abs(a[key] - b[key]) < 1e-9


@SETTINGS
@given(labelled())
def test_sample_permutation_and_relabelling(d):
    H, y, k, rng = d
    m = stats_of(H, y, k).metrics()
    perm = rng.permutation(y.size)
    relabel = rng.permutation(k)
    m2 = stats_of(H[perm], relabel[y[perm]], k).metrics()
    for key in (
        "vci",
        "probe_mse",
        "nc1",
        "squared_distance",
        "cdnv",
        "nc2_etf_error",
        "nc2_equinorm",
        "class_separation",
    ):
        assert abs(m[key] - m2[key]) < 1e-8 * max(1.0, abs(m[key])), key


@SETTINGS
@given(labelled())
def test_probe_mse_equals_direct_least_squares(d):
    H, y, k, _ = d
    assert abs(stats_of(H, y, k).probe_mse().value - ref_probe_mse(H, y)) < 1e-8


@SETTINGS
@given(labelled())
def test_balanced_equals_weighted_on_balanced_data(d):
    H, y, k, _ = d
    n = np.bincount(y).min()
    keep = np.concatenate([np.flatnonzero(y == c)[:n] for c in range(k)])
    s = stats_of(H[keep], y[keep], k)
    for f in ("within_class_covariance", "between_class_covariance", "total_covariance"):
        a, b = getattr(s, f)("weighted"), getattr(s, f)("balanced")
        np.testing.assert_allclose(a, b, atol=1e-10 * np.abs(a).max())


@SETTINGS
@given(labelled(), st.integers(1, 4))
def test_merge_of_any_split_equals_one_pass(d, parts):
    H, y, k, rng = d
    one = stats_of(H, y, k)
    cuts = np.sort(rng.integers(0, y.size, size=parts))
    merged = ec.CollapseStats(k, H.shape[1])
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, y.size]):
        merged.merge(ec.CollapseStats(k, H.shape[1]).update(H[a:b], y[a:b]))
    T = one.total_covariance()
    np.testing.assert_allclose(merged.total_covariance(), T, atol=1e-9 * np.abs(T).max())
    np.testing.assert_array_equal(merged.class_counts, one.class_counts)
