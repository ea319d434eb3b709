r"""One toolkit for the index arithmetic of labelled data (numpy only): class subsets, label maps,
long-tail subsampling and stratified splits. The training layer (datasets, datamodule) and the
transfer layer (features, linear probe) both use it.

Conventions: labels are non-negative integers; index arrays are sorted int64; every random
choice is seeded and drawn with ``numpy.random.default_rng(seed)``.

- [`label_lookup`][label_lookup]: original label → new label ``0..K'-1`` (``-1``: dropped).
- [`class_subset`][class_subset]: the samples of some classes, relabelled in the given order.
- [`label_table`][label_table], [`map_label_array`][map_label_array]: a label map (sequence or dict)
  and the labels it maps.
- [`take_per_class`][take_per_class]: a seeded subset with a given count per class.
- [`long_tail_indices`][long_tail_indices]: a long-tail subset, $\lfloor n_{\max} \rho^{k/(K-1)}
  \rfloor$ of class $k$.
- [`stratified_holdout`][stratified_holdout]: ``(kept, held)``: $\min(\mathrm{round}(f n_k),\, n_k -
  1)$ of class $k$ held out (a class of one sample stays whole).
- [`stratified_validation_mask`][stratified_validation_mask]: a boolean mask, $\mathrm{round}(f
  n_k)$ of class $k$; refuses a class left empty on either side.
- [`random_split`][random_split]: an unstratified seeded ``(train, test)`` split.
- [`plan_splits`][plan_splits]: the training/validation/test plan of a labelled dataset.

Examples
--------
>>> y = np.repeat(np.arange(3), 100)
>>> kept, held = stratified_holdout(y, 0.2, seed=0)
>>> np.bincount(y[held]).tolist()
[20, 20, 20]
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ._validation import as_float, as_index
from .data import long_tail_counts
from .errors import LabelError, ParameterError

#: Seed of the held-out splits etfcore draws itself (fixed: independent of any run's ``seed``, so
#: runs with different seeds are evaluated on the same samples).
SPLIT_SEED = 0

__all__ = [
    "SPLIT_SEED",
    "SplitPlan",
    "check_mapped",
    "class_subset",
    "integer_labels",
    "label_lookup",
    "label_table",
    "long_tail_indices",
    "map_label_array",
    "plan_splits",
    "random_split",
    "rank_within_class",
    "stratified_folds",
    "stratified_holdout",
    "stratified_validation_mask",
    "take_per_class",
]


# ------------------------------------------------------------------ labels
def integer_labels(labels: Any) -> np.ndarray:
    """``labels`` (numpy, a sequence or a CPU/GPU torch tensor) as a 1-D int64 array; anything
    else raises [`LabelError`][etfcore.LabelError].

    Examples
    --------
    >>> integer_labels([3, 1, 2]).dtype.name
    'int64'
    """
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    a = np.asarray(labels)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise LabelError(f"labels must be a 1-D integer array, got shape {a.shape} {a.dtype}")
    return a.astype(np.int64)


def _class_list(classes: Any) -> List[int]:
    cls = [int(c) for c in np.asarray(classes).ravel()]
    if len(cls) < 1:
        raise ParameterError("classes is empty")
    if len(set(cls)) != len(cls):
        raise ParameterError(f"classes contains repeats: {cls}")
    return cls


def class_subset(labels: Any, classes: Any) -> Tuple[np.ndarray, np.ndarray]:
    """``(indices, new_labels)``: the sorted indices of the samples whose label is in ``classes``
    and their new labels, ``classes[j] → j`` (the given order). Empty or repeated ``classes``
    raise [`ParameterError`][etfcore.ParameterError], a class without samples
    [`LabelError`][etfcore.LabelError].

    Examples
    --------
    >>> idx, new = class_subset(np.array([0, 1, 2, 0, 1, 2]), [2, 0])
    >>> idx.tolist(), new.tolist()
    ([0, 2, 3, 5], [1, 0, 1, 0])
    """
    cls = _class_list(classes)
    lab = integer_labels(labels)
    missing = sorted(set(cls) - set(np.unique(lab).tolist()))
    if missing:
        raise LabelError(f"requested classes have no samples: {missing[:10]}")
    idx = np.flatnonzero(np.isin(lab, cls))
    lookup = {c: i for i, c in enumerate(cls)}
    return idx, np.array([lookup[int(v)] for v in lab[idx]], dtype=np.int64)


def label_table(mapping: Any) -> Dict[int, int]:
    """A label map as a dict: a ``Mapping`` as it is, a 1-D integer sequence ``m`` as
    ``{i: m[i]}`` (e.g. the coarse label of each fine label).

    Examples
    --------
    >>> label_table([0, 0, 1])
    {0: 0, 1: 0, 2: 1}
    """
    if isinstance(mapping, Mapping):
        return {int(k): int(v) for k, v in mapping.items()}
    arr = np.asarray(mapping)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ParameterError("mapping must be a 1-D integer sequence or a dict")
    return {i: int(v) for i, v in enumerate(arr)}


def map_label_array(labels: Any, table: Mapping[int, int]) -> np.ndarray:
    """``table[y]`` for every label ``y`` (int64); a label without an entry raises
    [`LabelError`][etfcore.LabelError].

    Examples
    --------
    >>> map_label_array(np.array([0, 3, 1, 2]), label_table([0, 0, 1, 1])).tolist()
    [0, 1, 0, 1]
    """
    lab = integer_labels(labels)
    check_mapped(lab, table)
    return np.array([table[int(v)] for v in lab], dtype=np.int64)


def check_mapped(labels: np.ndarray, table: Mapping[int, int]) -> None:
    """Raises [`LabelError`][etfcore.LabelError] unless every label has an entry in ``table``."""
    missing = sorted(set(np.unique(labels).tolist()) - set(table))
    if missing:
        raise LabelError(f"labels {missing[:10]} have no entry in the mapping")


def label_lookup(
    num_original: int,
    classes: Optional[Sequence[int]] = None,
    label_map: Optional[Sequence[int]] = None,
) -> np.ndarray:
    """Original label → new label in ``0..K'-1`` (``-1``: dropped); every new label is used.

    - ``classes`` only: class ``classes[j]`` becomes ``j``, the others are dropped;
    - ``label_map`` only: ``c`` goes to ``label_map[c]`` (a negative entry drops ``c``), then the
      distinct targets are renumbered ``0..K'-1`` in ascending order (a map with gaps, or one
      whose target is reached only by dropped classes, leaves no empty class);
    - both: ``classes`` selects, ``label_map`` maps, and the distinct targets are numbered in the
      order in which ``classes`` first reaches them.

    Examples
    --------
    >>> label_lookup(5, classes=[3, 1]).tolist()
    [-1, 1, -1, 0, -1]
    >>> label_lookup(4, label_map=[5, 5, 2, -1]).tolist()
    [1, 1, 0, -1]
    >>> label_lookup(6, classes=[4, 0, 5], label_map=[7, 7, 3, 3, 9, 7]).tolist()
    [1, -1, -1, -1, 0, 1]
    """
    lut = np.arange(num_original, dtype=np.int64)
    if label_map is not None:
        m = np.asarray(label_map, dtype=np.int64)
        if m.ndim != 1 or m.size < num_original:
            raise ParameterError(
                f"label_map must have one entry per original label (≥ {num_original}), "
                f"got {m.size}"
            )
        lut = m[:num_original].copy()
    if classes is None:
        order = np.unique(lut[lut >= 0])  # ascending
    else:
        c = np.asarray(classes, dtype=np.int64)
        if c.ndim != 1 or c.size == 0 or len(np.unique(c)) != c.size:
            raise ParameterError(f"classes must be distinct original labels, got {list(c)}")
        if c.min() < 0 or c.max() >= num_original:
            raise LabelError(f"classes must lie in 0..{num_original - 1}, got {list(c)}")
        keep = np.full(num_original, -1, dtype=np.int64)
        keep[c] = lut[c]
        lut = keep
        targets = lut[c][lut[c] >= 0]
        _, first = np.unique(targets, return_index=True)
        order = targets[np.sort(first)]  # distinct targets in the order classes reach them
    if order.size == 0:
        raise ParameterError("classes/label_map keep no class")
    sorter = np.argsort(order, kind="stable")
    new = np.full(num_original, -1, dtype=np.int64)
    kept = lut >= 0
    new[kept] = sorter[np.searchsorted(order, lut[kept], sorter=sorter)]
    return new


# ------------------------------------------------------------------ subsampling and splits
def rank_within_class(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rank ``0..n_c-1`` of every sample within its class: the samples of a
    class ordered by one uniform draw ``u_i`` each (``rng.random(N)``, ties by position).

    Examples
    --------
    >>> r = rank_within_class(np.array([0, 1, 0, 0, 1]), np.random.default_rng(0))
    >>> sorted(r[[0, 2, 3]].tolist()), sorted(r[[1, 4]].tolist())
    ([0, 1, 2], [0, 1])
    """
    order = np.lexsort((rng.random(labels.size), labels))
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.empty(labels.size, dtype=np.int64)
    rank[order] = np.arange(labels.size) - starts
    return rank


def take_per_class(labels: np.ndarray, counts: np.ndarray, *, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset keeping ``counts[c]`` samples of class ``c``
    (those of [`rank_within_class`][etfcore.splits.rank_within_class] below ``counts[c]``).

    Examples
    --------
    >>> y = np.repeat([0, 1], 5)
    >>> np.bincount(y[take_per_class(y, np.array([2, 4]), seed=0)]).tolist()
    [2, 4]
    """
    labels = np.asarray(labels, dtype=np.int64)
    have = np.bincount(labels, minlength=len(counts))
    if (have[: len(counts)] < counts).any() or labels.max(initial=-1) >= len(counts):
        raise ParameterError(f"cannot take {list(counts)} samples per class from {list(have)}")
    rank = rank_within_class(labels, np.random.default_rng(seed))
    return np.flatnonzero(rank < np.asarray(counts)[labels])


def long_tail_indices(
    labels: np.ndarray, imbalance_ratio: float, *, seed: int, num_classes: Optional[int] = None
) -> np.ndarray:
    """Sorted indices of a long-tail subset: class ``k`` keeps ``⌊n_max · ρ^{k/(K-1)}⌋`` samples
    (CIFAR-LT profile, [`etfcore.data.long_tail_counts`][etfcore.data.long_tail_counts]), ``n_max``
    the smallest class count (so every class can supply its share), seeded.

    Examples
    --------
    >>> y = np.repeat(np.arange(3), 100)
    >>> np.bincount(y[long_tail_indices(y, 0.1, seed=0)]).tolist()
    [100, 31, 10]
    """
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    have = np.bincount(labels, minlength=k)
    if (have == 0).any():
        raise ParameterError(f"long-tail subsampling needs every class, got counts {list(have)}")
    counts = long_tail_counts(k, int(have.min()), imbalance_ratio)
    return take_per_class(labels, counts, seed=seed)


def stratified_holdout(
    labels: np.ndarray, fraction: float, *, seed: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split ``(kept, held_out)`` of sorted indices: class ``c`` sends
    ``round(fraction · n_c)`` samples to ``held_out``, at most ``n_c - 1`` (a class of one sample
    stays whole on the kept side). The held-out samples of a class are those of
    [`rank_within_class`][etfcore.splits.rank_within_class] below that count. Used for the training
    layer's validation split and the held-out split of datasets without an official one.

    Examples
    --------
    >>> kept, held = stratified_holdout(np.repeat([0, 1], [10, 30]), 0.2, seed=0)
    >>> len(kept), len(held)
    (32, 8)
    """
    if not (0.0 <= fraction < 1.0):
        raise ParameterError(f"a split fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels, dtype=np.int64)
    have = np.bincount(labels)
    held_counts = np.minimum(np.rint(fraction * have).astype(np.int64), np.maximum(have - 1, 0))
    rank = rank_within_class(labels, np.random.default_rng(seed))
    held = rank < held_counts[labels]
    return np.flatnonzero(~held), np.flatnonzero(held)


def stratified_validation_mask(labels: Any, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a stratified, seeded validation split: ``round(val_fraction · n_k)`` samples
    of every class ``k`` (class by class in ascending label order, the first of
    ``numpy.random.default_rng(seed).permutation`` of its indices). Strict where
    [`stratified_holdout`][etfcore.splits.stratified_holdout] is lenient: a class that would have no
    sample on one side raises [`LabelError`][etfcore.LabelError] (the linear probe needs every class
    on both sides).

    Examples
    --------
    >>> m = stratified_validation_mask(np.repeat([0, 1], 10), 0.2, seed=0)
    >>> int(m.sum()), int(m[:10].sum())
    (4, 2)
    """
    val_fraction = as_float(val_fraction, "val_fraction")
    if not 0.0 < val_fraction < 1.0:
        raise ParameterError(f"val_fraction must be in (0, 1), got {val_fraction}")
    y = np.asarray(labels)
    rng = np.random.default_rng(as_index(seed, "seed"))
    mask = np.zeros(y.shape[0], dtype=bool)
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        nv = int(round(val_fraction * idx.size))
        if nv == 0 or nv == idx.size:
            side = "validation" if nv == 0 else "training"
            raise LabelError(
                f"the validation split ({val_fraction:g} of each class) leaves class {int(k)} "
                f"({idx.size} training samples) with no {side} sample; give more samples of "
                "it, drop the class, or change val_fraction"
            )
        mask[rng.permutation(idx)[:nv]] = True
    return mask


def random_split(n: int, test_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Stratification-free seeded split of ``range(n)`` into sorted ``(train, test)`` indices:
    the first ``round(n·(1 - test_fraction))`` of a seeded permutation train.

    Examples
    --------
    >>> tr, te = random_split(10, 0.3, seed=0)
    >>> len(tr), len(te), sorted(tr.tolist() + te.tolist()) == list(range(10))
    (7, 3, True)
    """
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * (1 - test_fraction)))
    return np.sort(perm[:cut]), np.sort(perm[cut:])


# ------------------------------------------------------------------ the plan of a dataset
class SplitPlan(NamedTuple):
    """Which base samples go to each split and their new labels (``*_idx`` index the base
    training or test dataset; ``*_labels`` are in ``0..num_classes-1``)."""

    num_classes: int
    train_idx: np.ndarray
    train_labels: np.ndarray
    val_idx: np.ndarray
    val_labels: np.ndarray
    test_idx: np.ndarray
    test_labels: np.ndarray

    @property
    def train_counts(self) -> np.ndarray:
        return np.bincount(self.train_labels, minlength=self.num_classes)


def plan_splits(
    y_train: np.ndarray,
    y_test: np.ndarray,
    *,
    classes: Optional[Sequence[int]] = None,
    label_map: Optional[Sequence[int]] = None,
    imbalance_ratio: float = 1.0,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> SplitPlan:
    """The training/validation/test plan of a dataset from its labels, in this order:

    1. labels selected and renumbered by [`label_lookup`][etfcore.splits.label_lookup] (``classes``,
       ``label_map``), on both splits;
    2. the training split long-tail subsampled
       ([`long_tail_indices`][etfcore.splits.long_tail_indices], ``imbalance_ratio``, seeded by
       ``seed``) over the full training split, so ``n_max`` is the smallest class count of the whole
       split (CIFAR-10-LT with ρ = 0.01 keeps 5000 … 50);
    3. a validation split drawn from the kept samples by
       [`stratified_holdout`][etfcore.splits.stratified_holdout] (``round(val_fraction · n_k)`` of
       class ``k``, at most ``n_k - 1``; seeded by ``seed + 1``): it follows the training
       distribution, long tail included, and training keeps ``n_k`` minus that. The samples the long
       tail kept are the same whatever ``val_fraction``.

    The test split is relabelled only (never subsampled).

    Examples
    --------
    >>> y = np.repeat(np.arange(3), 100)
    >>> plan = plan_splits(y, y, imbalance_ratio=0.1, val_fraction=0.2, seed=0)
    >>> plan.train_counts.tolist(), np.bincount(plan.val_labels).tolist()
    ([80, 25, 8], [20, 6, 2])
    """
    y_train = np.asarray(y_train, dtype=np.int64)
    y_test = np.asarray(y_test, dtype=np.int64)
    if y_train.size == 0 or min(y_train.min(), y_test.min(initial=0)) < 0:
        raise LabelError("datasets must hold non-negative integer labels")
    if not (0.0 < imbalance_ratio <= 1.0):
        raise ParameterError(f"imbalance_ratio must be in (0, 1], got {imbalance_ratio}")
    lut = label_lookup(int(max(y_train.max(), y_test.max(initial=0))) + 1, classes, label_map)
    k = int(lut.max()) + 1
    train_idx = np.flatnonzero(lut[y_train] >= 0)
    test_idx = np.flatnonzero(lut[y_test] >= 0)
    train_labels = lut[y_train[train_idx]]
    if imbalance_ratio < 1.0:
        keep = long_tail_indices(train_labels, imbalance_ratio, seed=seed, num_classes=k)
        train_idx, train_labels = train_idx[keep], train_labels[keep]
    val_idx = np.zeros(0, dtype=np.int64)
    if val_fraction > 0:
        kept, held = stratified_holdout(train_labels, val_fraction, seed=seed + 1)
        val_idx, train_idx = train_idx[held], train_idx[kept]
    return SplitPlan(
        num_classes=k,
        train_idx=train_idx,
        train_labels=lut[y_train[train_idx]],
        val_idx=val_idx,
        val_labels=lut[y_train[val_idx]],
        test_idx=test_idx,
        test_labels=lut[y_test[test_idx]],
    )


def stratified_folds(labels: Any, folds: int, seed: int) -> np.ndarray:
    """The fold ``0..folds-1`` of every sample for stratified, seeded k-fold cross-validation: the
    samples sorted by class, in the order of [`rank_within_class`][etfcore.splits.rank_within_class]
    (drawn from ``numpy.random.default_rng(seed)``) within it, are dealt to the folds in turn, so
    each class splits as evenly as it can (its counts per fold differ by at most one) and so do the
    folds. Every class needs at least ``folds`` samples ([`LabelError`][etfcore.LabelError]
    otherwise): each fold must hold every class for the probe's per-fold accuracy.

    Examples
    --------
    >>> f = stratified_folds(np.repeat([0, 1], [6, 9]), 3, seed=0)
    >>> np.bincount(f).tolist(), np.bincount(f[:6]).tolist()
    ([5, 5, 5], [2, 2, 2])
    """
    folds = as_index(folds, "folds")
    if folds < 2:
        raise ParameterError(f"cross-validation needs at least 2 folds, got {folds}")
    y = np.asarray(labels)
    classes, codes = np.unique(y, return_inverse=True)
    have = np.bincount(codes)
    if (have < folds).any():
        c = int(np.argmax(have < folds))
        raise LabelError(
            f"{folds}-fold cross-validation needs at least {folds} samples of every class; "
            f"class {classes[c]} has {int(have[c])}: give more samples of it or fewer folds"
        )
    rank = rank_within_class(codes.astype(np.int64), np.random.default_rng(as_index(seed, "seed")))
    order = np.lexsort((rank, codes))
    fold = np.empty(y.shape[0], dtype=np.int64)
    fold[order] = np.arange(y.shape[0]) % folds
    return fold
