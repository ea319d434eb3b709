r"""A ranking report for one target: every score of every candidate backbone, checked against a
ground truth, with uncertainty, convergence and warnings
([`rank_models`][etfcore.transfer.rank_models]).

For each score the report holds the per-candidate values and, when a ground truth is given:

- ``weighted_tau``, ``pearson``, ``spearman``
  ([`weighted_kendall_tau`][etfcore.transfer.weighted_kendall_tau] etc.) between
  ``direction × score`` and the ground-truth accuracy over the candidates;
- ``regret_top1 = max(acc) - acc[top-1 of the score]`` and
  ``regret_topk = max(acc) - max(acc[top-k of the score])`` (in the ground truth's unit; ties
  between score values are broken by the order of the candidates);
- with ``bootstrap = B > 0``: a percentile 95% interval of τ over ``B`` resamples of the target's
  rows, drawn with replacement *within each class* (every class keeps its count), every score
  recomputed on each resample (seeded by ``seed``);
- with ``curve_sizes``: every score (and its τ) on seeded, stratified subsamples of those sizes.

Warnings name degenerate regimes: ``N - 1 ≤ D`` for the H-score (pinned at ``K - 1``),
``N ≤ D`` for LogME, SFDA within ``1e-6`` of 1 (saturated), a score constant across the zoo, a
score that failed or is not finite, and every zoo-relative normalisation applied (NCTI's terms,
ETran's combination): those values change when a model is added to or removed from the zoo.
The source-accuracy baseline (``source_accuracies``) is reported beside every score.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import types
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .._validation import as_features, as_index, as_labels_for_rows
from ..errors import (
    DegenerateInputError,
    NumericalError,
    ParameterError,
    ShapeError,
)
from ._common import encode
from ._selection_common import stratified_subsample
from .discriminant_scores import etran_combine
from .ground_truth import GroundTruth
from .ncti import NCTIComponents, ncti, ncti_components
from .ranking import pearson, spearman, weighted_kendall_tau
from .scores import HIGHER_IS_BETTER, cm_accuracy
from .selection import SELECTION_HIGHER_IS_BETTER, selection_scores
from .source_head import leep, nce
from .streaming import TransferabilityStats

__all__ = ["MODEL_REPORT_SCORES", "ModelReport", "ScoreAgreement", "rank_models"]

_BASE = ("hscore", "regularized_hscore", "logme", "gbc", "vci", "probe_mse", "cm_accuracy",
         "ncti", "leep", "nce")
_SELECTION = ("knn_accuracy", "parc", "nleep", "pactran_gauss", "sfda", "etran", "transrate",
              "emms", "ped_logme", "ped_gbc", "rankme", "lidar")
#: The names `rank_models` accepts in ``scores`` (``"etran"`` gives its three terms and
#: their zoo combination; ``"leep"``/``"nce"`` need ``source_probs``).
MODEL_REPORT_SCORES: Tuple[str, ...] = _BASE + _SELECTION
_DIRECTION = {**HIGHER_IS_BETTER, **SELECTION_HIGHER_IS_BETTER, "etran": True,
              "source_accuracy": True}
_SCORE_FAILURES = (NumericalError, DegenerateInputError, np.linalg.LinAlgError)
PathOrArray = Union[str, "os.PathLike[str]", Any]


def _direction(name: str) -> int:
    return 1 if _DIRECTION.get(name, True) else -1


def _load(x: PathOrArray, what: str) -> np.ndarray:
    if isinstance(x, (str, os.PathLike)):
        p = os.fspath(x)
        if not os.path.exists(p):
            raise ParameterError(f"{what} file not found: {p}")
        try:
            return np.asarray(np.load(p, mmap_mode="r"))
        except ValueError as e:
            raise ParameterError(f"{what} file {p} is not a readable .npy file: {e}") from e
    return x


@dataclasses.dataclass(frozen=True)
class ScoreAgreement:
    """One score against the ground truth (``direction`` = +1 when higher is better; the score
    is multiplied by it before ranking). ``tau_low``/``tau_high``: the bootstrap percentile
    interval (NaN without a bootstrap); ``bootstrap_valid``: resamples with a finite τ."""

    score: str
    direction: int
    weighted_tau: float
    pearson: float
    spearman: float
    regret_top1: float
    regret_topk: float
    top1: str
    tau_low: float = math.nan
    tau_high: float = math.nan
    bootstrap_valid: int = 0


def _nan_none(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _nan_none(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_nan_none(x) for x in v]
    return v


def _none_nan(v: Any) -> Any:
    if v is None:
        return math.nan
    if isinstance(v, list):
        return [_none_nan(x) for x in v]
    return v


def _fmt(v: float, spec: str = ".4f") -> str:
    return "—" if not math.isfinite(v) else format(v, spec)


def _better(d: int) -> str:
    return "higher" if d > 0 else "lower"


@dataclasses.dataclass
class ModelReport:
    """The result of [`rank_models`][etfcore.transfer.rank_models] (see the module documentation for
    every field)."""

    target: str
    candidates: List[str]
    num_samples: int
    num_classes: int
    dims: List[int]
    scores: Dict[str, np.ndarray]
    directions: Dict[str, int]
    ground_truth: Optional[np.ndarray]
    agreement: List[ScoreAgreement]
    top_k: int
    bootstrap: int
    bootstrap_taus: Dict[str, np.ndarray]
    curve_sizes: List[int]
    curve_scores: Dict[str, Dict[str, np.ndarray]]  # score -> str(size) -> values
    curve_taus: Dict[str, np.ndarray]  # score -> τ per size
    normalisation: Dict[str, str]
    warnings: List[str]
    seed: int

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> Dict[str, Any]:
        d = {
            "target": self.target,
            "candidates": list(self.candidates),
            "num_samples": self.num_samples,
            "num_classes": self.num_classes,
            "dims": list(self.dims),
            "scores": {k: v.tolist() for k, v in self.scores.items()},
            "directions": dict(self.directions),
            "ground_truth": None if self.ground_truth is None else self.ground_truth.tolist(),
            "agreement": [dataclasses.asdict(a) for a in self.agreement],
            "top_k": self.top_k,
            "bootstrap": self.bootstrap,
            "bootstrap_taus": {k: v.tolist() for k, v in self.bootstrap_taus.items()},
            "curve_sizes": list(self.curve_sizes),
            "curve_scores": {k: {n: v.tolist() for n, v in c.items()}
                             for k, c in self.curve_scores.items()},
            "curve_taus": {k: v.tolist() for k, v in self.curve_taus.items()},
            "normalisation": dict(self.normalisation),
            "warnings": list(self.warnings),
            "seed": self.seed,
        }
        return _nan_none(d)

    def to_json(self) -> str:
        """Strict JSON (a NaN is written as ``null``); `from_json` reads it back."""
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelReport:
        def arr(v):
            return np.asarray(_none_nan(v), dtype=np.float64)

        gt = d.get("ground_truth")
        return cls(
            target=d["target"], candidates=list(d["candidates"]),
            num_samples=int(d["num_samples"]), num_classes=int(d["num_classes"]),
            dims=[int(x) for x in d["dims"]],
            scores={k: arr(v) for k, v in d["scores"].items()},
            directions={k: int(v) for k, v in d["directions"].items()},
            ground_truth=None if gt is None else arr(gt),
            agreement=[ScoreAgreement(**{k: _none_nan(v) for k, v in a.items()})
                       for a in d["agreement"]],
            top_k=int(d["top_k"]), bootstrap=int(d["bootstrap"]),
            bootstrap_taus={k: arr(v) for k, v in d["bootstrap_taus"].items()},
            curve_sizes=[int(x) for x in d["curve_sizes"]],
            curve_scores={k: {n: arr(v) for n, v in c.items()}
                          for k, c in d["curve_scores"].items()},
            curve_taus={k: arr(v) for k, v in d["curve_taus"].items()},
            normalisation=dict(d["normalisation"]), warnings=list(d["warnings"]),
            seed=int(d["seed"]),
        )

    @classmethod
    def from_json(cls, text: str) -> ModelReport:
        return cls.from_dict(json.loads(text))

    def to_csv(self) -> str:
        """One row per score: ``score, better, weighted_tau, tau_low, tau_high, pearson,
        spearman, regret_top1, regret_top<k>, top1``, then the score's value for each
        candidate; a first row ``ground_truth`` holds the accuracies. Empty cell = not
        available."""
        agree = {a.score: a for a in self.agreement}
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        stats = ["weighted_tau", "tau_low", "tau_high", "pearson", "spearman", "regret_top1",
                 f"regret_top{self.top_k}", "top1"]
        w.writerow(["score", "better", *stats, *self.candidates])

        def cell(v: Any) -> str:
            if isinstance(v, str):
                return v
            return "" if not math.isfinite(v) else repr(float(v))

        if self.ground_truth is not None:
            w.writerow(["ground_truth", "higher", *[""] * len(stats),
                        *(cell(v) for v in self.ground_truth)])
        for name, vals in self.scores.items():
            a = agree.get(name)
            row = ([cell(a.weighted_tau), cell(a.tau_low), cell(a.tau_high), cell(a.pearson),
                    cell(a.spearman), cell(a.regret_top1), cell(a.regret_topk), a.top1]
                   if a else [""] * len(stats))
            w.writerow([name, _better(self.directions[name]), *row, *(cell(v) for v in vals)])
        return out.getvalue()

    def curves_csv(self) -> str:
        """The score-vs-N curves in long form: ``score, better, size, candidate, value`` (the
        candidate ``weighted_tau`` holds τ at that size)."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["score", "better", "size", "candidate", "value"])
        for name, per in self.curve_scores.items():
            b = _better(self.directions[name])
            for i, n in enumerate(self.curve_sizes):
                for c, v in zip(self.candidates, per[str(n)]):
                    w.writerow([name, b, n, c, "" if not math.isfinite(v) else repr(float(v))])
                if name in self.curve_taus:
                    t = float(self.curve_taus[name][i])
                    w.writerow([name, b, n, "weighted_tau",
                                "" if not math.isfinite(t) else repr(t)])
        return out.getvalue()

    def to_markdown(self) -> str:
        """Tables of the agreement, the scores, the curves, the normalisations and warnings."""
        lines = [f"# Ranking report: {self.target}", "",
                 f"{len(self.candidates)} candidates, N = {self.num_samples} samples, "
                 f"K = {self.num_classes} classes, feature dims "
                 f"{', '.join(f'{c} {d}' for c, d in zip(self.candidates, self.dims))}; "
                 f"seed {self.seed}, bootstrap B = {self.bootstrap}.", ""]
        k = self.top_k
        if self.agreement:
            lines += ["## Agreement with the ground truth", "",
                      "`better` is the score's direction; regret is in the ground truth's unit "
                      f"(best accuracy minus that of the score's top-1 / best of its top-{k}).",
                      "",
                      f"| score | better | weighted τ | 95% interval | Pearson | Spearman | "
                      f"regret@1 | regret@{k} | top-1 |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for a in self.agreement:
                iv = (f"[{_fmt(a.tau_low, '.3f')}, {_fmt(a.tau_high, '.3f')}]"
                      if self.bootstrap else "—")
                label = f"{a.score} (baseline)" if a.score == "source_accuracy" else a.score
                lines.append(f"| {label} | {_better(a.direction)} | {_fmt(a.weighted_tau)} | "
                             f"{iv} | {_fmt(a.pearson)} | {_fmt(a.spearman)} | "
                             f"{_fmt(a.regret_top1)} | {_fmt(a.regret_topk)} | {a.top1} |")
            lines.append("")
        lines += ["## Scores", "",
                  "| score | better | " + " | ".join(self.candidates) + " |",
                  "|---|---|" + "---|" * len(self.candidates)]
        if self.ground_truth is not None:
            lines.append("| (ground truth) | higher | "
                         + " | ".join(_fmt(v, ".5g") for v in self.ground_truth) + " |")
        for name, vals in self.scores.items():
            lines.append(f"| {name} | {_better(self.directions[name])} | "
                         + " | ".join(_fmt(v, ".5g") for v in vals) + " |")
        lines.append("")
        if self.curve_sizes:
            lines += ["## Score-vs-N curves", ""]
            if self.curve_taus:
                lines += ["Weighted τ on stratified subsamples of each size.", "",
                          "| score | better | " + " | ".join(f"N={n}" for n in self.curve_sizes)
                          + " |", "|---|---|" + "---|" * len(self.curve_sizes)]
                for name, t in self.curve_taus.items():
                    lines.append(f"| {name} | {_better(self.directions[name])} | "
                                 + " | ".join(_fmt(float(v)) for v in t) + " |")
                lines.append("")
            lines += ["Score values per subsample size (`curves_csv()` has them all); top-1 "
                      "candidate at each size:", "",
                      "| score | better | " + " | ".join(f"N={n}" for n in self.curve_sizes)
                      + " |", "|---|---|" + "---|" * len(self.curve_sizes)]
            for name, per in self.curve_scores.items():
                d = self.directions[name]
                tops = []
                for n in self.curve_sizes:
                    v = per[str(n)] * d
                    tops.append(self.candidates[int(np.nanargmax(v))]
                                if np.any(np.isfinite(v)) else "—")
                lines.append(f"| {name} | {_better(d)} | " + " | ".join(tops) + " |")
            lines.append("")
        if self.normalisation:
            lines += ["## Zoo-relative normalisation", ""]
            lines += [f"- `{k}`: {v}" for k, v in self.normalisation.items()]
            lines.append("")
        lines += ["## Warnings", ""]
        lines += [f"- {w}" for w in self.warnings] or ["- none"]
        return "\n".join(lines) + "\n"

    def plot(self, path: Optional[str] = None, scores: Optional[Sequence[str]] = None):
        """A figure: each score against the ground truth (title: τ and its interval) and, with
        curves, τ against the subsample size. Imports matplotlib on call; returns the
        ``Figure`` and writes it to ``path`` when given."""
        from matplotlib.figure import Figure

        names = list(scores) if scores is not None else list(self.scores)
        unknown = [n for n in names if n not in self.scores]
        if unknown:
            raise ParameterError(f"no score {unknown} in this report; it has {list(self.scores)}")
        panels = len(names) + (1 if self.curve_taus else 0)
        cols = min(4, max(1, panels))
        rows = (panels + cols - 1) // cols
        fig = Figure(figsize=(3.2 * cols, 2.8 * rows))
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        agree = {a.score: a for a in self.agreement}
        x = self.ground_truth
        for ax, n in zip(axes, names):
            v = self.scores[n]
            if x is not None:
                ax.scatter(x, v, s=14)
                for c, a, b in zip(self.candidates, x, v):
                    ax.annotate(c, (a, b), fontsize=6)
                ax.set_xlabel("ground truth", fontsize=7)
            else:
                ax.bar(range(len(v)), v)
                ax.set_xticks(range(len(v)), self.candidates, fontsize=6, rotation=45)
            a = agree.get(n)
            title = f"{n} ({_better(self.directions[n])} better)"
            if a is not None:
                title += f"\nτ_w={_fmt(a.weighted_tau, '.3f')}"
                if self.bootstrap:
                    title += f" [{_fmt(a.tau_low, '.2f')}, {_fmt(a.tau_high, '.2f')}]"
            ax.set_title(title, fontsize=7)
            ax.tick_params(labelsize=6)
        if self.curve_taus:
            ax = axes[len(names)]
            for n, t in self.curve_taus.items():
                if n in names:
                    ax.plot(self.curve_sizes, t, marker=".", label=n)
            ax.set_xscale("log")
            ax.set_xlabel("subsample size N", fontsize=7)
            ax.set_ylabel("weighted τ", fontsize=7)
            ax.legend(fontsize=5)
            ax.tick_params(labelsize=6)
        for ax in axes[panels:]:
            ax.axis("off")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


# ---------------------------------------------------------------------- computation
def _regret(values: np.ndarray, acc: np.ndarray, direction: int, k: int) -> Tuple[float, float,
                                                                                  int]:
    if not np.all(np.isfinite(values)):
        return math.nan, math.nan, -1
    order = np.argsort(-direction * values, kind="stable")
    best = float(acc.max())
    return best - float(acc[order[0]]), best - float(acc[order[:k]].max()), int(order[0])


def _safe(f, *a) -> float:
    try:
        return f(*a)
    except ParameterError:
        return math.nan


def _agreement_values(values: np.ndarray, acc: np.ndarray, direction: int) -> Tuple[float, ...]:
    if not np.all(np.isfinite(values)):
        return math.nan, math.nan, math.nan
    s = values * direction
    return (_safe(weighted_kendall_tau, s, acc), _safe(pearson, s, acc), _safe(spearman, s, acc))


class _Scorer:
    """Computes the chosen scores of every candidate on one set of rows."""

    def __init__(self, names: List[str], seed: int, etran_normalise: Optional[str]):
        self.base = [n for n in names if n in _BASE]
        self.selection = [n for n in names if n in _SELECTION]
        self.seed = seed
        self.etran_normalise = etran_normalise

    def _base_scores(self, f, y, probs, i, comps, failures) -> Dict[str, float]:
        """The streaming scores one by one (from one TransferabilityStats), so that one that
        fails (LogME with N ≤ D) leaves the others."""
        out: Dict[str, float] = {}
        h = as_features(f)
        classes, codes = encode(y, h.shape[0])
        xs = TransferabilityStats(classes.size, h.shape[1]).update(h, codes)
        st = xs.collapse_stats
        funcs = {
            "hscore": xs.hscore, "regularized_hscore": xs.regularized_hscore,
            "logme": lambda: float(xs.logme()), "gbc": xs.gbc, "vci": lambda: float(st.vci()),
            "probe_mse": lambda: float(st.probe_mse()), "cm_accuracy": lambda: cm_accuracy(h, y),
            "leep": lambda: leep(probs, y), "nce": lambda: nce(probs, y),
        }
        for name in self.base:
            if name == "ncti":
                try:
                    comps.append(ncti_components(h, y))
                except _SCORE_FAILURES as e:
                    failures.append(f"ncti failed on candidate {i}: {e}")
                    comps.append(None)
                continue
            try:
                out[name] = float(funcs[name]())
            except _SCORE_FAILURES as e:
                failures.append(f"{name} failed on candidate {i}: {e}")
                out[name] = math.nan
        return out

    def __call__(self, feats: List[np.ndarray], y: np.ndarray,
                 probs: Optional[List[np.ndarray]], failures: List[str],
                 progress: Any = None, names: Sequence[str] = ()) -> Dict[str, np.ndarray]:
        """The scores on these rows; ``progress`` (a stage), if given, counts each candidate
        (labelled by ``names``) as its scores are done."""
        per: List[Dict[str, float]] = []
        comps: List[Optional[NCTIComponents]] = []
        for i, f in enumerate(feats):
            vals: Dict[str, float] = {}
            if self.base:
                vals.update(self._base_scores(f, y, None if probs is None else probs[i], i,
                                              comps, failures))
            for name in self.selection:
                try:
                    vals.update(selection_scores(f, y, names=[name], seed=self.seed))
                except _SCORE_FAILURES as e:
                    failures.append(f"{name} failed on candidate {i}: {e}")
                    keys = (["etran_energy", "etran_lda", "etran_svd"] if name == "etran"
                            else [name])
                    vals.update({k: math.nan for k in keys})
            per.append(vals)
            if progress is not None:
                progress.done(names[i] if i < len(names) else f"candidate {i}")
        out = {k: np.array([p[k] for p in per], dtype=np.float64) for k in per[0]}
        if "ncti" in self.base:
            out["ncti"] = (ncti(comps) if all(c is not None for c in comps)
                           else np.full(len(feats), math.nan))
        if "etran" in self.selection:
            e = [out["etran_energy"], out["etran_lda"], out["etran_svd"]]
            if all(np.all(np.isfinite(v)) for v in e):
                zoo = [types.SimpleNamespace(energy=a, lda=b, svd=c) for a, b, c in zip(*e)]
                out["etran"] = etran_combine(zoo, normalise=self.etran_normalise)
            else:
                out["etran"] = np.full(len(feats), math.nan)
        order = [n for n in _ORDER if n in out]
        return {k: out[k] for k in order}


_ORDER = ("hscore", "regularized_hscore", "logme", "gbc", "vci", "probe_mse", "cm_accuracy",
          "ncti", "leep", "nce", "knn_accuracy", "parc", "nleep", "pactran_gauss", "sfda",
          "etran", "etran_energy", "etran_lda", "etran_svd", "transrate", "emms", "ped_logme",
          "ped_gbc", "rankme", "lidar")


def _bootstrap_rows(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    parts = []
    for k in range(int(y.max()) + 1):
        rows = np.flatnonzero(y == k)
        parts.append(rng.choice(rows, size=rows.size, replace=True))
    return np.sort(np.concatenate(parts))


def rank_models(
    features: Union[Mapping[str, PathOrArray], Sequence[PathOrArray]],
    labels: PathOrArray,
    ground_truth: Union[Mapping[str, float], GroundTruth, None] = None,
    *,
    target: Optional[str] = None,
    scores: Optional[Iterable[str]] = None,
    source_accuracies: Optional[Mapping[str, float]] = None,
    source_probs: Optional[Mapping[str, PathOrArray]] = None,
    bootstrap: int = 0,
    curve_sizes: Optional[Sequence[int]] = None,
    top_k: int = 3,
    etran_normalise: Optional[str] = "minmax",
    seed: int = 0,
    progress: Any = None,
) -> ModelReport:
    """Ranks candidate backbones for one target with every score and checks each against the
    ground truth (see the module documentation for what each number is).

    ``features``: ``{name: F}`` or a sequence (names from the file stems, else ``model<i>``),
    each ``F`` an ``N × D_m`` array or the path of a ``.npy`` file, rows aligned with
    ``labels`` (an array or a ``.npy`` path). ``ground_truth``: ``{name: accuracy}`` or a
    [`GroundTruth`][etfcore.transfer.GroundTruth] (``target`` picks its target).
    ``scores``: names from `MODEL_REPORT_SCORES` (default: every one that applies — LEEP
    and NCE only with ``source_probs``). ``source_accuracies``: ``{name: accuracy on the
    pretraining task}``, the baseline row ``source_accuracy``. ``bootstrap``: resamples for τ's
    interval (0: none). ``curve_sizes``: subsample sizes for the score-vs-N curves.
    ``etran_normalise``: ETran's zoo normalisation (``"minmax"``, ``"zscore"`` or ``None``).
    ``seed`` seeds the sample-level scores, the bootstrap and the subsamples.
    ``progress``: an `etfcore._progress.Reporter` (what `etfcore rank` passes) for a line per
    candidate scored, then per bootstrap resample and per curve size (those at most every
    10 s, and the last), each with the elapsed time and an ETA; ``None`` (the default): silent.
    """
    seed = as_index(seed, "seed")
    bootstrap = as_index(bootstrap, "bootstrap")
    top_k = as_index(top_k, "top_k")
    if top_k < 1:
        raise ParameterError("top_k must be at least 1")
    if isinstance(features, Mapping):
        names = [str(k) for k in features]
        raw = list(features.values())
    else:
        raw = list(features)
        names = [os.path.splitext(os.path.basename(os.fspath(f)))[0]
                 if isinstance(f, (str, os.PathLike)) else f"model{i}" for i, f in enumerate(raw)]
    m = len(raw)
    if m < 2:
        raise ParameterError(f"ranking needs at least 2 candidate models, got {m}")
    if len(set(names)) != m:
        raise ParameterError(f"candidate names must be distinct, got {names}")
    feats = [np.asarray(as_features(_load(f, "candidate features"), f"features of {n!r}"))
             for n, f in zip(names, raw)]
    y_raw = as_labels_for_rows(np.asarray(_load(labels, "target labels")), feats[0].shape[0])
    classes, y = encode(y_raw, feats[0].shape[0])
    for n, f in zip(names, feats):
        if f.shape[0] != y.size:
            raise ShapeError(f"candidate {n!r} has {f.shape[0]} rows for {y.size} labels")

    probs = None
    if source_probs is not None:
        missing = [n for n in names if n not in source_probs]
        if missing:
            raise ParameterError(f"source_probs lacks the candidates {missing}")
        probs = [np.asarray(_load(source_probs[n], "source probabilities")) for n in names]

    if scores is None:
        chosen = [n for n in MODEL_REPORT_SCORES if probs is not None or n not in ("leep", "nce")]
    else:
        chosen = list(dict.fromkeys(str(s) for s in scores))
        unknown = sorted(set(chosen) - set(MODEL_REPORT_SCORES))
        if unknown:
            raise ParameterError(f"unknown scores {unknown}; known: {list(MODEL_REPORT_SCORES)}")
        if not chosen:
            raise ParameterError(f"no score chosen; known: {list(MODEL_REPORT_SCORES)}")
        if probs is None and {"leep", "nce"} & set(chosen):
            raise ParameterError("leep and nce need source_probs (the source head's "
                                 "probabilities on the target samples)")

    acc = None
    if ground_truth is not None:
        if isinstance(ground_truth, GroundTruth):
            vals = ground_truth.accuracies(names, target)
            target = target or ground_truth.targets()[0]
        else:
            missing = [n for n in names if n not in ground_truth]
            if missing:
                raise ParameterError(f"the ground truth lacks the candidates {missing}")
            vals = [ground_truth[n] for n in names]
        acc = np.asarray(vals, dtype=np.float64)
        if not np.all(np.isfinite(acc)):
            raise ParameterError("ground-truth accuracies must be finite")
    src = None
    if source_accuracies is not None:
        missing = [n for n in names if n not in source_accuracies]
        if missing:
            raise ParameterError(f"source_accuracies lacks the candidates {missing}")
        src = np.asarray([source_accuracies[n] for n in names], dtype=np.float64)
        if not np.all(np.isfinite(src)):
            raise ParameterError("source accuracies must be finite")
    k_top = min(top_k, m)

    scorer = _Scorer(chosen, seed, etran_normalise)
    failures: List[str] = []
    values = scorer(feats, y, probs, failures,
                    progress=None if progress is None else progress.stage("scores", m),
                    names=names)
    if src is not None:
        values = {"source_accuracy": src, **values}
    directions = {k: _direction(k) for k in values}

    warnings: List[str] = list(dict.fromkeys(failures))
    n, kcls = y.size, classes.size
    for name, dcond, msg in (
        ("hscore", lambda d: n - 1 <= d,
         "N - 1 ≤ D: Σ_T is singular and the H-score is pinned at K - 1 = {km1}"),
        ("logme", lambda d: n <= d,
         "N ≤ D: F fits the one-hot targets exactly and LogME's evidence is unbounded"),
    ):
        if name in values:
            bad = [c for c, f in zip(names, feats) if dcond(f.shape[1])]
            if bad:
                warnings.append(f"{name}: {msg.format(km1=kcls - 1)} (N = {n}) for {bad}")
    if "sfda" in values:
        sat = [c for c, v in zip(names, values["sfda"]) if v >= 1.0 - 1e-6]
        if sat:
            warnings.append(f"sfda: saturated at 1.0 (few samples per dimension) for {sat}; "
                            "it no longer ranks them")
    for name, v in values.items():
        if not np.all(np.isfinite(v)):
            warnings.append(f"{name}: not finite for "
                            f"{[c for c, x in zip(names, v) if not math.isfinite(x)]}")
        elif np.ptp(v) <= 1e-12 * max(1.0, float(np.abs(v).max())):
            warnings.append(f"{name}: constant across the zoo ({v[0]:.6g}); its τ is undefined")
    normalisation: Dict[str, str] = {}
    if "ncti" in values:
        normalisation["ncti"] = ("minmax of each term (seli, ncc, vc) across the zoo, "
                                 "combined seli + ncc - vc")
    if "etran" in values:
        normalisation["etran"] = (f"{etran_normalise} of each term across the zoo "
                                  "(normalise_scores), combined 0.15·energy + 0.85·lda")
    for k, how in normalisation.items():
        warnings.append(f"{k}: zoo-relative normalisation applied ({how.split(' of')[0]}); "
                        "its values change when a model is added or removed")
    if acc is not None and np.ptp(acc) == 0:
        warnings.append("the ground truth is constant across the zoo: no ranking to agree with")

    boot: Dict[str, List[float]] = {k: [] for k in values}
    if bootstrap and acc is not None:
        rng = np.random.default_rng([seed, 1])
        stage = None if progress is None else progress.stage("bootstrap", bootstrap, every=10.0)
        for b in range(bootstrap):
            rows = _bootstrap_rows(y, rng)
            bf: List[str] = []
            bv = scorer([f[rows] for f in feats], y[rows],
                        None if probs is None else [p[rows] for p in probs], bf)
            if src is not None:
                bv["source_accuracy"] = src
            for k in values:
                boot[k].append(_agreement_values(bv[k], acc, directions[k])[0])
            if stage is not None:
                stage.done(f"resample {b + 1}")
    elif bootstrap:
        warnings.append("bootstrap skipped: it needs a ground truth")
        bootstrap = 0

    sizes: List[int] = []
    curve_scores: Dict[str, Dict[str, np.ndarray]] = {k: {} for k in values}
    curve_taus: Dict[str, List[float]] = {k: [] for k in values} if acc is not None else {}
    curve_stage = None if progress is None or not curve_sizes else progress.stage(
        "curve", len(curve_sizes), every=10.0)
    for size in curve_sizes or ():
        size = as_index(size, "curve size")
        rows = stratified_subsample(y, size, seed)
        sizes.append(size)
        cf: List[str] = []
        cv = scorer([f[rows] for f in feats], y[rows],
                    None if probs is None else [p[rows] for p in probs], cf)
        if src is not None:
            cv["source_accuracy"] = src
        for k in values:
            curve_scores[k][str(size)] = cv[k]
            if acc is not None:
                curve_taus[k].append(_agreement_values(cv[k], acc, directions[k])[0])
        if curve_stage is not None:
            curve_stage.done(f"N={size}")
    if not sizes:
        curve_scores = {}

    agreement: List[ScoreAgreement] = []
    boot_arrays: Dict[str, np.ndarray] = {}
    if acc is not None:
        for k, v in values.items():
            tau, pr, sp = _agreement_values(v, acc, directions[k])
            r1, rk, top = _regret(v, acc, directions[k], k_top)
            lo = hi = math.nan
            valid = 0
            if bootstrap:
                b = np.asarray(boot[k], dtype=np.float64)
                boot_arrays[k] = b
                fin = b[np.isfinite(b)]
                valid = int(fin.size)
                if valid:
                    lo, hi = (float(q) for q in np.percentile(fin, [2.5, 97.5]))
            agreement.append(ScoreAgreement(k, directions[k], tau, pr, sp, r1, rk,
                                            names[top] if top >= 0 else "", lo, hi, valid))
    return ModelReport(
        target=target or "target", candidates=names, num_samples=int(n), num_classes=int(kcls),
        dims=[int(f.shape[1]) for f in feats], scores=values, directions=directions,
        ground_truth=acc, agreement=agreement, top_k=k_top, bootstrap=bootstrap,
        bootstrap_taus=boot_arrays, curve_sizes=sizes, curve_scores=curve_scores,
        curve_taus={k: np.asarray(v, dtype=np.float64) for k, v in curve_taus.items()}
        if sizes else {},
        normalisation=normalisation, warnings=warnings, seed=seed,
    )
