"""Turns a :class:`~etfcore.training.config.TrainConfig` into a datamodule, a backbone, a head, a
loss and a :class:`~etfcore.training.module.ClassifierModule`. One function per part."""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from .. import nn as enn
from ..errors import ParameterError, ShapeError
from .config import TrainConfig
from .module import ClassifierModule
from .registry import BACKBONES, HEADS, LOSSES
from .registry import tau_plus_default as tau_plus_default  # public here before the registry


def build_datamodule(config: TrainConfig):
    """The run's data: ``etfcore.training.datamodule.ClassificationDataModule`` built from the
    config's data fields, set up eagerly (``num_classes``, ``train_counts``, ``input_shape``)."""
    from .datamodule import ClassificationDataModule

    dm = ClassificationDataModule(
        dataset=config.dataset,
        data_root=config.data_root,
        download=config.download,
        image_size=config.image_size,
        imbalance_ratio=config.imbalance_ratio,
        classes=config.classes,
        label_map=config.label_map,
        val_fraction=config.val_fraction,
        batch_size=config.batch_size,
        last_batch=config.last_batch,
        num_workers=config.num_workers,
        seed=config.seed,
    )
    if getattr(dm, "num_classes", None) is None:
        # Download on the first process of a node only; processes a launcher (torchrun, SLURM)
        # starts beside it do not wait for it and need the data on disk already: run
        # `etfcore train --prepare-data` (same config) once before launching.
        if os.environ.get("LOCAL_RANK", "0") == "0":
            dm.prepare_data()
        dm.setup("fit")
    return dm


def build_backbone(config: TrainConfig, input_shape: Sequence[int]) -> nn.Module:
    """``config.backbone`` from the registry (:data:`etfcore.training.registry.BACKBONES`)."""
    return BACKBONES[config.backbone].build(config, input_shape)


def check_backbone(backbone: nn.Module, sample: torch.Tensor, dim: int) -> None:
    """Raises :class:`ShapeError` unless ``backbone`` maps one sample to ``(1, dim)``."""
    was = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            out = backbone(sample[None])
    except RuntimeError as e:  # e.g. a pretrained backbone given another dataset's inputs
        raise ShapeError(
            f"the backbone cannot take this dataset's inputs (one sample of shape "
            f"{tuple(sample.shape)}): {e}"
        ) from None
    finally:
        backbone.train(was)
    if out.dim() != 2 or out.shape[1] != dim:
        raise ShapeError(
            f"the backbone returns features of shape {tuple(out.shape)} for one sample; the head "
            f"expects (1, {dim}) (config.feature_dim)"
        )


def class_means(backbone: nn.Module, loader, num_classes: int, dim: int) -> np.ndarray:
    """Class means of a backbone's features over a loader (eval mode)."""
    from .metric import CollapseMetrics

    m = CollapseMetrics(num_classes, dim)
    was = backbone.training
    backbone.eval()
    with torch.no_grad():
        for x, y in loader:
            m.update(backbone(x), y)
    backbone.train(was)
    return np.nan_to_num(m.to_core().class_means())


def build_head(config: TrainConfig, num_classes: int, train_counts: np.ndarray, means_of=None):
    """``config.head`` from the registry (:data:`etfcore.training.registry.HEADS`);
    ``means_of()`` gives the backbone's class means for the heads built from them. A fixed ETF
    needs ``feature_dim >= K-1`` (the head raises :class:`~etfcore.DimensionError`)."""
    return HEADS[config.head].build(config, num_classes, train_counts, means_of)


def build_loss(config: TrainConfig, head: nn.Module, train_counts: np.ndarray) -> nn.Module:
    """``config.loss`` from the registry (:data:`etfcore.training.registry.LOSSES`); a softmax
    temperature other than 1 is refused for the losses that do not use one."""
    entry = LOSSES[config.loss]
    if config.temperature != 1.0 and not entry.uses_temperature:
        raise ParameterError(
            f"temperature applies to the cross-entropy losses, not {config.loss!r}"
        )
    return entry.build(config, head, train_counts)


def build_module(
    config: TrainConfig,
    datamodule,
    backbone: Optional[nn.Module] = None,
    *,
    for_training: bool = True,
) -> ClassifierModule:
    """The LightningModule of a config and its data; ``backbone`` replaces ``config.backbone``
    (its output width is checked against ``config.feature_dim`` first). ``for_training=False``
    (a module only evaluated, e.g. a fixed centred-means head on a frozen backbone) allows a
    module with nothing to train."""
    k, counts = int(datamodule.num_classes), np.asarray(datamodule.train_counts)
    custom = backbone is not None
    if backbone is None:
        backbone = build_backbone(config, datamodule.input_shape)
    else:
        check_backbone(backbone, datamodule.train_dataset[0][0], config.feature_dim)

    def means():
        loader = torch.utils.data.DataLoader(datamodule.train_dataset, batch_size=512)
        return class_means(backbone, loader, k, config.feature_dim)

    head = build_head(config, k, counts, means)
    criterion = build_loss(config, head, counts)
    reg = (
        enn.WithinClassCosineRegulariser(
            weight=config.cosine_reg, normalization=config.cosine_reg_normalization
        )
        if config.cosine_reg
        else None
    )
    module = ClassifierModule(backbone, head, criterion, config, regulariser=reg)
    if for_training and not any(p.requires_grad for p in module.parameters()):
        raise ParameterError(
            "nothing to train: the backbone is frozen and the head has no parameters "
            "(use a projector, head_batch_norm, or a learnable head)"
        )
    module.input_shape, module.custom_backbone = tuple(datamodule.input_shape), custom
    return module
