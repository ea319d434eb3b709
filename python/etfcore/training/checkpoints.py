"""Reading what ``etfcore train`` wrote: the public checkpoint reader and the trained module.

- :func:`read_checkpoint`: the checkpoint dictionary of a run directory or checkpoint file
  (``state_dict``, ``etfcore_config``, ``etfcore_input_shape``, Lightning's own keys);
- :func:`run_config`: the :class:`~etfcore.training.TrainConfig` a run was trained with;
- :func:`load_module`: the whole trained :class:`~etfcore.training.ClassifierModule` (backbone,
  head, loss), rebuilt from the run's config and data description, weights loaded, in eval mode
  on the CPU.

Callers use the module's parts, never state-dict keys: ``module.backbone`` (inputs → features),
``module.head.features`` (features → what the head classifies: after a projector, BatchNorm,
L2 normalisation when the run had them), ``module.head.classify`` and ``module.head.weight``.
"""

from __future__ import annotations

from typing import Any, Dict

from ..errors import ParameterError
from .config import TrainConfig


def read_checkpoint(path: str) -> Dict[str, Any]:
    """The checkpoint dictionary of ``path`` (a checkpoint file, a run directory, or a directory
    of versioned runs: the latest ``last.ckpt``), read on the CPU. Raises
    :class:`~etfcore.errors.ParameterError` when there is none or it cannot be read."""
    from .trainer import _load, find_checkpoint

    return _load(find_checkpoint(path))


def run_config(path: str) -> TrainConfig:
    """The training config stored in ``path``'s checkpoint."""
    ck = read_checkpoint(path)
    if "etfcore_config" not in ck:
        raise ParameterError(f"{path!r} was not written by etfcore train")
    return TrainConfig.from_dict(ck["etfcore_config"])


def load_module(path: str, config: Any = None):
    """The trained module of ``path`` (eval mode, CPU). ``config`` (a
    :class:`~etfcore.training.TrainConfig`) replaces the stored one for the data description
    only — e.g. a run whose data lives elsewhere (``data_root``); the architecture must match
    the weights. Runs with a custom backbone module cannot be rebuilt from a config."""
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
