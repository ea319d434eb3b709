"""Streaming = one-shot = merged; serialisation; float32 accuracy; failed updates change nothing."""

import numpy as np
import pytest

import etfcore as ec
from conftest import mixture, ref_vci


def _assert_same(a, b, rtol=1e-10):
    for f in ("total_covariance", "between_class_covariance", "within_class_covariance"):
        x, z = getattr(a, f)(), getattr(b, f)()
        np.testing.assert_allclose(x, z, rtol=0, atol=rtol * np.abs(z).max())
    np.testing.assert_array_equal(a.class_counts, b.class_counts)
    assert a.vci().value == pytest.approx(b.vci().value, rel=rtol)
    assert a.cosine_metrics()["class_separation"] == pytest.approx(
        b.cosine_metrics()["class_separation"], rel=rtol
    )


def test_streaming_equals_one_shot_equals_merged(rng):
    H, y = mixture(rng, K=6, p=9, counts=400, offset=3.0)
    one = ec.CollapseStats(6, 9).update(H, y)
    stream = ec.CollapseStats(6, 9)
    for i in range(0, len(y), 333):
        stream.update(H[i : i + 333], y[i : i + 333])
    shards = [ec.CollapseStats(6, 9).update(H[i::3], y[i::3]) for i in range(3)]
    merged = ec.CollapseStats(6, 9)
    for s in shards:
        merged.merge(s)
    _assert_same(stream, one)
    _assert_same(merged, one)
    # merging into a non-empty one with a different shift
    m2 = shards[0].copy()
    m2 += shards[1]
    m2 += shards[2]
    _assert_same(m2, one)


def test_multi_chunk_parallel_pass_matches_reference(rng):
    # More rows than several chunks, so every worker has work.
    n = 3 * ec._core.CHUNK_ROWS + 17
    H, y = mixture(rng, K=4, p=7, counts=n // 4, offset=10.0)
    st = ec.CollapseStats(4, 7).update(H, y)
    assert st.vci().value == pytest.approx(ref_vci(H, y), rel=1e-10)


def test_non_contiguous_and_fortran_input(rng):
    H, y = mixture(rng)
    ref = ec.CollapseStats(5, 12).update(H, y)
    big = np.zeros((H.shape[0] * 2, 24))
    big[::2, ::2] = H
    _assert_same(ec.CollapseStats(5, 12).update(big[::2, ::2], y), ref)
    _assert_same(ec.CollapseStats(5, 12).update(np.asfortranarray(H), y), ref)
    _assert_same(ec.CollapseStats(5, 12).update(H[::-1], y[::-1]), ref)


def test_float32_accuracy_with_offset(rng):
    # A large offset is what the shift is for: f32 products of unshifted data would lose it.
    H, y = mixture(rng, K=5, p=16, counts=2000, offset=1000.0)
    H32 = H.astype(np.float32)
    st = ec.CollapseStats(5, 16).update(H32, y)
    want = ref_vci(H32.astype(np.float64), y)
    assert st.vci().value == pytest.approx(want, rel=1e-5)
    ref64 = ec.CollapseStats(5, 16).update(H32.astype(np.float64), y)
    np.testing.assert_allclose(
        st.within_class_covariance(), ref64.within_class_covariance(), rtol=1e-5, atol=1e-5
    )


def test_bytes_round_trip_and_file(rng, tmp_path):
    H, y = mixture(rng)
    for track in (False, True):
        st = ec.CollapseStats(5, 12, track_class_scatter=track).update(H, y)
        back = ec.CollapseStats.from_bytes(st.to_bytes())
        assert back == st
        assert back.vci().value == st.vci().value
        st.save(tmp_path / "s.bin")
        assert ec.CollapseStats.load(tmp_path / "s.bin") == st
    empty = ec.CollapseStats(3, 4)
    assert ec.CollapseStats.from_bytes(empty.to_bytes()) == empty


def test_corrupted_bytes_are_refused(rng):
    H, y = mixture(rng)
    blob = bytearray(ec.CollapseStats(5, 12).update(H, y).to_bytes())
    with pytest.raises(ec.CorruptDataError, match="length|short"):
        ec.CollapseStats.from_bytes(bytes(blob[:-9]))
    flipped = bytearray(blob)
    flipped[200] ^= 0x10
    with pytest.raises(ec.CorruptDataError, match="checksum"):
        ec.CollapseStats.from_bytes(bytes(flipped))
    with pytest.raises(ec.CorruptDataError, match="magic"):
        ec.CollapseStats.from_bytes(b"XXXXXXXX" + bytes(blob[8:]))
    future = bytearray(blob)
    future[8:12] = (99).to_bytes(4, "little")
    with pytest.raises(ec.IncompatibleStatsError, match="version 99"):
        ec.CollapseStats.from_bytes(bytes(future))
    with pytest.raises(ec.CorruptDataError):
        ec.CollapseStats.from_bytes(b"")


def test_failed_update_leaves_state_unchanged(rng):
    H, y = mixture(rng)
    st = ec.CollapseStats(5, 12).update(H[:100], y[:100])
    before = st.to_bytes()
    bad = H[100:].copy()
    bad[-1, 3] = np.nan  # the last row of the batch: after most of the pass has run
    with pytest.raises(ec.NonFiniteError, match=f"row {len(bad) - 1}, column 3"):
        st.update(bad, y[100:])
    assert st.to_bytes() == before
    with pytest.raises(ec.LabelError):
        st.update(H[100:], np.where(np.arange(len(y) - 100) == 5, 9, y[100:]))
    assert st.to_bytes() == before
    # also for the first update (which also sets the shift)
    fresh = ec.CollapseStats(5, 12)
    bad0 = H.copy()
    bad0[0, 0] = np.inf
    with pytest.raises(ec.NonFiniteError, match="row 0, column 0"):
        fresh.update(bad0, y)
    assert fresh.shift is None and fresh.num_samples == 0


def test_first_non_finite_in_row_order_whatever_the_labels(rng):
    H, y = mixture(rng)
    y = np.sort(y)[::-1].copy()  # label order opposite to row order
    H = H.copy()
    H[40, 2] = np.nan
    H[3, 5] = np.inf
    with pytest.raises(ec.NonFiniteError, match="row 3, column 5"):
        ec.CollapseStats(5, 12).update(H, y)
    st = ec.CollapseStats(5, 12).update(
        H[50:], y[50:]
    )  # the shift exists: the pass itself finds it
    with pytest.raises(ec.NonFiniteError, match="row 3, column 5"):
        st.update(H[:50], y[:50])


def test_merge_mismatch_errors(rng):
    a = ec.CollapseStats(5, 12)
    with pytest.raises(ec.IncompatibleStatsError, match="num_classes"):
        a.merge(ec.CollapseStats(6, 12))
    with pytest.raises(ec.IncompatibleStatsError):
        a.merge(ec.CollapseStats(5, 11))
    with pytest.raises(ec.IncompatibleStatsError, match="track_class_scatter"):
        a.merge(ec.CollapseStats(5, 12, track_class_scatter=True))
    with pytest.raises(ec.IncompatibleStatsError):
        a.merge("not stats")


def test_reshift_is_exact(rng):
    H, y = mixture(rng, offset=4.0)
    st = ec.CollapseStats(5, 12, track_class_scatter=True).update(H, y)
    moved = st.copy().reshift(np.full(12, -7.0))
    _assert_same(moved, st)
    np.testing.assert_allclose(moved.class_covariance(2), st.class_covariance(2), atol=1e-10)


def test_empty_batch_is_a_no_op():
    st = ec.CollapseStats(3, 4)
    st.update(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    assert st.num_samples == 0 and st.shift is None
