"""Every metric against an independent float64 numpy reference (tolerance 1e-10 relative on
float64 input unless stated)."""

import numpy as np
import pytest

import etfcore as ec
from conftest import (
    mixture,
    ref_cosine,
    ref_geometry,
    ref_nc1,
    ref_pinv,
    ref_probe_mse,
    ref_vci,
)

RTOL = 1e-10


@pytest.mark.parametrize("weighting", ["weighted", "balanced"])
def test_covariances_match_reference(rng, weighting):
    H, y = mixture(rng, offset=5.0)
    st = ec.CollapseStats(5, 12, track_class_scatter=True).update(H, y)
    g = ref_geometry(H, y, weighting)
    scale = np.abs(g["ST"]).max()
    np.testing.assert_allclose(st.total_covariance(weighting), g["ST"], rtol=0, atol=RTOL * scale)
    np.testing.assert_allclose(
        st.between_class_covariance(weighting), g["SB"], rtol=0, atol=RTOL * scale
    )
    np.testing.assert_allclose(
        st.within_class_covariance(weighting), g["SW"], rtol=0, atol=RTOL * scale
    )
    np.testing.assert_allclose(st.global_mean(weighting), g["mG"], rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(st.class_means(), g["mu"], rtol=RTOL)
    np.testing.assert_allclose(
        st.class_variances(weighting), [np.trace(c) for c in g["covs"]], rtol=1e-9
    )
    for k in range(5):
        np.testing.assert_allclose(st.class_covariance(k), g["covs"][k], atol=RTOL * scale)


def test_total_is_within_plus_between_weighted(rng):
    H, y = mixture(rng)
    st = ec.CollapseStats(5, 12).update(H, y)
    np.testing.assert_allclose(
        st.total_covariance(),
        st.within_class_covariance() + st.between_class_covariance(),
        atol=1e-12,
    )


def test_balanced_equals_weighted_on_balanced_data(rng):
    H, y = mixture(rng, counts=30)
    st = ec.CollapseStats(5, 12).update(H, y)  # no per-class scatter needed when balanced
    for f in ("total_covariance", "between_class_covariance", "within_class_covariance"):
        np.testing.assert_allclose(
            getattr(st, f)("weighted"), getattr(st, f)("balanced"), atol=1e-12
        )
    assert st.vci("weighted").value == pytest.approx(st.vci("balanced").value, rel=1e-12)
    assert st.nc1("weighted").value == pytest.approx(st.nc1("balanced").value, rel=1e-10)


def test_balanced_within_on_imbalanced_data_needs_more_than_sums(rng):
    H, y = mixture(rng)
    st = ec.CollapseStats(5, 12).update(H, y)
    with pytest.raises(ec.ParameterError, match="track_class_scatter"):
        st.within_class_covariance("balanced")
    # Traces only need per-class sums of squares: available without tracking.
    g = ref_geometry(H, y, "balanced")
    assert st.squared_distance("balanced") == pytest.approx(
        np.trace(g["SW"]) / np.trace(g["SB"]), rel=1e-10
    )
    # From arrays, collapse_metrics computes the balanced scatter in a second pass.
    m = ec.collapse_metrics(H, y, weighting="balanced")
    assert m["vci"] == pytest.approx(ref_vci(H, y, "balanced"), rel=1e-9)
    assert m["nc1"] == pytest.approx(ref_nc1(H, y, "balanced"), rel=1e-9)


@pytest.mark.parametrize("weighting", ["weighted", "balanced"])
def test_vci_nc1_match_reference(rng, weighting):
    H, y = mixture(rng, offset=-3.0)
    st = ec.CollapseStats(5, 12, track_class_scatter=True).update(H, y)
    v = st.vci(weighting)
    assert v.value == pytest.approx(ref_vci(H, y, weighting), rel=RTOL)
    assert v.normalizer == 4 and v.rank == 12
    n1 = st.nc1(weighting)
    assert n1.value == pytest.approx(ref_nc1(H, y, weighting), rel=1e-9)
    assert n1.rank == 4


def test_probe_mse_equals_least_squares(rng):
    for counts in [(40, 30, 20, 50, 10), 25]:
        H, y = mixture(rng, counts=counts, offset=2.0)
        st = ec.CollapseStats(5, 12).update(H, y)
        assert st.probe_mse().value == pytest.approx(ref_probe_mse(H, y), rel=1e-9)


def test_probe_mse_rank_deficient_features(rng):
    # p > N_effective: features live in a 6-dim subspace of R^20; pinv must drop the null space.
    H, y = mixture(rng, p=6)
    H = H @ rng.normal(size=(6, 20))
    st = ec.CollapseStats(5, 20).update(H, y)
    r = st.probe_mse()
    assert r.rank == 6 and r.method == "eigh"
    assert r.value == pytest.approx(ref_probe_mse(H, y), rel=1e-7)
    assert st.vci().value == pytest.approx(ref_vci(H, y), rel=1e-7)


def test_probe_mse_balanced_closed_form(rng):
    H, y = mixture(rng, counts=20)
    st = ec.CollapseStats(5, 12).update(H, y)
    g = ref_geometry(H, y)
    P, _ = ref_pinv(g["ST"])
    K = 5
    want = -np.trace(P @ g["SB"]) / (2 * K) + 0.5 - 1 / (2 * K)
    assert st.probe_mse().value == pytest.approx(want, rel=1e-10)


def test_nc1_split_squared_distance_trace_cdnv(rng):
    H, y = mixture(rng)
    st = ec.CollapseStats(5, 12).update(H, y)
    g = ref_geometry(H, y)
    M = (g["mu"] - g["mG"]).T
    PB = M @ np.linalg.pinv(M)
    sp = st.nc1_split()
    assert sp.between_span == pytest.approx(np.trace(PB @ g["SW"]), rel=1e-9)
    assert sp.orthogonal == pytest.approx(np.trace(g["SW"]) - np.trace(PB @ g["SW"]), rel=1e-9)
    assert sp.rank == 4
    assert st.squared_distance() == pytest.approx(np.trace(g["SW"]) / np.trace(g["SB"]), rel=1e-10)
    assert st.within_trace_per_dim() == pytest.approx(np.trace(g["SW"]) / 12, rel=1e-10)
    var = [np.trace(c) for c in g["covs"]]
    pairs = [
        (var[k] + var[l]) / (2 * np.sum((g["mu"][k] - g["mu"][l]) ** 2))
        for k in range(5)
        for l in range(k + 1, 5)
    ]
    assert st.cdnv() == pytest.approx(np.mean(pairs), rel=1e-9)


def test_nc2_nc3(rng):
    H, y = mixture(rng)
    st = ec.CollapseStats(5, 12).update(H, y)
    g = ref_geometry(H, y)
    C = g["mu"] - g["mG"]
    norms = np.linalg.norm(C, axis=1)
    cos = (C @ C.T) / np.outer(norms, norms)
    iu = np.triu_indices(5, 1)
    G = C @ C.T
    P = np.eye(5) - 1 / 5
    nc2 = st.nc2()
    assert nc2["equinorm"] == pytest.approx(norms.std() / norms.mean(), rel=1e-10)
    assert nc2["equiangularity"] == pytest.approx(cos[iu].std(), rel=1e-9)
    assert nc2["max_equiangularity"] == pytest.approx(np.abs(cos[iu] + 1 / 4).mean(), rel=1e-9)
    assert nc2["etf_error"] == pytest.approx(
        np.linalg.norm(G / np.linalg.norm(G) - P / np.linalg.norm(P)), rel=1e-9
    )
    W = ec.etf(5, 12, seed=3)
    val, cosw = st.nc3(W)
    want = np.linalg.norm(W / np.linalg.norm(W) - C / np.linalg.norm(C)) ** 2
    assert val == pytest.approx(want, rel=1e-10)
    np.testing.assert_allclose(
        cosw, np.sum(W * C, 1) / (np.linalg.norm(W, axis=1) * norms), rtol=1e-10
    )


def test_nc2_exact_on_etf_means(rng):
    W = ec.etf(6, 10, seed=1)
    y = np.repeat(np.arange(6), 4)
    st = ec.CollapseStats(6, 10).update(W[y] * 2.5, y)
    nc2 = st.nc2()
    assert nc2["equinorm"] < 1e-12 and nc2["equiangularity"] < 1e-12 and nc2["etf_error"] < 1e-12
    assert st.vci().value == pytest.approx(0.0, abs=1e-12)  # Σ_W = 0
    assert st.nc3(W)[0] == pytest.approx(0.0, abs=1e-12)


def test_cosine_metrics_brute_force(rng):
    H, y = mixture(rng, counts=(12, 7, 9, 15, 5), offset=1.0)
    st = ec.CollapseStats(5, 12).update(H, y)
    c = st.cosine_metrics()
    dw, dt, sep = ref_cosine(H, y)
    assert c["cosine_within"] == pytest.approx(dw, rel=1e-10)
    assert c["cosine_total"] == pytest.approx(dt, rel=1e-10)
    assert c["class_separation"] == pytest.approx(sep, rel=1e-9)


def test_nc4_and_ncc_brute_force(rng):
    H, y = mixture(rng, scale=3.0)
    st = ec.CollapseStats(5, 12).update(H, y)
    W = rng.normal(size=(5, 12))
    b = rng.normal(size=5)
    mu = ref_geometry(H, y)["mu"]
    ncc = np.array([np.argmin([np.sum((h - m) ** 2) for m in mu]) for h in H])
    clf = np.argmax(H @ W.T + b, axis=1)
    np.testing.assert_array_equal(st.nearest_class_mean(H), ncc)
    np.testing.assert_array_equal(ec.classifier_predictions(H, W, b), clf)
    assert st.nc4(H, W, b) == pytest.approx(np.mean(ncc != clf))


def test_ncc_exact_when_expanded_square_cancels():
    # Huge common offset: ‖h‖² ~ 1e16, distances ~ 1 — the expanded square alone cannot rank them.
    rng = np.random.default_rng(0)
    base = 1e8
    mu = np.array([[base, 0.0], [base + 1.0, 0.0], [base, 1.0]])
    y = np.repeat(np.arange(3), 50)
    H = mu[y] + 0.3 * rng.normal(size=(150, 2))
    st = ec.CollapseStats(3, 2).update(H, y)
    means = st.class_means()
    ncc = np.array([np.argmin(((h - means) ** 2).sum(1)) for h in H])
    np.testing.assert_array_equal(st.nearest_class_mean(H), ncc)


def test_numerical_rank_against_svd(rng):
    H, y = mixture(rng)
    mean, per = ec.numerical_rank_of(H, y)
    want = {}
    for k in range(5):
        s = np.linalg.svd(H[y == k], compute_uv=False)
        want[k] = s.sum() ** 2 / (s**2).sum()
    for k in range(5):
        assert per[k] == pytest.approx(want[k], rel=1e-9)
    assert mean == pytest.approx(np.mean(list(want.values())), rel=1e-9)
    _, per_c = ec.numerical_rank_of(H, y, centred=True)
    s = np.linalg.svd(H[y == 0] - H[y == 0].mean(0), compute_uv=False)
    assert per_c[0] == pytest.approx(s.sum() ** 2 / (s**2).sum(), rel=1e-9)


def test_absent_classes_are_ignored(rng):
    H, y = mixture(rng)
    y2 = np.where(y == 4, 7, y)  # class 4 empty, class 7 present, K = 9
    st = ec.CollapseStats(9, 12).update(H, y2)
    m = st.metrics()
    assert m["num_classes_present"] == 5
    assert m["vci"] == pytest.approx(ref_vci(H, y), rel=1e-10)
    assert np.isnan(st.class_means()[4]).all()


def test_collapse_metrics_keys_and_values(rng):
    H, y = mixture(rng)
    W = ec.etf(5, 12, seed=0)
    m = ec.collapse_metrics(H, y, classifier=W)
    for key in [
        "vci",
        "probe_mse",
        "nc1",
        "squared_distance",
        "cdnv",
        "nc2_etf_error",
        "nc3",
        "nc4",
        "cosine_within",
        "class_separation",
        "numerical_rank",
        "within_trace_per_dim",
        "nc1_split_between",
        "vci_rank",
        "nc1_rank",
    ]:
        assert key in m
    assert m["vci"] == pytest.approx(ref_vci(H, y), rel=1e-10)
    assert m["probe_mse"] == pytest.approx(ref_probe_mse(H, y), rel=1e-9)


def test_pinv_psd_policy():
    rng = np.random.default_rng(1)
    Q = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    A = Q @ np.diag([1, 0.5, 0.1, 1e-3, 1e-6, 1e-9, 1e-18, 0]) @ Q.T
    P, r, method = ec.pinv_psd(A)
    Pr, rr = ref_pinv(A)
    assert (r, method) == (rr, "eigh") and r == 6  # threshold 8·eps·λ_max ≈ 1.8e-15
    np.testing.assert_allclose(P, Pr, atol=1e-5 * np.abs(Pr).max())
    P3, r3, _ = ec.pinv_psd(A, rank=3)
    np.testing.assert_allclose(P3, ref_pinv(A, top=3)[0], atol=1e-9)
    assert r3 == 3
    B = Q @ np.diag(np.linspace(1, 2, 8)) @ Q.T
    PB, rb, mb = ec.pinv_psd(B)
    assert (rb, mb) == (8, "cholesky")
    np.testing.assert_allclose(PB, np.linalg.inv(B), atol=1e-12)


def _pairs_reference(H, y, K):
    """CDNV and NC2 by plain float64 numpy on the whole K × K Gram (weighted convention)."""
    H = H.astype(np.float64)
    counts = np.bincount(y, minlength=K).astype(np.float64)
    mu = np.zeros((K, H.shape[1]))
    np.add.at(mu, y, H)
    mu /= counts[:, None]
    mg = H.mean(0)
    var = np.bincount(y, weights=np.sum((H - mu[y]) ** 2, 1), minlength=K) / counts
    C = mu - mg
    G = C @ C.T
    d2 = np.diag(G)[:, None] + np.diag(G)[None, :] - 2 * G
    iu = np.triu_indices(K, 1)
    # exact differences where the expansion cancels
    small = d2[iu] < 1e-3 * (np.diag(G)[iu[0]] + np.diag(G)[iu[1]])
    d2u = d2[iu].copy()
    d2u[small] = [np.sum((C[k] - C[l]) ** 2) for k, l in zip(iu[0][small], iu[1][small])]
    cdnv = np.mean((var[iu[0]] + var[iu[1]]) / (2 * d2u))
    norms = np.sqrt(np.diag(G))
    cos = (G / np.outer(norms, norms))[iu]
    P = np.eye(K) - 1 / K
    etf = np.linalg.norm(G / np.linalg.norm(G) - P / np.linalg.norm(P))
    return cdnv, norms.std() / norms.mean(), cos.std(), np.abs(cos + 1 / (K - 1)).mean(), etf


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cdnv_nc2_with_more_classes_than_dimensions(dtype):
    """K > p: the blocked routes (float64 row slabs; float32 products in tiles of the packed
    kernel, whose worst-case bound is ~1e-3 relative for CDNV and ~1.6e-5 absolute for the
    cosine statistics; measured errors are far smaller) against a float64 whole-Gram reference."""
    rng = np.random.default_rng(5)
    K, p, n = 1000, 120, 4000
    y = np.arange(n) % K
    M = rng.normal(size=(K, p)) * 0.7
    H = (2.0 + M[y] + rng.normal(size=(n, p))).astype(dtype)
    st = ec.CollapseStats(K, p).update(H, y)
    cdnv, equinorm, equiang, maxeq, etf = _pairs_reference(H, y, K)
    nc2 = st.nc2()
    rtol = 1e-10 if dtype == np.float64 else 1e-6
    assert st.cdnv() == pytest.approx(cdnv, rel=rtol)
    assert nc2["equinorm"] == pytest.approx(equinorm, rel=1e-9)
    assert nc2["equiangularity"] == pytest.approx(equiang, rel=rtol, abs=0 if rtol < 1e-8 else 1e-7)
    assert nc2["max_equiangularity"] == pytest.approx(maxeq, rel=rtol)
    assert nc2["etf_error"] == pytest.approx(etf, rel=1e-9 if dtype == np.float64 else 1e-6)
