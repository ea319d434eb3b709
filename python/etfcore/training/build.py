"""Turns a [`TrainConfig`][etfcore.training.config.TrainConfig] into a datamodule, a backbone, a
head, a loss and a [`ClassifierModule`][etfcore.training.module.ClassifierModule]. One function
per part."""

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
    """The run's data, set up eagerly (`num_classes`, `train_counts`, `input_shape`).

    Parameters
    ----------
    config
        The run's configuration; its data fields are used.

    Returns
    -------
    ClassificationDataModule
        A [`ClassificationDataModule`][etfcore.training.datamodule.ClassificationDataModule].
    """
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
    """The backbone `config.backbone` from the registry
    ([`BACKBONES`][etfcore.training.registry.BACKBONES]), for inputs of shape `input_shape`."""
    return BACKBONES[config.backbone].build(config, input_shape)


def check_backbone(backbone: nn.Module, sample: torch.Tensor, dim: int) -> None:
    """Check that `backbone` maps one sample to `(1, dim)`.

    Parameters
    ----------
    backbone
        The backbone (run in eval mode; its mode is restored).
    sample
        One input, without the batch dimension.
    dim
        The feature dimension the head expects.

    Raises
    ------
    ShapeError
        When the backbone cannot take the sample or returns another shape.
    """
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
    """Class means of a backbone's features over a loader (eval mode).

    Parameters
    ----------
    backbone
        The backbone.
    loader
        Batches `(x, y)`.
    num_classes
        The number of classes `K`.
    dim
        The feature dimension `p`.

    Returns
    -------
    numpy.ndarray
        The `(K, p)` class means (zero for a class without samples).
    """
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
    """The head `config.head` from the registry ([`HEADS`][etfcore.training.registry.HEADS]).

    Parameters
    ----------
    config
        The run's configuration.
    num_classes
        The number of classes `K`.
    train_counts
        The training samples per class.
    means_of
        Called without arguments, gives the backbone's class means for the heads built from
        them.

    Raises
    ------
    DimensionError
        For a fixed ETF with `feature_dim < K-1`.
    """
    return HEADS[config.head].build(config, num_classes, train_counts, means_of)


def build_loss(config: TrainConfig, head: nn.Module, train_counts: np.ndarray) -> nn.Module:
    """The loss `config.loss` from the registry ([`LOSSES`][etfcore.training.registry.LOSSES]).

    Parameters
    ----------
    config
        The run's configuration.
    head
        The head (losses on a fixed frame read its weights).
    train_counts
        The training samples per class.

    Raises
    ------
    ParameterError
        For a softmax temperature other than 1 with a loss that does not use one.
    """
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
    """The LightningModule of a config and its data.

    Parameters
    ----------
    config
        The run's configuration.
    datamodule
        The run's data, set up.
    backbone
        Replaces `config.backbone` (its output width is checked against `config.feature_dim`
        first).
    for_training
        `False` (a module only evaluated, e.g. a fixed centred-means head on a frozen backbone)
        allows a module with nothing to train.

    Returns
    -------
    ClassifierModule
        The [`ClassifierModule`][etfcore.training.module.ClassifierModule].

    Raises
    ------
    ShapeError
        When `backbone` does not give `(1, config.feature_dim)` features for one sample.
    ParameterError
        With `for_training`, when nothing would be trained.
    """
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
