"""Independent float64 numpy references for every metric (direct definitions, no shortcuts)."""

from __future__ import annotations

import numpy as np
import pytest


def ref_geometry(H, y, weighting="weighted"):
    H = np.asarray(H, dtype=np.float64)
    classes = np.unique(y)
    K = classes.size
    N = H.shape[0]
    mu = np.array([H[y == k].mean(0) for k in classes])
    n = np.array([(y == k).sum() for k in classes])
    covs = [np.cov(H[y == k].T, bias=True).reshape(H.shape[1], H.shape[1]) for k in classes]
    if weighting == "weighted":
        w = n / N
        mG = H.mean(0)
        ST = (H - mG).T @ (H - mG) / N
        SW = (
            sum(
                np.outer(h - mu[np.searchsorted(classes, c)], h - mu[np.searchsorted(classes, c)])
                for h, c in zip(H, y)
            )
            / N
        )
    else:
        w = np.full(K, 1.0 / K)
        mG = mu.mean(0)
        SW = sum(covs) / K
        ST = None
    SB = sum(w[i] * np.outer(mu[i] - mG, mu[i] - mG) for i in range(K))
    if ST is None:
        ST = SW + SB
    return dict(classes=classes, mu=mu, n=n, w=w, mG=mG, ST=ST, SB=SB, SW=SW, covs=covs, K=K)


def ref_pinv(A, rtol=None, top=None):
    vals, vecs = np.linalg.eigh(A)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    if top is not None:
        keep = np.arange(top)
    else:
        rtol = A.shape[0] * np.finfo(float).eps if rtol is None else rtol
        keep = np.flatnonzero(vals > rtol * max(vals[0], 0))
    return (vecs[:, keep] / vals[keep]) @ vecs[:, keep].T, keep.size


def ref_vci(H, y, weighting="weighted"):
    g = ref_geometry(H, y, weighting)
    P, _ = ref_pinv(g["ST"])
    return 1 - np.trace(P @ g["SB"]) / min(H.shape[1], g["K"] - 1)


def ref_nc1(H, y, weighting="weighted"):
    g = ref_geometry(H, y, weighting)
    vals, vecs = np.linalg.eigh(g["SB"])
    order = np.argsort(vals)[::-1]
    r = min(H.shape[1], g["K"] - 1)
    thr = H.shape[1] * np.finfo(float).eps * vals[order[0]]
    keep = [i for i in order[:r] if vals[i] > thr]
    P = (vecs[:, keep] / vals[keep]) @ vecs[:, keep].T
    return np.trace(g["SW"] @ P) / g["K"]


def ref_probe_mse(H, y):
    """Direct least squares with a bias column onto one-hot targets."""
    H = np.asarray(H, dtype=np.float64)
    classes, yi = np.unique(y, return_inverse=True)
    X = np.hstack([H, np.ones((H.shape[0], 1))])
    Y = np.eye(classes.size)[yi]
    W = np.linalg.lstsq(X, Y, rcond=None)[0]
    return ((X @ W - Y) ** 2).sum() / (2 * H.shape[0])


def ref_cosine(H, y):
    """O(N²) brute force over all pairs of Kornblith et al.'s cosine distances."""
    H = np.asarray(H, dtype=np.float64)
    U = H / np.linalg.norm(H, axis=1, keepdims=True)
    S = U @ U.T
    N = H.shape[0]
    d_total = sum(1 - S[i, j] for i in range(N) for j in range(N)) / N**2
    dw = []
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        dw.append(sum(1 - S[i, j] for i in idx for j in idx) / idx.size**2)
    d_within = np.mean(dw)
    return d_within, d_total, 1 - d_within / d_total


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def mixture(rng, K=5, p=12, counts=(40, 30, 20, 50, 10), offset=0.0, scale=1.0, dtype=np.float64):
    counts = np.broadcast_to(np.asarray(counts), (K,))
    means = rng.normal(size=(K, p)) * 3
    y = np.repeat(np.arange(K), counts)
    H = means[y] + scale * rng.normal(size=(y.size, p)) + offset
    perm = rng.permutation(y.size)
    return H[perm].astype(dtype), y[perm]
