"""Transferability scores from the source head's predictions on the target data: LEEP and NCE.

Both read the source model's class probabilities ``θ(x_i)`` (``N × K_s``) and the target labels;
neither needs the features.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DTypeError, ParameterError, ShapeError
from ._common import encode, softmax


def _probabilities(p: Any, name: str) -> np.ndarray:
    if hasattr(p, "detach"):
        p = p.detach().cpu().numpy()
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 2:
        raise ShapeError(f"{name} must be 2-D (num_samples, num_source_classes)")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ParameterError(
            f"{name} must be finite and non-negative (probabilities); pass logits=True for logits"
        )
    if not np.allclose(arr.sum(1), 1.0, atol=1e-4):
        raise ParameterError(
            f"{name} rows must sum to 1 (softmax of the source head); pass logits=True for logits"
        )
    return arr



def source_joint(source_probs: Any, labels: Any, *, logits: bool = False):
    """``(joint, classes)``: the empirical joint ``P̂(y, z) = (1/N) Σ_i θ_z(x_i) [y_i = y]``
    (``K × K_s``) of target labels and the source head's outputs ``θ(x_i)``. Streaming: the
    joint of a union is the ``N``-weighted mean of the joints."""
    if logits:
        z = np.asarray(source_probs.detach().cpu().numpy() if hasattr(source_probs, "detach")
                       else source_probs, dtype=np.float64)
        if z.ndim != 2 or not np.all(np.isfinite(z)):
            raise ShapeError("source logits must be a finite 2-D array")
        theta = softmax(z)
    else:
        theta = _probabilities(source_probs, "source_probs")
    classes, y = encode(labels, theta.shape[0])
    joint = np.zeros((classes.size, theta.shape[1]))
    np.add.at(joint, y, theta)
    return joint / theta.shape[0], classes, theta, y


def leep(source_probs: Any, labels: Any, *, logits: bool = False) -> float:
    r"""LEEP (Nguyen et al. 2020): ``(1/N) Σ_i log Σ_z P̂(y_i|z) θ_z(x_i)`` with
    ``P̂(y|z) = P̂(y,z)/P̂(z)`` from the empirical joint
    ([`source_joint`][etfcore.transfer.source_joint]). Two passes over the predictions (the joint,
    then the log-likelihood).

    Examples
    --------
    >>> import numpy as np
    >>> from etfcore import transfer
    >>> theta = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]])
    >>> round(transfer.leep(theta, [0, 0, 1, 1]), 4)
    -0.3426
    """
    joint, _, theta, y = source_joint(source_probs, labels, logits=logits)
    pz = joint.sum(0)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)  # P(y|z)
    lik = np.einsum("iz,iz->i", theta, cond[y])
    return float(np.mean(np.log(lik)))


def nce(source_probs: Any, labels: Any, *, logits: bool = False) -> float:
    r"""NCE (Tran et al. 2019): ``-H(Y|Z) = Σ_{y,z} P̂(y,z) log P̂(y|z)`` with ``Z`` the source
    head's hard prediction (argmax of ``source_probs``). One pass (a ``K × K_s`` count table).

    Examples
    --------
    >>> from etfcore import transfer
    >>> transfer.nce([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]], [0, 0, 1, 1])
    0.0
    """
    if hasattr(source_probs, "detach"):
        source_probs = source_probs.detach().cpu().numpy()
    arr = np.asarray(source_probs)
    if arr.ndim != 2:
        raise ShapeError("source_probs must be 2-D (num_samples, num_source_classes)")
    if arr.dtype.kind not in "fiu":
        raise DTypeError(f"source_probs must be numeric, got {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ParameterError("source_probs must be finite (NaN or Inf found)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ShapeError(f"source_probs is empty (shape {arr.shape})")
    classes, y = encode(labels, arr.shape[0])
    z = arr.argmax(1)
    joint = np.zeros((classes.size, arr.shape[1]))
    np.add.at(joint, (y, z), 1.0)
    joint /= arr.shape[0]
    pz = joint.sum(0)
    nz = joint > 0
    cond = np.divide(joint, pz, out=np.ones_like(joint), where=pz > 0)
    return float(np.sum(joint[nz] * np.log(cond[nz])) + 0.0)

