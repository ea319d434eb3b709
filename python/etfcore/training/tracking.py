"""Collapse statistics accumulated on the training device (SPEC §3) and handed to the core."""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import LabelError, NonFiniteError, ShapeError
from ..stats import CollapseStats


class TorchCollapseStats:
    """The sufficient statistics of :class:`etfcore.CollapseStats`, accumulated in float64 on the
    features' device, so features never travel to the host: only ``O(K·p + p²)`` numbers do, in
    :meth:`to_core`. :meth:`sync` sums them across ``torch.distributed`` processes (all ranks use
    rank 0's shift).

    >>> import torch
    >>> t = TorchCollapseStats(3, 4)
    >>> t.update(torch.randn(30, 4), torch.arange(30) % 3)
    >>> t.to_core().num_samples
    30
    """

    def __init__(self, num_classes: int, dim: int, *, device: Optional[torch.device] = None) -> None:
        self.num_classes, self.dim = int(num_classes), int(dim)
        dev = torch.device("cpu") if device is None else torch.device(device)
        z = lambda *s: torch.zeros(*s, dtype=torch.float64, device=dev)  # noqa: E731
        self.shift: Optional[torch.Tensor] = None
        self.counts = torch.zeros(num_classes, dtype=torch.int64, device=dev)
        self.class_sums = z(num_classes, dim)
        self.class_sq_norms = z(num_classes)
        self.class_unit_sums = z(num_classes, dim)
        self.class_zero_rows = torch.zeros(num_classes, dtype=torch.int64, device=dev)
        self.scatter = z(dim, dim)

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Adds a batch; validates before touching the state."""
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ShapeError(f"features must be (n, {self.dim}), got {tuple(features.shape)}")
        if labels.shape != (features.shape[0],):
            raise ShapeError(f"labels must be ({features.shape[0]},), got {tuple(labels.shape)}")
        if features.shape[0] == 0:
            return
        h = features.detach().to(device=self.scatter.device, dtype=torch.float64)
        y = labels.detach().to(device=self.scatter.device, dtype=torch.int64)
        if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
            raise LabelError(f"labels must lie in 0..{self.num_classes - 1}, got range [{int(y.min())}, {int(y.max())}]")
        if not bool(torch.isfinite(h).all()):
            row, col = (~torch.isfinite(h)).nonzero()[0].tolist()
            raise NonFiniteError(f"features contain a non-finite value at row {row}, column {col}")
        if self.shift is None:
            self.shift = h.mean(0)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.broadcast(self.shift, src=0)
        x = h - self.shift
        self.counts += torch.bincount(y, minlength=self.num_classes)
        self.class_sums.index_add_(0, y, x)
        self.class_sq_norms.index_add_(0, y, (x * x).sum(1))
        norms = h.norm(dim=1)
        nz = norms > 0
        self.class_unit_sums.index_add_(0, y[nz], h[nz] / norms[nz, None])
        self.class_zero_rows += torch.bincount(y[~nz], minlength=self.num_classes)
        self.scatter += x.T @ x

    def sync(self, group=None) -> None:
        """All-reduce (sum) the statistics across processes."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        for t in (self.counts, self.class_sums, self.class_sq_norms, self.class_unit_sums, self.class_zero_rows, self.scatter):
            torch.distributed.all_reduce(t, group=group)

    def to_core(self) -> CollapseStats:
        """The core's :class:`CollapseStats` (copies ``O(K·p + p²)`` numbers to the host)."""
        cpu = lambda t: t.detach().cpu().numpy()  # noqa: E731
        return CollapseStats.from_parts(
            self.num_classes,
            self.dim,
            shift=None if self.shift is None else cpu(self.shift),
            class_counts=cpu(self.counts),
            class_sums=cpu(self.class_sums),
            class_sq_norms=cpu(self.class_sq_norms),
            class_unit_sums=cpu(self.class_unit_sums),
            class_zero_rows=cpu(self.class_zero_rows),
            scatter=cpu(self.scatter),
        )
