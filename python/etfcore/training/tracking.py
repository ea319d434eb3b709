"""`TorchCollapseStats`: the name of [`CollapseMetrics`][etfcore.training.metric.CollapseMetrics]
used outside Lightning, with a `device` argument and `sync()` across `torch.distributed`."""

from __future__ import annotations

from typing import Any, Optional

from .._validation import torch_device
from .metric import CollapseMetrics


class TorchCollapseStats(CollapseMetrics):
    """[`CollapseMetrics`][etfcore.training.metric.CollapseMetrics] on a device.

    Features never leave the device; only $O(K p + p^2)$ numbers reach the host in `to_core`.
    `sync` sums the states across processes in place (torchmetrics' own synchronisation).

    Parameters
    ----------
    num_classes
        The number of classes `K`.
    dim
        The feature dimension `p`.
    device
        Where the states live (`None`: the CPU).
    shift
        The fixed centre of the accumulation, as for `CollapseMetrics`.

    Examples
    --------
    >>> import torch
    >>> t = TorchCollapseStats(3, 4)
    >>> t.update(torch.randn(30, 4), torch.arange(30) % 3)
    >>> t.to_core().num_samples
    30
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        device: Optional[Any] = None,
        shift: Optional[Any] = None,
    ) -> None:
        super().__init__(num_classes, dim, shift=shift)
        if device is not None:
            self.to(torch_device(device))

    def sync(self, group: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        """Sums the states across `torch.distributed` processes (no-op when not initialised)."""
        super().sync(process_group=group, **kwargs)
