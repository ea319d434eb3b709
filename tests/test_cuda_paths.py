"""The GPU paths against the CPU on the same data (selected by ``pytest -m cuda``; skipped
without a CUDA device). ``benches/gpu_check.py`` runs them first."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import etfcore as ec  # noqa: E402

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def mixture(n, p, k, seed=0, offset=5.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return (offset + 3 * rng.normal(size=(k, p))[y] + rng.normal(size=(n, p))), y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_statistics_equal_the_core(dtype):
    from etfcore.training import CollapseMetrics

    h, y = mixture(5000, 24, 7)
    ref = ec.CollapseStats(7, 24)
    ref.update(h, y)
    m = CollapseMetrics(7, 24, products="float64").to("cuda")
    for s in range(0, 5000, 777):
        m.update(torch.as_tensor(h[s : s + 777], dtype=dtype, device="cuda"),
                 torch.as_tensor(y[s : s + 777], device="cuda"))  # fmt: skip
    got = m.to_core()
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    np.testing.assert_array_equal(got.class_counts, ref.class_counts)
    np.testing.assert_allclose(got.within_class_covariance(), ref.within_class_covariance(),
                               rtol=tol, atol=tol)  # fmt: skip
    assert float(got.nc1()) == pytest.approx(float(ref.nc1()), rel=100 * tol)


def test_cuda_probe_matches_the_cpu_probe():
    from etfcore.transfer import linear_probe

    h, y = mixture(3000, 16, 5, offset=0.0)
    h = (h / 3).astype(np.float32)
    cpu = linear_probe(h[:2400], y[:2400], h[2400:], y[2400:], seed=0, device="cpu")
    gpu = linear_probe(h[:2400], y[:2400], h[2400:], y[2400:], seed=0, device="cuda")
    assert gpu.top1 == pytest.approx(cpu.top1, abs=0.01)
    assert gpu.l2 == pytest.approx(cpu.l2, rel=1e-3)


def test_fixed_frame_head_trains_on_cuda():
    import etfcore.nn as enn

    torch.manual_seed(0)
    head = enn.FixedETFHead(50, 16, frame="sphere", seed=1).cuda()
    net = torch.nn.Linear(8, 16).cuda()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(256, 8, device="cuda")
    y = torch.randint(0, 50, (256,), device="cuda")
    before = head.weight.clone()
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(head(net(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(head.weight, before) and torch.isfinite(loss)


def test_language_model_collapse_on_cuda_equals_cpu():
    transformers = pytest.importorskip("transformers")
    import etfcore.training as et

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=30, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    lm = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, 30, (4, 12), generator=torch.Generator().manual_seed(1))
    cpu = et.language_model_collapse(lm, [ids], products="float64").to_core()
    gpu = et.language_model_collapse(lm.cuda(), [ids], products="float64").to_core()
    np.testing.assert_array_equal(gpu.class_counts, cpu.class_counts)
    np.testing.assert_allclose(gpu.class_sums, cpu.class_sums, rtol=1e-4, atol=1e-4)
