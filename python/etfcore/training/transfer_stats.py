r"""`TorchTransferabilityStats`: the statistics of
`etfcore.transfer.TransferabilityStats` accumulated on a torch device in float64.

The collapse statistics come from `CollapseMetrics` (float64
products); beside them, about the same shift `c` (`a_i = h_i - c`), `Σ‖a_i‖⁴`, `Σ‖a_i‖² a_i`
and the per-class, per-dimension `Σ a_i²`. Only `O(K·D + D²)` numbers reach the host, in
`to_core`.
"""

from __future__ import annotations

import struct
from typing import Any, Optional

import numpy as np
import torch

from .. import _core
from .._validation import torch_device
from ..errors import LabelError, NonFiniteError
from ..transfer.streaming import TransferabilityStats
from .metric import CollapseMetrics, check_batch

_MAGIC = b"ETFCXFER"
_VERSION = 1


class TorchTransferabilityStats:
    r"""The accumulators of `etfcore.transfer.TransferabilityStats` on a torch device.

    Parameters
    ----------
    num_classes : int
        The number of classes $K$ (labels in `0..K-1`).
    dim : int
        The feature dimension $D$.
    device : str or torch.device, optional
        Where the states live (default: the CPU).

    Notes
    -----
    Every state is float64 on ``device``; each batch is converted to float64 there before its
    products are formed (the `products="float64"` mode of
    `CollapseMetrics`), so the statistics equal the core's
    float64 pass up to summation order. Batches are checked when they arrive (labels in
    ``0..K-1``, finite features: one host synchronisation per batch). The host copy
    (`to_core`) is written through the
    versioned byte format, whose checksum is computed in Python: about a second per 3 MiB of
    statistics (`8·(D² + K·D)` bytes).

    Examples
    --------
    >>> import torch
    >>> from etfcore import transfer
    >>> from etfcore.training import TorchTransferabilityStats
    >>> x, y = torch.randn(60, 4, dtype=torch.float64), torch.arange(60) % 3
    >>> t = TorchTransferabilityStats(3, 4).update(x, y)
    >>> ref = transfer.TransferabilityStats(3, 4).update(x.numpy(), y.numpy())
    >>> abs(t.to_core().gbc() - ref.gbc()) < 1e-10 * abs(ref.gbc())
    True
    """

    def __init__(self, num_classes: int, dim: int, *, device: Optional[Any] = None) -> None:
        dev = torch.device("cpu") if device is None else torch_device(device)
        self.metric = CollapseMetrics(num_classes, dim, products="float64").to(dev)
        f64 = dict(dtype=torch.float64, device=dev)
        self.fourth = torch.zeros((), **f64)
        self.cubic = torch.zeros(dim, **f64)
        self.class_sq = torch.zeros(num_classes, dim, **f64)
        self.num_classes, self.dim = int(num_classes), int(dim)

    @property
    def device(self) -> torch.device:
        return self.cubic.device

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> TorchTransferabilityStats:
        """Adds a batch (checked first: a bad batch raises and changes nothing)."""
        check_batch(features, labels, self.num_classes, self.dim)
        if features.shape[0] == 0:
            return self
        h = features.detach().to(device=self.device, dtype=torch.float64)
        y = labels.detach().to(device=self.device, dtype=torch.int64)
        if bool((y.min() < 0) | (y.max() >= self.num_classes)):
            raise LabelError(f"labels must lie in 0..{self.num_classes - 1}, got "
                             f"{int(y.min())}..{int(y.max())}")
        if not bool(torch.isfinite(h).all()):
            raise NonFiniteError("features contain a non-finite value (NaN or Inf)")
        self.metric.update(h, y)
        a = h - self.metric.shift
        sq = (a * a).sum(1)
        self.fourth += (sq * sq).sum()
        self.cubic += (sq[:, None] * a).sum(0)
        self.class_sq.index_add_(0, y, a * a)
        return self

    def to_core(self) -> TransferabilityStats:
        """The host `etfcore.transfer.TransferabilityStats` of everything added so far."""
        inner = self.metric.to_core().to_bytes()
        vals = np.concatenate([
            self.fourth.reshape(1).cpu().numpy(), self.cubic.cpu().numpy(),
            self.class_sq.reshape(-1).cpu().numpy(),
        ]).astype("<f8")
        body = (_MAGIC + struct.pack("<IQ", _VERSION, len(inner)) + inner + vals.tobytes())
        checksum = _core.format_checksum(body)
        return TransferabilityStats.from_bytes(body + struct.pack("<Q", checksum))


def _device_collapse_stats(num_classes: int, dim: int, like: Any) -> CollapseMetrics:
    """Empty collapse statistics (float64 products and states) on the device of `like`."""
    return CollapseMetrics(num_classes, dim, products="float64").to(like.device)


def TorchTwoPassScores(num_classes: int, dim: int, **options: Any):  # noqa: N802
    """[`TwoPassScores`][etfcore.transfer.TwoPassScores] whose statistics live on the device of
    the torch tensors it is fed (float64 states and products there; only `O(K·D + D²)` numbers
    reach the host when a pass closes).

    Parameters
    ----------
    num_classes
        $K$: labels are integers in `0..K-1`.
    dim
        $D$, the feature dimension.
    **options
        The scores and their options, as for `TwoPassScores`.

    Returns
    -------
    TwoPassScores
        Fed with torch tensors (one device for every chunk).

    Examples
    --------
    >>> import torch
    >>> from etfcore import data, transfer
    >>> x, y = data.load_digits()
    >>> tp = TorchTwoPassScores(10, 64, scores=("sfda",))
    >>> for p in range(tp.passes):
    ...     _ = tp.feed(p, torch.as_tensor(x), torch.as_tensor(y))
    >>> abs(tp.result().sfda.value - transfer.sfda(x, y).value) < 1e-9
    True
    """
    from ..transfer.two_pass import TwoPassScores

    return TwoPassScores(num_classes, dim, device_stats=_device_collapse_stats, **options)
