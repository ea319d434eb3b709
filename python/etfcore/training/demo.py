"""The README's main job: learnable head vs fixed ETF with CE, dot regression and hinge CE, on the
embedded digits, balanced and long-tail (ρ = 0.1), several seeds; a table and plots.

Every setting trains the same number of SGD steps (`epochs` balanced epochs: the long-tail runs
take more epochs of their smaller training set, `setting_schedule`), every sample in every
epoch, and in the long-tail setting the minor classes — where hinge CE puts its `τ⁺` and the
"minor acc" column averages — are the rarest tenth of the classes (class 9 alone on digits),
the proportion of the hinge-CE paper's CIFAR10-LT setting.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Dict, List, Sequence

import numpy as np
import torch

from .._io import save_with, write_text
from .callbacks import json_safe
from .config import TrainConfig
from .trainer import Trainer

METHODS = {
    "learnable + CE": dict(head="linear", loss="ce"),
    "fixed ETF + CE": dict(head="etf", loss="ce"),
    # Yang et al.'s recipe as their code runs it: BatchNorm + L2 before the frame, per-class
    # lengths in the loss only, the unit frame for predictions (experiments/dot_regression.py)
    "fixed ETF + DR": dict(
        head="etf", loss="dot_regression", head_batch_norm=True, normalize_features=True,
        etf_lengths="class_counts_train", lr=0.1,
    ),
    "fixed ETF + hinge CE": dict(head="etf", loss="hinge_ce"),
}
SETTINGS = {"balanced": 1.0, "long-tail ρ=0.1": 0.1}
COLUMNS = [
    ("test_acc", "acc"),
    ("test_minor_acc", "minor acc"),
    ("test_major_acc", "major acc"),
    ("train_vci", "VCI"),
    ("train_nc1", "NC1"),
]


def run_demo(
    *,
    epochs: int = 30,
    seeds: Sequence[int] = (0, 1, 2),
    out_dir: str = "out/demo",
    accelerator: str = "auto",
    progress: bool = True,
) -> Dict[str, Dict[str, List[Dict]]]:
    """Train every method × setting × seed, print the table, and write `history.json` and
    `curves.png` to `out_dir`.

    Parameters
    ----------
    epochs
        Training epochs of the balanced runs; the long-tail runs train the same number of SGD
        steps ([`setting_schedule`][etfcore.training.demo.setting_schedule]).
    seeds
        The seeds of each method and setting.
    out_dir
        Where the history and the plots go.
    accelerator
        The Lightning accelerator.
    progress
        A per-batch progress bar for each run.

    Returns
    -------
    dict
        Setting → method → the runs' per-epoch histories.
    """
    os.makedirs(out_dir, exist_ok=True)
    threads = torch.get_num_threads()
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    if accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()):
        torch.set_num_threads(1)  # a 12k-parameter MLP: intra-op threads only add overhead
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        return _run_all(epochs, seeds, out_dir, accelerator, progress)
    finally:  # the caller's settings back
        torch.set_num_threads(threads)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def setting_schedule(epochs: int, rho: float) -> Dict[str, int]:
    """The keys a setting adds to every run's config: the epochs that give it the SGD steps of
    `epochs` balanced epochs, `⌈E · S₁ / S_ρ⌉` (`S` the steps of one epoch, every sample kept),
    and, below `ρ = 1`, `minor_threshold`: the count that makes the rarest tenth of the classes
    (at least one) minor.

    Examples
    --------
    >>> setting_schedule(30, 1.0)["epochs"], setting_schedule(30, 0.1)
    (30, {'epochs': 75, 'minor_threshold': 11})
    """
    from ..data import rarest_count
    from .build import build_datamodule

    def module(r: float):  # the runs' own data (the counts do not depend on the seed)
        return build_datamodule(TrainConfig(imbalance_ratio=r, last_batch="even"))

    if rho >= 1:
        return {"epochs": int(epochs)}
    here, full = module(rho), module(1.0)
    steps = full.train_steps_per_epoch() * int(epochs)
    counts = here.train_counts
    return {"epochs": -(-steps // here.train_steps_per_epoch()),
            "minor_threshold": rarest_count(counts, max(1, len(counts) // 10))}


def _run_all(epochs, seeds, out_dir, accelerator, progress) -> Dict[str, Dict[str, List[Dict]]]:
    results: Dict[str, Dict[str, List[Dict]]] = {}
    t0 = time.perf_counter()
    for setting, rho in SETTINGS.items():
        results[setting] = {}
        schedule = setting_schedule(epochs, rho)
        for method, kw in METHODS.items():
            runs = []
            for seed in seeds:
                cfg = TrainConfig(
                    seed=seed,
                    imbalance_ratio=rho,
                    progress=progress,
                    accelerator=accelerator,
                    last_batch="even",  # every long-tail sample in every epoch
                    **schedule,
                    **kw,
                )
                runs.append(Trainer(cfg, enable_model_summary=False).fit())
            results[setting][method] = runs
            elapsed = time.perf_counter() - t0
            print(f"  {setting:<16} {method:<22} done ({elapsed:.0f} s)", flush=True)
    write_text(os.path.join(out_dir, "history.json"), json.dumps(_json_clean(results)))
    print()
    print(format_table(results))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    try:
        plot_curves(results, os.path.join(out_dir, "curves.png"))
        curves, hist = os.path.join(out_dir, "curves.png"), os.path.join(out_dir, "history.json")
        print(f"\nplots: {curves}; histories: {hist}")
    except ImportError:
        print("\n(matplotlib not installed: no plots)")
    return results


def _json_clean(v):
    """NaN/inf as `null` all the way down."""
    if isinstance(v, dict):
        return {k: _json_clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_clean(x) for x in v]
    return json_safe(v)


def format_table(results) -> str:
    head = f"{'setting':<17}{'method':<23}" + "".join(f"{label:>17}" for _, label in COLUMNS)
    lines = [head, "-" * len(head)]
    for setting, methods in results.items():
        for method, runs in methods.items():
            cells = []
            for key, _ in COLUMNS:
                v = np.array([r[-1][key] for r in runs], dtype=float)
                v = v[~np.isnan(v)]
                cells.append(f"{v.mean():>10.3f} ± {v.std():<4.3f}" if v.size else "—")
            lines.append(f"{setting:<17}{method:<23}" + "".join(f"{c:>17}" for c in cells))
    return "\n".join(lines)


def plot_curves(results, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [
        ("test_acc", "test accuracy"),
        ("train_vci", "VCI (train)"),
        ("train_nc1", "NC1 (train)"),
    ]
    fig, axes = plt.subplots(
        len(results), len(keys), figsize=(12, 3.2 * len(results)), squeeze=False
    )
    for i, (setting, methods) in enumerate(results.items()):
        for j, (key, label) in enumerate(keys):
            ax = axes[i][j]
            for method, runs in methods.items():
                ep = [r["epoch"] for r in runs[0] if key in r]
                vals = np.array([[r[key] for r in run if key in r] for run in runs])
                ax.plot(ep, vals.mean(0), label=method)
            ax.set_title(f"{setting}: {label}")
            ax.set_xlabel("epoch")
            if key == "train_nc1":
                ax.set_yscale("log")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    save_with(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
