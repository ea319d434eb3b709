"""EMMS and PED from streamed statistics against the in-memory functions (single pass, chunked,
merged), their torch-accumulated form, and NLEEP's subsample path."""

import numpy as np
import pytest

import etfcore as ec
from etfcore import transfer
from etfcore.errors import ParameterError, ShapeError
from etfcore.transfer._selection_common import stratified_subsample


def mixture(n=900, p=12, k=5, seed=0, sep=0.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return 2.0 + sep * rng.normal(size=(k, p))[y] + rng.normal(size=(n, p)), y


def streamed(x, y, k, chunk=128, merged=False):
    if merged:
        h = len(y) // 3
        a = transfer.TransferabilityStats(k, x.shape[1]).update(x[:h], y[:h])
        return a.merge(transfer.TransferabilityStats(k, x.shape[1]).update(x[h:], y[h:]))
    xs = transfer.TransferabilityStats(k, x.shape[1])
    for a in range(0, len(y), chunk):
        xs.update(x[a:a + chunk], y[a:a + chunk])
    return xs


def close(a, b, rel=1e-10):
    assert a == pytest.approx(b, rel=rel, abs=1e-13)


@pytest.mark.parametrize("merged", [False, True])
@pytest.mark.parametrize("score", ["logme", "gbc"])
def test_ped_from_stats_equals_in_memory(score, merged):
    x, y = mixture()
    got = transfer.ped_from_stats(streamed(x, y, 5, merged=merged), score=score)
    ref = transfer.ped(x, y, score=score)
    close(got.value, ref.value)
    assert got.steps == ref.steps and len(got.displacements) == len(ref.displacements)
    np.testing.assert_allclose(got.displacements, ref.displacements, rtol=1e-10)
    assert ref.steps > 1  # the classes overlap: the descent really moved them


def test_ped_from_stats_reference_options_and_parity():
    x, y = mixture(seed=1, sep=0.3)
    rng = np.random.default_rng(9)
    r = 3.0 * rng.normal(size=(400, 12)) + 1.0
    rs = ec.CollapseStats(2, 12).update(r, rng.integers(0, 2, 400))
    xs = streamed(x, y, 5)
    kw = dict(nsigma=0.3, time_step=0.2, exit_ratio=0.3, max_steps=4)
    got = transfer.ped_from_stats(xs, reference=rs, **kw)
    ref = transfer.ped(x, y, reference=r, **kw)
    close(got.value, ref.value)
    assert got.reference == "given" == ref.reference
    close(transfer.ped_from_stats(xs, parity=True).value, transfer.ped(x, y, parity=True).value)
    close(transfer.ped_from_stats(xs, score="gbc", var_floor=0.5).value,
          transfer.ped(x, y, score="gbc", var_floor=0.5).value)


def test_ped_from_stats_separated_classes_do_not_move():
    x, y = mixture(seed=2, sep=30.0)
    xs = streamed(x, y, 5)
    got = transfer.ped_from_stats(xs)
    assert got.steps == 0
    close(got.value, float(xs.logme()))
    close(transfer.ped_from_stats(xs, score="gbc").value, xs.gbc())


def test_ped_from_stats_errors():
    x, y = mixture()
    with pytest.raises(ParameterError, match="TransferabilityStats"):
        transfer.ped_from_stats(ec.CollapseStats(5, 12).update(x, y))
    with pytest.raises(ParameterError, match="score"):
        transfer.ped_from_stats(streamed(x, y, 5), score="sfda")
    with pytest.raises(ShapeError, match="dimension"):
        transfer.ped_from_stats(streamed(x, y, 5),
                                reference=ec.CollapseStats(2, 3).update(x[:, :3], y % 2))
    with pytest.raises(ParameterError, match="var_floor"):
        transfer.ped_from_stats(streamed(x, y, 5), score="gbc", var_floor=-1.0)


def test_gbc_from_moments_in_the_core_refuses_bad_moments():
    # PED-GBC's moved moments go through the core's GBC; its checks name the problem
    from etfcore import _core
    from etfcore.errors import NonFiniteError

    m, v = np.zeros((3, 4)), np.ones((3, 4))
    with pytest.raises(ShapeError, match="one shape"):
        _core.transfer_gbc_from_moments(m, np.ones((3, 5)))
    v[2, 1] = np.nan
    with pytest.raises(NonFiniteError, match="row 2, column 1"):
        _core.transfer_gbc_from_moments(m, v)
    v[2, 1] = -1.0
    with pytest.raises(ParameterError, match=">= 0"):
        _core.transfer_gbc_from_moments(m, v)


@pytest.mark.parametrize("merged", [False, True])
def test_emms_from_stats_one_hot(merged):
    x, y = mixture(seed=3)
    st = streamed(x, y, 5, merged=merged)
    got, ref = transfer.emms_from_stats(st), transfer.emms(x, y)
    close(got.value, ref.value)
    assert got.rank == ref.rank and got.targets == "one-hot"


@pytest.mark.parametrize("iterations", [1, 3])
def test_emms_from_stats_embeddings(iterations):
    x, y = mixture(seed=4)
    rng = np.random.default_rng(5)
    embs = [rng.normal(size=(5, 7)) for _ in range(3)]
    got = transfer.emms_from_stats(streamed(x, y, 5), label_embeddings=embs,
                                   iterations=iterations)
    ref = transfer.emms(x, y, label_embeddings=embs, iterations=iterations)
    close(got.value, ref.value)
    np.testing.assert_allclose(got.mixture_weights, ref.mixture_weights, rtol=1e-9, atol=1e-12)


def test_emms_from_stats_absent_classes_and_rank_deficient_features():
    x, y = mixture(seed=6)
    y = np.array([0, 2, 3, 6, 7])[y]  # 5 of K = 8 slots
    x = np.c_[x, x[:, :2] @ np.array([[1.0], [2.0]])]  # one dependent column
    rng = np.random.default_rng(7)
    embs = [rng.normal(size=(5, 4)), rng.normal(size=(5, 4))]
    st = ec.CollapseStats(8, 13).update(x, y)
    got = transfer.emms_from_stats(st, label_embeddings=embs)
    ref = transfer.emms(x, y, label_embeddings=embs)
    close(got.value, ref.value, rel=1e-8)
    assert got.rank == ref.rank == 12
    full = np.zeros((8, 4))
    full[[0, 2, 3, 6, 7]] = embs[0]
    close(transfer.emms_from_stats(st, label_embeddings=[full]).value,
          transfer.emms(x, y, label_embeddings=[embs[0]]).value, rel=1e-8)
    with pytest.raises(ShapeError):
        transfer.emms_from_stats(st, label_embeddings=[np.ones((3, 4))])
    with pytest.raises(ParameterError):
        transfer.as_collapse_stats(np.ones((3, 3)))


def test_scores_from_torch_accumulated_statistics():
    torch = pytest.importorskip("torch")
    from etfcore.training import TorchCollapseStats

    x, y = mixture(seed=8)
    t = TorchCollapseStats(5, 12)
    for a in range(0, 900, 200):
        t.update(torch.as_tensor(x[a:a + 200]), torch.as_tensor(y[a:a + 200]))
    close(transfer.emms_from_stats(t).value, transfer.emms(x, y).value)
    close(float(transfer.logme_from_stats(t)), float(transfer.logme(x, y)))
    close(transfer.hscore_from_stats(t), transfer.hscore(x, y))
    close(transfer.rankme_from_stats(t).value, transfer.rankme(x).value)
    close(transfer.lidar_from_stats(t).value, transfer.lidar(x, y).value)


def test_nleep_takes_the_recorded_stratified_subsample():
    x, y = mixture(n=600, p=6, k=3, seed=10, sep=2.0)
    r = transfer.nleep(x, y, max_samples=150, seed=4, components_per_class=2)
    rows = stratified_subsample(y, 150, 4)
    assert r.num_samples == rows.size <= 150 and r.max_samples == 150
    assert np.array_equal(np.bincount(y[rows]), np.maximum(2, 150 * np.bincount(y) // 600))
    sub = transfer.nleep(x[rows], y[rows], max_samples=None, seed=4, components_per_class=2)
    close(r.value, sub.value)


def _torch_transferability(device):
    torch = pytest.importorskip("torch")
    from etfcore.training import TorchTransferabilityStats

    x, y = mixture(seed=11)
    ref = streamed(x, y, 5)
    halves = [TorchTransferabilityStats(5, 12, device=device) for _ in range(2)]
    for a in range(0, 900, 150):
        halves[(a // 150) % 2].update(torch.as_tensor(x[a:a + 150], device=device),
                                      torch.as_tensor(y[a:a + 150], device=device))
    got = halves[0].to_core().merge(halves[1].to_core())
    close(got.regularized_hscore(), ref.regularized_hscore())
    close(got.gbc(), ref.gbc())
    close(float(got.logme()), float(ref.logme()))
    for score in ("logme", "gbc"):
        close(transfer.ped_from_stats(got, score=score).value,
              transfer.ped(x, y, score=score).value)
    # float32 batches are accumulated in float64 on the device
    t32 = TorchTransferabilityStats(5, 12, device=device).update(
        torch.as_tensor(x.astype(np.float32), device=device), torch.as_tensor(y, device=device))
    r64 = transfer.TransferabilityStats(5, 12).update(x.astype(np.float32).astype(np.float64), y)
    close(t32.to_core().gbc(), r64.gbc())


def test_torch_transferability_stats_on_cpu():
    _torch_transferability("cpu")


def test_torch_transferability_stats_errors():
    torch = pytest.importorskip("torch")
    from etfcore.errors import LabelError, NonFiniteError
    from etfcore.training import TorchTransferabilityStats

    t = TorchTransferabilityStats(3, 4)
    with pytest.raises(LabelError):
        t.update(torch.zeros(5, 4), torch.full((5,), 3))
    with pytest.raises(NonFiniteError):
        t.update(torch.full((5, 4), float("nan")), torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ShapeError):
        t.update(torch.zeros(5, 3), torch.zeros(5, dtype=torch.int64))
    assert t.to_core().num_samples == 0


@pytest.mark.cuda
def test_torch_transferability_stats_on_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    _torch_transferability("cuda")
    from etfcore.training import TorchCollapseStats

    x, y = mixture(seed=12)
    t = TorchCollapseStats(5, 12, device="cuda")
    t.update(torch.as_tensor(x, device="cuda"), torch.as_tensor(y, device="cuda"))
    close(transfer.emms_from_stats(t).value, transfer.emms(x, y).value)
    close(transfer.lidar_from_stats(t).value, transfer.lidar(x, y).value)
