"""PyTorch modules: classifier heads, the papers' losses, Switchable Whitening and backbones.

Importing this subpackage imports torch; `import etfcore` alone never does.
"""

from ..errors import require

require("torch", "torch", "etfcore.nn")

from .backbones import MLP, CifarResNet, SmallCNN, resnet, resnet32
from .heads import (
    FRAMES,
    CentredMeansHead,
    FixedETFHead,
    LinearHead,
    centred_means_weights,
    class_count_lengths,
    fixed_frame,
)
from .losses import (
    HINGE_TAU_PLUS,
    CrossEntropy,
    DotRegressionLoss,
    GeneralisedLabelsLoss,
    HingeCrossEntropy,
    MSELoss,
    WithinClassCosineRegulariser,
    check_target,
    mixup,
)
from .whitening import SwitchableWhitening

__all__ = [
    "MLP",
    "SmallCNN",
    "CifarResNet",
    "resnet",
    "resnet32",
    "FixedETFHead",
    "FRAMES",
    "fixed_frame",
    "LinearHead",
    "CentredMeansHead",
    "centred_means_weights",
    "class_count_lengths",
    "CrossEntropy",
    "MSELoss",
    "DotRegressionLoss",
    "HingeCrossEntropy",
    "HINGE_TAU_PLUS",
    "GeneralisedLabelsLoss",
    "WithinClassCosineRegulariser",
    "check_target",
    "mixup",
    "SwitchableWhitening",
]
