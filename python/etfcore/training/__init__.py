"""Training with fixed-ETF heads and collapse tracking (imports torch)."""

from .datasets import CIFAR100_COARSE, coarse_labels, embedded, long_tail_indices
from .tracking import TorchCollapseStats
from .trainer import PRESETS, Model, TrainConfig, Trainer, resolve_device

__all__ = [
    "TorchCollapseStats",
    "Trainer",
    "TrainConfig",
    "Model",
    "PRESETS",
    "resolve_device",
    "embedded",
    "long_tail_indices",
    "coarse_labels",
    "CIFAR100_COARSE",
]
