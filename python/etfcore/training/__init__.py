"""Training with fixed-ETF or learned heads on PyTorch Lightning, with collapse tracking
(imports torch and lightning)."""

from ..errors import require

for _module in ("torch", "lightning", "torchmetrics"):  # a missing one names etfcore[train]
    require(_module, "train", "etfcore.training")

from .callbacks import CollapseTracker
from .config import PRESETS, TrainConfig
from .datasets import (
    CIFAR100_COARSE,
    DatasetNotFoundError,
    coarse_labels,
    embedded,
    long_tail_indices,
)
from .extract import extract_run_features
from .finetune import FinetuneResult, PretrainedSource, finetune
from .language_model import language_model_collapse, next_token_pairs, output_embedding
from .metric import CollapseMetrics
from .module import ClassifierModule
from .tracking import TorchCollapseStats
from .trainer import Trainer, TrainingInterrupted, load_pretrained
from .transfer_stats import TorchTransferabilityStats, TorchTwoPassScores

__all__ = [
    "CollapseMetrics",
    "CollapseTracker",
    "ClassifierModule",
    "TorchCollapseStats",
    "TorchTransferabilityStats",
    "TorchTwoPassScores",
    "Trainer",
    "TrainingInterrupted",
    "TrainConfig",
    "PRESETS",
    "load_pretrained",
    "finetune",
    "FinetuneResult",
    "PretrainedSource",
    "extract_run_features",
    "DatasetNotFoundError",
    "embedded",
    "long_tail_indices",
    "coarse_labels",
    "CIFAR100_COARSE",
    "language_model_collapse",
    "next_token_pairs",
    "output_embedding",
]
