"""Classifier heads: a fixed frame (simplex ETF, or for more classes than dimensions + 1 a sphere
code, hypercube, orthoplex or optimised low-coherence frame), learnable linear, centred class
means; per-class frame lengths from class counts."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import frames as _frames
from ..errors import DimensionError, ParameterError, ShapeError

FRAMES = ("simplex", "sphere", "hypercube", "orthoplex", "min_coherence")
"""The fixed frames a head can use, by name (`FixedETFHead(frame=...)`)."""


def fixed_frame(
    name: str, num_classes: int, dim: int, seed: int, lengths: Optional[Sequence[float]] = None
) -> np.ndarray:
    """The fixed frame `name` as a `(num_classes, dim)` float64 array.

    Parameters
    ----------
    name
        One of [`FRAMES`][etfcore.nn.heads.FRAMES].
    num_classes
        The number of rows `K`.
    dim
        The dimension `p` of each row.
    seed
        Seeds the frames that are drawn at random.
    lengths
        Row norms (`K` positive values); unit rows when `None`.

    Raises
    ------
    DimensionError
        For a simplex ETF with `dim < num_classes - 1`.
    ParameterError
        For an unknown `name` or bad `lengths`.
    """
    if name == "simplex":
        if dim < num_classes - 1:
            raise DimensionError(
                f"a fixed ETF head for K={num_classes} classes needs dim >= K-1 = "
                f"{num_classes - 1}, got dim={dim} (frames for more classes: {FRAMES[1:]})"
            )
        return _frames.etf(num_classes, dim, seed=seed, lengths=lengths)
    if name == "sphere":
        w = _frames.sphere_codes(num_classes, dim, seed=seed)
    elif name == "hypercube":
        w = _frames.hypercube_frame(num_classes, dim)
    elif name == "orthoplex":
        w = _frames.orthoplex_frame(num_classes, dim)
    elif name == "min_coherence":
        w = _frames.min_coherence_frame(num_classes, dim, seed=seed)[0]
    else:
        raise ParameterError(f"frame must be one of {FRAMES}, got {name!r}")
    if lengths is not None:
        from .._validation import as_flat64

        ell = as_flat64(lengths, "lengths")
        if ell.shape != (num_classes,) or not np.all(ell > 0):
            raise ParameterError(f"lengths must be {num_classes} positive values")
        w = w * ell[:, None]
    return w


def _check_features(h: torch.Tensor, dim: int) -> None:
    if h.dim() != 2 or h.shape[1] != dim:
        raise ShapeError(f"head expects features of shape (batch, {dim}), got {tuple(h.shape)}")


class FixedETFHead(nn.Module):
    r"""Fixed-frame classifier $\text{logits} = W \varphi(h)$ (bias zero): a simplex ETF by
    default.

    $W$ ($K \times p$) comes with an explicit `seed` and is a persistent buffer: optimisers never
    see it and a checkpoint restores exactly the same frame (the seed is also a buffer).
    $\varphi$ is an optional projector `Linear(p, p)` (as in the hinge-CE paper: lets ReLU
    features reach the whole space), optionally followed by `BatchNorm1d` and/or L2
    normalisation, in that order: $\varphi(h) = \mathrm{normalize}(\mathrm{BN}(P h))$.
    `batch_norm=True, normalize=True` (without projector) is the feature head of Yang et al.'s
    public code: BatchNorm1d on the pooled features, then division by their L2 norm, so the frame
    classifies unit vectors.

    Parameters
    ----------
    num_classes
        The number of classes `K`.
    dim
        The feature dimension `p`.
    seed
        Seeds the frame.
    lengths
        Per-class row norms $\|w_k\|$ (e.g. from
        [`class_count_lengths`][etfcore.nn.heads.class_count_lengths]); unit rows when `None`.
    projector
        Apply a learnable `Linear(p, p)` to the features first.
    batch_norm
        Then a `BatchNorm1d`.
    normalize
        Then divide the features by their L2 norm.
    lengths_in_training_only
        The `lengths` shape the training logits (and the losses) only, and predictions in eval
        mode use the unit-length frame, as Yang et al.'s public code does (the long vectors of
        rare classes otherwise pull every prediction toward them).
    frame
        Picks $W$ (unit rows), one of [`FRAMES`][etfcore.nn.heads.FRAMES]: `"simplex"`
        ([`etfcore.etf`][etfcore.etf], needs $p \ge K - 1$), or for more classes `"sphere"`
        ([`etfcore.sphere_codes`][etfcore.sphere_codes]), `"hypercube"`, `"orthoplex"` or
        `"min_coherence"` ([`etfcore.min_coherence_frame`][etfcore.min_coherence_frame],
        $K \le 20\,000$); see [`etfcore.frame_coherence`][etfcore.frame_coherence] for how well
        each separates the classes.

    Raises
    ------
    DimensionError
        For a simplex ETF with `dim < num_classes - 1`.
    ParameterError
        For an unknown `frame` or bad `lengths`.

    Examples
    --------
    >>> import torch, etfcore.nn as enn
    >>> head = enn.FixedETFHead(num_classes=10, dim=16, seed=0)
    >>> head(torch.randn(4, 16)).shape
    torch.Size([4, 10])
    >>> enn.FixedETFHead(num_classes=1000, dim=64, frame="sphere", seed=0).weight.shape
    torch.Size([1000, 64])
    """

    weight: torch.Tensor
    seed: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        seed: int = 0,
        lengths: Optional[Sequence[float]] = None,
        projector: bool = False,
        batch_norm: bool = False,
        normalize: bool = False,
        lengths_in_training_only: bool = False,
        frame: str = "simplex",
    ) -> None:
        super().__init__()
        self.num_classes, self.dim, self.frame = int(num_classes), int(dim), str(frame)
        w = fixed_frame(self.frame, self.num_classes, self.dim, seed, lengths)
        wt = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
        self.register_buffer("weight", wt, persistent=True)
        self.register_buffer("seed", torch.tensor(int(seed), dtype=torch.int64), persistent=True)
        self.lengths_in_training_only = bool(lengths_in_training_only) and lengths is not None
        if self.lengths_in_training_only:  # the unit frame for predictions
            unit = wt / wt.norm(dim=1, keepdim=True)
            self.register_buffer("unit_weight", unit, persistent=True)
        self.projector = nn.Linear(dim, dim) if projector else None
        self.bn = nn.BatchNorm1d(dim) if batch_norm else None
        self.normalize = bool(normalize)

    def features(self, h: torch.Tensor) -> torch.Tensor:
        """The features the frame classifies (after projector / BN / normalisation)."""
        _check_features(h, self.dim)
        if self.projector is not None:
            h = self.projector(h)
        if self.bn is not None:
            h = self.bn(h)
        if self.normalize:
            h = F.normalize(h, dim=1)
        return h

    def classify(self, u: torch.Tensor) -> torch.Tensor:
        w = self.unit_weight if self.lengths_in_training_only and not self.training else self.weight
        return u @ w.to(u.dtype).T

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(h))


class LinearHead(nn.Module):
    """Learnable `nn.Linear(p, K)` — the "trainable model" baseline.

    Parameters
    ----------
    num_classes
        The number of classes `K`.
    dim
        The feature dimension `p`.
    bias
        Learn a bias too.
    """

    def __init__(self, num_classes: int, dim: int, *, bias: bool = True) -> None:
        super().__init__()
        self.num_classes, self.dim = int(num_classes), int(dim)
        self.linear = nn.Linear(dim, num_classes, bias=bias)

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    def features(self, h: torch.Tensor) -> torch.Tensor:
        _check_features(h, self.dim)
        return h

    def classify(self, u: torch.Tensor) -> torch.Tensor:
        return self.linear(u)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(h))


def class_count_lengths(counts: Sequence[int]) -> np.ndarray:
    r"""Per-class ETF lengths $\|w_k\| = \sqrt{(N/K)/n_k}$ from the training class counts.

    Yang et al.'s balance of the gradients of the backbone under long tail (rare classes get
    longer vectors; all lengths are 1 when the classes are balanced).

    Parameters
    ----------
    counts
        The training class counts $n_k$ (at least 2, positive); $N = \sum_k n_k$.

    Returns
    -------
    numpy.ndarray
        The `K` lengths (float64).

    Raises
    ------
    ParameterError
        When `counts` is not a 1-D sequence of at least 2 positive counts.

    Examples
    --------
    >>> class_count_lengths([400, 100]).tolist()
    [0.7905694150420949, 1.5811388300841898]
    """
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size < 2 or not np.all(np.isfinite(n)) or (n <= 0).any():
        raise ParameterError("counts must be a 1-D sequence of at least 2 positive class counts")
    return np.sqrt(n.sum() / n.size / n)


def centred_means_weights(class_means: torch.Tensor) -> torch.Tensor:
    r"""Seddik & Tamaazousti's classifier $\bar M = M P / \|M P\|_2$ (spectral norm), with
    $P = I - \mathbf 1 \mathbf 1^\top/K$.

    Parameters
    ----------
    class_means
        The class means ($K \times p$, the rows of $M^\top$).

    Returns
    -------
    torch.Tensor
        The $K \times p$ weights (rows of $\bar M^\top$).

    Raises
    ------
    ShapeError
        When `class_means` is not 2-D.
    """
    if class_means.dim() != 2:
        raise ShapeError(f"class_means must be (K, p), got {tuple(class_means.shape)}")
    centred = class_means - class_means.mean(0, keepdim=True)  # (M P)ᵀ
    return centred / torch.linalg.matrix_norm(centred, ord=2)


class CentredMeansHead(nn.Module):
    r"""Centred-means heads (Seddik & Tamaazousti).

    Parameters
    ----------
    class_means
        The training features' class means ($K \times p$, e.g. from
        [`etfcore.CollapseStats`][etfcore.CollapseStats]); $\bar M$ as in
        [`centred_means_weights`][etfcore.nn.heads.centred_means_weights].
    mode
        `"cm"`: fixed weights $\bar M^\top$ (a buffer); `"wicm"`: a trainable linear head
        initialised with $\bar M^\top$; `"lwm"`: $W = (M \Omega)^\top$ with $M$ fixed and
        $\Omega$ ($K \times K$) learned, from the identity.
    bias
        Add a learnable bias to the logits.

    Raises
    ------
    ParameterError
        For an unknown `mode`.
    """

    def __init__(self, class_means, *, mode: str = "cm", bias: bool = False) -> None:
        super().__init__()
        m = torch.as_tensor(np.asarray(class_means), dtype=torch.float32)
        if mode not in ("cm", "wicm", "lwm"):
            raise ParameterError(f"mode must be 'cm', 'wicm' or 'lwm', got {mode!r}")
        self.mode = mode
        self.num_classes, self.dim = m.shape
        w = centred_means_weights(m)
        if mode == "cm":
            self.register_buffer("fixed_weight", w)
        elif mode == "wicm":
            self.trainable_weight = nn.Parameter(w.clone())
        else:
            self.register_buffer("means", m.T.contiguous())  # p × K
            self.omega = nn.Parameter(torch.eye(self.num_classes))
        self.bias = nn.Parameter(torch.zeros(self.num_classes)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        if self.mode == "cm":
            return self.fixed_weight
        if self.mode == "wicm":
            return self.trainable_weight
        return (self.means @ self.omega).T

    def features(self, h: torch.Tensor) -> torch.Tensor:
        _check_features(h, self.dim)
        return h

    def classify(self, u: torch.Tensor) -> torch.Tensor:
        out = u @ self.weight.T
        return out if self.bias is None else out + self.bias

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(h))
