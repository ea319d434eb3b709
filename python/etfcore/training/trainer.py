"""Training with fixed-ETF or learned heads and per-epoch collapse tracking (SPEC §8, §10).

Penultimate features are accumulated on the training device into :class:`TorchCollapseStats`
during the evaluation pass (never materialised on the host); the core computes the metrics.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import time
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..errors import LabelError, ParameterError
from ..nn.backbones import MLP, SmallCNN, resnet
from ..nn.heads import CentredMeansHead, FixedETFHead, LinearHead
from ..nn.losses import (
    CrossEntropy,
    DotRegressionLoss,
    GeneralisedLabelsLoss,
    HingeCrossEntropy,
    mixup,
)
from . import datasets
from .tracking import TorchCollapseStats

CHOICES = {
    "backbone": ("mlp", "cnn", "cnn-sw", "resnet18", "resnet50"),
    "head": ("etf", "linear", "cm", "wicm", "lwm"),
    "loss": ("ce", "weighted_ce", "label_smoothing", "dot_regression", "dot_regression_parity", "hinge_ce", "generalised_labels"),
    "optimizer": ("sgd", "adamw"),
    "schedule": ("cosine", "step", "constant"),
    "dataset": ("digits", "gmm") + datasets.TORCHVISION,
}


@dataclasses.dataclass
class TrainConfig:
    """Every option of a run; :meth:`from_dict` refuses unknown keys and bad values."""

    dataset: str = "digits"
    data_root: str = "data"
    download: bool = True
    image_size: int = 32
    imbalance_ratio: float = 1.0
    backbone: str = "mlp"
    feature_dim: int = 32
    head: str = "etf"
    etf_seed: int = 0
    projector: bool = False
    head_batch_norm: bool = False
    normalize_features: bool = False
    loss: str = "ce"
    label_smoothing: float = 0.1
    tau_plus: float = 13 * math.pi / 36
    tau_minus: float = math.pi
    minor_threshold: int = 50
    hinge_minor_only: bool = True
    mixup_alpha: float = 0.0
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: int = 1
    step_size: int = 10
    step_gamma: float = 0.1
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    track_every: int = 1
    progress: bool = True

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> TrainConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ParameterError(f"unknown config key(s) {unknown}; known keys: {sorted(known)}")
        cfg = cls(**{k: (type(getattr(cls, k))(v) if getattr(cls, k) is not None and not isinstance(getattr(cls, k), bool) else v) for k, v in d.items()})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ParameterError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.loss in ("dot_regression", "dot_regression_parity", "hinge_ce") and self.head != "etf":
            raise ParameterError(f"loss {self.loss!r} needs a fixed frame: use head='etf'")
        if not (0 < self.imbalance_ratio <= 1):
            raise ParameterError(f"imbalance_ratio must be in (0, 1], got {self.imbalance_ratio}")
        for key in ("epochs", "batch_size", "feature_dim", "track_every"):
            if getattr(self, key) < 1:
                raise ParameterError(f"{key} must be >= 1")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ParameterError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {self.device!r}")


PRESETS: Dict[str, Dict[str, Any]] = {
    "digits-linear-ce": dict(head="linear", loss="ce"),
    "digits-etf-ce": dict(head="etf", loss="ce"),
    "digits-etf-dr": dict(head="etf", loss="dot_regression", normalize_features=True, lr=0.1),
    "digits-etf-hinge": dict(head="etf", loss="hinge_ce"),
    "digits-cm": dict(head="cm", loss="ce"),
    "digits-lt-etf-hinge": dict(head="etf", loss="hinge_ce", imbalance_ratio=0.1),
    "gmm-etf-ce": dict(dataset="gmm", head="etf", loss="ce"),
}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError("device 'cuda' requested but CUDA is not available")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class Model(torch.nn.Module):
    """``backbone → head``; ``features`` gives what the head's frame classifies."""

    def __init__(self, backbone: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.features(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.classify(self.features(x))


class Trainer:
    """Runs a :class:`TrainConfig`: builds data, model, loss, optimiser and schedule, trains,
    evaluates and tracks collapse every ``track_every`` epochs, logs to ``out_dir/metrics.jsonl``
    and ``metrics.csv``, and checkpoints to ``out_dir/checkpoint.pt`` (resumable)."""

    def __init__(self, config: TrainConfig, out_dir: Optional[str] = None, *, backbone: Optional[torch.nn.Module] = None) -> None:
        """``backbone``: any module mapping a batch of inputs to ``(batch, config.feature_dim)``
        features, used instead of ``config.backbone`` (its width is checked before training)."""
        config.validate()
        self.config = config
        self._custom_backbone = backbone
        self.out_dir = out_dir
        self.device = resolve_device(config.device)
        seed_everything(config.seed)
        if config.dataset in ("digits", "gmm"):
            d = datasets.embedded(config.dataset, seed=config.seed, imbalance_ratio=config.imbalance_ratio)
            input_shape = (d["input_dim"],)
        else:
            d = datasets.image_datasets(config.dataset, config.data_root, seed=config.seed, imbalance_ratio=config.imbalance_ratio, download=config.download, image_size=config.image_size)
            input_shape = d["input_shape"]
        self.num_classes = d["num_classes"]
        self.train_set, self.test_set = d["train"], d["test"]
        self.train_counts = d["train_counts"]
        for name, ds in (("train", self.train_set), ("test", self.test_set)):
            y = datasets.dataset_labels(ds)
            if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
                raise LabelError(f"{name} labels fall outside the head's {self.num_classes} classes")
        self.model = self._build_model(input_shape).to(self.device)
        self.criterion = self._build_loss().to(self.device)
        self.optimizer = self._build_optimizer()
        self.steps_per_epoch = math.ceil(len(self.train_set) / config.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.use_amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.epoch = 0
        self.history: List[Dict[str, Any]] = []
        self.minor = torch.as_tensor(self.train_counts <= config.minor_threshold)

    # ------------------------------------------------------------------ construction
    def _build_model(self, input_shape) -> Model:
        c = self.config
        if self._custom_backbone is not None:
            backbone = self._custom_backbone
            x0 = self.train_set[0][0][None]
            backbone.eval()
            with torch.no_grad():
                out = backbone(x0)
            backbone.train()
            if out.dim() != 2 or out.shape[1] != c.feature_dim:
                from ..errors import ShapeError

                raise ShapeError(f"the backbone returns features of shape {tuple(out.shape)} for one sample; the head expects (1, {c.feature_dim}) (config.feature_dim)")
        elif c.backbone == "mlp":
            backbone = MLP(int(np.prod(input_shape)), c.feature_dim)
        elif c.backbone in ("cnn", "cnn-sw"):
            channels = input_shape[0] if len(input_shape) == 3 else 1
            backbone = SmallCNN(c.feature_dim, in_channels=channels, norm="sw" if c.backbone == "cnn-sw" else "bn")
        else:
            backbone = resnet(c.backbone, feature_dim=c.feature_dim, small_input=c.image_size <= 64)
        if c.head == "etf":
            head = FixedETFHead(self.num_classes, c.feature_dim, seed=c.etf_seed, projector=c.projector, batch_norm=c.head_batch_norm, normalize=c.normalize_features)
        elif c.head == "linear":
            head = LinearHead(self.num_classes, c.feature_dim)
        else:
            # Paper 001's heads from the class means of the initial backbone's training features.
            stats = TorchCollapseStats(self.num_classes, c.feature_dim)
            backbone.eval()
            with torch.no_grad():
                for x, y in DataLoader(self.train_set, batch_size=512):
                    stats.update(backbone(x), y)
            backbone.train()
            means = np.nan_to_num(stats.to_core().class_means())
            head = CentredMeansHead(means, mode=c.head)
        return Model(backbone, head)

    def _build_loss(self) -> torch.nn.Module:
        c = self.config
        w = getattr(self.model.head, "weight", None)
        if c.loss == "ce":
            return CrossEntropy()
        if c.loss == "weighted_ce":
            counts = torch.as_tensor(self.train_counts, dtype=torch.float32).clamp_min(1)
            return CrossEntropy(class_weights=counts.sum() / (len(counts) * counts))
        if c.loss == "label_smoothing":
            return CrossEntropy(label_smoothing=c.label_smoothing)
        if c.loss in ("dot_regression", "dot_regression_parity"):
            return DotRegressionLoss(w, parity=c.loss.endswith("parity"))
        if c.loss == "hinge_ce":
            if c.hinge_minor_only and self.config.imbalance_ratio < 1:
                return HingeCrossEntropy.for_minor_classes(w, self.train_counts.tolist(), tau_plus=c.tau_plus, threshold=c.minor_threshold, tau_minus=c.tau_minus)
            return HingeCrossEntropy(w, tau_plus=c.tau_plus, tau_minus=c.tau_minus)
        return GeneralisedLabelsLoss(self.train_counts.tolist())

    def _build_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, nesterov=True)
        return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)

    def _lr_factor(self, step: int) -> float:
        c = self.config
        warm = c.warmup_epochs * self.steps_per_epoch
        if step < warm:
            return (step + 1) / warm
        if c.schedule == "constant":
            return 1.0
        if c.schedule == "step":
            return c.step_gamma ** ((step // self.steps_per_epoch) // c.step_size)
        total = max(1, c.epochs * self.steps_per_epoch - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / total)))

    # ------------------------------------------------------------------ loop
    def fit(self, resume: Optional[str] = None, *, stop_after: Optional[int] = None) -> List[Dict[str, Any]]:
        """Trains up to ``config.epochs`` (or only ``stop_after`` more epochs); ``resume`` restores
        a checkpoint first. Every epoch's shuffling is seeded by ``(seed, epoch)``, so a resumed run
        is the same as an uninterrupted one (on CPU)."""
        if resume:
            self.load_checkpoint(resume)
        c = self.config
        last = c.epochs if stop_after is None else min(c.epochs, self.epoch + stop_after)
        while self.epoch < last:
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(c.seed * 7919 + self.epoch)
            loader = DataLoader(self.train_set, batch_size=c.batch_size, shuffle=True, generator=gen, drop_last=len(self.train_set) > c.batch_size)
            self.model.train()
            total, seen = 0.0, 0
            for x, y in loader:
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                y_perm, lam = y, 1.0
                if c.mixup_alpha > 0:
                    x, y_perm, lam = mixup(x, y, c.mixup_alpha, generator=gen)
                with torch.autocast(self.device.type, enabled=self.use_amp):
                    u = self.model.features(x)
                    out = u if self.criterion.uses_features else self.model.head.classify(u)
                    loss = self.criterion(out.float(), y)
                    if lam < 1.0:
                        loss = lam * loss + (1 - lam) * self.criterion(out.float(), y_perm)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                total += float(loss.detach()) * len(y)
                seen += len(y)
            self.epoch += 1
            row: Dict[str, Any] = {"epoch": self.epoch, "lr": self.optimizer.param_groups[0]["lr"], "train_loss": total / seen}
            if self.epoch % c.track_every == 0 or self.epoch == c.epochs:
                row.update(self.evaluate())
            row["seconds"] = time.perf_counter() - t0
            self.history.append(row)
            self._log(row)
            if c.progress:
                msg = " ".join(f"{k}={v:.4g}" for k, v in row.items() if k in ("train_loss", "test_acc", "train_vci", "train_nc1"))
                print(f"[epoch {self.epoch}/{c.epochs}] {msg}", flush=True)
            if self.out_dir:
                self.save_checkpoint(os.path.join(self.out_dir, "checkpoint.pt"))
        return self.history

    @torch.no_grad()
    def evaluate(self) -> Dict[str, Any]:
        """Accuracy and collapse metrics on the train and held-out splits (one pass each)."""
        self.model.eval()
        out: Dict[str, Any] = {}
        K, p = self.num_classes, self.model.head.dim
        for split, ds in (("train", self.train_set), ("test", self.test_set)):
            stats = TorchCollapseStats(K, p, device=self.device)
            correct = torch.zeros(K, device=self.device)
            count = torch.zeros(K, device=self.device)
            for x, y in DataLoader(ds, batch_size=512):
                x, y = x.to(self.device), y.to(self.device)
                with torch.autocast(self.device.type, enabled=self.use_amp):
                    u = self.model.features(x)
                u = u.float()
                stats.update(u, y)
                pred = self.model.head.classify(u).argmax(1)
                correct.index_add_(0, y, (pred == y).float())
                count.index_add_(0, y, torch.ones_like(y, dtype=torch.float))
            acc_k = (correct / count.clamp_min(1)).cpu()
            present = (count > 0).cpu()
            out[f"{split}_acc"] = float(correct.sum() / count.sum())
            out[f"{split}_mean_class_acc"] = float(acc_k[present].mean())
            minor = self.minor & present
            major = ~self.minor & present
            out[f"{split}_minor_acc"] = float(acc_k[minor].mean()) if minor.any() else float("nan")
            out[f"{split}_major_acc"] = float(acc_k[major].mean()) if major.any() else float("nan")
            core = stats.to_core()
            w = self.model.head.weight.detach().float().cpu().numpy()
            m = core.metrics(classifier=w)
            for key in ("vci", "nc1", "probe_mse", "squared_distance", "within_trace_per_dim", "cdnv", "nc2_etf_error", "nc2_equinorm", "nc3"):
                out[f"{split}_{key}"] = float(m[key])
        self.model.train()
        return out

    # ------------------------------------------------------------------ persistence
    def state(self) -> Dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "config": dataclasses.asdict(self.config),
            "etf_seed": self.config.etf_seed,
            "history": self.history,
            "torch_rng": torch.get_rng_state(),
        }

    def save_checkpoint(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp"
        torch.save(self.state(), tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: str) -> None:
        ck = torch.load(path, map_location=self.device, weights_only=False)
        if ck["config"] != {**dataclasses.asdict(self.config), "epochs": ck["config"]["epochs"], "device": ck["config"]["device"], "progress": ck["config"]["progress"]}:
            raise ParameterError("checkpoint was written with a different configuration")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.epoch = ck["epoch"]
        self.history = ck["history"]
        torch.set_rng_state(ck["torch_rng"])

    def _log(self, row: Dict[str, Any]) -> None:
        if not self.out_dir:
            return
        os.makedirs(self.out_dir, exist_ok=True)
        with open(os.path.join(self.out_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
        path = os.path.join(self.out_dir, "metrics.csv")
        keys = sorted({k for r in self.history for k in r})
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.history)

    @torch.no_grad()
    def extract_features(self, split: str = "train"):
        """``(features, labels)`` of a split as numpy arrays (for offline analysis and tests)."""
        self.model.eval()
        ds = self.train_set if split == "train" else self.test_set
        hs, ys = [], []
        for x, y in DataLoader(ds, batch_size=512):
            hs.append(self.model.features(x.to(self.device)).float().cpu())
            ys.append(y)
        self.model.train()
        return torch.cat(hs).numpy(), torch.cat(ys).numpy()
