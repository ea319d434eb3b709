"""The fast statistics pass and the K > p routes against plain float64 numpy.

The pass writes shifted rows straight into the panels of an AVX-512 Gram kernel where the CPU
has one (a blocked library GEMM otherwise); these shapes cover ragged panel edges, several
depth blocks and chunks, strided input and per-class scatters. With more classes than
dimensions, CDNV and NC2 go through blocks of the class-mean Gram (never the K × K matrix).
"""

import numpy as np
import pytest

import etfcore as ec


def _data(rng, n, p, k, dtype, offset=5.0):
    means = rng.normal(size=(k, p)) * 2.0
    y = rng.integers(0, k, size=n)
    y[:k] = np.arange(k)  # every class present
    X = offset + means[y] + rng.normal(size=(n, p))
    return X.astype(dtype), y


def _reference(X, y, k):
    """Weighted Σ_T, Σ_B, Σ_W and the class sums of squared norms, in float64."""
    X = X.astype(np.float64)
    n = np.bincount(y, minlength=k).astype(float)
    mu = np.zeros((k, X.shape[1]))
    np.add.at(mu, y, X)
    mu /= n[:, None]
    mg = X.mean(0)
    D = X - mg
    ST = D.T @ D / len(X)
    M = mu - mg
    SB = (M.T * (n / len(X))) @ M
    R = X - mu[y]
    return ST, SB, R.T @ R / len(X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [1, 7, 16, 17, 40, 49, 100, 257])
def test_update_matches_float64_reference_on_ragged_shapes(rng, dtype, p):
    # 2600 rows: three chunks of the pass, several depth blocks of the kernel.
    X, y = _data(rng, 2600, p, 5, dtype)
    st = ec.CollapseStats(5, p).update(X, y)
    ST, SB, SW = _reference(X, y, 5)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    scale = np.abs(ST).max()
    np.testing.assert_allclose(st.total_covariance(), ST, rtol=0, atol=tol * scale)
    np.testing.assert_allclose(st.between_class_covariance(), SB, rtol=0, atol=tol * scale)
    np.testing.assert_allclose(st.within_class_covariance(), SW, rtol=0, atol=tol * scale)


def test_strided_and_transposed_input_equal_contiguous(rng):
    X, y = _data(rng, 1500, 33, 4, np.float32)
    one = ec.CollapseStats(4, 33).update(X, y)
    wide = np.zeros((1500, 66), np.float32)
    wide[:, ::2] = X
    strided = ec.CollapseStats(4, 33).update(wide[:, ::2], y)
    fortran = ec.CollapseStats(4, 33).update(np.asfortranarray(X), y)
    for other in (strided, fortran):
        np.testing.assert_array_equal(other.scatter, one.scatter)
        np.testing.assert_array_equal(other.class_sums, one.class_sums)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_class_covariances_match_per_class_products(rng, dtype):
    X, y = _data(rng, 1300, 21, 3, dtype)
    st = ec.CollapseStats(3, 21, track_class_scatter=True).update(X, y)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for k in range(3):
        want = np.cov(X[y == k].astype(np.float64), rowvar=False, bias=True)
        got = st.class_covariance(k)
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.abs(want).max())


def test_float32_update_is_within_1e6_of_float64_on_the_metrics(rng):
    X, y = _data(rng, 6000, 64, 10, np.float32, offset=50.0)
    s32 = ec.CollapseStats(10, 64).update(X, y)
    s64 = ec.CollapseStats(10, 64).update(X.astype(np.float64), y)
    for m in ("vci", "nc1", "probe_mse"):
        a, b = getattr(s32, m)().value, getattr(s64, m)().value
        assert abs(a - b) <= 1e-6 * abs(b), m


def _pairwise_reference(means, counts, X, y):
    """CDNV and NC2 by plain loops over class pairs (weighted convention)."""
    k = len(means)
    w = counts / counts.sum()
    M = means - w @ means
    var = np.array([((X[y == c] - means[c]) ** 2).sum(1).mean() for c in range(k)])
    cd, cos = [], []
    for a in range(k):
        for b in range(a + 1, k):
            d = means[a] - means[b]
            cd.append((var[a] + var[b]) / (2 * d @ d))
            cos.append(M[a] @ M[b] / np.sqrt((M[a] @ M[a]) * (M[b] @ M[b])))
    cos = np.array(cos)
    norms = np.linalg.norm(M, axis=1)
    G = M @ M.T
    P = np.eye(k) - 1.0 / k
    etf = np.linalg.norm(G / np.linalg.norm(G) - P / np.linalg.norm(P))
    nc2 = {
        "equinorm": norms.std() / norms.mean(),
        "equiangularity": cos.std(),
        "max_equiangularity": np.abs(cos + 1 / (k - 1)).mean(),
        "etf_error": etf,
    }
    return np.mean(cd), nc2


@pytest.mark.parametrize("k", [9, 300, 700])
def test_cdnv_and_nc2_with_more_classes_than_dimensions(rng, k):
    # p = 8 < K: the blocked route (300 and 700 classes span several blocks of 256 rows).
    X, y = _data(rng, 3 * k, 8, k, np.float64)
    st = ec.CollapseStats(k, 8).update(X, y)
    counts = np.bincount(y, minlength=k).astype(float)
    means = np.array([X[y == c].mean(0) for c in range(k)])
    cd, nc2 = _pairwise_reference(means, counts, X, y)
    assert st.cdnv() == pytest.approx(cd, rel=1e-10)
    got = st.nc2()
    for key, want in nc2.items():
        assert got[key] == pytest.approx(want, rel=1e-9, abs=1e-13), key
    assert st.metrics()["cdnv"] == pytest.approx(cd, rel=1e-10)
