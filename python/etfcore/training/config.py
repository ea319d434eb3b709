"""The typed configuration of a training run, its presets, and TOML loading.

Every field has a type, a default and a one-line description (`etfcore train --print-config`).
Values from `--set KEY=VALUE` are parsed by the field's type: booleans accept
`true/false/yes/no/on/off/1/0`, optional fields accept `none`, lists are comma-separated.
Errors name the key.

Examples
--------
>>> cfg = TrainConfig.from_dict({"projector": "no", "epochs": "3", "amp": "0"})
>>> cfg.projector, cfg.epochs, cfg.amp
(False, 3, False)
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
import warnings
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ParameterError, require
from . import registry
from .datasets import CIFAR100_COARSE


def _f(default: Any, doc: str, choices: Optional[Tuple[Any, ...]] = None) -> Any:
    meta = {"doc": doc, "choices": choices}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# The choices of backbone, head and loss come from the registry (etfcore.training.registry).
BACKBONES = registry.BACKBONES.names()
HEADS = registry.HEADS.names()
LOSSES = registry.LOSSES.names()
FEATURE_LOSSES = tuple(k for k, e in registry.LOSSES.items() if e.needs_fixed_frame)


@dataclasses.dataclass
class TrainConfig:
    """Every option of a run.

    Build it from a mapping with
    [`from_dict`][etfcore.training.config.TrainConfig.from_dict] (values parsed by type, unknown
    keys refused, the combination validated).

    Notes
    -----
    Every field is a keyword argument with a type, a default and a one-line description;
    [`describe_fields`][etfcore.training.config.describe_fields] (`etfcore train
    --print-config`) lists them all. The fields come in four groups: data (`dataset`,
    `data_root`, `imbalance_ratio`, `classes`, `label_map`, `val_fraction`, …), model
    (`backbone`, `feature_dim`, `head`, `etf_seed`, `etf_lengths`, `projector`, …), loss
    (`loss`, `label_smoothing`, `temperature`, `cosine_reg`, `tau_plus`, `mixup_alpha`, …),
    optimisation (`epochs`, `batch_size`, `optimizer`, `lr`, `schedule`, `warmup_epochs`, …)
    and the run itself (`seed`, `accelerator`, `devices`, `strategy`, `precision`,
    `track_every`, `name`, …).
    """

    # data
    dataset: str = _f("digits", "dataset name (digits, gmm, mnist1d, cifar10, cifar100, ...)")
    data_root: str = _f("data", "directory holding downloaded datasets")
    download: bool = _f(True, "download a missing dataset (false: fail with the URL instead)")
    image_size: int = _f(32, "image side after resizing (image datasets)")
    imbalance_ratio: float = _f(1.0, "long-tail ratio n_min/n_max of the training split (1: none)")
    classes: Optional[List[int]] = _f(None, "subset of original labels, relabelled 0..K'-1")
    label_map: Optional[List[int]] = _f(None, "original label -> new label (e.g. fine -> coarse)")
    val_fraction: float = _f(0.0, "stratified validation split taken from the training split")
    num_workers: int = _f(0, "DataLoader worker processes")
    # model
    backbone: str = _f("mlp", "feature extractor", BACKBONES)
    feature_dim: int = _f(32, "feature dimension p seen by the head")
    head: str = _f(
        "etf",
        "classifier: fixed ETF, learnable linear, or centred means (cm/wicm/lwm: from the "
        "backbone's class means before training; the pretrained-features protocol is finetune)",
        HEADS,
    )
    etf_seed: int = _f(0, "seed of the Haar-random ETF")
    etf_lengths: str = _f(
        "equal",
        "ETF row lengths: equal; class_counts = sqrt((N/K)/n_k); class_counts_train = those "
        "lengths in training, the unit frame for predictions (Yang et al.'s code)",
        ("equal", "class_counts", "class_counts_train"),
    )
    projector: bool = _f(False, "a Linear(p, p) before the fixed frame")
    head_batch_norm: bool = _f(False, "BatchNorm1d on the features before the frame")
    normalize_features: bool = _f(False, "L2-normalise the features before the frame")
    freeze_backbone: bool = _f(False, "train the head only (backbone in eval mode, no gradients)")
    # loss
    loss: str = _f("ce", "training loss", LOSSES)
    label_smoothing: float = _f(0.1, "smoothing of loss=label_smoothing")
    temperature: float = _f(1.0, "softmax temperature tau of the cross-entropy losses")
    cosine_reg: float = _f(0.0, "weight lambda of the within-class cosine regulariser (0: off)")
    cosine_reg_normalization: str = _f(
        "per_class_count",
        "regulariser per class: mean cosine / n_c (Xu & Liu's wording) or the plain mean",
        ("per_class_count", "mean"),
    )
    tau_plus: Optional[float] = _f(None, "hinge CE angle tau+ (none: the dataset's default)")
    tau_minus: float = _f(math.pi, "hinge CE angle tau- (pi in practice)")
    minor_threshold: int = _f(50, "classes with at most this many training samples are minor")
    hinge_minor_only: bool = _f(True, "long-tail data: tau+ on minor classes only")
    mixup_alpha: float = _f(0.0, "mixup Beta(alpha, alpha) (0: off); applies to every loss")
    # optimisation
    epochs: int = _f(30, "training epochs (the schedule's length)")
    batch_size: int = _f(64, "batch size per device")
    last_batch: str = _f(
        "drop",
        "an epoch's last partial batch: drop it, or keep every sample in near-equal batches",
        ("drop", "even"),
    )
    optimizer: str = _f("sgd", "optimiser", ("sgd", "adamw"))
    lr: float = _f(0.05, "peak learning rate")
    momentum: float = _f(0.9, "SGD momentum")
    nesterov: bool = _f(True, "SGD Nesterov momentum")
    weight_decay: float = _f(5e-4, "weight decay")
    schedule: str = _f(
        "cosine", "learning-rate schedule after warm-up", ("cosine", "step", "constant")
    )
    warmup_epochs: float = _f(1.0, "linear warm-up length in epochs (per step)")
    step_size: int = _f(10, "schedule=step: epochs between decays")
    step_gamma: float = _f(0.1, "schedule=step: decay factor")
    # run
    seed: int = _f(0, "seed of data splits, initialisation, shuffling and mixup")
    accelerator: str = _f("auto", "Lightning accelerator: auto, cpu, gpu, cuda, mps")
    devices: str = _f("auto", "Lightning devices: auto, a count (2) or a list (0,1)")
    strategy: str = _f("auto", "Lightning strategy: auto, ddp, ddp_spawn, fsdp, ...")
    num_nodes: int = _f(1, "number of nodes (multi-node DDP)")
    precision: str = _f(
        "auto", "Lightning precision (32-true, 16-mixed, bf16-mixed); auto: see amp"
    )
    amp: bool = _f(True, "precision=auto: 16-mixed on GPUs, 32-true elsewhere")
    track_every: int = _f(1, "collapse tracking every N epochs (and at the last)")
    track_sample: int = _f(2048, "rows kept per split for NC4 and numerical rank")
    progress: bool = _f(True, "per-batch progress bar")
    name: str = _f("", "run name: runs go to OUT/NAME/version_N (empty: preset or 'run')")

    @classmethod
    def fields(cls) -> List[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> TrainConfig:
        """Build a config from strings (`--set`) or TOML values.

        Parameters
        ----------
        d
            Key → value; each value is parsed by the field's type
            ([`parse_value`][etfcore.training.config.parse_value]).

        Raises
        ------
        ParameterError
            For an unknown key, a value of the wrong type, or a bad combination, naming the key.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ParameterError(
                f"unknown config key(s) {unknown}; see `etfcore train --print-config`"
            )
        hints = typing.get_type_hints(cls)
        cfg = cls(**{k: parse_value(k, hints[k], v) for k, v in d.items()})
        cfg.validate()
        return cfg

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` (keyword arguments) parsed like
        [`from_dict`][etfcore.training.config.TrainConfig.from_dict]."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Refuse bad values and combinations.

        Raises
        ------
        ParameterError
            Naming the key.
        """
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ParameterError(
                    f"{f.name} must be one of {choices}, got {getattr(self, f.name)!r}"
                )
        loss, head = registry.LOSSES[self.loss], registry.HEADS[self.head]
        if loss.needs_fixed_frame and not head.fixed_frame:
            raise ParameterError(f"loss {self.loss!r} needs a fixed frame: use head='etf'")
        if self.etf_lengths != "equal" and not head.fixed_frame:
            raise ParameterError("etf_lengths applies to head='etf' only")
        if loss.needs_normalized_features and not self.normalize_features:
            raise ParameterError(
                "dot regression needs normalize_features=true: without it the loss only pulls "
                "features toward their class vector and their norms drift (set normalize_features)"
            )
        if not (0 < self.imbalance_ratio <= 1):
            raise ParameterError(f"imbalance_ratio must be in (0, 1], got {self.imbalance_ratio}")
        if not (0 <= self.val_fraction < 1):
            raise ParameterError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        for key in ("epochs", "batch_size", "feature_dim", "track_every", "num_nodes", "step_size"):
            if getattr(self, key) < 1:
                raise ParameterError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in (
            "mixup_alpha",
            "cosine_reg",
            "lr",
            "weight_decay",
            "warmup_epochs",
            "num_workers",
        ):
            if getattr(self, key) < 0 or not math.isfinite(getattr(self, key)):
                raise ParameterError(f"{key} must be finite and >= 0, got {getattr(self, key)}")
        if self.temperature <= 0:
            raise ParameterError(f"temperature must be > 0, got {self.temperature}")
        if not (0 <= self.label_smoothing < 1):
            raise ParameterError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.track_sample < 0:
            raise ParameterError(f"track_sample must be >= 0, got {self.track_sample}")

    def warn_training_hazards(self, stacklevel: int = 2) -> None:
        """Warn (`RuntimeWarning`) about a valid config that training may not survive; the
        trainer calls it when training starts, not when a finished run's config is read.

        Hinge CE with `tau_minus < π/2` on unnormalised features can diverge: the other
        classes' floor `‖u‖‖w_k‖ cos τ⁻` then exceeds the true-class logit of a feature far
        from its class vector, so growing `‖u‖` never stops.

        Parameters
        ----------
        stacklevel
            As in `warnings.warn`: 2 (the default) points at the line calling this method.
        """
        if self.loss == "hinge_ce" and self.tau_minus < math.pi / 2 and not self.normalize_features:
            warnings.warn(
                "hinge CE with tau_minus < pi/2 on unnormalised features can diverge: the other "
                "classes' floor exceeds the true-class logit of a feature far from its class "
                "vector, so growing the norm never stops (set normalize_features=true)",
                RuntimeWarning,
                stacklevel=stacklevel,
            )


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _scalar(key: str, typ: Any, v: Any) -> Any:
    if typ is bool:
        if isinstance(v, bool):
            return v
        if isinstance(v, int) and v in (0, 1):
            return bool(v)
        if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
            return v.strip().lower() in _TRUE
        raise ParameterError(f"{key} must be a boolean (true/false/yes/no/1/0), got {v!r}")
    if typ is int:
        if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
            raise ParameterError(f"{key} must be an integer, got {v!r}")
        try:
            return int(v)
        except (TypeError, ValueError):
            raise ParameterError(f"{key} must be an integer, got {v!r}") from None
    if typ is float:
        if isinstance(v, bool):
            raise ParameterError(f"{key} must be a number, got {v!r}")
        try:
            return float(v)
        except (TypeError, ValueError):
            raise ParameterError(f"{key} must be a number, got {v!r}") from None
    if typ is str:
        if isinstance(v, (str, int)) and not isinstance(v, bool):
            return str(v)
        raise ParameterError(f"{key} must be a string, got {v!r}")
    raise ParameterError(f"{key}: unsupported type {typ}")  # pragma: no cover


def parse_value(key: str, typ: Any, v: Any) -> Any:
    """A value as a field's type.

    Booleans accept `true/false/yes/no/on/off/1/0`, optional fields accept `none`, lists are
    comma-separated.

    Parameters
    ----------
    key
        The field's name (for the error message).
    typ
        The field's type.
    v
        A string from `--set` or a TOML value.

    Raises
    ------
    ParameterError
        When `v` is not of (or cannot be parsed as) `typ`, naming `key`.
    """
    args = typing.get_args(typ)
    if type(None) in args:  # Optional[T]
        if v is None or (isinstance(v, str) and v.strip().lower() in ("none", "null", "")):
            return None
        typ = next(a for a in args if a is not type(None))
    if typing.get_origin(typ) in (list, List):
        (item,) = typing.get_args(typ)
        if isinstance(v, str):
            v = [s for s in v.replace("[", "").replace("]", "").split(",") if s.strip()]
        if not isinstance(v, (list, tuple)):
            raise ParameterError(f"{key} must be a list, got {v!r}")
        return [_scalar(key, item, x) for x in v]
    return _scalar(key, typ, v)


def _type_name(typ: Any) -> str:
    args = typing.get_args(typ)
    if type(None) in args:
        return _type_name(next(a for a in args if a is not type(None))) + " | none"
    if typing.get_origin(typ) in (list, List):
        return f"list[{_type_name(typing.get_args(typ)[0])}]"
    return getattr(typ, "__name__", str(typ))


def describe_fields() -> str:
    """One line per field: name, type, default, description (`--print-config`)."""
    hints = typing.get_type_hints(TrainConfig)
    cfg = TrainConfig()
    lines = []
    for f in dataclasses.fields(TrainConfig):
        default = getattr(cfg, f.name)
        shown = "none" if default is None else repr(default)
        doc = f.metadata["doc"]
        if f.metadata.get("choices"):
            doc += f" {{{', '.join(f.metadata['choices'])}}}"
        lines.append(f"{f.name:<19} {_type_name(hints[f.name]):<17} {shown:<12} {doc}")
    return "\n".join(lines)


def load_toml(path: str) -> Dict[str, Any]:
    """Read a TOML file (`tomllib` on Python 3.11+, `tomli` before).

    Raises
    ------
    ParameterError
        When the file is missing, not text, a directory, or not valid TOML, naming the file.
    """
    toml = _toml_module()
    try:
        with open(path, "rb") as f:
            return toml.load(f)
    except FileNotFoundError:
        raise ParameterError(f"config file {path!r} not found") from None
    except toml.TOMLDecodeError as e:
        raise ParameterError(f"config file {path!r} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ParameterError(f"config file {path!r} is not text (TOML is UTF-8)") from None
    except IsADirectoryError:
        raise ParameterError(f"config file {path!r} is a directory") from None


def _toml_module():
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    return require("tomli", "train", "reading TOML on Python < 3.11")


def to_toml(d: Dict[str, Any]) -> str:
    """A flat mapping of str/bool/int/float/list/None as TOML (None values are left out)."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, float):
            return (
                repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
            )
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return str(v)

    return "".join(f"{k} = {fmt(v)}\n" for k, v in d.items() if v is not None)


def _recipe(*parts: Dict[str, Any], **overrides: Any) -> Dict[str, Any]:
    """A preset: the base recipes `parts` merged left to right, then `overrides`."""
    out: Dict[str, Any] = {}
    for part in (*parts, overrides):
        out.update({k: list(v) if isinstance(v, list) else v for k, v in part.items()})
    return out


_PI = math.pi
# Base recipes the presets share.
_DOT_REGRESSION = dict(head="etf", loss="dot_regression", normalize_features=True, lr=0.1)
_HINGE = dict(head="etf", projector=True, loss="hinge_ce")
#: the CIFAR schedule of the papers: 200 epochs, batch 128, SGD 0.1, 5 warm-up epochs
_CIFAR_SCHEDULE = dict(epochs=200, batch_size=128, lr=0.1, warmup_epochs=5)
_CIFAR10_LT = _recipe(
    dict(dataset="cifar10", imbalance_ratio=0.01, backbone="resnet32", feature_dim=64),
    _CIFAR_SCHEDULE,
)
_CIFAR100_LT = _recipe(_CIFAR10_LT, dataset="cifar100", feature_dim=128)
_CIFAR100_RESNET18 = _recipe(
    dict(dataset="cifar100", backbone="resnet18", feature_dim=512), _CIFAR_SCHEDULE
)
#: Yang et al.'s head and loss: BN + L2 feature head, dot regression, mixup, weight decay 2e-4
_YANG = dict(
    head="etf", head_batch_norm=True, normalize_features=True, loss="dot_regression",
    mixup_alpha=1.0, weight_decay=2e-4,
)
_IMAGENET = dict(
    dataset="imagenet", backbone="resnet50", feature_dim=2048, image_size=224, epochs=90,
    batch_size=256, lr=0.1, num_workers=8,
)
#: Tiomoko Ali et al.'s ImageNet schedule: step decay every 30 epochs, no warm-up
_IMAGENET_STEP = _recipe(
    _IMAGENET, loss="ce", weight_decay=1e-4, schedule="step", step_size=30, warmup_epochs=0
)

PRESETS: Dict[str, Dict[str, Any]] = {
    # small, embedded data (no download; CPU)
    "digits-linear-ce": dict(head="linear", loss="ce"),
    "digits-etf-ce": dict(head="etf", loss="ce"),
    "digits-etf-dr": _recipe(_DOT_REGRESSION),
    "digits-etf-dr-mixup": _recipe(_DOT_REGRESSION, mixup_alpha=1.0),
    "digits-etf-hinge": dict(head="etf", loss="hinge_ce"),
    "digits-lt-etf-hinge": dict(head="etf", loss="hinge_ce", imbalance_ratio=0.1),
    "digits-lt-etf-dr": _recipe(_DOT_REGRESSION, imbalance_ratio=0.1),
    "digits-cm": dict(head="cm", loss="ce"),
    "digits-etf-mse": dict(head="etf", loss="mse"),
    "digits-etf-ce-tau0.1": dict(head="etf", loss="ce", temperature=0.1),
    "digits-etf-cosreg10": dict(head="etf", loss="ce", cosine_reg=10.0),
    "gmm-etf-ce": dict(dataset="gmm", head="etf", loss="ce"),
    # Yang et al. (fixed ETF + dot regression, long tail): CIFAR ResNet-32, BN + L2 feature head,
    # mixup, SGD 0.1, 200 epochs; per-class lengths optional (etf_lengths=class_counts).
    "cifar10-lt-resnet32-etf-dr": _recipe(_CIFAR10_LT, _YANG),
    "cifar10-lt-resnet32-linear-ce": _recipe(
        _CIFAR10_LT, head="linear", loss="ce", mixup_alpha=1.0, weight_decay=2e-4
    ),
    "cifar100-lt-resnet32-etf-dr": _recipe(_CIFAR100_LT, _YANG),
    # "Do we need neural collapse?" (hinge CE on a fixed ETF with a projector): per-dataset tau+
    # on the minor classes of long-tailed CIFAR, all classes on coarse-label pretraining.
    "cifar10-lt-resnet32-hinge": _recipe(_CIFAR10_LT, _HINGE, tau_plus=_PI / 3),
    "cifar100-lt-resnet32-hinge": _recipe(_CIFAR100_LT, _HINGE, tau_plus=2 * _PI / 9),
    "cifar100-coarse-resnet18-hinge": _recipe(
        _CIFAR100_RESNET18, _HINGE, label_map=list(CIFAR100_COARSE), tau_plus=13 * _PI / 36,
        hinge_minor_only=False,
    ),
    "imagenet-lt-resnet50-hinge": _recipe(
        _IMAGENET, _HINGE, dataset="imagenet-lt", tau_plus=5 * _PI / 18, schedule="cosine",
        warmup_epochs=5,
    ),
    # Tiomoko Ali et al. (fixed random classifier transfers better): ResNet-50 on ImageNet with a
    # fixed ETF, a learnable classifier, or Switchable Whitening inside the ResNet.
    "imagenet-resnet50-etf-ce": _recipe(_IMAGENET_STEP, head="etf"),
    "imagenet-resnet50-linear-ce": _recipe(_IMAGENET_STEP, head="linear"),
    "imagenet-resnet50-sw-linear-ce": _recipe(
        _IMAGENET_STEP, backbone="resnet50-sw", head="linear"
    ),
    # Xu & Liu (VCI): pretraining knobs — softmax temperature, within-class cosine regulariser, MSE.
    "cifar100-resnet18-ce-tau0.1": _recipe(
        _CIFAR100_RESNET18, head="linear", loss="ce", temperature=0.1
    ),
    "cifar100-resnet18-cosreg10": _recipe(
        _CIFAR100_RESNET18, head="linear", loss="ce", cosine_reg=10.0
    ),
    "cifar100-resnet18-mse": _recipe(_CIFAR100_RESNET18, head="linear", loss="mse"),
}
