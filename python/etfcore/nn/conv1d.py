"""A small 1-D convolutional backbone for signals such as MNIST-1D's 40-sample sequences.

Three stride-2 convolutions (kernel 5, BatchNorm, ReLU) halve the length each time; the flattened
map goes through a linear layer to `feature_dim` (no activation after it, so the features can
occupy the whole space, as fixed-ETF heads need). On MNIST-1D a network of this shape is the
benchmark's "CNN" baseline (Greydanus, "Scaling down deep learning", 2020: convolutions reach
far higher test accuracy than an MLP on the same signals, since the digits' templates are
shifted and scaled along the sequence).

Examples
--------
>>> import torch
>>> Conv1DNet(40, 16)(torch.randn(3, 40)).shape
torch.Size([3, 16])
>>> Conv1DNet(40, 8, channels=4)(torch.randn(2, 1, 40)).shape
torch.Size([2, 8])
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ParameterError


class Conv1DNet(nn.Module):
    """`(N, L)` or `(N, 1, L)` signals → `(N, feature_dim)` features."""

    def __init__(self, length: int, feature_dim: int, *, channels: int = 32, layers: int = 3):
        super().__init__()
        if length < 2**layers or layers < 1:
            raise ParameterError(
                f"a {layers}-layer stride-2 network needs signals of length >= {2**layers}, "
                f"got {length}"
            )
        blocks, c_in, n = [], 1, int(length)
        for _ in range(layers):
            blocks += [
                nn.Conv1d(c_in, channels, 5, stride=2, padding=2, bias=False),
                nn.BatchNorm1d(channels),
                nn.ReLU(inplace=True),
            ]
            c_in, n = channels, (n + 1) // 2
        self.conv = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels * n, feature_dim)
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x[:, None, :]
        elif x.dim() != 3 or x.shape[1] != 1:
            x = x.flatten(1)[:, None, :]
        return self.fc(self.conv(x).flatten(1))
