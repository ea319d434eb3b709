"""The registry of the parts a run is built from — backbones, heads and losses — with what each
needs, so that the config's validation ([`etfcore.training.config`][etfcore.training.config]) and
the builder ([`etfcore.training.build`][etfcore.training.build]) read one table instead of
keeping their own lists.

Each part is registered by name with a builder and its metadata
([`Entry`][etfcore.training.registry.Entry]); the order of registration is the order of the
config's choices. Building imports torch (through `etfcore.nn`); reading the registry does not.
The builders take, by kind: [`BACKBONES`][etfcore.training.registry.BACKBONES]
`build(config, input_shape)`, [`HEADS`][etfcore.training.registry.HEADS]
`build(config, num_classes, train_counts, means_of)`,
[`LOSSES`][etfcore.training.registry.LOSSES] `build(config, head, train_counts)`.

Examples
--------
>>> LOSSES["hinge_ce"].uses_features, LOSSES["hinge_ce"].needs_fixed_frame
(True, True)
>>> LOSSES.names()[:3]
('ce', 'weighted_ce', 'label_smoothing')
>>> sorted(k for k, e in LOSSES.items() if e.uses_temperature)
['ce', 'label_smoothing', 'weighted_ce']
>>> HEADS["cm"].from_class_means, HEADS["etf"].fixed_frame
(True, True)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, Iterator, Tuple

import numpy as np

from ..errors import ParameterError

__all__ = ["BACKBONES", "Entry", "HEADS", "LOSSES", "Registry"]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered part.

    Parameters
    ----------
    name
        The name the config uses.
    build
        Makes the part (the arguments of each kind are in the
        [module documentation][etfcore.training.registry]).
    doc
        One line.
    config_keys
        The config fields it reads beyond the common ones.
    uses_features
        Losses: the loss takes the head's features, not its logits.
    needs_fixed_frame
        Losses: it only makes sense with `head='etf'`.
    needs_normalized_features
        Losses: `normalize_features=true` is required.
    uses_temperature
        Losses: `temperature` applies.
    fixed_frame
        Heads: the classifier is a fixed frame, not learned.
    from_class_means
        Heads: built from the backbone's class means.
    """

    name: str
    build: Callable[..., Any]
    doc: str = ""
    config_keys: Tuple[str, ...] = ()
    uses_features: bool = False
    needs_fixed_frame: bool = False
    needs_normalized_features: bool = False
    uses_temperature: bool = False
    fixed_frame: bool = False
    from_class_means: bool = False


class Registry:
    """Named [`Entry`][etfcore.training.registry.Entry] objects of one kind, in registration
    order; [`register`][etfcore.training.registry.Registry.register] is a decorator.

    Indexing with an unknown name raises `ParameterError` listing the known ones.

    Parameters
    ----------
    kind
        What the entries are (`"backbone"`, `"head"`, `"loss"`), for error messages.

    Examples
    --------
    >>> r = Registry("widget")
    >>> @r.register("plain", doc="a plain widget")
    ... def _plain(config):
    ...     return "widget"
    >>> r.names(), r["plain"].doc, "other" in r
    (('plain',), 'a plain widget', False)
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: Dict[str, Entry] = {}

    def register(self, *names: str, **meta: Any) -> Callable[[Callable[..., Any]], Callable]:
        """A decorator registering a builder under each of `names`.

        Parameters
        ----------
        *names
            The names.
        **meta
            The [`Entry`][etfcore.training.registry.Entry] metadata.

        Raises
        ------
        ParameterError
            When a name is already registered.
        """

        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            for name in names:
                if name in self._entries:
                    raise ParameterError(f"{self.kind} {name!r} is already registered")
                self._entries[name] = Entry(name=name, build=fn, **meta)
            return fn

        return deco

    def __getitem__(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise ParameterError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def items(self):
        return self._entries.items()

    def names(self) -> Tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)


def _nn():
    from .. import nn as enn  # imports torch: only when a part is built

    return enn


# ------------------------------------------------------------------ backbones
BACKBONES = Registry("backbone")
"""The backbones: `build(config, input_shape) -> nn.Module` mapping one input to
`(1, config.feature_dim)`."""


@BACKBONES.register("mlp", doc="two-layer MLP on the flattened input")
def _mlp(config, input_shape):
    return _nn().MLP(int(np.prod(input_shape)), config.feature_dim)


@BACKBONES.register("cnn1d", doc="small 1-D CNN for 1-D signals (MNIST-1D)")
def _cnn1d(config, input_shape):
    from ..nn.conv1d import Conv1DNet

    return Conv1DNet(int(np.prod(input_shape)), config.feature_dim)


@BACKBONES.register("cnn", "cnn-sw", doc="small CNN (batch norm, or Switchable Whitening: -sw)")
def _cnn(config, input_shape):
    channels = input_shape[0] if len(input_shape) == 3 else 1
    norm = "sw" if config.backbone == "cnn-sw" else "bn"
    return _nn().SmallCNN(config.feature_dim, in_channels=channels, norm=norm)


@BACKBONES.register(
    "resnet18", "resnet50", config_keys=("image_size",),
    doc="torchvision ResNet (32×32 stem when image_size <= 64)",
)
def _resnet(config, input_shape):
    name, _, norm = config.backbone.partition("-")
    kwargs: Dict[str, Any] = {"feature_dim": config.feature_dim,
                              "small_input": config.image_size <= 64}
    if norm:
        kwargs["norm"] = norm
    return _nn().resnet(name, **kwargs)


@BACKBONES.register("resnet32", doc="the CIFAR ResNet-32")
def _resnet32(config, input_shape):
    return _nn().resnet32(feature_dim=config.feature_dim)


BACKBONES.register(
    "resnet18-sw", "resnet50-sw", config_keys=("image_size",),
    doc="torchvision ResNet with Switchable Whitening in its first stages",
)(_resnet)


# ------------------------------------------------------------------ heads
HEADS = Registry("head")
"""The heads: `build(config, num_classes, train_counts, means_of) -> nn.Module`; `means_of()`
gives the backbone's class means (called only by the heads built from them)."""


@HEADS.register(
    "etf", fixed_frame=True,
    config_keys=("etf_seed", "etf_lengths", "projector", "head_batch_norm", "normalize_features"),
    doc="a fixed (Haar-random) simplex ETF",
)
def _etf_head(config, num_classes, train_counts, means_of):
    enn = _nn()
    lengths = None
    if config.etf_lengths in ("class_counts", "class_counts_train"):
        lengths = enn.class_count_lengths(np.asarray(train_counts))
    return enn.FixedETFHead(
        num_classes,
        config.feature_dim,
        seed=config.etf_seed,
        lengths=lengths,
        projector=config.projector,
        batch_norm=config.head_batch_norm,
        normalize=config.normalize_features,
        lengths_in_training_only=config.etf_lengths == "class_counts_train",
    )


@HEADS.register("linear", doc="a learnable linear classifier")
def _linear_head(config, num_classes, train_counts, means_of):
    return _nn().LinearHead(num_classes, config.feature_dim)


@HEADS.register(
    "cm", "wicm", "lwm", from_class_means=True,
    doc="centred class means of the backbone's features (Seddik & Tamaazousti)",
)
def _means_head(config, num_classes, train_counts, means_of):
    # with a frozen pretrained backbone this is the paper's protocol
    return _nn().CentredMeansHead(means_of(), mode=config.head)


# ------------------------------------------------------------------ losses
LOSSES = Registry("loss")
"""The losses: `build(config, head, train_counts) -> nn.Module`."""


def _ce_kw(config) -> Dict[str, float]:
    return {"temperature": config.temperature} if config.temperature != 1.0 else {}


@LOSSES.register("ce", uses_temperature=True, config_keys=("temperature",), doc="cross-entropy")
def _ce(config, head, train_counts):
    return _nn().CrossEntropy(**_ce_kw(config))


@LOSSES.register(
    "weighted_ce", uses_temperature=True, config_keys=("temperature",),
    doc="cross-entropy weighted by N/(K n_k)",
)
def _weighted_ce(config, head, train_counts):
    import torch

    counts = torch.as_tensor(train_counts, dtype=torch.float32).clamp_min(1)
    return _nn().CrossEntropy(class_weights=counts.sum() / (len(counts) * counts), **_ce_kw(config))


@LOSSES.register(
    "label_smoothing", uses_temperature=True, config_keys=("label_smoothing", "temperature"),
    doc="cross-entropy with label smoothing",
)
def _label_smoothing(config, head, train_counts):
    return _nn().CrossEntropy(label_smoothing=config.label_smoothing, **_ce_kw(config))


@LOSSES.register(
    "dot_regression", "dot_regression_parity",
    uses_features=True, needs_fixed_frame=True, needs_normalized_features=True,
    doc="dot regression onto the fixed frame (Yang et al.; _parity: their code's scaling)",
)
def _dot_regression(config, head, train_counts):
    parity = config.loss.endswith("parity")
    return _nn().DotRegressionLoss(getattr(head, "weight", None), parity=parity)


def tau_plus_default(config) -> float:
    r"""The hinge-CE angle $\tau^+$ of a run.

    That is `config.tau_plus`, else the dataset's default
    ([`HINGE_TAU_PLUS`][etfcore.nn.losses.HINGE_TAU_PLUS], the long-tail entry when
    `imbalance_ratio < 1`), else $13\pi/36$.
    """
    if config.tau_plus is not None:
        return config.tau_plus
    table = getattr(_nn(), "HINGE_TAU_PLUS", {})
    base = config.dataset.partition(":")[0]  # options of an embedded name do not matter
    key = base + ("-lt" if config.imbalance_ratio < 1 else "")
    return float(table.get(key, table.get(base, 13 * math.pi / 36)))


@LOSSES.register(
    "hinge_ce", uses_features=True, needs_fixed_frame=True,
    config_keys=("tau_plus", "tau_minus", "minor_threshold", "hinge_minor_only"),
    doc="hinge cross-entropy (maximal-separating cones)",
)
def _hinge_ce(config, head, train_counts):
    enn, w = _nn(), getattr(head, "weight", None)
    tau = tau_plus_default(config)
    if config.hinge_minor_only and config.imbalance_ratio < 1:
        return enn.HingeCrossEntropy.for_minor_classes(
            w,
            list(map(int, train_counts)),
            tau_plus=tau,
            threshold=config.minor_threshold,
            tau_minus=config.tau_minus,
        )
    return enn.HingeCrossEntropy(w, tau_plus=tau, tau_minus=config.tau_minus)


@LOSSES.register("generalised_labels", doc="generalised labels (Seddik & Tamaazousti)")
def _generalised_labels(config, head, train_counts):
    return _nn().GeneralisedLabelsLoss(list(map(int, train_counts)))


@LOSSES.register("mse", doc="squared error of the logits on one-hot targets")
def _mse(config, head, train_counts):
    return _nn().MSELoss()

