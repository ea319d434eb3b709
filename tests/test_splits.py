"""The split and label toolkit (etfcore.splits) against brute-force references in plain Python,
and the old names of both layers against it."""

import math

import numpy as np
import pytest

import etfcore as ec
from etfcore import splits as S


def _labels(rng, n, k):
    return rng.integers(0, k, n)


def _reference_ranks(labels, u):
    """Rank of sample i within its class: how many samples of its class come before it when the
    class is ordered by the draw u (ties by position). O(N²)."""
    n = len(labels)
    return np.array([
        sum(1 for j in range(n)
            if labels[j] == labels[i] and (u[j] < u[i] or (u[j] == u[i] and j < i)))
        for i in range(n)
    ])


@pytest.mark.parametrize("seed", range(5))
def test_rank_within_class_matches_the_quadratic_definition(seed):
    rng = np.random.default_rng(seed)
    y = _labels(rng, 60, 4)
    got = S.rank_within_class(y, np.random.default_rng(seed + 100))
    u = np.random.default_rng(seed + 100).random(y.size)  # the same single draw
    np.testing.assert_array_equal(got, _reference_ranks(y.tolist(), u.tolist()))


@pytest.mark.parametrize("seed", range(5))
def test_take_per_class_and_long_tail_counts(seed):
    rng = np.random.default_rng(seed)
    y = _labels(rng, 300, 5)
    have = np.bincount(y, minlength=5)
    counts = np.array([int(rng.integers(0, h + 1)) for h in have])
    idx = S.take_per_class(y, counts, seed=seed)
    assert list(idx) == sorted(set(idx.tolist()))
    assert [int((y[idx] == c).sum()) for c in range(5)] == counts.tolist()
    # the kept samples are the first counts[c] of the class by the seeded rank
    u = np.random.default_rng(seed).random(y.size)
    rank = _reference_ranks(y.tolist(), u.tolist())
    assert idx.tolist() == [i for i in range(y.size) if rank[i] < counts[y[i]]]
    rho = float(rng.uniform(0.05, 1.0))
    lt = S.long_tail_indices(y, rho, seed=seed)
    n_max = int(have.min())
    want = [int(math.floor(n_max * rho ** (k / 4) + 1e-9)) for k in range(5)]
    assert [int((y[lt] == c).sum()) for c in range(5)] == want


@pytest.mark.parametrize("seed", range(6))
def test_stratified_holdout_brute_force(seed):
    rng = np.random.default_rng(seed)
    y = _labels(rng, 120, 6)
    y[:1] = 9  # a class of one sample stays on the kept side
    f = float(rng.uniform(0.05, 0.9))
    kept, held = S.stratified_holdout(y, f, seed=seed)
    u = np.random.default_rng(seed).random(y.size)
    rank = _reference_ranks(y.tolist(), u.tolist())
    n = {c: int((y == c).sum()) for c in set(y.tolist())}
    want_held = [i for i in range(y.size) if rank[i] < min(round(f * n[y[i]]), n[y[i]] - 1)]
    assert held.tolist() == want_held
    assert kept.tolist() == sorted(set(range(y.size)) - set(want_held))
    assert 0 not in held


@pytest.mark.parametrize("seed", range(6))
def test_stratified_validation_mask_brute_force(seed):
    rng = np.random.default_rng(seed)
    y = rng.choice([3, 7, 11, 20], 200)
    f = float(rng.uniform(0.1, 0.6))
    mask = S.stratified_validation_mask(y, f, seed)
    draw = np.random.default_rng(seed)  # class by class, ascending, one permutation each
    want = np.zeros(y.size, dtype=bool)
    for c in sorted(set(y.tolist())):
        members = [i for i in range(y.size) if y[i] == c]
        chosen = draw.permutation(members)[: int(round(f * len(members)))]
        want[list(chosen)] = True
    np.testing.assert_array_equal(mask, want)
    with pytest.raises(ec.LabelError, match="no validation sample"):
        S.stratified_validation_mask([0, 0, 0, 1, 1, 1, 1, 1, 1, 1], 0.1, 0)
    with pytest.raises(ec.ParameterError):
        S.stratified_validation_mask(y, 1.0, 0)


def test_random_split_is_a_seeded_partition():
    tr, te = S.random_split(50, 0.3, seed=3)
    assert (len(tr), len(te)) == (35, 15)
    assert sorted(tr.tolist() + te.tolist()) == list(range(50))
    perm = np.random.default_rng(3).permutation(50)
    assert te.tolist() == sorted(perm[35:].tolist())


def test_class_subset_and_label_maps_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        y = _labels(rng, 40, 6)
        present = sorted(set(y.tolist()))
        classes = [int(c) for c in rng.permutation(present)[: rng.integers(1, len(present) + 1)]]
        idx, new = S.class_subset(y, classes)
        want = [(i, classes.index(int(y[i]))) for i in range(y.size) if int(y[i]) in classes]
        assert list(zip(idx.tolist(), new.tolist())) == want
        mapping = rng.integers(0, 3, 6).tolist()
        assert S.map_label_array(y, S.label_table(mapping)).tolist() == [mapping[v] for v in y]
    with pytest.raises(ec.LabelError):
        S.class_subset(np.array([0, 1]), [2])
    with pytest.raises(ec.ParameterError):
        S.class_subset(np.array([0, 1]), [1, 1])
    with pytest.raises(ec.LabelError):
        S.map_label_array(np.array([0, 5]), {0: 1})


def test_the_old_names_are_aliases_of_the_toolkit():
    from etfcore import transfer
    from etfcore.transfer import probe

    y = np.repeat([0, 1, 2], [10, 20, 30])
    np.testing.assert_array_equal(
        transfer.stratified_split(y, 0.25, seed=4), S.stratified_validation_mask(y, 0.25, 4)
    )
    assert probe.stratified_split is transfer.stratified_split
    pytest.importorskip("torch")
    from etfcore.training import datasets as D

    for a, b in zip(D.stratified_split(y, 0.25, seed=4), S.stratified_holdout(y, 0.25, seed=4)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(D.split(30, 0.2, 1), S.random_split(30, 0.2, 1)):
        np.testing.assert_array_equal(a, b)
    assert D.label_lookup is S.label_lookup and D.plan_splits is S.plan_splits
    assert D.long_tail_indices is S.long_tail_indices
