"""Backbones that return penultimate features: an MLP and a small CNN for the embedded 8×8
digits, and torchvision ResNets (with a 32×32 stem) when torchvision is installed."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .whitening import SwitchableWhitening


class MLP(nn.Module):
    """``in_dim → hidden → … → feature_dim`` with BatchNorm + ReLU between layers; the last layer is
    linear, so features can occupy the whole space (needed by fixed-ETF heads)."""

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


class SmallCNN(nn.Module):
    """Two 3×3 convolutions (normalisation: BatchNorm or Switchable Whitening), pooling, linear to
    ``feature_dim``. Input ``(N, in_channels, H, W)``; a flat ``(N, H·W)`` input is reshaped to
    square images."""

    def __init__(self, feature_dim: int, *, in_channels: int = 1, width: int = 32, norm: str = "bn") -> None:
        super().__init__()

        def norm_layer(c: int) -> nn.Module:
            if norm == "bn":
                return nn.BatchNorm2d(c)
            if norm == "sw":
                return SwitchableWhitening(c, group_size=8, modes=("bw", "iw", "bn", "in", "ln"))
            raise ValueError(f"norm must be 'bn' or 'sw', got {norm!r}")

        self.in_channels = in_channels
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), norm_layer(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, padding=1), norm_layer(2 * width), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2),
        )
        self.fc = nn.Linear(8 * width, feature_dim)
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            side = int(round((x.shape[1] // self.in_channels) ** 0.5))
            x = x.reshape(x.shape[0], self.in_channels, side, side)
        return self.fc(self.body(x).flatten(1))


def resnet(name: str = "resnet18", *, small_input: bool = True, feature_dim: Optional[int] = None) -> nn.Module:
    """torchvision ResNet-18/50 returning pooled features (``fc`` replaced). ``small_input`` uses
    the 32×32 stem (3×3 stride-1 first convolution, no max-pool). ``feature_dim`` adds a linear layer
    (paper 004's projector on top of ReLU features)."""
    try:
        import torchvision
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("ResNet backbones need torchvision: pip install torchvision") from e
    if name not in ("resnet18", "resnet50"):
        raise ValueError(f"name must be 'resnet18' or 'resnet50', got {name!r}")
    net = getattr(torchvision.models, name)(weights=None)
    if small_input:
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    out = net.fc.in_features
    net.fc = nn.Identity() if feature_dim is None else nn.Linear(out, feature_dim)
    net.feature_dim = out if feature_dim is None else feature_dim
    return net
