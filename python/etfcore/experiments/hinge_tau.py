"""Do we need neural collapse? (hinge CE on a fixed ETF): `004-nc1-vs-tau`, NC1 and the
numerical rank of the training features against the cone angle `τ⁺`, with the class-count
sweep. The recipes and helpers live in `etfcore.experiments.hinge_cones`."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from .base import Effect, Experiment, Outcome, RunOptions, Table, register
from .hinge_cones import (
    _DIVERGED,
    DEG,
    _config,
    _final,
    _finite_mean,
    _ms,
    _nan0,
    _num,
    architecture,
    diversity,
    num_classes_of,
    recipe,
    spearman,
    spec_keys,
    train_or_diverge,
)

# ------------------------------------------------------------------ NC1 and rank vs τ⁺
#: Variants of the τ⁺ sweep: the paper's recipe first (the verdict's rows), then ablations.
_SWEEP_VARIANTS: Dict[str, Dict[str, Any]] = {
    "paper": dict(method="hinge"),
    "theorem1": dict(method="hinge_thm1"),
    "normalized": dict(method="hinge", normalize_features=True),
    "theorem1_normalized": dict(method="hinge_thm1", normalize_features=True),
    "no_projector": dict(method="hinge", projector=False),
    "lr0.01": dict(method="hinge", lr=0.01),
    "epochs10": dict(method="hinge", epochs=10),
}
_SWEEP_LABELS = {
    "paper": "paper's recipe: projector, τ⁻ = π",
    "theorem1": "τ⁻ = θ_K − τ⁺ (Theorem 1)",
    "no_projector": "no projector (the demo's head), τ⁻ = π",
    "normalized": "L2-normalised features, τ⁻ = π",
    "theorem1_normalized": "L2-normalised features, τ⁻ = θ_K − τ⁺",
    "lr0.01": "lr 0.01 (instead of 0.05), τ⁻ = π",
    "epochs10": "10 epochs (instead of the recipe's 30 or 60), τ⁻ = π",
}


TAU_MINUS_NOTE = (
    "τ⁻ = π, as the paper's §5 sets it ('for simplicity we set τ⁻ = π (i.e., use ⟨w_k, u_i⟩ "
    "as logits)'). Its appendix says 'τ⁻ is usually set as 0' (Table 4), but in Eq. (8) "
    "h⁻ = max{⟨w_k, u⟩, stop-grad(‖u‖)‖w_k‖ cos τ⁻}: with τ⁻ = 0 the max is always the "
    "constant ‖u‖‖w_k‖ (Cauchy–Schwarz), so every negative logit would be a constant without "
    "gradient — not the plain logits §5 describes. π is the value that gives §5's logits."
)
"""Why τ⁻ = π (Dec 2026; cited in the notes)."""


def class_sweep(quick: bool) -> List[Dict[str, Any]]:
    """The class-count sweep: K ∈ {10, 30, 100} classes of a Gaussian mixture in 128 input
    dimensions (`hier` with one fine class per coarse one), features of width ``p = max(32,
    K)`` ≥ K − 1 (a simplex ETF needs it), 30 (quick) or 60 samples per class.

    Examples
    --------
    >>> [(c["K"], c["feature_dim"]) for c in class_sweep(True)]
    [(10, 32), (30, 32), (100, 100)]
    """
    n = 30 if quick else 60
    return [
        dict(K=k, feature_dim=max(32, k), dataset=f"hier:coarse={k},fine=1,dim=128,n={n}")
        for k in (10, 30, 100)
    ]


def tau_grid(quick: bool) -> List[float]:
    """τ⁺ values of the sweep, in `[0, 17π/36]` (the paper's range): 0°, 25°, 45°, 65°, 85°
    quick; every 10° (and 85°) otherwise."""
    degrees = [0, 25, 45, 65, 85] if quick else [0, 10, 20, 30, 40, 50, 60, 65, 70, 80, 85]
    return [d / DEG for d in degrees]


def _mean_std_of_trained(curves: np.ndarray):
    """Per-column mean and standard deviation over the seeds whose run trained (finite); a
    column where no seed trained is NaN (left out of the plot), without numpy's warning."""
    ok = np.isfinite(curves)
    n = ok.sum(0)
    filled = np.where(ok, curves, 0.0)
    mean = np.divide(filled.sum(0), n, out=np.full(n.shape, np.nan), where=n > 0)
    dev = np.where(ok, curves - mean, 0.0)
    var = np.divide((dev * dev).sum(0), n, out=np.full(n.shape, np.nan), where=n > 0)
    return mean, np.sqrt(var)


@register
class Nc1VersusTau(Experiment):
    """NC1 and numerical rank of the training features as the cone angle τ⁺ grows.

    Protocol: on digits (10 classes, the demo's MLP recipe: 30 epochs, 60 in the cpu form; SGD
    0.05), hinge CE on a fixed ETF with the projector and `τ⁻ = π` (the paper's recipe) is trained
    for each τ⁺ in `[0, 17π/36]` (0°, 25°, 45°, 65°, 85° in the quick form), τ⁺ on every class; at
    the last epoch the training features the frame classifies give NC1 (`tr(Σ_W Σ_B^†)/K`) and the
    numerical rank (per class `‖H_k‖_*²/‖H_k‖_F²`, averaged). CE with a learnable head and CE on the
    ETF are shown for reference. Ablations sweep the same τ⁺ with one change each: `τ⁻ = θ_K − τ⁺`
    (Theorem 1: no gradient at all inside the cones), no projector (the demo's head), L2-normalised
    features (with either τ⁻), lr 0.01, and 10 epochs. A run that diverges (non-finite or degenerate
    features) is reported, not raised; ρ is then taken over the τ⁺ values that trained (at least
    three).

    Class-count sweep (Dec 2026): with `τ⁻ = π` the negative logits keep their gradient inside
    a cone, pulling a feature toward its own class vector with a weight ≈ `(1 − p_y)/(K − 1)`
    per negative class — strong at K = 10, negligible at ImageNet's K = 1000, where the paper
    measured. So the paper's recipe is also swept over τ⁺ on a synthetic mixture with K = 10,
    30 and 100 classes (`class_sweep`), and ρ(τ⁺, NC1), ρ(τ⁺, rank) are reported per K.

    Effects (per seed): Spearman's correlation between τ⁺ and NC1, and between τ⁺ and the
    numerical rank, for the paper's recipe on digits and on the synthetic K = 100 mixture.
    Positive = the claim's direction. `min_effect` = 0.5, decided before any run: the claim is
    a monotone rise over the whole range, and with five τ⁺ values a correlation under 0.5 leaves
    several pairs in the wrong order.
    """

    name = "004-nc1-vs-tau"
    paper = "004"
    claim = "NC1 and the numerical rank of the training features increase with τ⁺"
    paper_result = "qualitative (ImageNet, ResNet-50, τ⁻ = π): both increase over τ⁺ ∈ [0, 17π/36]"
    version = 2  # Dec 2026: the class-count sweep

    def settings(self, options: RunOptions) -> Dict[str, Any]:
        variants = dict(_SWEEP_VARIANTS)
        return dict(
            arch=architecture(options.data, options.quick),
            dataset=options.data or "digits",
            num_classes=num_classes_of(options.data or "digits"),
            taus=tau_grid(options.quick),
            variants=variants,
            references=["ce", "ce_etf"],
            class_sweep=class_sweep(options.quick),
            sweep_arch=architecture(None, options.quick),  # the MLP: the sweep is synthetic
            sweep_taus=[t / DEG for t in ((0, 45, 85) if options.quick else (0, 25, 45, 65, 85))],
        )

    def configs(self, settings: Mapping[str, Any], seed: int) -> Dict[str, Dict[str, Any]]:
        """`{"variant/τ-index": config}` plus the references `ref/ce` and `ref/ce_etf`."""
        k, ds = int(settings["num_classes"]), settings["dataset"]
        out = {f"ref/{m}": _config(settings, seed, dataset=ds, **recipe(m)) for m in
               settings["references"]}  # fmt: skip
        for name, v in settings["variants"].items():
            for i, tau in enumerate(settings["taus"]):
                keys = spec_keys(v, tau_plus=tau, num_classes=k)
                out[f"{name}/{i}"] = _config(settings, seed, dataset=ds, **keys)
        for c in settings.get("class_sweep", []):
            for i, tau in enumerate(settings["sweep_taus"]):
                keys = recipe("hinge", tau_plus=tau, num_classes=c["K"])
                arch = {"arch": settings.get("sweep_arch", settings["arch"])}
                out[f"K{c['K']}/{i}"] = _config(
                    arch, seed, dataset=c["dataset"], feature_dim=c["feature_dim"], **keys
                )
        return out

    def run_seed(self, ctx: Any, settings: Mapping[str, Any], seed: int) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for key, cfg in self.configs(settings, seed).items():
            run = train_or_diverge(ctx, cfg)
            if run is None:
                out[key] = dict(_DIVERGED)
                continue
            div = diversity(ctx, run, {"dataset": cfg["dataset"], "seed": seed})
            out[key] = dict(
                div,
                diverged=False,
                tracker_nc1=_final(run, "train_nc1"),
                test_acc=_final(run, "test_acc"),
                in_cone=_final(run, "train_in_cone"),
            )
        return out

    def _curve(self, settings, r: Mapping[str, Any], variant: str, key: str) -> List[float]:
        """The measure along τ⁺ (NaN where the run diverged)."""
        return [_num(r[f"{variant}/{i}"][key]) for i in range(len(settings["taus"]))]

    def _rho(self, settings, r, variant: str, key: str) -> float:
        """Spearman over the τ⁺ values whose runs did not diverge (NaN with fewer than 3);
        `variant` `"K<k>"` is the class-count sweep at `k` classes."""
        taus = settings["sweep_taus"] if variant.startswith("K") else settings["taus"]
        y = np.asarray([_num(r[f"{variant}/{i}"][key]) for i in range(len(taus))])
        ok = np.isfinite(y)
        if ok.sum() < 3:
            return float("nan")
        return spearman(np.asarray(taus)[ok], y[ok])

    def summarise(
        self, settings: Mapping[str, Any], results: Sequence[Mapping[str, Any]]
    ) -> Outcome:
        taus = settings["taus"]
        effects = [
            Effect(
                f"Spearman(τ⁺, train {label}), paper's recipe",
                tuple(_nan0(self._rho(settings, r, "paper", key)) for r in results),
                min_effect=0.5,
            )
            for key, label in (("nc1", "NC1"), ("rank", "numerical rank"))
        ]
        sweep = settings.get("class_sweep", [])
        if sweep:  # the largest K: where the negative logits' pull inside a cone is weakest
            kmax = max(c["K"] for c in sweep)
            effects += [
                Effect(
                    f"Spearman(τ⁺, train {label}), synthetic K = {kmax}",
                    tuple(_nan0(self._rho(settings, r, f"K{kmax}", key)) for r in results),
                    min_effect=0.5,
                )
                for key, label in (("nc1", "NC1"), ("rank", "numerical rank"))
            ]
        deg = [f"{t * DEG:.0f}°" for t in taus]
        cols = ["variant", *[f"NC1 τ⁺={d}" for d in deg], "ρ(τ⁺, NC1)", "ρ(τ⁺, rank)",
                f"rank τ⁺={deg[0]}→{deg[-1]}", f"in-cone τ⁺={deg[-1]}",
                f"test % τ⁺={deg[0]}→{deg[-1]}"]  # fmt: skip
        rows = []
        for v in settings["variants"]:
            rank0 = _ms([r[f"{v}/0"]["rank"] for r in results], 1, 2)
            rank1 = _ms([r[f"{v}/{len(taus) - 1}"]["rank"] for r in results], 1, 2)
            acc0 = _ms([r[f"{v}/0"]["test_acc"] for r in results], 100, 1)
            acc1 = _ms([r[f"{v}/{len(taus) - 1}"]["test_acc"] for r in results], 100, 1)
            rows.append(
                [_SWEEP_LABELS.get(v, v)]
                + [_ms([r[f"{v}/{i}"]["nc1"] for r in results], 1, 3) for i in range(len(taus))]
                + [_ms([self._rho(settings, r, v, "nc1") for r in results], 1, 2),
                   _ms([self._rho(settings, r, v, "rank") for r in results], 1, 2),
                   f"{rank0} → {rank1}",
                   _ms([r[f"{v}/{len(taus) - 1}"]["in_cone"] for r in results], 1, 2),
                   f"{acc0} → {acc1}"]
            )  # fmt: skip
        blank = ["—"] * (len(taus) + 4)
        labels = {"ce": "reference: CE, learnable head", "ce_etf": "reference: CE+ETF"}
        for m in settings["references"]:
            label = labels.get(m, m)
            nc1 = _ms([r[f"ref/{m}"]["nc1"] for r in results], 1, 3)
            acc = _ms([r[f"ref/{m}"]["test_acc"] for r in results], 100, 1)
            rows.append([f"{label} (NC1, rank, test %)", nc1, *blank[: len(taus) - 1],
                         "—", "—", _ms([r[f"ref/{m}"]["rank"] for r in results], 1, 2), "—",
                         acc])  # fmt: skip
        rows.append(["paper (ImageNet, Fig. 4)", *["—"] * len(taus), "> 0", "> 0", "rises", "—",
                     "—"])  # fmt: skip
        for c in sweep:
            v = f"K{c['K']}"
            n = len(settings["sweep_taus"])
            rows.append(
                [f"class-count sweep: synthetic, K = {c['K']}, p = {c['feature_dim']} "
                 f"(NC1 at τ⁺ = {', '.join(f'{t * DEG:.0f}°' for t in settings['sweep_taus'])})",
                 " → ".join(_ms([r[f"{v}/{i}"]["nc1"] for r in results], 1, 3) for i in range(n)),
                 *["—"] * (len(taus) - 1),
                 _ms([self._rho(settings, r, v, "nc1") for r in results], 1, 2),
                 _ms([self._rho(settings, r, v, "rank") for r in results], 1, 2),
                 f"{_ms([r[f'{v}/0']['rank'] for r in results], 1, 2)} → "
                 f"{_ms([r[f'{v}/{n - 1}']['rank'] for r in results], 1, 2)}",
                 _ms([r[f"{v}/{n - 1}"]["in_cone"] for r in results], 1, 2),
                 f"{_ms([r[f'{v}/0']['test_acc'] for r in results], 100, 1)} → "
                 f"{_ms([r[f'{v}/{n - 1}']['test_acc'] for r in results], 100, 1)}"]
            )  # fmt: skip
        return Outcome(effects, Table(cols, rows), self._notes(settings, results))

    def _notes(self, settings, results) -> List[str]:
        last = len(settings["taus"]) - 1
        cone = " / ".join(
            f"{t * DEG:.0f}°: {_finite_mean([r[f'paper/{i}']['in_cone'] for r in results]):.2f}"
            if i
            else f"{t * DEG:.0f}°: —"
            for i, t in enumerate(settings["taus"])
        )
        notes = [
            f"paper's recipe, fraction of training features inside their cones by τ⁺: {cone}. "
            "With τ⁻ = π the negative logits keep their gradient inside the cones: together they "
            "pull a feature toward its own class vector with a weight of about (1 − p_y)/(K − 1), "
            "which shrinks as K grows; the class-count sweep below tests whether the paper's "
            "trend appears where that pull is small (measured, not an explanation of it)",
            TAU_MINUS_NOTE,
        ]
        if settings.get("class_sweep") and len(settings["sweep_taus"]) < 5:
            notes.append(
                f"class-count sweep with {len(settings['sweep_taus'])} τ⁺ values (quick form): "
                "Spearman's ρ then takes a few discrete values, and seeds that agree give a "
                "zero-width interval — read its verdict with the NC1 and test-accuracy columns "
                "(NC1 ≫ 1 means the synthetic classes were not separated in training); the cpu "
                "form sweeps five values with twice the samples per class"
            )
        for c in settings.get("class_sweep", []):
            v = f"K{c['K']}"
            if all(f"{v}/0" in r for r in results):
                notes.append(
                    f"class-count sweep, K = {c['K']} (synthetic, p = {c['feature_dim']}): "
                    f"ρ(τ⁺, NC1) {_ms([self._rho(settings, r, v, 'nc1') for r in results], 1, 2)}, "
                    f"ρ(τ⁺, rank) {_ms([self._rho(settings, r, v, 'rank') for r in results], 1, 2)}"
                )
        paper_rho = _finite_mean([self._rho(settings, r, "paper", "nc1") for r in results])
        flips = [
            _SWEEP_LABELS.get(v, v) for v in settings["variants"] if v != "paper"
            and np.sign(_finite_mean([self._rho(settings, r, v, "nc1") for r in results]))
            != np.sign(paper_rho)
        ]  # fmt: skip
        notes.append(
            f"changes that flip the sign of ρ(τ⁺, NC1) (paper's recipe {paper_rho:+.2f}): "
            + ("; ".join(flips) if flips else "none")
        )
        base = [r[f"paper/{last}"]["nc1"] for r in results]
        for v in settings["variants"]:
            rho = _ms([self._rho(settings, r, v, "nc1") for r in results], 1, 2)
            rho_r = _ms([self._rho(settings, r, v, "rank") for r in results], 1, 2)
            nc1 = _finite_mean([r[f"{v}/{last}"]["nc1"] for r in results])
            base_nc1 = _finite_mean(base)
            ratio = nc1 / base_nc1 if base_nc1 > 0 else float("nan")
            diverged = sum(bool(r[f"{v}/{i}"].get("diverged")) for r in results
                           for i in range(last + 1))  # fmt: skip
            notes.append(
                f"{_SWEEP_LABELS.get(v, v)}: ρ(τ⁺, NC1) {rho}, ρ(τ⁺, rank) {rho_r}; "
                + (f"NC1 at the largest τ⁺ {nc1:.3f} ({ratio:.2f}× the paper recipe's)"
                   if np.isfinite(ratio) else f"NC1 at the largest τ⁺ {nc1:.3f}"
                   if np.isfinite(nc1) else "NC1 at the largest τ⁺ — (no run trained)")
                + (f"; {diverged} of {len(results) * (last + 1)} runs diverged (non-finite "
                   "features)" if diverged else "")
            )  # fmt: skip
        return notes

    def plot(self, settings, results, fig) -> bool:
        deg = [t * DEG for t in settings["taus"]]
        for j, (key, label) in enumerate((("nc1", "train NC1"), ("rank", "numerical rank"))):
            ax = fig.add_subplot(1, 2, j + 1)
            for v in settings["variants"]:
                curves = np.array([self._curve(settings, r, v, key) for r in results])
                mean, sd = _mean_std_of_trained(curves)
                ax.errorbar(deg, mean, yerr=sd, label=_SWEEP_LABELS.get(v, v), capsize=2,
                            marker="o", ms=3)  # fmt: skip
            ax.set_xlabel("τ⁺ (degrees)")
            ax.set_ylabel(label)
            if key == "nc1":
                ax.set_yscale("log")
        fig.axes[0].legend(fontsize=6)
        fig.suptitle("Hinge CE on digits: collapse vs cone angle τ⁺ (mean ± std over seeds)")
        return True

