r"""The LightningModule: `backbone → head → loss`, with mixup for every loss, an optional
within-class cosine regulariser, a frozen-backbone mode, and the optimiser/schedule of a
[`TrainConfig`][etfcore.training.config.TrainConfig].

Training step, with `u = head.features(backbone(x))` and `out = u` for losses on features
(dot regression, hinge CE) or `out = head.classify(u)` (logits) otherwise:

$$
L = \lambda\,\ell(out, y) + (1-\lambda)\,\ell(out, y_\pi) + \lambda\,R(u, y)
  + (1-\lambda)\,R(u, y_\pi)
$$

where mixup draws $\lambda \sim \mathrm{Beta}(\alpha, \alpha)$ and a permutation $\pi$ of the
batch ($\lambda = 1$ without mixup), $\ell$ is the configured loss on hard labels (so class
weights, label smoothing and generalised labels keep their own normalisation), and $R$ the
regulariser (0 if off).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import lightning as L
import numpy as np
import torch
from torch import nn
from torchmetrics import MeanMetric

from .. import nn as enn
from .config import TrainConfig


def stream_seed(seed: int, epoch: int, rank: int, stream: int) -> int:
    """A 63-bit seed for one random stream of one epoch on one process.

    Drawn from `numpy.random.SeedSequence([seed, epoch, rank, stream])`: distinct inputs give
    independent streams (no collisions between ranks, epochs or streams).

    Parameters
    ----------
    seed
        The run's seed.
    epoch
        The epoch.
    rank
        The process's rank.
    stream
        0: torch's global generator, 1: mixup.

    Examples
    --------
    >>> stream_seed(0, 1, 64, 0) != stream_seed(0, 2, 0, 0)
    True
    """
    state = np.random.SeedSequence([seed, epoch, rank, stream]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class WarmupSchedule:
    """Learning-rate factor per optimiser step (called with the step).

    Linear warm-up over `warmup` steps, then the schedule `kind`. A plain object, so `LambdaLR`
    checkpoints it.

    Parameters
    ----------
    kind
        `"cosine"` (to 0 at step `total`), `"step"` (a factor `gamma` every `step_every`
        steps) or `"constant"`.
    total
        The total number of steps.
    warmup
        The warm-up steps.
    step_every
        The steps between decays of `"step"`.
    gamma
        The decay factor of `"step"`.

    Examples
    --------
    >>> s = WarmupSchedule("cosine", total=100, warmup=10)
    >>> s(0), s(9), s(10), round(s(55), 3), s(100)
    (0.1, 1.0, 1.0, 0.5, 0.0)
    """

    def __init__(
        self, kind: str, *, total: int, warmup: int, step_every: int = 1, gamma: float = 0.1
    ) -> None:
        self.kind, self.total, self.warmup = kind, int(total), int(warmup)
        self.step_every, self.gamma = max(1, int(step_every)), float(gamma)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            return self.gamma ** (step // self.step_every)
        span = max(1, self.total - self.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - self.warmup) / span)))


class ClassifierModule(L.LightningModule):
    """The LightningModule of a classifier: backbone, head, loss, and an optional regulariser.

    Every epoch reseeds torch's generator from `(seed, epoch, rank)` before its data is drawn, so
    shuffling, augmentation, dropout and mixup depend only on the seed and the epoch: a run
    resumed from an epoch's checkpoint continues exactly as the uninterrupted run (on CPU).

    Parameters
    ----------
    backbone
        Any module mapping inputs to `(batch, p)` features.
    head
        An [`etfcore.nn`][etfcore.nn.heads] head with `features`/`classify`.
    criterion
        An [`etfcore.nn`][etfcore.nn.losses] loss on `(outputs, int64 labels)`.
    config
        The run's configuration (optimiser, schedule, mixup, seed, frozen backbone).
    regulariser
        A term `R(features, labels)` added to the loss, or `None`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        criterion: nn.Module,
        config: TrainConfig,
        *,
        regulariser: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.backbone, self.head, self.criterion = backbone, head, criterion
        self.regulariser = regulariser
        self.config = config
        self.num_classes = int(head.num_classes)
        self._mix_gen = torch.Generator()
        self.input_shape: Optional[Tuple[int, ...]] = None  # recorded in checkpoints
        self.custom_backbone = False
        self.start_epoch, self._seeded_epoch = 0, -1
        # the epoch's mean training loss, synchronised by torchmetrics (`record_batch_loss`)
        self.epoch_loss = MeanMetric(nan_strategy="disable")
        if config.freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
            self.backbone.eval()  # also before the first epoch: Lightning does not call .train()

    # ------------------------------------------------------------------ model
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the head's frame classifies (after projector / BN / normalisation)."""
        return self.head.features(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.classify(self.features(x))

    def outputs(self, u: torch.Tensor) -> torch.Tensor:
        """What the loss takes: features or logits (`criterion.uses_features`)."""
        return u if self.criterion.uses_features else self.head.classify(u)

    def loss_features(self, u: torch.Tensor) -> torch.Tensor:
        """`u` in the dtype the head and loss compute in (call with autocast off).

        That is the head's parameter dtype, i.e. float32 under mixed precision, bf16/float64 in
        `*-true` runs.
        """
        return u.to(torch.promote_types(u.dtype, self.head.weight.dtype))

    def train(self, mode: bool = True) -> ClassifierModule:
        super().train(mode)
        if self.config.freeze_backbone:
            self.backbone.eval()  # frozen: BatchNorm statistics stay as they were
        return self

    def on_fit_start(self) -> None:
        if self.config.freeze_backbone:
            self.backbone.eval()

    # ------------------------------------------------------------------ training
    def _reseed(self, epoch: int) -> None:
        torch.manual_seed(stream_seed(self.config.seed, epoch, self.global_rank, 0))
        self._mix_gen.manual_seed(stream_seed(self.config.seed, epoch, self.global_rank, 1))
        self._seeded_epoch = epoch

    def on_train_epoch_start(self) -> None:
        if self.config.freeze_backbone:
            self.backbone.eval()
        if self.current_epoch != self._seeded_epoch:
            self._reseed(self.current_epoch)  # before this epoch's iterator is created
        self._seeded_epoch = -1
        self.epoch_loss.reset()

    def loss_terms(
        self, u: torch.Tensor, y: torch.Tensor, y_perm: Optional[torch.Tensor], lam: float
    ) -> torch.Tensor:
        """The (mixed) loss of features `u`, computed with autocast off in the head's dtype.

        That is float32 under mixed precision: `.float()` inside autocast would still multiply in
        half precision.

        Parameters
        ----------
        u
            The head's features of the (mixed) batch.
        y
            The labels.
        y_perm
            The labels of the permuted batch mixup mixed in, or `None` without mixup.
        lam
            The mixup weight λ of `y`.
        """
        with torch.autocast(u.device.type, enabled=False):
            u = self.loss_features(u)
            out = self.outputs(u)
            loss = self.criterion(out, y)
            if self.regulariser is not None:
                loss = loss + self.regulariser(u, y)
            if y_perm is None or lam == 1.0:
                return loss
            other = self.criterion(out, y_perm)
            if self.regulariser is not None:
                other = other + self.regulariser(u, y_perm)
            return lam * loss + (1 - lam) * other

    def record_batch_loss(self, loss: torch.Tensor, batch_size: int) -> None:
        """Adds a batch's mean loss to the epoch's, weighted by the batch size. A non-finite
        loss makes the epoch's mean NaN: torchmetrics' default NaN strategy would drop it with
        a warning per batch, and its `"disable"` strategy ignores weights, so the batch mean
        enters `batch_size` times (a broadcast view, no copy)."""
        self.epoch_loss.update(loss.detach().expand(batch_size))

    def training_step(
        self, batch: Tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        y_perm, lam = None, 1.0
        if self.config.mixup_alpha > 0:
            x, y_perm, lam = enn.mixup(x, y, self.config.mixup_alpha, generator=self._mix_gen)
        loss = self.loss_terms(self.features(x), y, y_perm, lam)
        self.record_batch_loss(loss, len(y))
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(y))
        # the run's one epoch count (1 = the first epoch) in Lightning's metrics.csv and the
        # checkpoint names too (Lightning would write its 0-based index): see trainer.py
        self.log("epoch", float(self.current_epoch + 1), on_step=True, on_epoch=False,
                 batch_size=len(y))
        return loss

    def configure_optimizers(self) -> Dict[str, Any]:
        c = self.config
        params = [p for p in self.parameters() if p.requires_grad]
        if c.optimizer == "sgd":
            opt = torch.optim.SGD(
                params,
                lr=c.lr,
                momentum=c.momentum,
                weight_decay=c.weight_decay,
                nesterov=c.nesterov and c.momentum > 0,
            )
        else:
            opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        # Lightning creates the first epoch's data iterator here (to count the steps), before
        # ``on_train_epoch_start``, also when resuming: seed it now (``start_epoch`` is set by a
        # resuming trainer).
        self._reseed(self.start_epoch)
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, total // max(1, c.epochs))
        schedule = WarmupSchedule(
            c.schedule,
            total=total,
            warmup=round(c.warmup_epochs * per_epoch),
            step_every=c.step_size * per_epoch,
            gamma=c.step_gamma,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["etfcore_config"] = self.config.to_dict()
        checkpoint["etfcore_input_shape"] = list(self.input_shape or ())
        checkpoint["etfcore_custom_backbone"] = self.custom_backbone
