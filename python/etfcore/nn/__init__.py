"""PyTorch modules: classifier heads, the papers' losses, Switchable Whitening and small backbones.

Importing this subpackage imports torch; ``import etfcore`` alone never does.
"""

from .backbones import MLP, SmallCNN, resnet
from .heads import CentredMeansHead, FixedETFHead, LinearHead, centred_means_weights
from .losses import (
    CrossEntropy,
    DotRegressionLoss,
    GeneralisedLabelsLoss,
    HingeCrossEntropy,
    mixup,
)
from .whitening import SwitchableWhitening

__all__ = [
    "MLP",
    "SmallCNN",
    "resnet",
    "FixedETFHead",
    "LinearHead",
    "CentredMeansHead",
    "centred_means_weights",
    "CrossEntropy",
    "DotRegressionLoss",
    "HingeCrossEntropy",
    "GeneralisedLabelsLoss",
    "mixup",
    "SwitchableWhitening",
]
