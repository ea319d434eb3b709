"""The front door: [`Trainer`][etfcore.training.trainer.Trainer]`(config, out_dir=...,
backbone=...).fit()` on `lightning.Trainer`.

A run with `out_dir` lives in `out_dir/<name>/version_N` (a new run takes the next free
`N` and never touches an older one): `config.toml` (the resolved config), `metrics.jsonl`
(one row per epoch, NaN as `null`), Lightning's `metrics.csv` (and TensorBoard events when
`tensorboard` is installed), `checkpoints/last.ckpt` and `checkpoints/best-epoch=E.ckpt`
(highest held-out accuracy: the validation split when there is one, else the test split).
**One epoch count**, from 1 (epoch `E` is the `E`-th epoch trained; the last one equals
`config.epochs`), in `metrics.jsonl`, the `epoch` column of `metrics.csv` and the
checkpoint names (Lightning's own 0-based index stays only inside the checkpoint files).
[`fit(resume=...)`][etfcore.training.trainer.Trainer.fit] continues the latest version (or a
given run directory or checkpoint) in place, and the folder ends as an uninterrupted run's
would: the same relative path, one
`best-epoch=E.ckpt`, the checkpoint callbacks' state reloaded, and `metrics.csv` continued
(its rows up to the checkpoint's epoch kept, those of an unfinished epoch dropped). Without
`out_dir` nothing is written.

Nothing is lost to a crash, a kill or a concurrent run: a new run claims its `version_N` by
creating the directory exclusively (two runs started together get two versions); checkpoints
(Lightning's included, through [`AtomicCheckpointIO`][etfcore.training.trainer.AtomicCheckpointIO])
and `config.toml` are written to a temporary file in their directory, fsynced and renamed;
`metrics.jsonl` grows by whole lines. SIGTERM (a scheduler's preemption) stops like Ctrl-C: the
last epoch's checkpoint is kept and
[`TrainingInterrupted`][etfcore.training.trainer.TrainingInterrupted] says so (the command line
exits with 143).
"""

from __future__ import annotations

import csv
import glob
import io
import os
import re
import signal
import typing
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.plugins.io import CheckpointIO, TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .._io import make_dirs, storage_error, write_bytes, write_text
from ..errors import ParameterError, ShapeError
from .build import build_backbone, build_datamodule, build_module
from .callbacks import CollapseTracker, truncate_jsonl
from .config import TrainConfig, load_toml, parse_value, to_toml

RESUMABLE_KEYS = (
    "accelerator",
    "progress",
    "num_workers",
    "data_root",
    "download",
    "name",
)
"""Keys a resumed run may change (where and how it runs, not what it computes). Not `devices`,
`num_nodes` or `strategy`: the number of processes sets the optimiser steps per epoch, and the
learning-rate schedule (per step) was laid out for the checkpoint's count."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during [`Trainer.fit`][etfcore.training.trainer.Trainer.fit].

    Parameters
    ----------
    message
        What happened.
    checkpoint
        The last checkpoint kept (or `None`).
    signum
        The signal (`signal.SIGINT` or `signal.SIGTERM`).
    """

    def __init__(
        self, message: str, checkpoint: Optional[str], signum: int = signal.SIGINT
    ) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.signum = int(signum)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, crash-safe.

    `torch.save` into a temporary file in the checkpoint's own directory (never across
    filesystems), fsync, rename over the destination, fsync the directory. A kill leaves the
    previous checkpoint whole; a full or read-only disk is a
    [`StorageError`][etfcore.errors.StorageError] naming the checkpoint. Remote URLs keep
    Lightning's writer.
    """

    def save_checkpoint(
        self, checkpoint: Dict[str, Any], path: Any, storage_options: Optional[Any] = None
    ) -> None:
        p = os.fspath(path)
        if storage_options is not None or "://" in p:
            return super().save_checkpoint(checkpoint, path, storage_options)
        make_dirs(os.path.dirname(os.path.abspath(p)))
        # serialised in memory first (as Lightning does): torch's zip writer turns a failed file
        # write (a full disk) into an opaque RuntimeError; a plain write keeps the OSError
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes(p, buffer.getbuffer())

    def remove_checkpoint(self, path: Any) -> None:
        try:
            super().remove_checkpoint(path)
        except OSError as e:
            raise storage_error(e, os.fspath(path), "remove") from None


def claim_version(parent: str) -> int:
    """Create `parent/version_N` for the next free `N` *exclusively* and return `N`.

    Two processes claiming at once get two directories (`mkdir` fails for the second, which
    tries the next number).

    Raises
    ------
    StorageError
        When `parent` cannot be listed or the directory cannot be created.
    """
    make_dirs(parent)
    try:
        taken = [
            int(m.group(1))
            for d in os.listdir(parent)
            if (m := re.fullmatch(r"version_(\d+)", d)) is not None
        ]
    except OSError as e:
        raise storage_error(e, parent, "list") from None
    n = max(taken, default=-1) + 1
    while True:
        path = os.path.join(parent, f"version_{n}")
        try:
            os.mkdir(path)
            return n
        except FileExistsError:
            n += 1
        except OSError as e:
            raise storage_error(e, path, "create the directory") from None


def _devices(spec: str) -> Union[str, int, List[int]]:
    spec = spec.strip()
    if spec.isdigit() or (spec.startswith("-") and spec[1:].isdigit()):
        return int(spec)
    if "," in spec:
        return [int(s) for s in spec.split(",") if s.strip()]
    return spec


def _precision(config: TrainConfig) -> str:
    if config.precision != "auto":
        return config.precision
    gpu = config.accelerator in ("gpu", "cuda") or (
        config.accelerator == "auto" and torch.cuda.is_available()
    )
    return "16-mixed" if config.amp and gpu else "32-true"


def find_checkpoint(path: str) -> str:
    """The checkpoint file a path names.

    Parameters
    ----------
    path
        A checkpoint file, a run directory (its `checkpoints/last.ckpt`), or a directory of
        versioned runs (the latest version with a checkpoint).

    Raises
    ------
    ParameterError
        When `path` does not exist or holds no checkpoint.
    """
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise ParameterError(f"{path!r} is neither a checkpoint file nor a run directory")
    last = os.path.join(path, "checkpoints", "last.ckpt")
    if os.path.isfile(last):
        return last
    versions = sorted(
        glob.glob(
            os.path.join(path, "**", "version_*", "checkpoints", "last.ckpt"), recursive=True
        ),
        key=os.path.getmtime,
    )
    if versions:
        return versions[-1]
    raise ParameterError(f"no checkpoint in {path!r} (looked for checkpoints/last.ckpt)")


def run_dir_of(checkpoint: str) -> str:
    """The run directory of a checkpoint (`RUN/checkpoints/last.ckpt`), relative when the
    checkpoint's path is (absolute only where a relative one would not name the run)."""
    run = os.path.dirname(os.path.dirname(os.path.normpath(checkpoint)))
    if not re.fullmatch(r"version_\d+", os.path.basename(run)):
        run = os.path.dirname(os.path.dirname(os.path.abspath(checkpoint)))
    return run


class _ContinuedCSVWriter(ExperimentWriter):
    """Lightning's `metrics.csv` writer, except that a resumed run continues the file: the
    rows of epochs `<= keep_through` (the checkpoint's, counted from 1) and their header are
    kept where Lightning would delete the file; rows of an unfinished epoch are dropped."""

    def __init__(self, log_dir: str, keep_through: Optional[int]) -> None:
        self._keep_through = keep_through
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = self.metrics_file_path
        if self._keep_through is None or not os.path.isfile(path):
            super()._check_log_dir_exists()
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            rows = [r for r in reader if _csv_epoch(r) <= self._keep_through]
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
        write_text(path, out.getvalue())
        self.metrics_keys = header


def _csv_epoch(row: Dict[str, str]) -> float:
    try:
        return float(row.get("epoch") or 0)
    except ValueError:
        return 0.0


class _RunCSVLogger(CSVLogger):
    """Lightning's CSV logger writing through `_ContinuedCSVWriter`."""

    def __init__(self, *args: Any, keep_through: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keep_through = keep_through

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedCSVWriter(self.log_dir, self._keep_through)
        return self._experiment


def _load(checkpoint: str) -> Dict[str, Any]:
    try:
        ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input error
        raise ParameterError(f"cannot read checkpoint {checkpoint!r}: {e}") from None
    if not isinstance(ck, dict):
        raise ParameterError(
            f"{checkpoint!r} is not a checkpoint (it holds a {type(ck).__name__}, not a dict)"
        )
    return ck


def _require(ck: Dict[str, Any], checkpoint: str, keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in ck]
    if missing:
        raise ParameterError(
            f"{checkpoint!r} lacks {', '.join(missing)}: not a complete checkpoint of etfcore train"
        )
    if "state_dict" in keys and not isinstance(ck["state_dict"], dict):
        raise ParameterError(f"{checkpoint!r}: its state_dict is not a mapping")


def _check_state_fits(ck: Dict[str, Any], module: torch.nn.Module, checkpoint: str) -> None:
    """Refuses (`ShapeError`) a checkpoint whose weights do not fit `module` before Lightning
    loads it (names missing or unexpected, shapes different)."""
    mine = module.state_dict()
    theirs = ck["state_dict"]
    missing = sorted(set(mine) - set(theirs))
    extra = sorted(set(theirs) - set(mine))
    wrong = sorted(
        k for k in set(mine) & set(theirs)
        if hasattr(theirs[k], "shape") and tuple(theirs[k].shape) != tuple(mine[k].shape)
    )
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:5])}")
        if wrong:
            parts.append(
                "shapes differ for "
                + ", ".join(f"{k} {tuple(theirs[k].shape)} vs {tuple(mine[k].shape)}"
                            for k in wrong[:5])
            )
        raise ShapeError(f"the weights in {checkpoint!r} do not fit this model: {'; '.join(parts)}")


def _check_same_run(saved: TrainConfig, config: TrainConfig, checkpoint: str) -> None:
    changed = sorted(
        k
        for k in saved.to_dict()
        if k not in RESUMABLE_KEYS and getattr(saved, k) != getattr(config, k)
    )
    if changed:
        raise ParameterError(
            f"{checkpoint!r} was written with a different configuration ({', '.join(changed)}); "
            f"a resumed run may change only {', '.join(RESUMABLE_KEYS)}"
        )


def _saved_config(ck: Dict[str, Any], checkpoint: str) -> TrainConfig:
    if "etfcore_config" not in ck:
        raise ParameterError(f"{checkpoint!r} was not written by etfcore train")
    if not isinstance(ck["etfcore_config"], dict):
        raise ParameterError(f"{checkpoint!r}: its etfcore_config is not a mapping")
    return TrainConfig.from_dict(ck["etfcore_config"])


def resume_config(checkpoint: str, overrides: Optional[Dict[str, Any]] = None) -> TrainConfig:
    """The config a checkpoint was written with, with `overrides`.

    Parameters
    ----------
    checkpoint
        A checkpoint file of `etfcore train`.
    overrides
        New values of keys among [`RESUMABLE_KEYS`][etfcore.training.trainer.RESUMABLE_KEYS].

    Raises
    ------
    ParameterError
        For a checkpoint not written by `etfcore train`, an unknown key, or a change the
        resumed run cannot take.
    """
    saved = _saved_config(_load(checkpoint), checkpoint)
    hints = typing.get_type_hints(TrainConfig)
    merged = saved.to_dict()
    for k, v in (overrides or {}).items():
        if k not in hints:
            raise ParameterError(f"unknown config key {k!r}; see `etfcore train --print-config`")
        merged[k] = parse_value(k, hints[k], v)
    config = TrainConfig.from_dict(merged)
    _check_same_run(saved, config, checkpoint)
    return config


#: Lightning warnings that say nothing about an etfcore run. The last: Lightning keeps each
#: module's train/eval mode, so a backbone given in eval mode (as load_pretrained returns it) would
#: train its first epoch with frozen BatchNorm statistics; ClassifierModule.train keeps a frozen
#: backbone in eval mode, and fit calls it.
_QUIET_WARNINGS = (
    ".*does not have many workers.*",
    ".*exists and is not empty.*",
    ".*smaller than the logging interval.*",
    ".*LeafSpec.*is deprecated.*",
    ".*have no `validation_step`.*",
    ".*when logging on epoch level in distributed.*",
    ".*Total length of .* across ranks is zero.*",
    ".*module\\(s\\) in eval mode.*",
)


class Trainer:
    """Trains a [`TrainConfig`][etfcore.training.config.TrainConfig] with `lightning.Trainer`.

    The data and the module are built (and checked) when the trainer is made.

    Parameters
    ----------
    config
        The run's configuration (validated first).
    out_dir
        Where runs go (`out_dir/<name>/version_N`); without it nothing is written.
    backbone
        Any module mapping a batch to `(batch, config.feature_dim)` features, used instead of
        `config.backbone` (its width is checked before training).
    callbacks
        Added to Lightning's.
    **trainer_kwargs
        Passed to `lightning.Trainer` (e.g. `limit_train_batches`).

    Raises
    ------
    ParameterError
        For a bad config.
    ShapeError
        When `backbone` does not give `(1, config.feature_dim)` features for one sample.

    Examples
    --------
    >>> cfg = TrainConfig(epochs=1, progress=False, accelerator="cpu")
    >>> history = Trainer(cfg).fit()          # doctest: +SKIP
    """

    def __init__(
        self,
        config: TrainConfig,
        out_dir: Optional[str] = None,
        *,
        backbone: Optional[torch.nn.Module] = None,
        callbacks: Sequence[Any] = (),
        **trainer_kwargs: Any,
    ) -> None:
        config.validate()
        config.warn_training_hazards(stacklevel=3)  # the line that made the Trainer
        self.config, self.out_dir = config, out_dir
        torch.manual_seed(config.seed)
        self.datamodule = build_datamodule(config)
        self.module = build_module(config, self.datamodule, backbone)
        self.extra_callbacks, self.trainer_kwargs = list(callbacks), trainer_kwargs
        self.num_classes = int(self.datamodule.num_classes)
        self.run_dir: Optional[str] = None
        self.history: List[Dict[str, Any]] = []
        self.lightning: Optional[L.Trainer] = None

    @property
    def model(self):
        return self.module

    def _loggers(
        self, root: str, name: str, version: Optional[int], keep_through: Optional[int] = None
    ) -> list:
        csv_logger = _RunCSVLogger(root, name=name, version=version, keep_through=keep_through)
        loggers: list = [csv_logger]
        try:
            import tensorboard  # noqa: F401
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(
                TensorBoardLogger(
                    root, name=name, version=csv_logger.version, sub_dir="tb",
                    default_hp_metric=False,
                )
            )
        except ImportError:
            pass
        return loggers

    def fit(self, resume: Optional[str] = None) -> List[Dict[str, Any]]:
        """Train to `config.epochs`.

        Calls `lightning.seed_everything(config.seed, workers=True)` (sets the process's global
        seeds and `PL_GLOBAL_SEED`).

        Parameters
        ----------
        resume
            A checkpoint, a run directory, or `True` for the latest run under `out_dir`:
            continues an interrupted run exactly.

        Returns
        -------
        list of dict
            One row per epoch (the run's whole history when resumed).

        Raises
        ------
        TrainingInterrupted
            On Ctrl-C or SIGTERM, after keeping the last epoch's checkpoint.
        ParameterError
            When resuming with a change of devices, nodes or strategy.
        """
        c = self.config
        # Lightning's own seeding: its fallback DistributedSampler is seeded from
        # PL_GLOBAL_SEED, and workers=True seeds each loader worker's numpy/random/torch.
        L.seed_everything(c.seed, workers=True, verbose=False)
        ckpt, name, version = self._resume_point(resume, c.name or "run")
        tracker = CollapseTracker(
            every=c.track_every, sample=c.track_sample, minor_threshold=c.minor_threshold
        )
        callbacks: list = [tracker, *self.extra_callbacks]
        interrupted = _InterruptFlag()
        callbacks.append(interrupted)
        kw: Dict[str, Any] = dict(logger=False, enable_checkpointing=False)
        if self.out_dir is not None:
            if version is None and L.fabric.utilities.rank_zero.rank_zero_only.rank == 0:
                version = claim_version(os.path.join(self.out_dir, name))
            done = None if ckpt is None else self.module.start_epoch  # epochs finished
            loggers = self._loggers(self.out_dir, name, version, done)
            self.run_dir = loggers[0].log_dir
            # best before last: last.ckpt then holds the best-checkpoint callback's state of
            # its own epoch, so a resumed run knows (and replaces) the current best file
            callbacks += [
                ModelCheckpoint(
                    monitor="val_acc"
                    if getattr(self.datamodule, "val_dataset", None)
                    else "test_acc",
                    mode="max",
                    save_top_k=1,
                    every_n_epochs=c.track_every,
                    filename="best-{epoch}",
                ),
                ModelCheckpoint(filename="last", save_top_k=1, enable_version_counter=False),
            ]
            kw = dict(logger=loggers)
            if L.fabric.utilities.rank_zero.rank_zero_only.rank == 0:
                self._prepare_run_dir(ckpt, tracker)
        if c.progress:
            callbacks.append(TQDMProgressBar(leave=False))
        kw.update(self.trainer_kwargs)
        plugins = list(kw.pop("plugins", None) or [])
        if not plugins or not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        kw["plugins"] = plugins
        try:
            self.lightning = L.Trainer(
                accelerator=c.accelerator,
                devices=_devices(c.devices),
                strategy=c.strategy,
                num_nodes=c.num_nodes,
                precision=_precision(c),
                max_epochs=c.epochs,
                callbacks=callbacks,
                enable_progress_bar=c.progress,
                enable_model_summary=kw.pop("enable_model_summary", c.progress),
                num_sanity_val_steps=0,
                **kw,
            )
        except (MisconfigurationException, ValueError, TypeError) as e:
            # Lightning refuses accelerator/devices/strategy/precision it cannot honour.
            raise ParameterError(f"Lightning cannot run these settings: {e}") from None
        previous = signal.getsignal(signal.SIGINT)
        with warnings.catch_warnings():
            for message in _QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message)
            self.module.train()
            try:
                self.lightning.fit(self.module, datamodule=self.datamodule, ckpt_path=ckpt)
            except SystemExit:  # Lightning's way out after Ctrl-C, and its SIGTERMException
                if not interrupted.seen:
                    raise
                self._interrupted(interrupted.signum)
            finally:
                if previous is not None:
                    signal.signal(signal.SIGINT, previous)
        self.run_dir = interrupted.run_dir or self.run_dir
        self.history = tracker.history
        return self.history

    def _resume_point(self, resume: Any, name: str) -> Tuple[Optional[str], str, Optional[int]]:
        """`(checkpoint, run name, version)` to continue from (`(None, name, None)` for a
        new run); a resumed run continues in place, in the checkpoint's `OUT/NAME/version_N`,
        and must have the same configuration (devices, nodes and strategy included)."""
        if not resume:
            return None, name, None
        where = resume if isinstance(resume, str) else os.path.join(self.out_dir or ".", name)
        ckpt = find_checkpoint(where)
        run = run_dir_of(ckpt)
        version: Optional[int] = None
        m = re.fullmatch(r"version_(\d+)", os.path.basename(run))
        if m is not None:  # continue in place: OUT/NAME/version_N of the checkpoint
            self.out_dir = os.path.dirname(os.path.dirname(run))
            name, version = os.path.basename(os.path.dirname(run)), int(m.group(1))
        ck = _load(ckpt)
        _require(ck, ckpt, ("state_dict", "epoch", "etfcore_config", "optimizer_states", "loops"))
        _check_same_run(_saved_config(ck, ckpt), self.config, ckpt)
        _check_state_fits(ck, self.module, ckpt)
        self.module.start_epoch = int(ck.get("epoch", -1)) + 1
        return ckpt, name, version

    def _prepare_run_dir(self, ckpt: Optional[str], tracker: CollapseTracker) -> None:
        run = self.run_dir
        make_dirs(run)
        tracker.jsonl = os.path.join(run, "metrics.jsonl")
        if ckpt is not None:
            done = int(_load(ckpt).get("epoch", -1)) + 1
            tracker.history = truncate_jsonl(tracker.jsonl, done)
        write_text(os.path.join(run, "config.toml"), to_toml(self.config.to_dict()))

    def _interrupted(self, signum: int = signal.SIGINT) -> None:
        last = None
        if self.run_dir:
            path = os.path.join(self.run_dir, "checkpoints", "last.ckpt")
            last = path if os.path.exists(path) else None
        msg = "training interrupted" if signum == signal.SIGINT else (
            f"training stopped by {signal.Signals(signum).name}"
        )
        msg += f"; last checkpoint kept: {last}" if last else "; no epoch finished, nothing kept"
        raise TrainingInterrupted(msg, last, signum)


class _InterruptFlag(L.Callback):
    """Records a Ctrl-C or a SIGTERM (Lightning's `SIGTERMException`, raised after the batch
    in flight), and the run directory every process agrees on (rank 0's)."""

    seen = False
    signum: int = signal.SIGINT
    run_dir: Optional[str] = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.loggers:
            self.run_dir = trainer.log_dir

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            self.seen, self.signum = True, signal.SIGTERM
        elif isinstance(exception, KeyboardInterrupt):
            self.seen = True


def load_pretrained(path: str) -> Tuple[torch.nn.Module, TrainConfig]:
    """The trained backbone of a run and its config.

    Runs with a custom backbone module cannot be rebuilt from the config: load their
    `backbone.*` weights into your module.

    Parameters
    ----------
    path
        A run directory or checkpoint file
        ([`find_checkpoint`][etfcore.training.trainer.find_checkpoint]).

    Returns
    -------
    tuple
        `(backbone, config)`: the trained feature extractor (eval mode, on CPU) and the
        [`TrainConfig`][etfcore.training.config.TrainConfig] it was trained with.

    Raises
    ------
    ParameterError
        For a missing checkpoint, one not written by `etfcore train`, or a custom backbone.
    ShapeError
        When the weights do not fit the architecture the config describes.
    """
    ckpt = find_checkpoint(path)
    return pretrained_backbone(_load(ckpt), ckpt)


def pretrained_backbone(ck: Dict[str, Any], ckpt: str) -> Tuple[torch.nn.Module, TrainConfig]:
    """[`load_pretrained`][etfcore.training.trainer.load_pretrained] of a checkpoint already
    read (`ck`) from the file `ckpt`."""
    config = _saved_config(ck, ckpt)
    if ck.get("etfcore_custom_backbone"):
        raise ParameterError(
            f"{ckpt!r} was trained with a custom backbone module; build it and "
            "load the state_dict entries under 'backbone.'"
        )
    _require(ck, ckpt, ("state_dict", "etfcore_input_shape"))
    backbone = build_backbone(config, ck["etfcore_input_shape"])
    state = {
        k[len("backbone.") :]: v for k, v in ck["state_dict"].items() if k.startswith("backbone.")
    }
    try:
        backbone.load_state_dict(state)
    except RuntimeError as e:
        raise ShapeError(
            f"the backbone weights in {ckpt!r} do not fit the architecture its config describes "
            f"(backbone={config.backbone!r}, feature_dim={config.feature_dim}): {e}"
        ) from None
    return backbone.eval(), config


def config_from_sources(
    preset: Optional[str], config_file: Optional[str], sets: Sequence[str]
) -> Dict[str, Any]:
    """The raw config mapping of the command line's sources, later ones overriding.

    Parameters
    ----------
    preset
        A preset's name (`--preset`), or `None`.
    config_file
        A TOML file (`--config`), or `None`.
    sets
        `KEY=VALUE` strings (`--set`).

    Raises
    ------
    ParameterError
        For an unknown preset, a bad TOML file, or a `--set` without `=`.
    """
    from .config import PRESETS

    cfg: Dict[str, Any] = {}
    if preset:
        if preset not in PRESETS:
            raise ParameterError(f"unknown preset {preset!r}; see `etfcore train --list-presets`")
        cfg.update(PRESETS[preset], name=preset)
    if config_file:
        cfg.update(load_toml(config_file))
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq:
            raise ParameterError(f"--set takes KEY=VALUE, got {item!r}")
        cfg[key.strip()] = value
    return cfg
