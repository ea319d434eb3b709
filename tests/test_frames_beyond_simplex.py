"""Frames for more classes than dimensions + 1: coherence against brute force and the Welch
bound, seeded reproducibility, dtypes written once, typed errors."""

import numpy as np
import pytest

import etfcore as ec


def brute_coherence(w):
    w = np.asarray(w, dtype=np.float64)
    u = w / np.linalg.norm(w, axis=1, keepdims=True)
    c = u @ u.T
    off = c[~np.eye(len(c), dtype=bool)]
    return np.abs(off).max(), off.max()


def test_sphere_codes_are_seeded_unit_rows_with_brute_force_coherence():
    a = ec.sphere_codes(700, 9, seed=5)
    assert np.array_equal(a, ec.sphere_codes(700, 9, seed=5))
    assert not np.array_equal(a, ec.sphere_codes(700, 9, seed=6))
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-12)
    c = ec.frame_coherence(a)
    m_abs, m = brute_coherence(a)
    assert c.max_abs_cosine == pytest.approx(m_abs, abs=1e-12)
    assert c.max_cosine == pytest.approx(m, abs=1e-12)
    assert c.welch_bound == pytest.approx(np.sqrt((700 - 9) / (9 * 699)), rel=1e-14)
    assert c.welch_bound <= c.max_abs_cosine < 1


def test_float32_codes_are_the_float64_codes_rounded():
    w32 = ec.sphere_codes(300, 16, seed=1, dtype=np.float32)
    w64 = ec.sphere_codes(300, 16, seed=1)
    assert w32.dtype == np.float32
    assert np.array_equal(w32, w64.astype(np.float32))


def test_hypercube_and_orthoplex_cosines_are_their_closed_forms():
    k, d = 16, 4
    w = ec.hypercube_frame(k, 6)
    assert np.all(w[:, d:] == 0)
    for a in range(k):
        for b in range(k):
            h = bin(a ^ b).count("1")
            assert w[a] @ w[b] == pytest.approx(1 - 2 * h / d, abs=1e-15)
    c = ec.frame_coherence(w)
    assert (c.max_abs_cosine, c.max_cosine) == pytest.approx((1.0, (d - 2) / d))
    o = ec.orthoplex_frame(9, 5)
    g = o @ o.T
    assert np.array_equal(np.diag(g), np.ones(9))
    assert set(np.unique(g[~np.eye(9, dtype=bool)])) <= {-1.0, 0.0}
    assert ec.frame_coherence(o).max_cosine == 0.0


def test_optimised_frame_lies_between_the_welch_bound_and_its_random_start():
    start = ec.frame_coherence(ec.sphere_codes(120, 12, seed=2))
    w, c = ec.min_coherence_frame(120, 12, seed=2, steps=300)
    assert w.shape == (120, 12)
    assert c.max_abs_cosine == pytest.approx(brute_coherence(w)[0], abs=1e-12)
    assert c.welch_bound <= c.max_abs_cosine < 0.8 * start.max_abs_cosine
    # K = p + 1: the simplex ETF attains the bound 1/(K - 1); the optimiser gets close.
    _, s = ec.min_coherence_frame(8, 7, seed=0, steps=3000)
    assert s.welch_bound == pytest.approx(1 / 7)
    assert s.max_abs_cosine < 1.05 / 7


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: ec.hypercube_frame(9, 3), ec.DimensionError),
        (lambda: ec.orthoplex_frame(9, 4), ec.DimensionError),
        (lambda: ec.sphere_codes(1, 4), ec.DimensionError),
        (lambda: ec.sphere_codes(4, 4, dtype=np.int32), ec.ParameterError),
        (lambda: ec.frame_coherence(np.zeros((3, 2))), ec.DegenerateInputError),
        (lambda: ec.frame_coherence(np.array([[1.0, np.nan], [0.0, 1.0]])), ec.NonFiniteError),
        (lambda: ec.min_coherence_frame(30_000, 4), ec.DimensionError),
        (lambda: ec.sphere_codes(-1, 4), ec.EtfcoreError),
    ],
)
def test_bad_requests_are_typed_errors(call, error):
    with pytest.raises(error):
        call()


def test_fixed_heads_take_any_frame_as_a_seeded_buffer():
    torch = pytest.importorskip("torch")
    import etfcore.nn as enn

    for frame in enn.FRAMES[1:]:
        head = enn.FixedETFHead(num_classes=12, dim=8, frame=frame, seed=3)
        want = enn.fixed_frame(frame, 12, 8, 3)
        assert torch.equal(head.weight, torch.from_numpy(want.astype(np.float32)))
        assert "weight" in head.state_dict() and not list(head.parameters())
        h = torch.randn(5, 8, dtype=torch.float64)
        torch.testing.assert_close(head(h), h @ torch.from_numpy(want).T, rtol=1e-6, atol=1e-6)
    lengths = np.arange(1, 13, dtype=np.float64)
    w = enn.fixed_frame("sphere", 12, 8, 3, lengths=lengths)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), lengths, rtol=1e-12)
    with pytest.raises(ec.DimensionError, match="frames for more classes"):
        enn.FixedETFHead(num_classes=12, dim=8)  # the simplex needs dim >= 11
    with pytest.raises(ec.ParameterError):
        enn.FixedETFHead(num_classes=12, dim=8, frame="bogus")
