"""Array operations of the two-pass mode for numpy and torch (private to
`etfcore.transfer`). Nothing here imports torch until a torch chunk arrives; statistics of torch
chunks come from the factory the caller injects (`etfcore.training.TorchTwoPassScores` passes
the training layer's float64 `CollapseMetrics`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..stats import CollapseStats


def _is_torch(a: Any) -> bool:
    return type(a).__module__.split(".")[0] == "torch"


class _Numpy:
    """The array operations the passes need, for numpy (float64 on the host)."""

    @staticmethod
    def const(a: np.ndarray, like: Any) -> np.ndarray:
        return a

    @staticmethod
    def exp(a):
        return np.exp(a)

    @staticmethod
    def log(a):
        return np.log(a)

    @staticmethod
    def log_softmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    @staticmethod
    def logsumexp(z):
        m = z.max(1)
        return m + np.log(np.exp(z - m[:, None]).sum(1))

    @staticmethod
    def take(z, y):
        return z[np.arange(z.shape[0]), y]

    @staticmethod
    def smallest(v, m: int):
        return v if v.shape[0] <= m else np.partition(v, m - 1)[:m]

    @staticmethod
    def cat(parts):
        return np.concatenate(parts)

    @staticmethod
    def qr_r(a):
        return np.linalg.qr(a, mode="r")

    @staticmethod
    def scalar(v) -> float:
        return float(v)

    @staticmethod
    def host(a) -> np.ndarray:
        return np.asarray(a)

    @staticmethod
    def index_add(target_rows: int, y, rows):
        out = np.zeros((target_rows, rows.shape[1]))
        np.add.at(out, y, rows)
        return out

    @staticmethod
    def new_stats(k: int, p: int, like: Any):
        return CollapseStats(k, p)

    @staticmethod
    def f64(a, like: Any):
        return np.asarray(a, dtype=np.float64)

    @staticmethod
    def index(a: np.ndarray, like: Any):
        return a


class _Torch:
    """The same operations for torch tensors, on their device in float64."""

    @staticmethod
    def const(a: np.ndarray, like: Any):
        import torch

        return torch.as_tensor(a, dtype=torch.float64, device=like.device)

    @staticmethod
    def exp(a):
        return a.exp()

    @staticmethod
    def log(a):
        return a.log()

    @staticmethod
    def log_softmax(z):
        return z.log_softmax(1)

    @staticmethod
    def logsumexp(z):
        return z.logsumexp(1)

    @staticmethod
    def take(z, y):
        return z.gather(1, y[:, None])[:, 0]

    @staticmethod
    def smallest(v, m: int):
        import torch

        return v if v.shape[0] <= m else torch.topk(v, m, largest=False).values

    @staticmethod
    def cat(parts):
        import torch

        return torch.cat(parts)

    @staticmethod
    def qr_r(a):
        import torch

        return torch.linalg.qr(a, mode="r")[1]

    @staticmethod
    def scalar(v) -> float:
        return float(v.item())

    @staticmethod
    def host(a) -> np.ndarray:
        return a.detach().cpu().numpy()

    @staticmethod
    def index_add(target_rows: int, y, rows):
        import torch

        out = torch.zeros(target_rows, rows.shape[1], dtype=torch.float64, device=rows.device)
        return out.index_add_(0, y, rows)

    @staticmethod
    def f64(a, like: Any):
        import torch

        if _is_torch(a):
            return a.detach().to(device=like.device, dtype=torch.float64)
        return torch.as_tensor(np.asarray(a, dtype=np.float64), device=like.device)

    @staticmethod
    def index(a: np.ndarray, like: Any):
        import torch

        return torch.as_tensor(a, dtype=torch.int64, device=like.device)


def _core(stats: Any) -> CollapseStats:
    """Statistics of either backend as the core's `etfcore.CollapseStats` (a copy)."""
    return stats.copy() if isinstance(stats, CollapseStats) else stats.to_core()
