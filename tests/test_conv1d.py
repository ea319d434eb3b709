"""The 1-D CNN backbone (MNIST-1D's larger embedded form of the reproductions)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from etfcore.errors import ParameterError  # noqa: E402
from etfcore.nn.conv1d import Conv1DNet  # noqa: E402


def test_shapes_and_gradients():
    torch.manual_seed(0)
    net = Conv1DNet(40, 12)
    x = torch.randn(5, 40, requires_grad=True)
    out = net(x)
    assert out.shape == (5, 12)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert net(x[:, None, :]).shape == (5, 12)  # channel-first input too
    with pytest.raises(ParameterError):
        Conv1DNet(4, 12)


def test_shift_equivariance_of_the_convolutions():
    """A convolution sees a shifted signal as shifted features: the conv stack of a signal
    shifted by 8 samples (= 2³ strides) equals the stack's output shifted by one position,
    away from the borders."""
    torch.manual_seed(0)
    net = Conv1DNet(64, 4).eval()
    x = torch.zeros(1, 64)
    x[0, 20:28] = torch.randn(8)
    a, b = net.conv(x[:, None]), net.conv(torch.roll(x, 8, dims=1)[:, None])
    assert torch.allclose(a[..., 1:6], b[..., 2:7], atol=1e-5)


def test_config_builds_it():
    pytest.importorskip("lightning")
    from etfcore.training import TrainConfig
    from etfcore.training.build import build_backbone

    cfg = TrainConfig.from_dict({"backbone": "cnn1d", "feature_dim": 16, "dataset": "mnist1d"})
    net = build_backbone(cfg, (40,))
    assert isinstance(net, Conv1DNet) and net(torch.randn(2, 40)).shape == (2, 16)
