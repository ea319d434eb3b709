"""Switchable Whitening (Pan et al., ICCV 2019), the whitening baseline of Tiomoko Ali et al."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import ParameterError, ShapeError

_MODES = ("bw", "iw", "bn", "in", "ln")


class SwitchableWhitening(nn.Module):
    r"""Mixes the statistics of several normalisers and whitens with the result.

    For channel groups of size $G$ = `group_size`, per sample $n$ with
    $x_n \in \mathbb R^{G \times HW}$: batch whitening `bw` (mean/covariance over $N H W$),
    instance whitening `iw` (over $H W$), and the diagonal `bn`, `in` and `ln` statistics. Means
    and covariances are mixed with softmax importance weights (one set for means, one for
    covariances, or tied), then

    $$
    \hat x_n = (\Sigma_n + \varepsilon I)^{-1/2} (x_n - \mu_n)
    $$

    by a batched symmetric eigendecomposition (ZCA), followed by a per-channel affine map. In eval
    mode the batch statistics (`bw`, `bn`) are running averages. Works on `(N, C)` and
    `(N, C, H, W)` inputs.

    Parameters
    ----------
    num_channels
        The channels `C`, a multiple of `group_size`.
    group_size
        The channels whitened together.
    modes
        The statistics mixed: a non-empty subset of `("bw", "iw", "bn", "in", "ln")`.
    eps
        $\varepsilon$ added to the covariance's diagonal.
    momentum
        The update rate of the running averages.
    tie_weights
        One set of importance weights for means and covariances.
    affine
        Apply a learnable per-channel scale and bias.

    Raises
    ------
    ParameterError
        When `num_channels` is not a multiple of `group_size` or `modes` is empty or unknown.
    """

    def __init__(
        self,
        num_channels: int,
        *,
        group_size: int = 8,
        modes: Sequence[str] = ("bw", "iw"),
        eps: float = 1e-3,
        momentum: float = 0.1,
        tie_weights: bool = False,
        affine: bool = True,
    ) -> None:
        super().__init__()
        if num_channels % group_size:
            raise ParameterError(
                f"num_channels={num_channels} is not a multiple of group_size={group_size}"
            )
        bad = [m for m in modes if m not in _MODES]
        if bad or not modes:
            raise ParameterError(f"modes must be a non-empty subset of {_MODES}, got {modes!r}")
        self.num_channels, self.group_size = num_channels, group_size
        self.groups = num_channels // group_size
        self.modes = tuple(modes)
        self.eps, self.momentum, self.tie_weights = float(eps), float(momentum), bool(tie_weights)
        self.mean_logits = nn.Parameter(torch.zeros(len(modes)))
        self.cov_logits = self.mean_logits if tie_weights else nn.Parameter(torch.zeros(len(modes)))
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None
        self.register_buffer("running_mean", torch.zeros(self.groups, group_size))
        self.register_buffer("running_cov", torch.eye(group_size).repeat(self.groups, 1, 1))

    def importance(self):
        """The importance weights `(mean weights, covariance weights)` after softmax, in the
        order of `modes`."""
        return torch.softmax(self.mean_logits, 0), torch.softmax(self.cov_logits, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        if x.dim() == 2:
            x = x[:, :, None]
        elif x.dim() == 4:
            x = x.flatten(2)
        else:
            raise ShapeError(
                f"SwitchableWhitening expects (N, C) or (N, C, H, W), got {tuple(shape)}"
            )
        n, c, hw = x.shape
        if c != self.num_channels:
            raise ShapeError(f"expected {self.num_channels} channels, got {c}")
        g, G = self.groups, self.group_size
        xg = x.reshape(n, g, G, hw).float()
        eye = torch.eye(G, device=x.device, dtype=xg.dtype)
        if self.training or any(m in ("iw", "in", "ln") for m in self.modes):
            mu_i = xg.mean(3)  # n, g, G
            xc_i = xg - mu_i[..., None]
            cov_i = xc_i @ xc_i.transpose(2, 3) / hw  # n, g, G, G
        if self.training:
            mu_b = xg.mean((0, 3))  # g, G
            xc_b = (xg - mu_b[None, :, :, None]).permute(1, 2, 0, 3).reshape(g, G, n * hw)
            cov_b = xc_b @ xc_b.transpose(1, 2) / (n * hw)
            with torch.no_grad():
                self.running_mean.lerp_(mu_b.detach(), self.momentum)
                self.running_cov.lerp_(cov_b.detach(), self.momentum)
        else:
            mu_b, cov_b = self.running_mean, self.running_cov
        wm, wc = self.importance()
        means, covs = [], []
        for m in self.modes:
            if m == "bw":
                means.append(mu_b.expand(n, g, G))
                covs.append(cov_b.expand(n, g, G, G))
            elif m == "bn":
                means.append(mu_b.expand(n, g, G))
                diag = torch.diag_embed(torch.diagonal(cov_b, dim1=-2, dim2=-1))
                covs.append(diag.expand(n, g, G, G))
            elif m == "iw":
                means.append(mu_i)
                covs.append(cov_i)
            elif m == "in":
                means.append(mu_i)
                covs.append(torch.diag_embed(torch.diagonal(cov_i, dim1=-2, dim2=-1)))
            else:  # ln: one mean and variance per sample over all channels and positions
                flat = x.float().reshape(n, -1)
                mu_l = flat.mean(1)
                var_l = flat.var(1, unbiased=False)
                means.append(mu_l[:, None, None].expand(n, g, G))
                covs.append(var_l[:, None, None, None] * eye)
        mu = sum(w * m for w, m in zip(wm, means))
        cov = sum(w * s for w, s in zip(wc, covs)) + self.eps * eye
        vals, vecs = torch.linalg.eigh(cov)
        inv_sqrt = vecs @ torch.diag_embed(vals.clamp_min(1e-12).rsqrt()) @ vecs.transpose(-1, -2)
        out = (inv_sqrt @ (xg - mu[..., None])).reshape(n, c, hw).to(x.dtype)
        if self.weight is not None:
            out = out * self.weight[None, :, None] + self.bias[None, :, None]
        return out.reshape(shape)
