r"""Per-epoch collapse tracking as a Lightning callback, and the run's `metrics.jsonl`.

After each tracked epoch, [`CollapseTracker`][etfcore.training.callbacks.CollapseTracker] passes
over the training split and the held-out splits (validation when the datamodule has one, and
test) in eval mode, each process over its own interleaved shard (no padding, so the union is
each split exactly once). The training split is the datamodule's `train_eval_dataset` when it
has one (no augmentation), else its `train_dataset` (random augmentations then apply to the
tracked features too). For every split it logs:

- accuracy (`acc`), per-class mean accuracy (`mean_class_acc`), minor/major-class accuracy
  (minor: at most `minor_threshold` training samples), the split's loss (`loss`);
- every metric of [`CollapseMetrics`][etfcore.training.metric.CollapseMetrics] (VCI, NC1,
  nc1_split, squared distance, cosine within/separation, NC2, NC3, Yang et al.'s NC cosine
  statistics), synchronised across processes by torchmetrics;
- NC4 and the numerical rank on a bounded sample: the first `track_sample` rows of the pass on
  rank 0, against the class means of the whole split;
- hinge CE: the in-cone fraction, among samples of classes with $\tau^+ > 0$, of features within
  $\tau^+$ of their class vector.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Dict, List, Optional

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torchmetrics import Metric

from .._io import append_line, read_jsonl, write_jsonl
from ..metrics import numerical_rank_of
from .metric import CollapseMetrics, metrics_of


class SplitCounts(Metric):
    """Sum-reduced per-class hits and counts, loss sum and in-cone counts of one pass.

    Parameters
    ----------
    num_classes
        The number of classes `K`.
    """

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        k = int(num_classes)
        self.add_state("correct", torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("loss_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("in_cone", torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred, y, loss, cone=None) -> None:
        self.correct.index_add_(0, y, (pred == y).double())
        self.count.index_add_(0, y, torch.ones_like(y, dtype=torch.float64))
        self.loss_sum += float(loss) * len(y)
        if cone is not None:
            self.in_cone += torch.stack([cone[0].sum(), cone[1].sum()]).double()

    def compute(self) -> Dict[str, torch.Tensor]:
        return {
            "correct": self.correct,
            "count": self.count,
            "loss_sum": self.loss_sum,
            "in_cone": self.in_cone,
        }


def _cone(criterion, u: torch.Tensor, y: torch.Tensor):
    """`(inside, eligible)` per sample for hinge CE (`cos_tau_plus` buffer), else None."""
    cos_tp = getattr(criterion, "cos_tau_plus", None)
    if cos_tp is None:
        return None
    w = criterion.weight.to(u.dtype)[y]
    cos = torch.nn.functional.cosine_similarity(u, w, dim=1)
    limit = cos_tp.to(u.device, u.dtype)[y]
    eligible = limit < 1
    return (cos >= limit) & eligible, eligible


def json_safe(v: Any) -> Any:
    """NaN and infinities as `None` (JSON `null`); numpy scalars as Python numbers."""
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


class CollapseTracker(L.Callback):
    """Tracks accuracy and collapse every `every` epochs (and at the last).

    Parameters
    ----------
    every
        Track every `every` epochs (and at the last).
    sample
        The rows kept per split for NC4 and the numerical rank.
    minor_threshold
        Classes with at most this many training samples are minor.
    jsonl
        When given, each epoch's row is appended to this file (rank 0; one whole line, one
        write, fsynced).
    history
        Rows of earlier epochs (a resumed run's), kept at the front of `history`.

    Attributes
    ----------
    history : list of dict
        One row per epoch: `epoch`, `lr`, `train_loss`, `seconds`, and on tracked epochs every
        split's metrics (`{split}_{metric}`).
    """

    def __init__(
        self,
        *,
        every: int = 1,
        sample: int = 2048,
        minor_threshold: int = 50,
        jsonl: Optional[str] = None,
        history: Optional[List[Dict[str, Any]]] = None,
    ):
        self.every, self.sample, self.minor_threshold = int(every), int(sample), minor_threshold
        self.jsonl = jsonl
        self.history: List[Dict[str, Any]] = list(history or [])
        self._shift: Dict[str, torch.Tensor] = {}
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch + 1
        row: Dict[str, Any] = {
            "epoch": epoch,
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "train_loss": float(pl_module.epoch_loss.compute()),
        }
        if epoch % self.every == 0 or epoch == trainer.max_epochs:
            dm = trainer.datamodule
            # the training split in eval transforms when the datamodule offers it
            train_eval = getattr(dm, "train_eval_dataset", None) or dm.train_dataset
            splits = [
                ("train", train_eval),
                ("val", getattr(dm, "val_dataset", None)),
                ("test", getattr(dm, "test_dataset", None)),
            ]
            minor = torch.as_tensor(np.asarray(dm.train_counts) <= self.minor_threshold)
            for split, ds in splits:
                if ds is not None and len(ds):
                    row.update(self.evaluate(trainer, pl_module, split, ds, minor))
        logged = {
            ("epoch_train_loss" if k == "train_loss" else k): float(v)
            for k, v in row.items()
        }  # "epoch" (counted from 1) replaces Lightning's 0-based index in metrics.csv
        if (
            trainer.loggers or trainer.checkpoint_callbacks
        ):  # (costly for ~100 keys: skip if unused)
            pl_module.log_dict(logged, on_epoch=True, sync_dist=False, batch_size=1)
        row["seconds"] = time.perf_counter() - self._t0
        self.history.append(row)
        if self.jsonl and trainer.is_global_zero:  # one whole line, one write, fsynced
            append_line(self.jsonl, json.dumps({k: json_safe(v) for k, v in row.items()}))

    def state_dict(self) -> Dict[str, Any]:
        """The shifts of the next evaluation (saved in checkpoints: exact resume)."""
        return {"shift": {k: v.clone() for k, v in self._shift.items()}}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._shift = dict(state_dict.get("shift", {}))

    @torch.no_grad()
    def evaluate(self, trainer, module, split: str, dataset, minor: torch.Tensor) -> Dict[str, Any]:
        """One eval-mode pass over this process's shard of `dataset`.

        Parameters
        ----------
        trainer
            The Lightning trainer.
        module
            The [`ClassifierModule`][etfcore.training.module.ClassifierModule].
        split
            The split's name (the prefix of the metrics).
        dataset
            The split.
        minor
            `(K,)` booleans: which classes are minor.

        Returns
        -------
        dict
            The split's metrics, synchronised across processes.
        """
        k, p = module.num_classes, module.head.dim
        weight = module.head.weight.detach().float()
        stats = CollapseMetrics(k, p, shift=self._shift.get(split), classifier=weight)
        stats, counts = stats.to(module.device), SplitCounts(k).to(module.device)
        was = module.training
        module.eval()
        try:
            h, y = self._accumulate(
                trainer, module, _shard_loader(trainer, module, dataset), stats, counts
            )
        finally:
            module.train(was)
        with stats.sync_context():
            core = stats.to_core()
        m = metrics_of(core, stats.classifier)
        self._shift[split] = torch.from_numpy(core.global_mean())
        if len(h):
            bias = getattr(getattr(module.head, "linear", module.head), "bias", None)
            b = None if bias is None else bias.detach().double().cpu().numpy()
            m["nc4"] = core.nc4(h, stats.classifier, b)
            m["numerical_rank"] = numerical_rank_of(h, y)[0]  # the mean over classes
        out = _summary(counts.compute(), minor, module.criterion)
        out.update(
            (key, float(v)) for key, v in m.items() if np.ndim(v) == 0 and not isinstance(v, str)
        )
        return {f"{split}_{key}": v for key, v in out.items()}

    def _accumulate(self, trainer, module, loader, stats, counts):
        """Feeds `stats`/`counts`; returns the first `sample` rows (float64) and labels."""
        plugin, dev = trainer.precision_plugin, module.device
        kept_h: List[torch.Tensor] = []
        kept_y: List[torch.Tensor] = []
        kept = 0
        for x, y in loader:
            x, y = plugin.convert_input(x.to(dev)), y.to(dev)
            with plugin.forward_context():
                u = module.features(x)
            stats.update(u, y)  # in the features' own dtype (sets the metric's precision)
            with torch.autocast(dev.type, enabled=False):
                v = module.loss_features(u)
                loss = module.criterion(module.outputs(v), y)
                counts.update(
                    module.head.classify(v).argmax(1), y, loss, _cone(module.criterion, v, y)
                )
            if kept < self.sample:
                kept_h.append(u[: self.sample - kept].double().cpu())
                kept_y.append(y[: self.sample - kept].cpu())
                kept += len(kept_h[-1])
        if not kept_h:
            return np.zeros((0, module.head.dim)), np.zeros(0, dtype=np.int64)
        return torch.cat(kept_h).numpy(), torch.cat(kept_y).numpy()


def _shard_loader(trainer, module, dataset) -> DataLoader:
    """This process's interleaved shard (no padding: the union is the split exactly once)."""
    shard = Subset(dataset, range(trainer.global_rank, len(dataset), trainer.world_size))
    return DataLoader(shard, batch_size=512, num_workers=module.config.num_workers)


def _summary(c: Dict[str, torch.Tensor], minor: torch.Tensor, criterion) -> Dict[str, float]:
    """Accuracies (overall, per-class mean, minor/major), loss and in-cone fraction of a pass."""
    c = {key: v.cpu() for key, v in c.items()}
    present = c["count"] > 0
    acc = c["correct"] / c["count"].clamp_min(1)
    mi, ma = minor & present, ~minor & present
    out = {
        "acc": float(c["correct"].sum() / c["count"].sum()),
        "mean_class_acc": float(acc[present].mean()),
        "minor_acc": float(acc[mi].mean()) if mi.any() else float("nan"),
        "major_acc": float(acc[ma].mean()) if ma.any() else float("nan"),
        "loss": float(c["loss_sum"] / c["count"].sum()),
    }
    if criterion.__class__.__name__ == "HingeCrossEntropy":
        inside, eligible = c["in_cone"].tolist()
        out["in_cone"] = inside / eligible if eligible else math.nan
    return out


def truncate_jsonl(path: str, last_epoch: int) -> List[Dict[str, Any]]:
    """Keep the rows of epochs `<= last_epoch` (a resumed run's checkpoint) of a JSON-lines file.

    A torn last line (a kill mid-write) is dropped with a warning. The file is rewritten
    atomically.

    Parameters
    ----------
    path
        The file (nothing happens when it does not exist).
    last_epoch
        The last epoch kept.

    Returns
    -------
    list of dict
        The rows kept.
    """
    if not os.path.exists(path):
        return []
    rows = [r for r in read_jsonl(path) if r.get("epoch", 0) <= last_epoch]
    write_jsonl(path, rows)
    return rows
