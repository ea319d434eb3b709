"""Penultimate features of a trained run's backbone on any dataset, saved for probing and ranking.

``extract_run_features(run, overrides, out_dir=...)`` loads the backbone of a run of
``etfcore train`` (a run directory or a checkpoint), builds the target data from the run's config
and the overrides (any dataset, class subsets, label maps — the same rules as
:func:`etfcore.training.finetune.target_config`), and streams each split through the backbone in
eval mode into ``OUT/{split}_features.npy`` (memory-mapped, float32), ``OUT/{split}_labels.npy``
and ``OUT/{split}_stats.bin`` (the split's :class:`etfcore.CollapseStats`). The training split is
read with the held-out transforms (no augmentation). ``etfcore probe`` and ``etfcore rank`` read
the files.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from ..stats import CollapseStats
from ..transfer.features import ExtractedFeatures, extract_features
from .build import build_datamodule
from .config import TrainConfig
from .finetune import target_config
from .trainer import load_pretrained

SPLITS = ("train", "val", "test")


def extract_run_features(
    pretrained: Union[str, os.PathLike],
    config: Union[TrainConfig, Mapping[str, Any], None] = None,
    *,
    out_dir: Union[str, os.PathLike],
    splits: Sequence[str] = SPLITS,
    device: Any = "auto",
    batch_size: int = 512,
) -> Dict[str, ExtractedFeatures]:
    """Features of ``pretrained``'s backbone on the target data, one entry per split that exists
    (``val`` only with ``val_fraction > 0``); files as in the module docstring.

    Returns ``{split: ExtractedFeatures}`` (features memory-mapped from the written file).
    """
    backbone, source = load_pretrained(os.fspath(pretrained))
    cfg = target_config(source, config)
    dm = build_datamodule(cfg)
    os.makedirs(out_dir, exist_ok=True)
    datasets: Dict[str, Optional[Any]] = {
        "train": dm.train_eval_dataset if dm.train_eval_dataset is not None else dm.train_dataset,
        "val": dm.val_dataset,
        "test": dm.test_dataset,
    }
    out: Dict[str, ExtractedFeatures] = {}
    for split in splits:
        ds = datasets.get(split)
        if ds is None or len(ds) == 0:
            continue
        stats = CollapseStats(int(dm.num_classes), cfg.feature_dim)
        base = os.path.join(os.fspath(out_dir), split)
        r = extract_features(
            backbone, ds, device=device, batch_size=batch_size, stats=stats,
            out=f"{base}_features.npy",
        )
        np.save(f"{base}_labels.npy", r.labels)
        stats.save(f"{base}_stats.bin")
        out[split] = r
    return out
