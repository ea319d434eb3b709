"""Reproductions of "Do we need neural collapse? Learning diverse features for fine-grained and
long-tail classification": hinge cross-entropy on a fixed simplex ETF (maximal-separating cones).

Three claims, each one experiment:

- `004-coarse-to-fine`: a backbone pretrained on *coarse* labels with hinge CE probes the *fine*
  labels better than one pretrained with CE (learnable classifier) or CE on a fixed ETF;
- `004-nc1-vs-tau`: NC1 and the numerical rank of the training features *increase* with the
  cone angle `τ⁺`; with ablations that explain why etfcore's demo saw the opposite;
- `004-long-tail-minor`: on long-tailed data, hinge CE on the minor classes only raises the
  minor classes' accuracy.

The recipes (one function builds every training config, so that identical configs are shared
between the experiments through the runner's cache):

- **CE**: learnable linear head, cross-entropy;
- **CE+ETF**: fixed simplex ETF with the projector `Linear(p, p)` in front of it (the paper adds
  the same layer to its CE+ETF baseline for a like-for-like comparison), cross-entropy;
- **HingeCE**: the same head, hinge cross-entropy with `τ⁻ = π` (the paper's practice; the
  negative logits are then plain `⟨w_k, u⟩`), `τ⁺` per experiment;
- **HingeCE, Theorem 1**: `τ⁻ = θ_K − τ⁺` with `θ_K = arccos(−1/(K−1))` the angle between
  two ETF vectors, the setting under which features inside their cones get exactly zero gradient.

On the embedded data the backbone is the demo's MLP (its last layer is linear, so its features
already reach the whole space); linear probes read the backbone's output, i.e. the features
*before* the projector. The projector is an invertible linear map in general, so a linear probe
sees the same family of classifiers either way (only the ridge penalty's geometry differs).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import ParameterError
from .base import Effect, Experiment, Outcome, RunOptions, Table, mean_std, register

_PI = math.pi
DEG = 180.0 / _PI


def frame_angle(num_classes: int) -> float:
    """`θ_K = arccos(−1/(K−1))`: the angle between two vectors of a `K`-class simplex ETF.

    Examples
    --------
    >>> round(frame_angle(2) * DEG, 6), round(frame_angle(10) * DEG, 3)
    (180.0, 96.379)
    """
    if num_classes < 2:
        raise ParameterError(f"a simplex ETF needs at least 2 classes, got {num_classes}")
    return math.acos(-1.0 / (num_classes - 1))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties get their average rank); 0 when either side is constant
    (no monotone trend to measure).

    Examples
    --------
    >>> spearman([0, 1, 2, 3], [0.1, 0.3, 0.2, 0.9])
    0.8
    >>> spearman([0, 1, 2], [5.0, 5.0, 5.0])
    0.0
    """

    from ..transfer import ranking

    if len(x) != len(y) or len(x) < 2:
        raise ParameterError("spearman needs two sequences of the same length >= 2")
    if np.ptp(np.asarray(x, float)) == 0 or np.ptp(np.asarray(y, float)) == 0:
        return 0.0
    return round(float(ranking.spearman(x, y)), 12)


# ------------------------------------------------------------------ recipes
def architecture(data: Optional[str], quick: bool) -> Dict[str, Any]:
    """Backbone and optimisation of a run: the demo's MLP recipe on the embedded data; a CIFAR
    ResNet-32 (feature width 128, SGD 0.1, 200 epochs) when `data` names an image dataset."""
    from ..training.datasets import is_embedded

    if data is None or is_embedded(data):
        return dict(
            backbone="mlp", feature_dim=32, batch_size=64, optimizer="sgd", lr=0.05,
            epochs=30 if quick else 60, weight_decay=5e-4,
        )  # fmt: skip
    return dict(
        backbone="resnet32", feature_dim=128, batch_size=128, optimizer="sgd", lr=0.1,
        epochs=200, weight_decay=5e-4, warmup_epochs=5,
    )  # fmt: skip


def recipe(method: str, *, tau_plus: float = 13 * _PI / 36, num_classes: int = 10) -> Dict:
    """Head/loss keys of a method: `ce`, `ce_etf`, `hinge` (`τ⁻ = π`), `hinge_thm1`
    (`τ⁻ = θ_K − τ⁺`).

    Examples
    --------
    >>> recipe("ce")
    {'head': 'linear', 'loss': 'ce'}
    >>> r = recipe("hinge_thm1", tau_plus=0.5, num_classes=2); round(r["tau_minus"], 6)
    2.641593
    """
    if method == "ce":
        return dict(head="linear", loss="ce")
    etf = dict(head="etf", projector=True)
    if method == "ce_etf":
        return dict(etf, loss="ce")
    if method == "hinge":
        return dict(etf, loss="hinge_ce", tau_plus=float(tau_plus), tau_minus=_PI)
    if method == "hinge_thm1":
        tm = frame_angle(num_classes) - float(tau_plus)
        return dict(etf, loss="hinge_ce", tau_plus=float(tau_plus), tau_minus=tm)
    raise ParameterError(f"unknown method {method!r}")


_KNOWN_K = {"digits": 10, "gmm": 10, "mnist1d": 10, "cifar10": 10, "cifar100": 100}


def num_classes_of(dataset: str) -> int:
    """Number of classes of a dataset this module runs on (`hier` from its options).

    Examples
    --------
    >>> num_classes_of("digits"), num_classes_of("hier:coarse=3,fine=2")
    (10, 6)
    """
    from ..training.datasets import parse_embedded

    base = dataset.partition(":")[0]
    if base == "hier":
        opts = parse_embedded(dataset)[1]
        return int(opts["coarse"] * opts["fine"])
    if base not in _KNOWN_K:
        raise ParameterError(f"number of classes of {dataset!r} unknown; known: {sorted(_KNOWN_K)}")
    return _KNOWN_K[base]


def spec_keys(spec: Mapping[str, Any], *, tau_plus: float, num_classes: int) -> Dict[str, Any]:
    """Config keys of a method spec `{"method": ..., other config keys...}`.

    Examples
    --------
    >>> spec_keys({"method": "ce_etf", "normalize_features": True}, tau_plus=0, num_classes=3)
    {'head': 'etf', 'projector': True, 'loss': 'ce', 'normalize_features': True}
    """
    keys = recipe(spec["method"], tau_plus=tau_plus, num_classes=num_classes)
    keys.update({k: v for k, v in spec.items() if k != "method"})
    return keys


def train_or_diverge(ctx: Any, config: Mapping[str, Any]) -> Any:
    """`ctx.train(config)`, or None when training diverged or degenerated (non-finite
    features, or every class mean the same, at the end-of-epoch evaluation): a result to
    report, not an error. The trainer's warning that hinge CE with `τ⁻ < π/2` on unnormalised
    features can diverge is silenced here, where divergence is the outcome being measured."""
    import warnings

    from ..errors import DegenerateInputError, NonFiniteError

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=DIVERGENCE_WARNING, category=RuntimeWarning)
        try:
            return ctx.train(config)
        except (NonFiniteError, DegenerateInputError):
            return None


#: Start of `TrainConfig.warn_training_hazards`' warning about hinge CE (a regex prefix).
DIVERGENCE_WARNING = r"hinge CE with tau_minus < pi/2 on unnormalised features can diverge"


_DIVERGED = dict(
    nc1=None, rank=None, backbone_nc1=None, backbone_rank=None, tracker_nc1=None,
    test_acc=None, in_cone=None, diverged=True,
)  # fmt: skip


def _config(settings: Mapping[str, Any], seed: int, **keys: Any) -> Dict[str, Any]:
    """One training config (a mapping for `ctx.train`): architecture, then `keys`; collapse
    metrics only at the last epoch (the experiments read `run.final`)."""
    cfg = dict(settings["arch"])
    cfg.update(keys)
    cfg.update(seed=int(seed), track_every=int(cfg["epochs"]))
    return cfg


def _final(run, key: str) -> float:
    v = run.final.get(key)
    return float("nan") if v is None else float(v)


def frame_features(ctx: Any, run: Any, target: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    """Training-split features of `run` on `target`: the backbone's output `h` and the
    features its fixed frame classifies, `u = normalize(P h + b)` (projector `P, b` and the
    normalisation when the run had them; `u = h` otherwise), with the labels."""
    h, y = ctx.features(run, target, splits=("train",))["train"]
    u = run.head_features(h)  # the trained head's own map (projector, BN, L2 as trained)
    return {"backbone": np.asarray(h, dtype=np.float64), "frame": u, "labels": np.asarray(y)}


def diversity(
    ctx: Any, run: Any, target: Mapping[str, Any], label_map: Optional[Sequence[int]] = None
) -> Dict[str, float]:
    """NC1 (`tr(Σ_W Σ_B^†)/K`) and numerical rank (per class `‖H_k‖_*²/‖H_k‖_F²`, averaged)
    of `run`'s training features on `target` (labels mapped through `label_map` when
    given), of the frame's features (`nc1`, `rank`) and of the backbone's output
    (`backbone_nc1`, `backbone_rank`)."""
    from ..metrics import collapse_metrics

    f = frame_features(ctx, run, target)
    y = f["labels"] if label_map is None else np.asarray(label_map)[f["labels"]]
    out = {}
    for key, prefix in (("frame", ""), ("backbone", "backbone_")):
        m = collapse_metrics(f[key], y, numerical_rank=True)
        out[f"{prefix}nc1"] = float(m["nc1"])
        out[f"{prefix}rank"] = float(m["numerical_rank"])
    return out


def _probe_grid(quick: bool) -> Optional[List[float]]:
    return [float(x) for x in np.logspace(-6, 2, 17)] if quick else None


def _ms(values: Sequence[Any], scale: float = 1.0, digits: int = 3) -> str:
    return mean_std([float("nan") if v is None else v for v in values], scale=scale, digits=digits)


def _col(results: Sequence[Mapping[str, Any]], *path: str) -> List[Any]:
    out = []
    for r in results:
        v: Any = r
        for p in path:
            v = v.get(p) if isinstance(v, Mapping) else None
        out.append(v)
    return out


def _finite_mean(values: Sequence[Any]) -> float:
    """Mean of the finite values (`None` counts as missing); NaN, without numpy's warning,
    when there is none (every run diverged).

    >>> _finite_mean([1.0, None, float("nan"), 3.0]), _finite_mean([None])
    (2.0, nan)
    """
    a = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def _nan0(v: Any) -> float:
    return 0.0 if v is None or not math.isfinite(float(v)) else float(v)


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _gains(hinge: Sequence[Any], base: Sequence[Any]) -> Tuple[float, ...]:
    """Per-seed `hinge − base`: a diverged hinge run counts as accuracy 0 (no gain, against
    the claim); a seed whose baseline diverged has nothing to compare and is dropped. With no
    seed left, one 0 (no evidence either way)."""
    out = [
        (0.0 if h is None or not math.isfinite(float(h)) else float(h)) - float(b)
        for h, b in zip(hinge, base)
        if b is not None and math.isfinite(float(b))
    ]
    return tuple(out) or (0.0,)


def _diff(a: Any, b: Any) -> float:
    """`a − b`, NaN when either is missing (a diverged run)."""
    return float("nan") if a is None or b is None else float(a) - float(b)


# ------------------------------------------------------------------ coarse → fine
_C2F_METHODS: Dict[str, Dict[str, Any]] = {
    "ce": dict(method="ce"),
    "ce_etf": dict(method="ce_etf"),
    "hinge": dict(method="hinge"),
    "hinge_norm": dict(method="hinge", normalize_features=True),
    "hinge_thm1_norm": dict(method="hinge_thm1", normalize_features=True),
}
_C2F_LABELS = {
    "ce": "CE (learnable)",
    "ce_etf": "CE+ETF",
    "hinge": "HingeCE (τ⁻ = π)",
    "hinge_norm": "ablation: HingeCE, L2-normalised features",
    "hinge_thm1_norm": "ablation: HingeCE, τ⁻ = θ_K − τ⁺, L2-normalised",
}
_C2F_PAPER = {"ce": "74.3", "ce_etf": "74.0", "hinge": "75.7"}


def _coarse_tasks(quick: bool, data: Optional[str]) -> List[Dict[str, Any]]:
    """Source (coarse) and target (fine) tasks: the hierarchical mixture with 20 coarse classes
    of 5 fine ones (the coarse label of fine class `k` is `k // 5`; the shape of CIFAR-100's
    20 superclasses × 5 classes) and digits grouped into 5 superclasses `{k, k+5}`; with
    `data="cifar100"` the 20 CIFAR-100 superclasses.

    Examples
    --------
    >>> [(t["name"], max(t["coarse"]) + 1, t["fine"]) for t in _coarse_tasks(True, None)]
    [('hier', 20, 100), ('digits', 5, 10)]
    """
    if data is not None:
        if data.partition(":")[0] != "cifar100":
            raise ParameterError("004-coarse-to-fine takes --data cifar100 (20 superclasses)")
        from ..training.datasets import CIFAR100_COARSE

        return [dict(name="cifar100", dataset=data, coarse=list(CIFAR100_COARSE), fine=100)]
    n = 40 if quick else 100
    return [
        dict(name="hier", dataset=f"hier:coarse=20,fine=5,n={n}",
             coarse=[k // 5 for k in range(100)], fine=100),
        dict(name="digits", dataset="digits", coarse=[k % 5 for k in range(10)], fine=10),
    ]


@register
class CoarseToFine(Experiment):
    """Pretrain on coarse labels, linear-probe the fine labels.

    Protocol: on each task, a backbone is trained on the *coarse* labels with CE (learnable
    head), CE on a fixed ETF (with the projector) and hinge CE (`τ⁺ = 13π/36`, `τ⁻ = π`: the
    paper's ImageNet setting, on every class); the frozen backbone's features are then
    linear-probed (L2-regularised logistic regression, penalty chosen on a validation split) on
    the *fine* labels of the same inputs. Within-class collapse erases the fine structure inside
    each coarse class, so if hinge CE keeps features diverse its fine probe is more accurate.
    Tasks: the hierarchical Gaussian mixture (20 coarse × 5 fine classes, the shape of
    CIFAR-100's superclasses; 40 samples per fine class quick, 100 otherwise) and digits grouped
    into 5 superclasses `{k, k+5}`. Changed in Dec 2026: the mixture had 4 coarse classes; at
    K ≤ 10 the negative logits' pull inside a cone (≈ (1 − p_y)/(K − 1) per class with τ⁻ = π)
    is strong, so the paper's mechanism (ImageNet, K = 1000) is barely engaged — 20 coarse
    classes is the most the embedded data's scale allows at ≥ 5 fine classes each. Two ablation
    rows, outside the verdict: hinge CE on L2-normalised features, and with the Theorem-1 angle
    `τ⁻ = θ_K − τ⁺` on L2-normalised features (unnormalised, that loss can diverge: see
    `004-nc1-vs-tau`). A diverged run is reported as missing; a diverged HingeCE run counts as
    no gain.

    Effects (per seed, paired, averaged over the tasks): fine probe accuracy of HingeCE minus
    CE, and minus CE+ETF. `min_effect` = 1 point, decided before any run: the paper's mean
    gains over nine target sets are 1.4 (CE) and 1.7 (CE+ETF) points, so a gain under one point
    is below what the claim is about.
    """

    name = "004-coarse-to-fine"
    paper = "004"
    claim = (
        "pretrained on coarse labels, hinge CE features linear-probe the fine labels better than "
        "CE or CE + fixed ETF features"
    )
    paper_result = (
        "ImageNet-pretrained ResNet-50, linear evaluation mean over 9 sets: HingeCE 75.7, "
        "CE 74.3, CE+ETF 74.0"
    )
    version = 2  # Dec 2026: 20 coarse classes

    def settings(self, options: RunOptions) -> Dict[str, Any]:
        return dict(
            arch=architecture(options.data, options.quick),
            tasks=_coarse_tasks(options.quick, options.data),
            methods=dict(_C2F_METHODS),
            tau_plus=13 * _PI / 36,
            probe_grid=_probe_grid(options.quick),
        )

    def configs(self, settings: Mapping[str, Any], seed: int) -> Dict[str, Dict[str, Any]]:
        """`{"task/method": config}` of one seed (coarse-label pretraining runs)."""
        out = {}
        for t in settings["tasks"]:
            k = max(t["coarse"]) + 1
            for m, spec in settings["methods"].items():
                keys = spec_keys(spec, tau_plus=settings["tau_plus"], num_classes=k)
                out[f"{t['name']}/{m}"] = _config(
                    settings, seed, dataset=t["dataset"], label_map=t["coarse"], **keys
                )
        return out

    def run_seed(self, ctx: Any, settings: Mapping[str, Any], seed: int) -> Dict[str, Any]:
        configs = self.configs(settings, seed)
        out: Dict[str, Any] = {}
        for t in settings["tasks"]:
            row = {}
            for m in settings["methods"]:
                run = train_or_diverge(ctx, configs[f"{t['name']}/{m}"])
                if run is None:
                    row[m] = dict(fine_probe=None, coarse_acc=None, train_nc1=None,
                                  train_rank=None, backbone_nc1=None, in_cone=None)  # fmt: skip
                    continue
                target = {"dataset": t["dataset"], "seed": seed}
                probe = ctx.probe(run, target, seed=seed, grid=settings["probe_grid"])
                div = diversity(ctx, run, target, label_map=t["coarse"])
                row[m] = dict(
                    fine_probe=float(probe.top1),
                    coarse_acc=_final(run, "test_acc"),
                    train_nc1=div["nc1"],
                    train_rank=div["rank"],
                    backbone_nc1=div["backbone_nc1"],
                    in_cone=_final(run, "train_in_cone"),
                )
            out[t["name"]] = row
        return out

    def summarise(
        self, settings: Mapping[str, Any], results: Sequence[Mapping[str, Any]]
    ) -> Outcome:
        tasks = [t["name"] for t in settings["tasks"]]
        methods = list(settings["methods"])

        def gain(r: Mapping[str, Any], base: str) -> float:
            d = [_diff(r[t]["hinge"]["fine_probe"], r[t][base]["fine_probe"]) for t in tasks]
            return _nan0(np.mean(d))

        effects = [
            Effect(
                f"fine probe accuracy, HingeCE − {_C2F_LABELS[b]} (mean over tasks)",
                tuple(gain(r, b) for r in results), min_effect=0.01, scale=100, unit=" points",
            )
            for b in ("ce", "ce_etf")
        ]  # fmt: skip
        cols = ["method"]
        for t in tasks:
            cols += [f"{t}: fine probe %", f"{t}: coarse test %", f"{t}: train NC1"]
        cols.append("paper (mean linear eval %)")
        rows = []
        for m in methods:
            row = [_C2F_LABELS.get(m, m)]
            for t in tasks:
                row += [
                    _ms(_col(results, t, m, "fine_probe"), 100, 1),
                    _ms(_col(results, t, m, "coarse_acc"), 100, 1),
                    _ms(_col(results, t, m, "train_nc1"), 1, 3),
                ]
            rows.append(row + [_C2F_PAPER.get(m, "—")])
        notes = []
        for t in tasks:
            per = {
                b: _ms(
                    [_diff(r[t]["hinge"]["fine_probe"], r[t][b]["fine_probe"]) for r in results],
                    100, 1,
                )
                for b in methods if b != "hinge"
            }  # fmt: skip
            notes.append(
                f"{t}: fine-probe accuracy of HingeCE (τ⁻ = π) minus each other row (points): "
                + "; ".join(f"{_C2F_LABELS.get(b, b)} {v}" for b, v in per.items())
            )
        notes.append(
            "probes read the backbone's output (before the projector); NC1 is that of the "
            "features the frame classifies (after the projector)"
        )
        return Outcome(effects, Table(cols, rows), notes)

    def plot(self, settings, results, fig) -> bool:
        tasks = [t["name"] for t in settings["tasks"]]
        methods = list(settings["methods"])
        for i, t in enumerate(tasks):
            ax = fig.add_subplot(1, len(tasks), i + 1)
            vals = [[100 * _num(r[t][m]["fine_probe"]) for r in results] for m in methods]
            means = [_finite_mean(v) for v in vals]
            sds = [np.nanstd(v, ddof=1) if np.isfinite(v).sum() > 1 else 0.0 for v in vals]
            ax.barh(np.arange(len(methods)), means, xerr=sds, capsize=3,
                    color=[f"C{j}" for j in range(len(methods))])  # fmt: skip
            ax.set_yticks(np.arange(len(methods)), [_C2F_LABELS.get(m, m) for m in methods],
                          fontsize=7)  # fmt: skip
            ax.invert_yaxis()
            finite = [m for m in means if np.isfinite(m)]
            if finite:
                ax.set_xlim(min(finite) - 5, min(100, max(finite) + 3))
            ax.set_xlabel(f"{t}: fine-label probe accuracy (%)")
        fig.suptitle("Pretrained on coarse labels, linear probe on fine labels (mean ± std)")
        return True
