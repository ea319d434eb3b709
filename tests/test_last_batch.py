"""The training loader's ``last_batch`` option: "even" keeps every sample of every epoch in
near-equal batches; "drop" keeps the former behaviour. Checked by enumerating the batches."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

from etfcore.errors import ParameterError  # noqa: E402
from etfcore.training.datamodule import (  # noqa: E402
    ClassificationDataModule,
    EpochSeededSampler,
    EvenBatchSampler,
)


def _epoch_labels(dm, epoch):
    loader = dm.train_dataloader()
    loader.batch_sampler.sampler.set_epoch(epoch)
    return [y.numpy() for _, y in loader]


def test_even_keeps_every_sample_every_epoch():
    dm = ClassificationDataModule(
        dataset="digits", imbalance_ratio=0.01, batch_size=64, seed=3, last_batch="even"
    ).prepare()
    n = len(dm.train_dataset)
    assert n % 64 != 0  # the case that matters
    for epoch in range(3):
        batches = _epoch_labels(dm, epoch)
        sizes = [len(b) for b in batches]
        assert len(batches) == -(-n // 64) == dm.train_steps_per_epoch()
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 32
        # every sample once: the epoch's class counts are the training set's
        counts = np.bincount(np.concatenate(batches), minlength=dm.num_classes)
        assert counts.tolist() == list(dm.train_counts) and sum(sizes) == n


def test_even_batches_are_a_partition_of_the_seeded_permutation():
    sampler = EpochSeededSampler(range(1000), seed=7)
    for b in (1, 7, 64, 999, 1000, 1001):
        batches = list(EvenBatchSampler(sampler, b))
        flat = [i for batch in batches for i in batch]
        assert flat == list(sampler)  # same order, nothing dropped or repeated
        assert len(batches) == len(EvenBatchSampler(sampler, b)) == -(-1000 // b)
        sizes = {len(x) for x in batches}
        assert max(sizes) - min(sizes) <= 1


def test_drop_is_the_default_and_drops_the_remainder():
    dm = ClassificationDataModule(dataset="digits", imbalance_ratio=0.01, batch_size=64,
                                  seed=3).prepare()
    n = len(dm.train_dataset)
    sizes = [len(y) for _, y in dm.train_dataloader()]
    assert sizes == [64] * (n // 64) and dm.train_steps_per_epoch() == n // 64


def test_bad_last_batch_is_refused():
    with pytest.raises(ParameterError, match="last_batch"):
        ClassificationDataModule(dataset="digits", last_batch="pad")
