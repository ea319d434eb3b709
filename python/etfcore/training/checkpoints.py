"""Reading what `etfcore train` wrote: the public checkpoint reader and the trained module.

- `read_checkpoint`: the checkpoint dictionary of a run directory or checkpoint file
  (`state_dict`, `etfcore_config`, `etfcore_input_shape`, Lightning's own keys);
- `run_config`: the [`TrainConfig`][etfcore.training.config.TrainConfig] a run was trained with;
- `load_module`: the whole trained
  [`ClassifierModule`][etfcore.training.module.ClassifierModule] (backbone, head, loss),
  rebuilt from the run's config and data description, weights loaded, in eval mode on the CPU.

Callers use the module's parts, never state-dict keys: `module.backbone` (inputs → features),
`module.head.features` (features → what the head classifies: after a projector, BatchNorm,
L2 normalisation when the run had them), `module.head.classify` and `module.head.weight`.
"""

from __future__ import annotations

from typing import Any, Dict

from ..errors import ParameterError
from .config import TrainConfig


def read_checkpoint(path: str) -> Dict[str, Any]:
    """The checkpoint dictionary of a run, read on the CPU.

    Parameters
    ----------
    path
        A checkpoint file, a run directory, or a directory of versioned runs (the latest
        `last.ckpt`).

    Raises
    ------
    ParameterError
        When there is no checkpoint or it cannot be read.
    """
    from .trainer import _load, find_checkpoint

    return _load(find_checkpoint(path))


def run_config(path: str) -> TrainConfig:
    """The training config stored in `path`'s checkpoint.

    Raises
    ------
    ParameterError
        When there is no checkpoint or it was not written by `etfcore train`.
    """
    ck = read_checkpoint(path)
    if "etfcore_config" not in ck:
        raise ParameterError(f"{path!r} was not written by etfcore train")
    return TrainConfig.from_dict(ck["etfcore_config"])


def load_module(path: str, config: Any = None):
    """The trained module of a run (eval mode, CPU).

    Runs with a custom backbone module cannot be rebuilt from a config.

    Parameters
    ----------
    path
        A checkpoint file or run directory.
    config
        A [`TrainConfig`][etfcore.training.config.TrainConfig] that replaces the stored one for
        the data description only — e.g. a run whose data lives elsewhere (`data_root`); the
        architecture must match the weights.

    Raises
    ------
    ParameterError
        When there is no checkpoint or the run had a custom backbone module.
    """
    from .build import build_datamodule, build_module

    ck = read_checkpoint(path)
    if ck.get("etfcore_custom_backbone"):
        raise ParameterError(
            f"{path!r} was trained with a custom backbone module; rebuild it yourself and load "
            "the checkpoint's state_dict"
        )
    cfg = config if config is not None else TrainConfig.from_dict(ck["etfcore_config"])
    module = build_module(cfg, build_datamodule(cfg), for_training=False)
    module.load_state_dict(ck["state_dict"])
    return module.eval()


__all__ = ["load_module", "read_checkpoint", "run_config"]
