"""`etfcore rf-curve`: Tiomoko Ali et al.'s Fig. 2 (random-feature ridge test MSE against the
activation's quadratic coefficient `a2`) on the embedded digits."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from .. import data

COMMANDS = ("rf-curve",)


def add_parsers(sub: Any) -> None:
    cur = sub.add_parser(
        "rf-curve",
        help="random-feature ridge test MSE vs a2 on the embedded digits "
        "(Tiomoko Ali et al. Fig. 2)",
    )
    cur.add_argument("--out", help="PNG path for the plot")
    cur.add_argument("--num-features", type=int, default=512)
    cur.add_argument("--gamma", type=float, default=0.1)
    cur.add_argument("--a2-max", type=float, default=1.0)
    cur.add_argument("--points", type=int, default=6)
    cur.add_argument("--seeds", type=int, default=5)


def run(args: argparse.Namespace) -> int:
    """Runs `etfcore rf-curve`."""
    return _rf_curve(args)


def digits_binary_task(classes=(3, 8), seed: int = 0):
    """Two digit classes, labels ±1, non-constant pixels standardised and scaled by 1/√p, split
    in half."""
    x, y = data.load_digits()
    keep = np.isin(y, classes)
    x, y = x[keep], np.where(y[keep] == classes[0], 1.0, -1.0)
    perm = np.random.default_rng(seed).permutation(y.size)
    x, y = x[perm], y[perm]
    half = y.size // 2
    mu, sd = x[:half].mean(0), x[:half].std(0)
    live = sd > 1e-6  # constant pixels carry nothing and cannot be standardised
    x = (x[:, live] - mu[live]) / sd[live] / np.sqrt(live.sum())
    return x[:half], y[:half], x[half:], y[half:]


def _rf_curve(args: argparse.Namespace) -> int:
    from .. import rf

    xtr, ytr, xte, yte = digits_binary_task()
    a2 = np.linspace(0.0, args.a2_max, args.points)
    curve = rf.test_mse_curve(
        xtr, ytr, xte, yte, a2,
        num_features=args.num_features, gamma=args.gamma, seeds=range(args.seeds),
    )
    print("random-feature ridge on digits 3 vs 8, sigma(t) = a2 t^2 + t")
    print(f"{'a2':>6}{'theory':>10}{'simulation':>12}{'std':>8}")
    for i in range(len(a2)):
        print(f"{a2[i]:>6.2f}{curve['theory'][i]:>10.4f}{curve['simulation_mean'][i]:>12.4f}{curve['simulation_std'][i]:>8.4f}")
    if args.out:
        title = "digits 3 vs 8: test MSE vs a2 (Tiomoko Ali et al., Fig. 2)"
        rf.plot_test_mse_curve(curve, args.out, title=title)
        print(f"wrote {args.out}")
    return 0
