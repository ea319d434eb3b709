"""Map-reduce of statistics over feature shards on a Dask cluster of worker processes: each
worker builds the statistics of its own shard (here generated from a seed, so no process ever
holds the whole feature set), the statistics travel pickled (through the versioned bytes) and
are merged pairwise on the workers. The result equals one pass over all the shards."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import etfcore as ec

distributed = pytest.importorskip("distributed")

K, P = 4, 12


def shard(seed: int):
    """One shard of features: what a worker would load from its own file."""
    H, y = ec.data.gaussian_mixture(K, P, 50 + seed, seed=seed, offset=3.0)
    return H.astype(np.float32), y


def shard_stats(seed: int) -> ec.CollapseStats:
    H, y = shard(seed)
    return ec.CollapseStats(K, P).update(H, y)


@pytest.mark.slow
def test_map_reduce_of_statistics_on_a_local_cluster():
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    seeds = list(range(6))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        parts = client.map(shard_stats, seeds)
        while len(parts) > 1:  # pairwise tree reduction, on the workers
            parts = [
                client.submit(ec.merge_stats, *parts[i : i + 2]) for i in range(0, len(parts), 2)
            ]
        total = parts[0].result()
    H = np.vstack([shard(s)[0] for s in seeds])
    y = np.concatenate([shard(s)[1] for s in seeds])
    one = ec.CollapseStats(K, P).update(H, y)
    np.testing.assert_array_equal(total.class_counts, one.class_counts)
    assert total.precision == "float32"
    # float32 chunks are multiplied in float32: shards and one pass agree to float32 rounding.
    for w in ("weighted", "balanced"):
        assert total.vci(w) == pytest.approx(one.vci(w), rel=1e-6)
        assert total.nc1(w) == pytest.approx(one.nc1(w), rel=1e-6)
    cov = one.total_covariance()
    np.testing.assert_allclose(total.total_covariance(), cov, atol=1e-6 * np.abs(cov).max())
