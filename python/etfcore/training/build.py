"""Turns a :class:`~etfcore.training.config.TrainConfig` into a datamodule, a backbone, a head, a
loss and a :class:`~etfcore.training.module.ClassifierModule`. One function per part."""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from .. import nn as enn
from ..errors import DimensionError, ParameterError, ShapeError
from .config import TrainConfig
from .module import ClassifierModule


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
    c = config
    if c.backbone == "mlp":
        return enn.MLP(int(np.prod(input_shape)), c.feature_dim)
    if c.backbone == "cnn1d":  # 1-D signals (MNIST-1D): etfcore.nn.conv1d
        from ..nn.conv1d import Conv1DNet

        return Conv1DNet(int(np.prod(input_shape)), c.feature_dim)
    if c.backbone in ("cnn", "cnn-sw"):
        channels = input_shape[0] if len(input_shape) == 3 else 1
        norm = "sw" if c.backbone == "cnn-sw" else "bn"
        return enn.SmallCNN(c.feature_dim, in_channels=channels, norm=norm)
    if c.backbone == "resnet32":
        return enn.resnet32(feature_dim=c.feature_dim)
    name, _, norm = c.backbone.partition("-")
    kwargs: dict = {"feature_dim": c.feature_dim, "small_input": c.image_size <= 64}
    if norm:
        kwargs["norm"] = norm
    return enn.resnet(name, **kwargs)


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
    c = config
    if c.head == "etf":
        if c.feature_dim < num_classes - 1:
            raise DimensionError(
                f"a fixed ETF head for K={num_classes} classes needs feature_dim >= K-1 = "
                f"{num_classes - 1}, got {c.feature_dim}"
            )
        lengths = None
        if c.etf_lengths in ("class_counts", "class_counts_train"):
            lengths = enn.class_count_lengths(np.asarray(train_counts))
        return enn.FixedETFHead(
            num_classes,
            c.feature_dim,
            seed=c.etf_seed,
            lengths=lengths,
            projector=c.projector,
            batch_norm=c.head_batch_norm,
            normalize=c.normalize_features,
            lengths_in_training_only=c.etf_lengths == "class_counts_train",
        )
    if c.head == "linear":
        return enn.LinearHead(num_classes, c.feature_dim)
    # Centred-means heads (Seddik & Tamaazousti) from the backbone's class means: with a frozen
    # pretrained backbone this is the paper's protocol.
    return enn.CentredMeansHead(means_of(), mode=c.head)


def tau_plus_default(config: TrainConfig) -> float:
    """``config.tau_plus``, else the dataset's default, else 13π/36."""
    if config.tau_plus is not None:
        return config.tau_plus
    table = getattr(enn, "HINGE_TAU_PLUS", {})
    base = config.dataset.partition(":")[0]  # options of an embedded name do not matter
    key = base + ("-lt" if config.imbalance_ratio < 1 else "")
    return float(table.get(key, table.get(base, 13 * math.pi / 36)))


def build_loss(config: TrainConfig, head: nn.Module, train_counts: np.ndarray) -> nn.Module:
    c = config
    w = getattr(head, "weight", None)
    ce_kw = {"temperature": c.temperature} if c.temperature != 1.0 else {}
    if ce_kw and c.loss not in ("ce", "weighted_ce", "label_smoothing"):
        raise ParameterError(f"temperature applies to the cross-entropy losses, not {c.loss!r}")
    if c.loss == "ce":
        return enn.CrossEntropy(**ce_kw)
    if c.loss == "weighted_ce":
        counts = torch.as_tensor(train_counts, dtype=torch.float32).clamp_min(1)
        return enn.CrossEntropy(class_weights=counts.sum() / (len(counts) * counts), **ce_kw)
    if c.loss == "label_smoothing":
        return enn.CrossEntropy(label_smoothing=c.label_smoothing, **ce_kw)
    if c.loss == "mse":
        return enn.MSELoss()
    if c.loss in ("dot_regression", "dot_regression_parity"):
        return enn.DotRegressionLoss(w, parity=c.loss.endswith("parity"))
    if c.loss == "hinge_ce":
        tau = tau_plus_default(c)
        if c.hinge_minor_only and c.imbalance_ratio < 1:
            return enn.HingeCrossEntropy.for_minor_classes(
                w,
                list(map(int, train_counts)),
                tau_plus=tau,
                threshold=c.minor_threshold,
                tau_minus=c.tau_minus,
            )
        return enn.HingeCrossEntropy(w, tau_plus=tau, tau_minus=c.tau_minus)
    return enn.GeneralisedLabelsLoss(list(map(int, train_counts)))


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
