r"""Fine-tuning a trained backbone on a target task with a new head.

[`finetune`][etfcore.training.finetune.finetune]`(pretrained, config, head=..., head_only=...,
out_dir=...)` loads the backbone of a run directory or checkpoint written by `etfcore train`
([`load_pretrained`][etfcore.training.trainer.load_pretrained]), puts a new head for the
target's $K'$ classes on it and trains either the whole network
(Tiomoko Ali et al., "fixed random classifier transfers better") or the head only, the backbone
frozen in eval mode so that no weight and no BatchNorm statistic moves (Seddik & Tamaazousti's
head-only protocol). The heads (`config.head`):

- `linear`: a learnable `Linear(p, K')` from a seeded random initialisation (the paper's
  "weights learned from scratch");
- `etf`: a fixed simplex ETF (`feature_dim >= K' - 1`);
- `cm`, `wicm`, `lwm`: built from the target's centred class means of the *pretrained*
  backbone's features, computed over the target's training split before any training, the
  backbone in eval mode:

    $$
    \bar M = M P / \|M P\|_2, \qquad P = I_{K'} - \tfrac{1}{K'} \mathbf 1 \mathbf 1^\top,
    $$

    $M$ the $p \times K'$ matrix of class means and $\|\cdot\|_2$ the spectral norm. `cm`
    classifies with $\bar M^\top h$ and is not trained (`train=False` gives its accuracy
    without any training); `wicm` is a learnable linear head initialised with $\bar M^\top$;
    `lwm` learns $W = (M \Omega)^\top$ with $\Omega$ ($K' \times K'$) from the identity.

The target config: a [`TrainConfig`][etfcore.training.config.TrainConfig] is used as it is; a
mapping of keys (like `--set`) is applied to the defaults, and the keys it leaves out among
[`INHERITED_KEYS`][etfcore.training.finetune.INHERITED_KEYS] (the architecture, and where and
how the run executes) come from the pretrained run. Either way `backbone` and `feature_dim` must
be the pretrained run's. Without a `name` the target run is named `<pretrained name>-finetune`.

The target run directory (`out_dir/<name>/version_N`, as for `etfcore train`) holds, beside
the usual files, `pretrained.toml`: where the backbone came from (`path`, `checkpoint`, the
pretrained run's `name`, `config_sha256` = SHA-256 of its config as canonical JSON, the
`epochs` it was trained) and, as a `[config]` table, its whole config. Its checkpoints carry
the same record under `etfcore_finetune` and reload with
[`load_pretrained`][etfcore.training.trainer.load_pretrained], so fine-tuned backbones can be
fine-tuned again.

Examples
--------
>>> r = finetune("out/train/run/version_0", {"classes": [5, 6, 7, 8, 9]},
...              head="cm", train=False)                            # doctest: +SKIP
>>> r.scores["test_acc"], r.scores["test_mean_class_acc"]           # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import lightning as L
import torch
from torch.utils.data import DataLoader

from .._io import make_dirs, write_text
from ..errors import ParameterError, ShapeError
from .build import build_datamodule, build_module
from .config import TrainConfig, to_toml
from .module import ClassifierModule
from .trainer import Trainer, _load, find_checkpoint, pretrained_backbone

INHERITED_KEYS = (
    "backbone",
    "feature_dim",
    "image_size",
    "data_root",
    "download",
    "num_workers",
    "accelerator",
    "devices",
    "strategy",
    "num_nodes",
    "precision",
    "amp",
    "progress",
)
"""Keys a target config given as a mapping takes from the pretrained run when it leaves them out."""
ARCHITECTURE_KEYS = ("backbone", "feature_dim")
"""Keys that must equal the pretrained run's: they define the backbone's architecture."""


def config_sha256(config: TrainConfig) -> str:
    """SHA-256 (hex) of a config as canonical JSON (sorted keys): names a pretrained run's
    settings exactly."""
    text = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class PretrainedSource:
    """Where a fine-tuned backbone came from (written to `pretrained.toml`).

    Parameters
    ----------
    path
        The run directory or checkpoint as given (absolute).
    checkpoint
        The checkpoint file read (absolute).
    name
        The pretrained run's config `name`.
    config_sha256
        [`config_sha256`][etfcore.training.finetune.config_sha256] of the pretrained config.
    epochs
        The epochs the pretrained run had finished.
    config
        The pretrained config.
    """

    path: str  # the run directory or checkpoint as given (absolute)
    checkpoint: str  # the checkpoint file read (absolute)
    name: str  # the pretrained run's config name
    config_sha256: str  # config_sha256() of the pretrained config
    epochs: int  # epochs the pretrained run had finished
    config: TrainConfig  # the pretrained config

    def to_dict(self) -> Dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["config"] = self.config.to_dict()
        return d

    def to_toml(self) -> str:
        d = self.to_dict()
        cfg = d.pop("config")
        return (
            "# The backbone of this run was initialised from this pretrained run.\n"
            + to_toml(d)
            + "\n[config]\n"
            + to_toml(cfg)
        )


@dataclasses.dataclass
class FinetuneResult:
    """A fine-tuning run, as [`finetune`][etfcore.training.finetune.finetune] returns it.

    Parameters
    ----------
    config
        The target run's config.
    source
        Where the backbone came from.
    module
        The backbone with the new head.
    trained
        Whether it was trained.
    run_dir
        The run directory (`None` without `out_dir` or training).
    history
        The per-epoch rows (empty without training).
    scores
        The final `{split}_acc` and `{split}_mean_class_acc` for `train`, `val` (with a
        validation split) and `test`.
    """

    config: TrainConfig
    source: PretrainedSource
    module: ClassifierModule
    trained: bool
    run_dir: Optional[str]
    history: List[Dict[str, Any]]
    scores: Dict[str, float]

    def table(self) -> str:
        """The final accuracies as a small text table."""
        c = self.config
        how = "head only" if c.freeze_backbone else "whole network"
        epochs = f"{c.epochs} epoch" + ("s" if c.epochs != 1 else "")
        how = f"{how}, {epochs}" if self.trained else "no training"
        lines = [
            f"fine-tuned {self.source.name or self.source.checkpoint} -> {c.dataset} "
            f"(K' = {self.module.num_classes}, head {c.head}, {how})",
            f"{'split':<6}{'accuracy':>10}{'mean per-class':>16}",
        ]
        for split in ("train", "val", "test"):
            if f"{split}_acc" in self.scores:
                acc, mpc = self.scores[f"{split}_acc"], self.scores[f"{split}_mean_class_acc"]
                lines.append(f"{split:<6}{acc:>10.4f}{mpc:>16.4f}")
        return "\n".join(lines)


def target_config(
    source: TrainConfig,
    config: Union[TrainConfig, Mapping[str, Any], None] = None,
    *,
    head: Optional[str] = None,
    head_only: Optional[bool] = None,
) -> TrainConfig:
    """The target run's config (the rules are in the
    [module documentation][etfcore.training.finetune]).

    Parameters
    ----------
    source
        The pretrained run's config.
    config
        A config used as it is, or a mapping of keys applied to the defaults (the keys it
        leaves out among [`INHERITED_KEYS`][etfcore.training.finetune.INHERITED_KEYS] come from
        `source`); `None` is an empty mapping.
    head
        Overrides `config.head`.
    head_only
        Overrides `config.freeze_backbone`.

    Raises
    ------
    ParameterError
        When the target's `backbone` differs from `source`'s, or a key or value is bad.
    ShapeError
        When the target's `feature_dim` differs from `source`'s.

    Examples
    --------
    >>> src = TrainConfig(feature_dim=16, accelerator="cpu", name="src")
    >>> cfg = target_config(src, {"classes": [5, 6, 7, 8, 9]}, head="cm", head_only=True)
    >>> cfg.feature_dim, cfg.accelerator, cfg.head, cfg.freeze_backbone, cfg.name
    (16, 'cpu', 'cm', True, 'src-finetune')
    """
    changes: Dict[str, Any] = {}
    if head is not None:
        changes["head"] = head
    if head_only is not None:
        changes["freeze_backbone"] = bool(head_only)
    if isinstance(config, TrainConfig):
        cfg = config.replace(**changes) if changes else config
    else:
        raw = dict(config or {})
        for key in INHERITED_KEYS:
            raw.setdefault(key, getattr(source, key))
        raw.setdefault("name", f"{source.name or 'run'}-finetune")
        cfg = TrainConfig.from_dict({**raw, **changes})
    if cfg.backbone != source.backbone:
        raise ParameterError(
            f"the pretrained backbone is {source.backbone!r}; the target config asks for "
            f"backbone={cfg.backbone!r}"
        )
    if cfg.feature_dim != source.feature_dim:
        raise ShapeError(
            f"the pretrained backbone returns {source.feature_dim} features; the target config "
            f"has feature_dim={cfg.feature_dim}"
        )
    return cfg


class _RecordSource(L.Callback):
    """Writes `pretrained.toml` into the run directory and the record into every checkpoint."""

    def __init__(self, source: PretrainedSource) -> None:
        self.source = source

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.loggers and trainer.is_global_zero:
            make_dirs(trainer.log_dir)
            write_text(os.path.join(trainer.log_dir, "pretrained.toml"), self.source.to_toml())

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: Dict[str, Any]) -> None:
        checkpoint["etfcore_finetune"] = self.source.to_dict()


@torch.no_grad()
def evaluate(module: ClassifierModule, dataset, *, batch_size: int = 512) -> Dict[str, float]:
    """Accuracy and mean per-class accuracy of `module` on a dataset, in eval mode on the
    module's device.

    Parameters
    ----------
    module
        The classifier.
    dataset
        Samples `(x, int label)`.
    batch_size
        Samples per forward pass.

    Returns
    -------
    dict
        `acc` and `mean_class_acc` (the mean over the classes present).
    """
    k = module.num_classes
    correct = torch.zeros(k, dtype=torch.float64)
    count = torch.zeros(k, dtype=torch.float64)
    was = module.training
    module.eval()
    dev = next(module.parameters()).device
    try:
        for x, y in DataLoader(dataset, batch_size=batch_size):
            pred = module(x.to(dev)).argmax(1).cpu()
            correct.index_add_(0, y, (pred == y).double())
            count.index_add_(0, y, torch.ones_like(y, dtype=torch.float64))
    finally:
        module.train(was)
    present = count > 0
    return {
        "acc": float(correct.sum() / count.sum()),
        "mean_class_acc": float((correct[present] / count[present]).mean()),
    }


def _scores_of(row: Dict[str, Any]) -> Dict[str, float]:
    keys = [f"{s}_{m}" for s in ("train", "val", "test") for m in ("acc", "mean_class_acc")]
    return {k: float(row[k]) for k in keys if k in row}


def finetune(
    pretrained: str,
    config: Union[TrainConfig, Mapping[str, Any], None] = None,
    *,
    head: Optional[str] = None,
    head_only: Optional[bool] = None,
    out_dir: Optional[str] = None,
    train: bool = True,
    callbacks: Sequence[Any] = (),
    **trainer_kwargs: Any,
) -> FinetuneResult:
    """Fine-tune a pretrained backbone on a target task with a new head.

    The protocol is in the [module documentation][etfcore.training.finetune].

    Parameters
    ----------
    pretrained
        A run directory or checkpoint of `etfcore train`.
    config
        The target task, as [`target_config`][etfcore.training.finetune.target_config] takes
        it.
    head
        Overrides the config's `head` (`linear`, `etf`, `cm`, `wicm`, `lwm`).
    head_only
        Overrides the config's `freeze_backbone`.
    out_dir
        Where the target run directory goes.
    train
        `False` builds the new head (for `cm`, `wicm`, `lwm`: from the frozen pretrained
        features) and only evaluates it: with `head="cm"` this is the centred-means
        classifier's accuracy; nothing is written.
    callbacks
        Extra Lightning callbacks, passed to [`Trainer`][etfcore.training.trainer.Trainer].
    **trainer_kwargs
        Other keyword arguments of [`Trainer`][etfcore.training.trainer.Trainer] (e.g.
        `limit_train_batches`).

    Returns
    -------
    FinetuneResult
        The run ([`FinetuneResult`][etfcore.training.finetune.FinetuneResult]).

    Raises
    ------
    ParameterError
        For a missing run or checkpoint, a config whose backbone is not the pretrained one,
        or a fixed `cm` head to train on a frozen backbone (nothing to train).
    ShapeError
        When `feature_dim` differs from the backbone's width or the backbone cannot take the
        target's inputs.
    """
    checkpoint = find_checkpoint(pretrained)
    ck = _load(checkpoint)
    backbone, source_config = pretrained_backbone(ck, checkpoint)
    source = PretrainedSource(
        path=os.path.abspath(pretrained),
        checkpoint=os.path.abspath(checkpoint),
        name=source_config.name,
        config_sha256=config_sha256(source_config),
        epochs=int(ck.get("epoch", -1)) + 1,
        config=source_config,
    )
    del ck
    cfg = target_config(source_config, config, head=head, head_only=head_only)
    if train and cfg.head == "cm" and cfg.freeze_backbone:
        raise ParameterError(
            "a cm head on a frozen backbone has nothing to train: evaluate it with train=False "
            "(`etfcore finetune --no-train`), or train wicm/lwm/linear"
        )
    if not train:
        torch.manual_seed(cfg.seed)  # as Trainer does: seeded random heads
        dm = build_datamodule(cfg)
        module = build_module(cfg, dm, backbone, for_training=False)
        splits = [("train", dm.train_dataset), ("val", dm.val_dataset), ("test", dm.test_dataset)]
        scores = {
            f"{split}_{k}": v
            for split, ds in splits
            if ds is not None and len(ds)
            for k, v in evaluate(module, ds).items()
        }
        return FinetuneResult(cfg, source, module, False, None, [], scores)
    trainer = Trainer(
        cfg,
        out_dir,
        backbone=backbone,
        callbacks=[_RecordSource(source), *callbacks],
        **trainer_kwargs,
    )
    # The backbone is config.backbone's architecture: load_pretrained can rebuild it.
    trainer.module.custom_backbone = False
    history = trainer.fit()
    return FinetuneResult(
        cfg, source, trainer.module, True, trainer.run_dir, history, _scores_of(history[-1])
    )


__all__ = [
    "finetune",
    "FinetuneResult",
    "PretrainedSource",
    "target_config",
    "config_sha256",
    "evaluate",
    "INHERITED_KEYS",
]
