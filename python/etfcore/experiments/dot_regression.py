"""Yang et al., "Do we really need a learnable classifier at the end of deep neural network?":
a fixed simplex-ETF classifier trained with the dot-regression (DR) loss against a learnable
classifier trained with cross-entropy, on long-tailed training sets.

Two experiments share their training runs (same configs, so `Context.train` trains each
once):

- `002-long-tail-dr`: test accuracy of learnable + CE, fixed ETF + CE and fixed ETF + DR over
  imbalance ratios `ρ = n_min/n_max`, with and without mixup, beside the paper's CIFAR-10
  numbers; plus one-change-at-a-time ablation rows that test why small-scale runs can disagree
  with the paper (feature head, per-class lengths, the loss variant, learning rate, epochs,
  feature dimension, data);
- `002-imbalanced-collapse`: per-epoch spread of the collapse cosines for ETF + DR and
  learnable + CE on the most imbalanced training set of that grid.

The main rows follow the authors' recipe as far as the scale allows: ETF + DR classifies
BatchNorm-ed, L2-normalised features (`head_batch_norm`, `normalize_features`) with per-class
lengths `‖w_k‖ = √((N/K)/n_k)` in training and the unit frame at prediction
(`etf_lengths="class_counts_train"`: the authors' `validate()` scores with the original frame
`M`, their training loss with the rescaled one) and the loss as written in the paper
(`dot_regression`); fixed ETF + CE uses the same BN + L2 feature head with unit lengths,
as the authors' code does; every method trains with SGD at learning rate 0.1, weight decay
2·10⁻⁴, mixup `α = 1` in the mixup columns.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .base import Effect, Experiment, Outcome, RunOptions, Table, mean_std, register

CE, ETF_CE, ETF_DR = "learnable + CE", "ETF + CE", "ETF + DR"
METHODS: Dict[str, Dict[str, Any]] = {
    CE: dict(head="linear", loss="ce"),
    ETF_CE: dict(head="etf", loss="ce", head_batch_norm=True, normalize_features=True),
    ETF_DR: dict(
        head="etf",
        loss="dot_regression",
        head_batch_norm=True,
        normalize_features=True,
        etf_lengths="class_counts_train",
    ),
}
"""The three methods of the paper's ablation (Table 1), as config changes."""

PAPER_TABLE1: Dict[Tuple[str, bool], Dict[float, float]] = {
    (CE, False): {0.005: 66.1, 0.01: 71.0, 0.02: 77.1, 0.1: 87.4, 1.0: 93.4},
    (ETF_CE, False): {0.005: 60.4, 0.01: 72.9, 0.02: 79.5, 0.1: 87.2, 1.0: 92.6},
    (ETF_DR, False): {0.005: 68.4, 0.01: 73.0, 0.02: 78.4, 0.1: 86.9, 1.0: 92.9},
    (CE, True): {0.005: 67.3, 0.01: 72.8, 0.02: 78.6, 0.1: 87.7, 1.0: 93.6},
    (ETF_CE, True): {0.005: 60.6, 0.01: 67.0, 0.02: 77.2, 0.1: 87.0, 1.0: 93.3},
    (ETF_DR, True): {0.005: 71.9, 0.01: 76.5, 0.02: 81.0, 0.1: 87.7, 1.0: 92.0},
}
"""Yang et al. Table 1 (CIFAR-10, ResNet-32, mean of 3 seeds), test accuracy in %, by (method,
mixup) and ρ; ρ = 1 is their balanced column."""

ABLATIONS: Dict[str, Tuple[str, Optional[Dict[str, Any]], Any]] = {
    "demo": (
        "the demo's recipe (no BN before L2, equal lengths; CE at lr 0.05)",
        dict(lr=0.05),
        dict(head_batch_norm=False, etf_lengths="equal"),
    ),
    "no_bn": ("no BatchNorm before the L2 normalisation", None, dict(head_batch_norm=False)),
    "equal_lengths": ("equal lengths ‖w_k‖ = 1", None, dict(etf_lengths="equal")),
    "lengths_at_test": ("per-class lengths in the test logits too", None,
                        dict(etf_lengths="class_counts")),
    "parity": ("the authors' code's loss (dot_regression_parity)", None,
               dict(loss="dot_regression_parity")),
    "lr": ("learning rate 0.05 (both)", dict(lr=0.05), dict(lr=0.05)),
    "epochs": ("3× the epochs (both)", "epochs", "epochs"),
    "epochs10": ("10× the epochs (both)", "epochs10", "epochs10"),
    "dim": ("feature dimension K − 1 (both)", "dim", "dim"),
    "data": ("other data (both)", "data", "data"),
}  # fmt: skip
"""Ablations at each of `ablation_rhos`, without mixup:
`name -> (label, changes to learnable + CE, changes to ETF + DR)`; `None` reuses the main run.
The main ETF + DR rows train with per-class lengths and predict with the unit frame
(`class_counts_train`: the authors' `validate()` scores with the original frame `M`);
`lengths_at_test` keeps the lengths in the test logits (the rule of etfcore's results before
Dec 2026)."""

CPU_FORM_ABLATIONS = ("lengths_at_test", "no_bn", "equal_lengths", "parity")
"""The ablations the cpu form runs (at ρ = 0.01): the head and loss conventions, one run each.
The longer-training, learning-rate, dimension and data ablations (two to twenty runs each at
MNIST-1D scale) stay in the quick and gpu forms."""

PROTOCOL_NOTES = [
    "Changed in Dec 2026 — prediction rule: ETF + DR trains with the per-class lengths "
    "√((N/K)/n_k) and predicts with the unit frame (etf_lengths=class_counts_train), in every "
    "main row, mixup included. The authors' code (NeuralCollapse-ETF, validate()) scores test "
    "images with the original frame M, their loss with the rescaled one; etfcore's results "
    "before Dec 2026 kept the lengths in the test logits, which pulls predictions toward rare "
    "classes (in the digits development run, major-class accuracy 37% at ρ = 0.01 with mixup). "
    "That rule is now the 'lengths_at_test' ablation; the authors' rule is kept for the main "
    "rows because it is theirs, whichever scores higher in these runs.",
    "Changed in Dec 2026 — training length: every run makes the SGD steps of `epochs` epochs of "
    "the balanced training set (a long-tail subset trains for proportionally more epochs). "
    "Before, every run trained `epochs` epochs, so ρ = 0.01 on digits got ~120 steps against "
    "570 balanced. The paper trains 200 epochs at every ρ on CIFAR-10-LT, which is ≥ 19 000 "
    "steps even at ρ = 0.005: its runs are long enough at every ρ; ours now are as long as the "
    "balanced one.",
    "Changed in Dec 2026 — last partial batch: every run now keeps every training sample in "
    "every epoch (the datamodule's last_batch='even': the epoch's seeded permutation is cut into "
    "⌈N/B⌉ batches of near-equal size). Before, the loader dropped the last N mod B samples of "
    "each epoch's permutation, so a tail class of one image was skipped in up to 5% of the "
    "epochs.",
    "Changed in Dec 2026 — scale: the cpu form trains a 1-D CNN (etfcore.nn.conv1d) on MNIST-1D "
    "with 50 000 training signals (n = 62 500 generated, 80% for training), so the tail class "
    "keeps ≥ 40 images at ρ = 0.01 (CIFAR-10-LT keeps 50); an MLP reaches only ~35–45% on "
    "MNIST-1D (Greydanus 2020), a CNN far more. The quick form stays on digits (1–2 images in "
    "the rarest class at ρ ≤ 0.02: its verdicts are about a regime the paper does not test).",
]
"""What the protocol follows and why (shown with the results; Dec 2026 changes first)."""

COLLAPSE_STATS = ("nc_cos_means_std", "nc_cos_classifier_std", "nc_cos_own_std")
FIG3_STATS = ("nc_cos_means_std", "nc_cos_classifier_std")
"""The two of them the paper's Fig. 3 shows (the verdict's effects)."""
COLLAPSE_LABELS = {
    "nc_cos_means_std": "std cos(h_c−h_G, h_k−h_G), c≠k",
    "nc_cos_classifier_std": "std cos(h_c−h_G, w_k), c≠k",
    "nc_cos_own_std": "std cos(h_c−h_G, w_c)",
}


def base_settings(options: RunOptions) -> Dict[str, Any]:
    """The training recipe both experiments share (so their runs are the same runs).

    `epochs` is the length of the *balanced* run; every run makes as many SGD steps as that
    run (`steps_per_run`), so a long-tail subset trains for more epochs (see
    `epochs_for`)."""
    if options.quick:
        s: Dict[str, Any] = dict(
            data=options.data or "digits", backbone="mlp", feature_dim=32, epochs=30,
            batch_size=64, rhos=[0.01, 0.02, 0.1, 1.0], collapse_rho=0.02,
        )  # fmt: skip
    else:  # MNIST-1D with 50 000 training signals: ≥ 40 images in the tail class at ρ = 0.01;
        # 10 balanced epochs (3 900 SGD steps) keep the cpu form within its two hours
        s = dict(
            data=options.data or "mnist1d:n=62500", backbone="cnn1d", feature_dim=64, epochs=10,
            batch_size=128, rhos=[0.01, 0.02, 0.1, 1.0], collapse_rho=0.02,
        )  # fmt: skip
        if options.data and options.data.startswith("cifar"):  # the paper's network
            # and its schedule: 200 epochs at every ρ, ≥ 19 000 SGD steps even at ρ = 0.005
            s.update(backbone="resnet32", epochs=200, rhos=[0.005, 0.01, 0.02, 0.1, 1.0],
                     fixed_steps=False)
            s["feature_dim"] = 128 if options.data.startswith("cifar100") else 64
        elif options.data:
            s["backbone"] = "mlp"
    s.update(lr=0.1, weight_decay=2e-4, mixup_alpha=1.0, last_batch="even")
    return s


#: Classes and training images per class of the image datasets the GPU form runs on.
_PER_CLASS = {"cifar10": (10, 5000), "cifar100": (100, 500)}


@functools.lru_cache(maxsize=64)
def train_size(data: str, rho: float, seed: int = 0) -> int:
    """Number of training samples of `data` long-tail subsampled to `rho` (the datamodule's
    own plan; the size does not depend on the seed, only which samples are kept). CIFAR-10 and
    CIFAR-100 (5 000 and 500 training images per class) are counted from the long-tail profile,
    without the data on disk.

    Examples
    --------
    >>> train_size("cifar10", 0.01)
    12406
    """
    from ..data import long_tail_counts
    from ..training.datamodule import ClassificationDataModule

    base = data.partition(":")[0]
    if base in _PER_CLASS:
        k, n = _PER_CLASS[base]
        return int(np.sum(long_tail_counts(k, n, float(rho))))

    dm = ClassificationDataModule(dataset=data, imbalance_ratio=rho, seed=seed).prepare()
    return len(dm.train_dataset)


def epochs_for(s: Mapping[str, Any], rho: float, epochs: Optional[int] = None) -> int:
    """Epochs that give a run at `rho` the SGD steps of `epochs` (default `s["epochs"]`)
    epochs of the balanced training set: `⌈E · S₁ / S_ρ⌉` with `S` the steps of one epoch —
    `⌈N/B⌉` when every sample is kept (`last_batch="even"`, these experiments' setting),
    `⌊N/B⌋` (at least one) when the loader drops the last partial batch.

    Examples
    --------
    >>> s = dict(data="digits", batch_size=64, epochs=30)
    >>> epochs_for(s, 1.0), epochs_for(s, 0.1) > 30
    (30, True)
    """
    e = int(s["epochs"] if epochs is None else epochs)
    if not s.get("fixed_steps", True):  # the paper's own schedule (the GPU form)
        return e
    b = int(s["batch_size"])

    def steps(n: int) -> int:
        return -(-n // b) if s.get("last_batch") == "even" else max(1, n // b)

    full = steps(train_size(s["data"], 1.0))
    here = steps(train_size(s["data"], float(rho)))
    return max(e, math.ceil(e * full / here)) if rho < 1 else e


def _num_classes(data: str) -> int:
    """K of the data sets these experiments run on (the embedded ones have 10 classes)."""
    return 100 if data.startswith("cifar100") else 10


def train_config(
    s: Mapping[str, Any], method: str, rho: float, mixup: bool, seed: int, **changes: Any
) -> Dict[str, Any]:
    """The config of one run: `method` at imbalance `rho`, trained for the steps of
    `s["epochs"]` balanced epochs (`changes["epochs"]`, when given, counts balanced epochs
    too); collapse is tracked every epoch on the runs the collapse experiment reads, at the last
    epoch only elsewhere.

    Examples
    --------
    >>> s = base_settings(RunOptions(quick=True))
    >>> c = train_config(s, ETF_DR, 0.02, True, seed=0)
    >>> c["etf_lengths"], c["mixup_alpha"], c["track_every"] == c["epochs"] > 30
    ('class_counts_train', 1.0, False)
    >>> train_config(s, CE, 1.0, False, seed=0)["track_every"]
    30
    """
    d: Dict[str, Any] = dict(
        dataset=s["data"], backbone=s["backbone"], feature_dim=s["feature_dim"],
        batch_size=s["batch_size"], last_batch=s.get("last_batch", "drop"), lr=s["lr"],
        weight_decay=s["weight_decay"], imbalance_ratio=rho,
        mixup_alpha=s["mixup_alpha"] if mixup else 0.0, seed=seed, **METHODS[method],
    )  # fmt: skip
    d.update(changes)
    d["epochs"] = epochs_for({**s, "data": d["dataset"]}, rho, changes.get("epochs"))
    tracked = not changes and rho == s["collapse_rho"] and method in (CE, ETF_DR)
    d["track_every"] = 1 if tracked else d["epochs"]
    return d


def _key(method: str, rho: float, mixup: bool) -> str:
    return f"{method}|{rho:g}|{'mixup' if mixup else 'plain'}"


def _scores(run: Any) -> Dict[str, float]:
    f = run.final
    return {k: f.get(f"test_{k}") for k in ("acc", "mean_class_acc", "minor_acc", "major_acc")}


def _ablation_changes(s: Mapping[str, Any], spec: Any) -> Optional[Dict[str, Any]]:
    if spec == "epochs":
        return dict(epochs=3 * s["epochs"])
    if spec == "epochs10":
        return dict(epochs=10 * s["epochs"])
    if spec == "dim":
        return dict(feature_dim=s["num_classes"] - 1)
    if spec == "data":
        return dict(dataset=s["alt_data"])
    return spec


def _gain(results: Sequence[Mapping[str, Any]], rho: float, mixup: bool) -> Tuple[float, ...]:
    return tuple(
        r["main"][_key(ETF_DR, rho, mixup)]["acc"] - r["main"][_key(CE, rho, mixup)]["acc"]
        for r in results
    )


def _ablation_gains(results: Sequence[Mapping[str, Any]], rho: float, names) -> np.ndarray:
    """`(seeds, ablations)` ETF+DR − learnable+CE test accuracy of the ablations at `rho`."""
    return np.array(
        [[r["ablations"][f"{rho:g}"][n]["dr"] - r["ablations"][f"{rho:g}"][n]["ce"]
          for n in names] for r in results]
    )  # fmt: skip


def _ablation_label(s: Mapping[str, Any], name: str) -> str:
    return f"data {s['alt_data']} (both)" if name == "data" else ABLATIONS[name][0]


@register
class LongTailDotRegression(Experiment):
    """Fixed ETF + dot regression against learnable + CE under long tail.

    Protocol: a backbone (quick: an MLP on the embedded digits, whose smallest class keeps 1, 2,
    11 samples at ρ = 0.01, 0.02, 0.1; cpu form: a 1-D CNN on MNIST-1D with 50 000 training
    signals, whose tail class keeps ≥ 40 at ρ = 0.01, like CIFAR-10-LT's 50) is trained per seed
    on the training split long-tail subsampled to each `ρ`, for the SGD steps of `epochs`
    balanced epochs whatever `ρ` (`epochs_for`), with learnable + CE, fixed ETF + CE and
    fixed ETF + DR, each with and without mixup; test accuracy is measured on the balanced
    held-out split. The effect is the paired (same seed, same data) accuracy gain of ETF + DR
    over learnable + CE at each strong imbalance `ρ ≤ 0.02`, with and without mixup, and
    whether the mixup gain at the strongest `ρ` exceeds the one at `ρ = 0.1`. Decided before
    any result: the paper claims its gains at `ρ ≤ 0.02` (+1.3 to +4.6 points on CIFAR-10;
    +1.3 to +3.7 at ρ = 0.01 and 0.02, the quick grid's) and shows none at `ρ = 0.1` (86.9 vs
    87.4 without mixup, 87.7 vs 87.7 with), so `ρ = 0.1` is reported but not an effect; a gain
    counts as reproduced from 1 point (`min_effect = 0.01`, 5 test samples of the 539), below
    that only partly; the growth needs only to be positive. Ablation rows (`ρ = 0.01` and
    `0.1`, no mixup, one change from the main recipe each) show which recipe difference moves
    the gain; they are not tuned to agree and do not enter the verdict. """

    name = "002-long-tail-dr"
    paper = "002"
    claim = (
        "A fixed ETF classifier with the dot-regression loss beats a learnable classifier with "
        "CE on long-tailed data, most at strong imbalance (headline with mixup)"
    )
    paper_result = (
        "CIFAR-10 ResNet-32, ρ = 0.005/0.01/0.02: learnable+CE 67.3/72.8/78.6 vs ETF+DR "
        "71.9/76.5/81.0 with mixup; 66.1/71.0/77.1 vs 68.4/73.0/78.4 without; at ρ = 0.1 "
        "86.9 vs 87.4 (no mixup), 87.7 vs 87.7 (mixup)"
    )
    version = 3  # Dec 2026: unit frame at test, fixed steps

    def settings(self, options: RunOptions) -> Dict[str, Any]:
        s = base_settings(options)
        cpu_form = not options.quick and not (options.data or "").startswith("cifar")
        s.update(  # the cpu form: the recipe ablations at ρ = 0.01 only (its time budget)
            ablation_rhos=[0.01] if cpu_form else [0.01, 0.1],
            ablations=list(CPU_FORM_ABLATIONS if cpu_form else ABLATIONS),
            alt_data="mnist1d" if options.quick else "digits",
            num_classes=_num_classes(s["data"]),
        )
        return s

    def run_seed(self, ctx: Any, settings: Mapping[str, Any], seed: int) -> Dict[str, Any]:
        s = settings
        main: Dict[str, Any] = {}
        for rho in s["rhos"]:
            for mixup in (False, True):
                for method in METHODS:
                    run = ctx.train(train_config(s, method, rho, mixup, seed))
                    main[_key(method, rho, mixup)] = _scores(run)
        ablations: Dict[str, Dict[str, Dict[str, float]]] = {}
        for rho in s["ablation_rhos"]:
            ablations[f"{rho:g}"] = {
                name: self._ablation(ctx, s, name, rho, seed, main) for name in s["ablations"]
            }
        return {"main": main, "ablations": ablations}

    @staticmethod
    def _ablation(ctx, s, name: str, rho: float, seed: int, main) -> Dict[str, float]:
        """Test accuracies `{"ce": …, "dr": …}` of one ablation at `rho` (no mixup)."""
        _, ce_spec, dr_spec = ABLATIONS[name]
        ce = main[_key(CE, rho, False)]["acc"]
        ce_changes = _ablation_changes(s, ce_spec)
        if ce_changes:
            ce = ctx.train(train_config(s, CE, rho, False, seed, **ce_changes)).final["test_acc"]
        cfg = train_config(s, ETF_DR, rho, False, seed, **_ablation_changes(s, dr_spec))
        dr = ctx.train(cfg).final["test_acc"]
        return {"ce": ce, "dr": dr}

    def summarise(
        self, settings: Mapping[str, Any], results: Sequence[Mapping[str, Any]]
    ) -> Outcome:
        s = settings
        rhos = list(s["rhos"])
        # ρ ≤ 0.02 is where the paper claims its gains (every ρ < 1 when the grid has none)
        strong = [r for r in rhos if r <= 0.02] or [r for r in rhos if r < 1]
        effects = [
            Effect(
                f"ETF+DR − learnable+CE, ρ={rho:g}, {'mixup' if mixup else 'no mixup'}",
                _gain(results, rho, mixup),
                min_effect=0.01,
                scale=100,
                unit=" points",
            )  # fmt: skip
            for mixup in (True, False)
            for rho in strong
        ]
        growth = None
        if strong and 0.1 in rhos:
            rmin = min(strong)
            growth = tuple(
                a - b for a, b in zip(_gain(results, rmin, True), _gain(results, 0.1, True))
            )
            effects.append(
                Effect(
                    f"growth of the mixup gain, ρ={rmin:g} minus ρ=0.1",
                    growth,
                    scale=100,
                    unit=" points",
                )  # fmt: skip
            )
        cols = ["method", "mixup", *[f"ρ={r:g}" for r in rhos]]
        rows: List[List[str]] = []
        for mixup in (False, True):
            for method in METHODS:
                cells = [
                    mean_std([r["main"][_key(method, rho, mixup)]["acc"] for r in results],
                             scale=100, digits=1)
                    for rho in rhos
                ]  # fmt: skip
                rows.append([method, "yes" if mixup else "no", *cells])
            for method in METHODS:
                paper = PAPER_TABLE1[(method, mixup)]
                rows.append(
                    [f"paper (CIFAR-10): {method}", "yes" if mixup else "no",
                     *[f"{paper[rho]:.1f}" if rho in paper else "—" for rho in rhos]]
                )  # fmt: skip
        notes = PROTOCOL_NOTES + self._ablation_notes(s, results, rows)
        for mixup in (False, True):
            g = _gain(results, 0.1, mixup) if 0.1 in rhos else ()
            if g:
                notes.append(
                    f"ρ=0.1 ({'mixup' if mixup else 'no mixup'}; not an effect, the paper "
                    f"shows no gain there): ETF+DR − learnable+CE {np.mean(g) * 100:+.1f} ± "
                    f"{(np.std(g, ddof=1) if len(g) > 1 else 0) * 100:.1f} points"
                )
        rmin = min(rhos)
        for mixup in (False, True):
            parts = []
            for method in METHODS:
                sc = [r["main"][_key(method, rmin, mixup)] for r in results]
                mi = np.nanmean([np.nan if x["minor_acc"] is None else x["minor_acc"] for x in sc])
                ma = np.nanmean([np.nan if x["major_acc"] is None else x["major_acc"] for x in sc])
                parts.append(f"{method} {mi * 100:.1f} / {ma * 100:.1f}")
            notes.append(
                f"ρ={rmin:g}, {'mixup' if mixup else 'no mixup'}: minor / major class test "
                f"accuracy (minor: ≤ 50 training samples) — " + "; ".join(parts)
            )
        table = Table(cols, rows)
        return Outcome(effects, table, notes)

    @staticmethod
    def _ablation_notes(s, results, rows: List[List[str]]) -> List[str]:
        """Adds one table row per ablation (cells at the ablation ρ columns) and returns one
        note per ablation and ρ: the gain and how far it moved from the main recipe's."""
        rhos, names, notes = list(s["rhos"]), list(s["ablations"]), []
        cells = {n: ["—"] * len(rhos) for n in names}
        for rho in s["ablation_rhos"]:
            ref = np.mean(_gain(results, rho, False)) * 100
            gains = _ablation_gains(results, rho, names) * 100
            for j, name in enumerate(names):
                label = _ablation_label(s, name)
                dr = [r["ablations"][f"{rho:g}"][name]["dr"] for r in results]
                g, sd = gains[:, j].mean(), gains[:, j].std(ddof=1) if len(results) > 1 else 0
                if rho in rhos:
                    cells[name][rhos.index(rho)] = (
                        f"{mean_std(dr, scale=100, digits=1)} (Δ {g:+.1f} ± {sd:.1f})"
                    )
                notes.append(
                    f"ablation at ρ={rho:g}, no mixup — {label}: ETF+DR − learnable+CE "
                    f"{g:+.1f} ± {sd:.1f} points (main recipe {ref:+.1f}; change {g - ref:+.1f})"
                )
        for name in names:
            rows.append([f"ablation: {_ablation_label(s, name)}", "no", *cells[name]])
        return notes

    def plot(self, settings: Mapping[str, Any], results: Sequence[Mapping[str, Any]], fig) -> bool:
        rhos = list(settings["rhos"])
        x = np.arange(len(rhos))
        for i, mixup in enumerate((False, True)):
            ax = fig.add_subplot(1, 3, i + 1)
            for method in METHODS:
                acc = np.array([[r["main"][_key(method, rho, mixup)]["acc"] for rho in rhos]
                                for r in results]) * 100  # fmt: skip
                ax.errorbar(x, acc.mean(0), acc.std(0), marker="o", capsize=3, label=method)
            ax.set_xticks(x, [f"{r:g}" for r in rhos])
            ax.set_xlabel("imbalance ratio ρ")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title("with mixup" if mixup else "without mixup")
            ax.legend(fontsize=7)
        ax = fig.add_subplot(1, 3, 3)
        names = list(settings["ablations"])
        y = np.arange(len(names))
        arhos = list(settings["ablation_rhos"])
        for j, (rho, color) in enumerate(zip(arhos, ("tab:purple", "tab:green", "tab:orange"))):
            ref = np.mean(_gain(results, rho, False)) * 100
            g = _ablation_gains(results, rho, names) * 100
            off = (j - (len(arhos) - 1) / 2) * 0.8 / len(arhos)
            ax.barh(y + off, g.mean(0), 0.8 / len(arhos), xerr=g.std(0), color=color,
                    label=f"ρ={rho:g}")  # fmt: skip
            ax.axvline(ref, color=color, ls="--", lw=1)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_yticks(y, names, fontsize=7)
        ax.set_xlabel("ETF+DR − learnable+CE (points)")
        ax.set_title("ablations, no mixup (dashed: main recipe)", fontsize=9)
        ax.legend(fontsize=7)
        return True


@register
class ImbalancedCollapse(Experiment):
    """Fixed ETF + DR reaches neural collapse under imbalance; learnable + CE less so.

    Protocol: the runs of `002-long-tail-dr` at `ρ = 0.02` (the imbalance of the paper's
    Fig. 3) for learnable + CE and ETF + DR, with mixup (the paper's training recipe) and without,
    track per epoch, on the training split (and the test split), the standard deviation over
    class pairs `c ≠ k` of `cos∠(h_c − h_G, h_k − h_G)` and of `cos∠(h_c − h_G, w_k)`
    (Fig. 3's statistics) and, over classes, of `cos∠(h_c − h_G, w_c)`, with `h` the
    features the classifier sees (after BN + L2 for ETF + DR) and `h_G` their global mean.
    The effect, per statistic and seed, is the final-epoch training-split std of learnable + CE
    minus that of ETF + DR with mixup: positive when ETF + DR is closer to the equiangular
    configuration, as the paper reports. Decided before any result: any positive difference
    that clears its spread counts (`min_effect = 0`; the paper's figure is qualitative).
    """

    name = "002-imbalanced-collapse"
    paper = "002"
    claim = (
        "Fixed ETF + dot regression reaches neural collapse even when the classes are "
        "imbalanced: smaller spread of the collapse cosines than learnable + CE"
    )
    paper_result = (
        "qualitative (Fig. 3, CIFAR-100, ρ = 0.02): the std of cos(h_c−h_G, h_k−h_G) and of "
        "cos(h_c−h_G, w_k) is much smaller with ETF + DR, on train and test"
    )
    version = 2  # Dec 2026: unit frame at test, fixed steps

    def settings(self, options: RunOptions) -> Dict[str, Any]:
        return base_settings(options)

    def run_seed(self, ctx: Any, settings: Mapping[str, Any], seed: int) -> Dict[str, Any]:
        s = settings
        out: Dict[str, Any] = {}
        for method in (CE, ETF_DR):
            for mixup in (True, False):
                run = ctx.train(train_config(s, method, s["collapse_rho"], mixup, seed))
                out[_key(method, s["collapse_rho"], mixup)] = {
                    f"{split}_{stat}": [row.get(f"{split}_{stat}") for row in run.history]
                    for split in ("train", "test")
                    for stat in COLLAPSE_STATS
                }
        return out

    def summarise(
        self, settings: Mapping[str, Any], results: Sequence[Mapping[str, Any]]
    ) -> Outcome:
        rho = settings["collapse_rho"]

        def final(r, method, mixup, key):
            return r[_key(method, rho, mixup)][key][-1]

        effects = [
            Effect(
                f"{COLLAPSE_LABELS[stat]}: learnable+CE − ETF+DR (train, final epoch, mixup)",
                tuple(
                    final(r, CE, True, f"train_{stat}") - final(r, ETF_DR, True, f"train_{stat}")
                    for r in results
                ),
            )  # fmt: skip
            for stat in FIG3_STATS  # the statistics of the paper's Fig. 3 decide; the third is
        ]  # reported in the table and the notes
        cols = ["split", "mixup", "method", *[COLLAPSE_LABELS[s] for s in COLLAPSE_STATS]]
        rows = []
        for split in ("train", "test"):
            for mixup in (True, False):
                for method in (CE, ETF_DR):
                    rows.append(
                        [split, "yes" if mixup else "no", method,
                         *[mean_std([final(r, method, mixup, f"{split}_{st}") for r in results])
                           for st in COLLAPSE_STATS]]
                    )  # fmt: skip
        rows.append(["paper (CIFAR-100, Fig. 3)", "—", "ETF + DR smaller", "smaller", "smaller",
                     "(not in Fig. 3)"])  # fmt: skip
        notes = [
            "Changed in Dec 2026: the runs follow the long-tail protocol's changes (SGD steps of "
            "the balanced epochs, every sample in every epoch, MNIST-1D with a 1-D CNN in the "
            "cpu form). In the digits development run (MLP, 30 epochs) the means' spread "
            "favoured ETF + DR by +0.070 with mixup and the claim held; the table shows what "
            "these runs give, not a tuned result."
        ]
        for split in ("train", "test"):
            for mixup in (True, False):
                d = [
                    np.mean([final(r, CE, mixup, f"{split}_{st}")
                             - final(r, ETF_DR, mixup, f"{split}_{st}") for r in results])
                    for st in COLLAPSE_STATS
                ]  # fmt: skip
                notes.append(
                    f"{split}, {'mixup' if mixup else 'no mixup'}: learnable+CE − ETF+DR final "
                    f"std " + ", ".join(f"{k.split('_')[2]} {v:+.3f}"
                                        for k, v in zip(COLLAPSE_STATS, d))
                )  # fmt: skip
        return Outcome(effects, Table(cols, rows), notes)

    def plot(self, settings: Mapping[str, Any], results: Sequence[Mapping[str, Any]], fig) -> bool:
        rho = settings["collapse_rho"]
        for i, stat in enumerate(COLLAPSE_STATS):
            ax = fig.add_subplot(1, 3, i + 1)
            for method, color in ((CE, "tab:blue"), (ETF_DR, "tab:red")):
                for mixup, ls in ((True, "-"), (False, ":")):
                    curves = np.array(
                        [r[_key(method, rho, mixup)][f"train_{stat}"] for r in results],
                        dtype=float,
                    )
                    ep = np.arange(1, curves.shape[1] + 1)
                    ax.plot(ep, np.nanmean(curves, 0), ls, color=color,
                            label=f"{method}{' + mixup' if mixup else ''}")  # fmt: skip
            ax.set_xlabel("epoch")
            ax.set_title(COLLAPSE_LABELS[stat] + " (train)", fontsize=9)
            if i == 0:
                ax.legend(fontsize=7)
        return True
