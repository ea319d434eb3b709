"""The PyTorch layer (issue 4): heads, losses, whitening, tracking, trainer, checkpoints."""

import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import etfcore as ec  # noqa: E402
import etfcore.nn as enn  # noqa: E402
from etfcore.training import TorchCollapseStats, TrainConfig, Trainer  # noqa: E402


def cuda(test):
    """A CUDA test: selected by ``pytest -m cuda`` (benches/gpu_check.py), skipped without CUDA."""
    skip = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    return pytest.mark.cuda(skip(test))


def test_import_etfcore_does_not_import_torch():
    code = "import sys, etfcore; etfcore.CollapseStats(2, 2); print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = run.stdout
    assert out.strip() == "False"


def test_fixed_etf_head_is_a_buffer_and_never_moves():
    head = enn.FixedETFHead(10, 16, seed=3, projector=True)
    np.testing.assert_allclose(head.weight.numpy(), ec.etf(10, 16, seed=3), atol=1e-7)
    assert "weight" in dict(head.named_buffers()) and "weight" not in dict(head.named_parameters())
    before = head.weight.clone()
    opt = torch.optim.SGD(head.parameters(), lr=1.0)
    for _ in range(3):
        opt.zero_grad()
        head(torch.randn(8, 16)).pow(2).sum().backward()
        opt.step()
    assert torch.equal(head.weight, before)
    sd = head.state_dict()
    assert "weight" in sd and int(sd["seed"]) == 3
    with pytest.raises(ec.DimensionError, match="dim >= K-1 = 9"):
        enn.FixedETFHead(10, 8)
    with pytest.raises(ec.ShapeError):
        head(torch.randn(4, 15))


def test_dot_regression_gradient_is_pure_pull():
    W = torch.from_numpy(ec.etf(5, 8, seed=0, lengths=[1, 2, 1, 3, 1])).float()
    h = torch.randn(6, 8, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4, 1])
    for parity in (False, True):
        loss = enn.DotRegressionLoss(W, parity=parity)(h, y) * len(y)  # sum over samples
        (g,) = torch.autograd.grad(loss, h)
        w = W[y]
        cos = torch.nn.functional.cosine_similarity(h, w, dim=1)
        want = -(1 - cos)[:, None] * w * (w.norm(dim=1, keepdim=True) if parity else 1.0)
        torch.testing.assert_close(g, want, rtol=1e-5, atol=1e-6)


def test_hinge_ce_reduces_to_ce_and_theorem_1():
    W = torch.from_numpy(ec.etf(4, 6, seed=1)).float()
    u = torch.randn(7, 6)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    plain = torch.nn.functional.cross_entropy(u @ W.T, y)
    as_ce = enn.HingeCrossEntropy(W, tau_plus=0.0, tau_minus=math.pi)(u, y)
    assert float(as_ce) == pytest.approx(float(plain), rel=1e-6)
    # Features inside their cones: angle to w_y ≤ τ⁺ and to the others ≥ τ⁻ → zero gradient.
    tau = 0.3
    theta_k = math.acos(-1 / 3)
    crit = enn.HingeCrossEntropy(W, tau_plus=tau, tau_minus=theta_k - tau)
    inside = (W[y] * (1 + torch.rand(7, 1)) + 0.02 * torch.randn(7, 6)).requires_grad_(True)
    ang = torch.arccos(torch.nn.functional.cosine_similarity(inside, W[y], dim=1))
    assert (ang < tau).all()
    (g,) = torch.autograd.grad(crit(inside, y), inside)
    assert float(g.abs().max()) == 0.0
    outside = torch.randn(7, 6, requires_grad=True)
    (g,) = torch.autograd.grad(crit(outside, y), outside)
    assert float(g.abs().max()) > 0
    per_class = enn.HingeCrossEntropy.for_minor_classes(W, [500, 20, 300, 10], tau_plus=0.5)
    np.testing.assert_allclose(per_class.cos_tau_plus.numpy(), np.cos([0, 0.5, 0, 0.5]), atol=1e-6)


def test_centred_means_heads():
    M = torch.randn(5, 12, dtype=torch.float64)
    P = torch.eye(5, dtype=torch.float64) - 1 / 5
    MP = M.T @ P
    want = (MP / torch.linalg.matrix_norm(MP, ord=2)).T
    torch.testing.assert_close(enn.centred_means_weights(M), want)
    for mode in ("cm", "wicm", "lwm"):
        head = enn.CentredMeansHead(M.numpy(), mode=mode)
        if mode != "lwm":
            torch.testing.assert_close(head.weight.double(), want.float().double())
        assert head(torch.randn(3, 12)).shape == (3, 5)
    assert not list(enn.CentredMeansHead(M.numpy(), mode="cm").parameters())
    lwm = enn.CentredMeansHead(M.numpy(), mode="lwm")
    torch.testing.assert_close(lwm.weight, M.float())  # Ω = I initially: W = (M I)ᵀ with M p×K


def test_generalised_labels_and_mixup():
    counts = [100, 50, 10]
    crit = enn.GeneralisedLabelsLoss(counts, epsilon=0.1)
    t = crit.targets(torch.tensor([0, 2]))
    pi = np.array(counts) / 160
    alpha = 1 / (3 * pi)
    den = 1 + (3 - 2) * 0.1
    np.testing.assert_allclose(t[0].numpy(), alpha[0] * np.array([0.9, 0.1, 0.1]) / den, rtol=1e-6)
    np.testing.assert_allclose(t[1].numpy(), alpha[2] * np.array([0.1, 0.1, 0.9]) / den, rtol=1e-6)


def test_switchable_whitening_train_and_eval():
    torch.manual_seed(0)
    mix = torch.randn(16, 16)
    sw = enn.SwitchableWhitening(16, group_size=8, modes=("bw",), eps=1e-5, momentum=0.5)
    x = torch.randn(2048, 16) @ mix + 3
    out = sw(x)  # train mode: batch statistics
    for g in range(2):
        blk = out[:, 8 * g : 8 * (g + 1)]
        torch.testing.assert_close(blk.T @ blk / 2048, torch.eye(8), atol=1e-3, rtol=0)
    for _ in range(20):
        sw(torch.randn(2048, 16) @ mix + 3)
    sw.eval()
    small = torch.randn(4, 16) @ mix + 3  # eval mode: running statistics, any batch size
    y_eval = sw(small)
    assert y_eval.shape == (4, 16)
    big = sw(torch.randn(4096, 16) @ mix + 3)
    blk = big[:, :8]
    assert float((blk.T @ blk / 4096 - torch.eye(8)).abs().max().detach()) < 0.15
    full = enn.SwitchableWhitening(16, group_size=8, modes=("bw", "iw", "bn", "in", "ln"))
    assert full(torch.randn(4, 16, 5, 5)).shape == (4, 16, 5, 5)
    wm, wc = full.importance()
    assert len(wm) == 5 and float(wm.detach().sum()) == pytest.approx(1.0)


def test_torch_stats_equal_core_stats():
    H, y = ec.data.gaussian_mixture(4, 6, [30, 20, 10, 40], seed=0, offset=5.0)
    t = TorchCollapseStats(4, 6)
    for i in range(0, 100, 33):
        t.update(torch.from_numpy(H[i : i + 33]), torch.from_numpy(y[i : i + 33]))
    a, b = t.to_core(), ec.CollapseStats(4, 6).update(H, y)
    np.testing.assert_allclose(a.total_covariance(), b.total_covariance(), atol=1e-12)
    assert a.vci().value == pytest.approx(b.vci().value, rel=1e-12)
    with pytest.raises(ec.LabelError):
        t.update(torch.randn(2, 6), torch.tensor([0, 4]))
    bad = torch.randn(2, 6)
    bad[1, 2] = float("nan")
    with pytest.raises(ec.NonFiniteError, match="row 1, column 2"):
        t.update(bad, torch.tensor([0, 1]))
    assert t.to_core().num_samples == 100


def test_custom_backbone_module():
    net = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 24))
    cfg = TrainConfig(epochs=2, feature_dim=24, progress=False, accelerator="cpu")
    tr = Trainer(cfg, backbone=net)
    assert tr.model.backbone is net
    hist = tr.fit()
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    with pytest.raises(ec.ShapeError, match="expects \\(1, 32\\)"):
        Trainer(TrainConfig(epochs=1, progress=False), backbone=torch.nn.Linear(64, 20))


def test_config_errors_before_training():
    with pytest.raises(ec.ParameterError, match="unknown config key"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ec.ParameterError, match="head must be one of"):
        TrainConfig.from_dict({"head": "mlp"})
    with pytest.raises(ec.ParameterError, match="needs a fixed frame"):
        TrainConfig.from_dict({"head": "linear", "loss": "hinge_ce"})
    with pytest.raises(ec.ParameterError):
        TrainConfig.from_dict({"imbalance_ratio": 0})
    with pytest.raises(ec.DimensionError):
        Trainer(TrainConfig(feature_dim=4, progress=False))


@cuda
def test_training_on_cuda():
    for precision in ("32-true", "16-mixed", "bf16-mixed"):
        cfg = TrainConfig(epochs=3, progress=False, accelerator="gpu", precision=precision)
        hist = Trainer(cfg).fit()
        assert hist[-1]["train_loss"] < hist[0]["train_loss"]
        assert 0 <= hist[-1]["train_vci"] <= 1
    m = TorchCollapseStats(4, 6, device="cuda")
    H, y = ec.data.gaussian_mixture(4, 6, [30, 20, 10, 40], seed=0, offset=5.0)
    m.update(torch.from_numpy(H).cuda(), torch.from_numpy(y).cuda())
    ref = ec.CollapseStats(4, 6).update(H, y)
    assert m.to_core().vci().value == pytest.approx(ref.vci().value, rel=1e-10)
