"""Simplex ETF properties (SPEC §6)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import etfcore as ec


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 40), st.integers(0, 30), st.integers(0, 2**63 - 1))
def test_simplex_properties(k, extra, seed):
    p = k - 1 + extra
    W = ec.etf(k, p, seed=seed)
    assert W.shape == (k, p) and W.dtype == np.float64
    G = W @ W.T
    np.testing.assert_allclose(G, k / (k - 1) * (np.eye(k) - 1 / k), atol=1e-12)
    np.testing.assert_allclose(W.sum(0), 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(W, axis=1), 1, atol=1e-12)


def test_seeded_reproducible_and_haar_like():
    np.testing.assert_array_equal(ec.etf(10, 32, seed=5), ec.etf(10, 32, seed=5))
    assert not np.allclose(ec.etf(10, 32, seed=5), ec.etf(10, 32, seed=6))
    # Haar: the frame's first coordinate is centred over seeds (E[W] = 0).
    mean = np.mean([ec.etf(3, 4, seed=s)[0, 0] for s in range(400)])
    assert abs(mean) < 0.1


def test_regular_simplex_p_equals_k_minus_1_and_lengths():
    W = ec.etf(5, 4, seed=0, lengths=[1, 2, 3, 4, 5])
    np.testing.assert_allclose(np.linalg.norm(W, axis=1), [1, 2, 3, 4, 5], atol=1e-12)
    U = W / np.linalg.norm(W, axis=1, keepdims=True)
    np.testing.assert_allclose(U @ U.T, 5 / 4 * (np.eye(5) - 1 / 5), atol=1e-12)


def test_canonical_and_dtype():
    K, p = 4, 7
    W = ec.etf(K, p, canonical=True, dtype=np.float32)
    assert W.dtype == np.float32
    want = np.sqrt(K / (K - 1)) * (np.eye(K) - 1 / K) @ np.eye(K, p)
    np.testing.assert_allclose(W, want, atol=1e-7)


def test_orthogonal_frame():
    W = ec.orthogonal_frame(4, 9, seed=2)
    np.testing.assert_allclose(W @ W.T, np.eye(4), atol=1e-12)


@pytest.mark.parametrize("k,p", [(100, 512), (1000, 999)])
def test_large_frames(k, p):
    W = ec.etf(k, p, seed=0)
    G = W @ W.T
    off = G[~np.eye(k, dtype=bool)]
    assert np.abs(off + 1 / (k - 1)).max() < 1e-12
