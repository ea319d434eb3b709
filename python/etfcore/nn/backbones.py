"""Backbones that return penultimate features: an MLP and a small CNN for the embedded data,
He et al.'s CIFAR ResNets (`resnet32`: 3 stages of 5 basic blocks, 0.46M parameters), and
torchvision ResNets (32×32 stem option, Switchable Whitening in the early layers) when
torchvision is installed. Each has `feature_dim`.

Examples
--------
>>> import torch
>>> resnet32()(torch.randn(2, 3, 32, 32)).shape
torch.Size([2, 64])
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ParameterError, require
from .whitening import SwitchableWhitening


class MLP(nn.Module):
    """A multilayer perceptron `in_dim → hidden → … → feature_dim`.

    BatchNorm + ReLU between layers; the last layer is linear, so features can occupy the whole
    space (needed by fixed-ETF heads). Inputs are flattened after the batch dimension.

    Parameters
    ----------
    in_dim
        The input dimension.
    feature_dim
        The output (feature) dimension.
    hidden
        The width of the hidden layers.
    depth
        The number of linear layers.
    """

    def __init__(self, in_dim: int, feature_dim: int, *, hidden: int = 128, depth: int = 2) -> None:
        super().__init__()
        layers = []
        d = in_dim
        for _ in range(depth - 1):
            layers += [nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            d = hidden
        layers.append(nn.Linear(d, feature_dim))
        self.net = nn.Sequential(*layers)
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


_ALL_SW = ("bw", "iw", "bn", "in", "ln")


def _sw(channels: int, modes: Sequence[str] = _ALL_SW, group_size: int = 16) -> nn.Module:
    return SwitchableWhitening(channels, group_size=min(group_size, channels), modes=tuple(modes))


def norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """The normalisation layer factory `norm` (called with a number of channels).

    Parameters
    ----------
    norm
        `"bn"` for `BatchNorm2d`, or `"sw"` for
        [`SwitchableWhitening`][etfcore.nn.whitening.SwitchableWhitening] (groups of 16 channels,
        all five statistics mixed).

    Raises
    ------
    ParameterError
        For any other `norm`.
    """
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "sw":
        return _sw
    raise ParameterError(f"norm must be 'bn' or 'sw', got {norm!r}")


class SmallCNN(nn.Module):
    """Two 3×3 convolutions with normalisation, pooling, and a linear layer to `feature_dim`.

    Input `(N, in_channels, H, W)`; a flat `(N, H·W)` input is reshaped to square images.

    Parameters
    ----------
    feature_dim
        The output (feature) dimension.
    in_channels
        The input channels.
    width
        The channels of the first convolution (the second has twice as many).
    norm
        `"bn"` (BatchNorm) or `"sw"` (Switchable Whitening, groups of 8 channels).
    """

    def __init__(
        self, feature_dim: int, *, in_channels: int = 1, width: int = 32, norm: str = "bn"
    ) -> None:
        super().__init__()
        make = (lambda c: _sw(c, group_size=8)) if norm == "sw" else norm_layer(norm)
        self.in_channels = in_channels
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), make(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, padding=1), make(2 * width), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2),
        )
        self.fc = nn.Linear(8 * width, feature_dim)
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            side = int(round((x.shape[1] // self.in_channels) ** 0.5))
            x = x.reshape(x.shape[0], self.in_channels, side, side)
        return self.fc(self.body(x).flatten(1))


class _CifarBlock(nn.Module):
    """He et al.'s CIFAR basic block: two 3×3 convolutions; the shortcut is the identity, or, when
    the shape changes, "option A": stride-2 subsampling and zero channels (no parameters)."""

    def __init__(self, c_in: int, c_out: int, stride: int, make_norm) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = make_norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = make_norm(c_out)
        self.stride, self.pad = stride, c_out - c_in

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al. (2016)'s CIFAR ResNet of depth `6n+2`.

    A 3×3 convolution to 16 channels, three stages of `n` basic blocks (16, 32, 64 channels;
    stride 2 at the start of stages 2 and 3), global average pooling. Returns the 64 pooled
    features (or `feature_dim` through a linear layer). Depth 32 (`n = 5`) has 463,504
    parameters (0.46M with a 10-class linear layer).

    Parameters
    ----------
    depth
        `6n+2`: 20, 32, 44, 56, …
    in_channels
        The input channels.
    feature_dim
        Adds a linear layer from the 64 pooled features to `feature_dim`; none when `None`.
    norm
        `"bn"` or `"sw"`, as in [`norm_layer`][etfcore.nn.backbones.norm_layer].

    Raises
    ------
    ParameterError
        When `depth` is not of the form `6n+2` with `n ≥ 1`.
    """

    def __init__(
        self,
        depth: int = 32,
        *,
        in_channels: int = 3,
        feature_dim: Optional[int] = None,
        norm: str = "bn",
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ParameterError(f"a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, …), got {depth}")
        n = (depth - 2) // 6
        make = norm_layer(norm)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = make(16)
        blocks, c = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for b in range(n):
                stride = 2 if (stage > 0 and b == 0) else 1
                blocks.append(_CifarBlock(c, width, stride, make))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Identity() if feature_dim is None else nn.Linear(64, feature_dim)
        self.feature_dim = 64 if feature_dim is None else int(feature_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(out.mean((2, 3)))


def resnet32(*, in_channels: int = 3, feature_dim: Optional[int] = None, norm: str = "bn"):
    """He et al.'s CIFAR ResNet-32: the backbone of the dot-regression and hinge-CE papers'
    CIFAR-LT experiments.

    [`CifarResNet`][etfcore.nn.backbones.CifarResNet] with depth 32; the parameters are
    those of `CifarResNet`.
    """
    return CifarResNet(32, in_channels=in_channels, feature_dim=feature_dim, norm=norm)


def resnet(
    name: str = "resnet18",
    *,
    small_input: bool = True,
    feature_dim: Optional[int] = None,
    norm: str = "bn",
    sw_stages: Sequence[int] = (0, 1),
    sw_modes: Sequence[str] = ("bw", "iw"),
) -> nn.Module:
    """A torchvision ResNet-18/34/50/101 returning pooled features (`fc` replaced).

    Parameters
    ----------
    name
        `"resnet18"`, `"resnet34"`, `"resnet50"` or `"resnet101"`.
    small_input
        Use the 32×32 stem (3×3 stride-1 first convolution, no max-pool).
    feature_dim
        Adds a linear layer (the projector on top of ReLU features of the hinge-CE paper).
    norm
        `"bn"`, or `"sw"` to replace BatchNorm by
        [`SwitchableWhitening`][etfcore.nn.whitening.SwitchableWhitening] (groups of 16
        channels, mixing `sw_modes`) in the stages listed in `sw_stages`.
    sw_stages
        Where `norm="sw"` applies: 0 is the stem's `bn1`, 1–4 every BatchNorm of
        `layer1`–`layer4` (downsample branches included). The default, stem and first stage, is
        etfcore's choice to bound the cost of the per-group eigendecompositions;
        `sw_stages=range(5)` replaces every BatchNorm.
    sw_modes
        The statistics Switchable Whitening mixes; default batch + instance whitening, the
        variant Pan et al. report on ImageNet.

    Raises
    ------
    MissingDependencyError
        Without torchvision.
    ParameterError
        For an unknown `name` or `norm`, or a stage outside 0..4.
    """
    torchvision = require("torchvision", "train", "ResNet backbones")
    if name not in ("resnet18", "resnet34", "resnet50", "resnet101"):
        raise ParameterError(f"name must be resnet18/34/50/101, got {name!r}")
    if norm not in ("bn", "sw"):
        raise ParameterError(f"norm must be 'bn' or 'sw', got {norm!r}")
    if any(s not in range(5) for s in sw_stages):
        raise ParameterError(f"sw_stages must be a subset of 0..4, got {tuple(sw_stages)}")
    net = getattr(torchvision.models, name)(weights=None)
    if small_input:
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    if norm == "sw":
        _replace_batchnorm(net, sw_stages, sw_modes)
    out = net.fc.in_features
    net.fc = nn.Identity() if feature_dim is None else nn.Linear(out, feature_dim)
    net.feature_dim = out if feature_dim is None else feature_dim
    return net


def _replace_batchnorm(net: nn.Module, stages: Sequence[int], modes: Sequence[str]) -> None:
    if 0 in stages:
        net.bn1 = _sw(net.bn1.num_features, modes)
    for s in stages:
        if s == 0:
            continue
        layer = getattr(net, f"layer{s}")
        for name, module in list(layer.named_modules()):
            if isinstance(module, nn.BatchNorm2d):
                parent_name, _, child = name.rpartition(".")
                parent = layer.get_submodule(parent_name) if parent_name else layer
                setattr(parent, child, _sw(module.num_features, modes))
