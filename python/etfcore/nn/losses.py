"""Losses of the papers (SPEC §8): cross-entropy (class weights, label smoothing), dot regression
(paper 002), hinge cross-entropy (paper 004), generalised labels (paper 001), mixup."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F


class CrossEntropy(nn.Module):
    """Cross-entropy on logits with optional class weights and label smoothing."""

    uses_features = False

    def __init__(self, class_weights: Optional[torch.Tensor] = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("class_weights", None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32))
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.dim() == 2:  # soft targets (mixup)
            logp = F.log_softmax(logits, dim=1)
            w = 1.0 if self.class_weights is None else self.class_weights.to(logits.dtype)
            return -(target * logp * w).sum(1).mean()
        return F.cross_entropy(logits, target, weight=self.class_weights, label_smoothing=self.label_smoothing)


class DotRegressionLoss(nn.Module):
    r"""Dot-regression loss (paper 002 eq. 14) on the fixed class vectors ``weight`` (``K × p``):

    .. math:: L = \frac{(w^\top h - \|w\|\|h\|)^2}{2\,\|w\|\|h\|}

    with the norms taken without gradient, so ``∂L/∂h = -(1 - cos∠(h, w)) w`` (eq. 15: a pure
    pull). ``parity=True`` drops ``‖w‖`` from the denominator as public code does (then the gradient
    is ``-(1 - cos) ‖w‖ w``; identical for unit-norm ETF rows). Averaged over the batch.
    """

    uses_features = True

    def __init__(self, weight: torch.Tensor, *, parity: bool = False) -> None:
        super().__init__()
        # The fixed frame (e.g. ``FixedETFHead.weight``), a non-persistent buffer: ``.to()`` moves it.
        self.register_buffer("weight", weight.detach(), persistent=False)
        self.parity = bool(parity)

    def forward(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(features.dtype)[target]
        dot = (w * features).sum(1)
        with torch.no_grad():
            hn = features.norm(dim=1).clamp_min(1e-12)
            wn = w.norm(dim=1)
        denom = hn if self.parity else wn * hn
        return ((dot - wn * hn) ** 2 / (2 * denom)).mean()


class HingeCrossEntropy(nn.Module):
    r"""Hinge cross-entropy (paper 004 eq. 8) on a fixed frame ``weight`` (``K × p``): logits

    - true class ``min(⟨w_y, u⟩, sg(‖u‖) ‖w_y‖ cos τ⁺)``,
    - other classes ``max(⟨w_k, u⟩, sg(‖u‖) ‖w_k‖ cos τ⁻)``,

    then cross-entropy. Defaults ``τ⁺ = 13π/36``, ``τ⁻ = π``; ``tau_plus`` may be a per-class
    sequence (e.g. τ⁺ only for minor classes, 0 elsewhere: :meth:`for_minor_classes`).
    ``τ⁺ = 0, τ⁻ = π`` is plain cross-entropy. Features inside their cones get zero gradient
    (paper 004 Thm 1).
    """

    uses_features = True

    def __init__(self, weight: torch.Tensor, *, tau_plus: Union[float, Sequence[float]] = 13 * math.pi / 36, tau_minus: float = math.pi) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach(), persistent=False)
        k = weight.shape[0]
        tp = torch.as_tensor(tau_plus, dtype=torch.float32)
        if tp.dim() == 0:
            tp = tp.expand(k).clone()
        if tp.shape != (k,):
            raise ValueError(f"tau_plus must be a scalar or have {k} entries")
        self.register_buffer("cos_tau_plus", torch.cos(tp))
        self.cos_tau_minus = math.cos(tau_minus)

    @classmethod
    def for_minor_classes(cls, weight: torch.Tensor, class_counts: Sequence[int], *, tau_plus: float = 13 * math.pi / 36, threshold: int = 50, tau_minus: float = math.pi) -> HingeCrossEntropy:
        """τ⁺ on classes with at most ``threshold`` training samples, 0 on the others."""
        counts = torch.as_tensor(class_counts)
        tp = torch.where(counts <= threshold, torch.tensor(float(tau_plus)), torch.tensor(0.0))
        return cls(weight, tau_plus=tp.tolist(), tau_minus=tau_minus)

    def logits(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(features.dtype)
        dots = features @ w.T
        scale = features.norm(dim=1, keepdim=True).detach() * w.norm(dim=1)[None, :]
        pos_cap = scale * self.cos_tau_plus.to(features.dtype)[target][:, None]
        neg_floor = scale * self.cos_tau_minus
        onehot = F.one_hot(target, w.shape[0]).bool()
        return torch.where(onehot, torch.minimum(dots, pos_cap), torch.maximum(dots, neg_floor))

    def forward(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(features, target), target)


class GeneralisedLabelsLoss(nn.Module):
    r"""Cross-entropy against paper 001's generalised labels (eq. 4):
    ``y_ℓ = α_{c} |δ_{ℓ,c} - ε| / (1 + (K-2)ε)`` with ``α_j = 1/(K π_j)`` from the training class
    counts (so the weights do not depend on the class proportions, Corollary 1)."""

    uses_features = False

    def __init__(self, class_counts: Sequence[int], epsilon: float = 0.0) -> None:
        super().__init__()
        counts = torch.as_tensor(class_counts, dtype=torch.float64)
        k = counts.numel()
        pi = counts / counts.sum()
        self.register_buffer("alpha", (1.0 / (k * pi)).float())
        self.epsilon = float(epsilon)
        self.k = k

    def targets(self, target: torch.Tensor) -> torch.Tensor:
        eps, k = self.epsilon, self.k
        onehot = F.one_hot(target, k).float()
        base = (onehot - eps).abs() / (1 + (k - 2) * eps)
        return self.alpha[target][:, None] * base

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -(self.targets(target).to(logits.dtype) * F.log_softmax(logits, dim=1)).sum(1).mean()


def mixup(x: torch.Tensor, target: torch.Tensor, num_classes: int, alpha: float, generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al.): ``λ ~ Beta(α, α)``, mixes inputs and one-hot targets with a random
    permutation of the batch. Returns ``(mixed inputs, soft targets)``."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample()) if alpha > 0 else 1.0
    perm = torch.randperm(x.shape[0], generator=generator, device="cpu").to(x.device)
    onehot = F.one_hot(target, num_classes).to(x.dtype)
    return lam * x + (1 - lam) * x[perm], lam * onehot + (1 - lam) * onehot[perm]
