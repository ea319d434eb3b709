"""Penultimate features of a trained run's backbone on any dataset, saved for probing and ranking.

``extract_run_features(run, overrides, out_dir=...)`` loads the backbone of a run of
``etfcore train`` (a run directory or a checkpoint), builds the target data from the run's config
and the overrides (any dataset, class subsets, label maps — the same rules as
:func:`etfcore.training.finetune.target_config`), and streams each split through the backbone in
eval mode into ``OUT/{split}_features.npy`` (memory-mapped, float32), ``OUT/{split}_labels.npy``
and ``OUT/{split}_stats.bin`` (the split's :class:`etfcore.CollapseStats`). The training split is
read with the held-out transforms (no augmentation). ``etfcore probe`` and ``etfcore rank`` read
the files.

One extraction is one set: every file is first written in a private staging directory inside
``OUT``; when all are complete, ``OUT/manifest.json`` is marked incomplete, the files are renamed
into place, the files of an earlier extraction that this one does not have (e.g. ``val_*``) are
removed, and the manifest is written last with each file's shape, dtype, size and SHA-256.
Readers (:func:`etfcore._io.verify_manifest`) refuse a set that does not match it; a kill or a
full disk leaves the earlier extraction whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from .._io import (
    MANIFEST,
    fsync_dir,
    make_dirs,
    mark_incomplete,
    save_npy,
    storage_error,
    write_bytes,
    write_manifest,
)
from ..stats import CollapseStats
from ..transfer.features import ExtractedFeatures, extract_features
from .build import build_datamodule
from .config import TrainConfig
from .finetune import target_config
from .trainer import load_pretrained

SPLITS = ("train", "val", "test")
_SUFFIXES = ("_features.npy", "_labels.npy", "_stats.bin")


def extract_run_features(
    pretrained: Union[str, os.PathLike],
    config: Union[TrainConfig, Mapping[str, Any], None] = None,
    *,
    out_dir: Union[str, os.PathLike],
    splits: Sequence[str] = SPLITS,
    device: Any = "auto",
    batch_size: int = 512,
    progress: Any = None,
) -> Dict[str, ExtractedFeatures]:
    """Features of ``pretrained``'s backbone on the target data, one entry per split that exists
    (``val`` only with ``val_fraction > 0``); files as in the module docstring.

    ``progress``: an `etfcore._progress.Reporter` (what `etfcore extract` passes) for progress
    lines per split, at most every 5 s and at the split's end: rows done, rows/s, elapsed time
    and ETA; ``None`` (the default): silent.

    Returns ``{split: ExtractedFeatures}`` (features memory-mapped from the written file).
    """
    backbone, source = load_pretrained(os.fspath(pretrained))
    cfg = target_config(source, config)
    dm = build_datamodule(cfg)
    out_dir = make_dirs(out_dir)
    datasets: Dict[str, Optional[Any]] = {
        "train": dm.train_eval_dataset if dm.train_eval_dataset is not None else dm.train_dataset,
        "val": dm.val_dataset,
        "test": dm.test_dataset,
    }
    try:
        stage = tempfile.mkdtemp(prefix=".extract-", dir=out_dir)
    except OSError as e:
        raise storage_error(e, out_dir, "write into") from None
    out: Dict[str, ExtractedFeatures] = {}
    try:
        for split in splits:
            ds = datasets.get(split)
            if ds is None or len(ds) == 0:
                continue
            stats = CollapseStats(int(dm.num_classes), cfg.feature_dim)
            base = os.path.join(stage, split)
            rows = None if progress is None else progress.stage(
                f"extract {split}", len(ds), unit="rows", every=5.0)
            r = extract_features(
                backbone, ds, device=device, batch_size=batch_size, stats=stats,
                out=f"{base}_features.npy", progress=rows,
            )
            r.features = None  # the staged file's map; reopened from OUT below
            save_npy(f"{base}_labels.npy", r.labels)
            write_bytes(f"{base}_stats.bin", stats.to_bytes())
            out[split] = r
        names = [f"{split}{suffix}" for split in out for suffix in _SUFFIXES]
        _put_in_place(stage, out_dir, names)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for split, r in out.items():
        r.path = os.path.join(out_dir, f"{split}_features.npy")
        r.features = np.load(r.path, mmap_mode="r+")
    return out


def _put_in_place(stage: str, out_dir: str, names: Sequence[str]) -> None:
    """Renames the staged files into ``out_dir`` as one set (see the module docstring)."""
    mark_incomplete(out_dir)
    for name in names:
        try:
            os.replace(os.path.join(stage, name), os.path.join(out_dir, name))
        except OSError as e:
            raise storage_error(e, os.path.join(out_dir, name)) from None
    stale = [
        f"{split}{suffix}" for split in SPLITS for suffix in _SUFFIXES
        if f"{split}{suffix}" not in names
    ]
    for name in stale:  # an earlier extraction's files this one does not have
        try:
            os.unlink(os.path.join(out_dir, name))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise storage_error(e, os.path.join(out_dir, name), "remove") from None
    fsync_dir(out_dir)
    write_manifest(out_dir, names, extra={"kind": "etfcore extract"})


__all__ = ["MANIFEST", "SPLITS", "extract_run_features"]
