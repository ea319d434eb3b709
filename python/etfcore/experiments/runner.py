"""Runs experiments: seeds (in parallel processes when asked), the per-seed cache, the figure, the
printed table and verdict, and the Markdown report.

Layout under `options.out_dir` (default `out/reproduce`):

- `runs/<hash>/` — one training run per distinct config (shared by every experiment that trains
  the same config), with `history.json`; fine-tuning scores and extracted features of that run
  live beside it (`finetune/<hash>.json`, `features/<hash>/`);
- `<experiment>/<hash>/seed_<s>.json` — one seed's measurements, keyed by the experiment's name,
  version and settings: a re-run with the same settings only redraws;
- `<experiment>/report.md` and `figures/<experiment>.png`; `report.md` for `all`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import logging
import math
import os
import pkgutil
import shutil
import sys
import tempfile
import time
import warnings
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .._io import save_with, write_text
from ..errors import ParameterError
from ..transfer.features import load_npy
from .base import PAPERS, REGISTRY, Experiment, Outcome, RunOptions

_FRAMEWORK = {"base", "runner", "cli"}
RUNS_VERSION = 2
"""Part of every cached run's key, with etfcore's version: bump it when training or what a run
records changes without a config change, so no stale run is reused."""
# Config keys that change where or how visibly a run happens, not what it computes.
_NOT_IN_KEY = ("progress", "name", "num_workers", "data_root", "download")


def load_experiments() -> Dict[str, Experiment]:
    """Import every experiment module of this package (each registers its experiments).

    Returns
    -------
    dict
        The registry (`REGISTRY` of `etfcore.experiments.base`): name → experiment, ordered
        by paper then name.
    """
    package = sys.modules[__package__]
    for mod in pkgutil.iter_modules(package.__path__):
        if mod.name not in _FRAMEWORK and not mod.name.startswith("_"):
            importlib.import_module(f"{__package__}.{mod.name}")
    order = list(PAPERS)
    return dict(
        sorted(REGISTRY.items(), key=lambda kv: (order.index(kv[1].paper), kv[0]))
    )


def get_experiment(name: str) -> Experiment:
    """The registered experiment `name`.

    Raises
    ------
    ParameterError
        For an unknown name, listing the known ones.
    """
    experiments = load_experiments()
    if name not in experiments:
        raise ParameterError(
            f"unknown experiment {name!r}; see `etfcore reproduce --list` "
            f"(known: {', '.join(experiments)})"
        )
    return experiments[name]


def digest(obj: Any) -> str:
    """First 16 hex digits of the SHA-256 of `obj` as canonical JSON.

    Examples
    --------
    >>> digest({"b": 1, "a": [1, 2]}) == digest({"a": [1, 2], "b": 1})
    True
    """
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _json_clean(v: Any) -> Any:
    """numpy scalars/arrays to Python; NaN/inf to `None` (JSON has neither)."""
    if isinstance(v, Mapping):
        return {str(k): _json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return _json_clean(v.tolist())
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _write_json(path: str, obj: Any) -> None:
    """Atomic and durable (`etfcore._io.write_text`: a temporary file in the destination
    folder, fsync, rename): a reader never sees half a file, two writers leave one whole file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_text(path, json.dumps(_json_clean(obj), indent=1))


def _read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def _cached_json(path: str) -> Any:
    """A cache entry, or `None` when it is missing or damaged (a damaged entry — a truncated
    or edited file — is recomputed, with a warning, instead of stopping the run)."""
    if not os.path.isfile(path):
        return None
    try:
        return _read_json(path)
    except (OSError, ValueError) as e:
        warnings.warn(f"ignoring a damaged cache entry {path} ({e}); recomputing", stacklevel=2)
        return None


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's info messages off (restored afterwards)."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@dataclasses.dataclass
class TrainedRun:
    """A cached training run, as [`Context.train`][etfcore.experiments.runner.Context.train]
    returns it.

    Experiments read the trained network through
    [`module`][etfcore.experiments.runner.TrainedRun.module],
    [`head`][etfcore.experiments.runner.TrainedRun.head],
    [`head_weights`][etfcore.experiments.runner.TrainedRun.head_weights] and
    [`head_features`][etfcore.experiments.runner.TrainedRun.head_features], never through
    checkpoint keys.

    Parameters
    ----------
    run_dir
        A `Trainer` run directory with checkpoints.
    config
        The resolved [`TrainConfig`][etfcore.training.config.TrainConfig].
    history
        The per-epoch rows (`metrics.jsonl`).
    """

    run_dir: str
    config: Any  # TrainConfig
    history: List[Dict[str, Any]]
    _module: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def final(self) -> Dict[str, Any]:
        """The last epoch's row (test accuracy, collapse metrics, ...)."""
        return self.history[-1]

    def state_dict(self) -> Dict[str, Any]:
        """The trained module's state (backbone and head) from the run's last checkpoint
        (read with `etfcore.training.checkpoints.read_checkpoint`)."""
        from ..training.checkpoints import read_checkpoint

        return read_checkpoint(self.run_dir)["state_dict"]

    def module(self):
        """The trained [`ClassifierModule`][etfcore.training.module.ClassifierModule] (eval mode,
        CPU), rebuilt once per [`TrainedRun`][etfcore.experiments.runner.TrainedRun] (with
        `etfcore.training.checkpoints.load_module`)."""
        if self._module is None:
            from ..training.checkpoints import load_module

            self._module = load_module(self.run_dir, self.config)
        return self._module

    def head(self):
        """The trained head (eval mode): `head.features(h)` is what it classifies (after the
        projector, BatchNorm, L2 normalisation when the run had them), `head.classify(u)` its
        logits, `head.weight` its `K × p` classifier."""
        return self.module().head

    def head_weights(self) -> np.ndarray:
        """The head's `K × p` classifier weights (float64): a learnable head's trained `W`, a
        fixed ETF's frame (with its per-class lengths when it has them)."""
        import torch

        with torch.no_grad():
            return self.head().weight.detach().double().cpu().numpy()

    def head_features(self, features: np.ndarray) -> np.ndarray:
        """What the head classifies, `head.features(h)`, for backbone features.

        Parameters
        ----------
        features
            Backbone features `(N, p)`.

        Returns
        -------
        numpy.ndarray
            `(N, p)` float64; `features` itself for a head without projector, BatchNorm or
            normalisation.
        """
        import torch

        with torch.no_grad():
            h = torch.from_numpy(np.array(features, dtype=np.float32))  # a writable copy
            return self.head().features(h).double().numpy()

    def load(self):
        """`(backbone, config)` of the run
        ([`load_pretrained`][etfcore.training.trainer.load_pretrained])."""
        from ..training import load_pretrained

        return load_pretrained(self.run_dir)


class Context:
    """What one seed of an experiment gets: configs with the run options filled in, and cached
    training, fine-tuning, feature extraction and linear probes (all through the public API).

    Parameters
    ----------
    options
        How the runs go; `options.out_dir` holds the cache.
    """

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.root = os.path.abspath(options.out_dir)

    @property
    def quick(self) -> bool:
        return self.options.quick

    def config(self, base: Any = None, **changes: Any):
        """A [`TrainConfig`][etfcore.training.config.TrainConfig] with the run's accelerator and
        progress setting.

        Parameters
        ----------
        base
            A config, a mapping or `None`; from a mapping without `etf_seed`, the frame is drawn
            from the run's `seed`.
        **changes
            Keys changed on top of `base`.
        """
        from ..training import TrainConfig

        mapping = not hasattr(base, "to_dict")
        d = dict(base.to_dict() if not mapping else (base or {}))
        d.update(changes)
        if mapping and "etf_seed" not in d:  # the seed reaches the frame too
            d["etf_seed"] = d.get("seed", 0)
        d.setdefault("accelerator", self.options.accelerator)
        d.setdefault("progress", self.options.progress)
        return TrainConfig.from_dict(d)

    def _key(self, config) -> str:
        from .. import __version__

        d = {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_KEY}
        return digest({"_version": [RUNS_VERSION, __version__], **d})

    def train(self, config: Any) -> TrainedRun:
        """Train `config` once: a second call with the same config, from any experiment,
        returns the cached run.

        Parameters
        ----------
        config
            A config or mapping, as [`config`][etfcore.experiments.runner.Context.config] takes
            it.
        """
        from ..training import Trainer

        cfg = self.config(config)
        run_dir = os.path.join(self.root, "runs", self._key(cfg))
        hist_path = os.path.join(run_dir, "history.json")
        cached = _cached_json(hist_path) if self.options.cache else None
        if cached is not None:
            return TrainedRun(run_dir, cfg, cached)
        os.makedirs(os.path.join(self.root, "runs"), exist_ok=True)
        with tempfile.TemporaryDirectory(dir=os.path.join(self.root, "runs")) as tmp:
            with quiet_lightning():
                trainer = Trainer(cfg, tmp, enable_model_summary=False)
                history = trainer.fit()
            _write_json(os.path.join(trainer.run_dir, "history.json"), history)
            if os.path.isdir(run_dir):  # another process finished it meanwhile, or --no-cache
                shutil.rmtree(run_dir, ignore_errors=True)
            os.replace(trainer.run_dir, run_dir)
        return TrainedRun(run_dir, cfg, _read_json(hist_path))

    def _target(self, run: TrainedRun, target: Any):
        from ..training.finetune import target_config

        t = target.to_dict() if hasattr(target, "to_dict") else dict(target or {})
        t.setdefault("accelerator", self.options.accelerator)
        t.setdefault("progress", self.options.progress)
        return target_config(run.config, t)

    def finetune(
        self,
        run: TrainedRun,
        target: Any = None,
        *,
        head: Optional[str] = None,
        head_only: Optional[bool] = None,
        train: bool = True,
    ) -> Dict[str, Any]:
        """[`finetune`][etfcore.training.finetune.finetune] `run`'s backbone on `target`
        (cached).

        Parameters
        ----------
        run
            The pretrained run.
        target
            Config keys the target changes, e.g. `{"classes": [5, 6, 7, 8, 9]}`.
        head
            The new head, as `finetune` takes it.
        head_only
            Train the head only.
        train
            `False` only evaluates the new head.

        Returns
        -------
        dict
            The scores (`test_acc` etc.) with `history` (per-epoch rows; empty when
            `train=False`).
        """
        from ..training import finetune

        cfg = self._target(run, target)
        key = digest([self._key(cfg), head, head_only, train])
        path = os.path.join(run.run_dir, "finetune", f"{key}.json")
        cached = _cached_json(path) if self.options.cache else None
        if cached is not None:
            return cached
        with quiet_lightning():
            r = finetune(
                run.run_dir, cfg, head=head, head_only=head_only, train=train,
                enable_model_summary=False,
            )  # fmt: skip
        out = {**r.scores, "history": r.history}
        _write_json(path, out)
        return _json_clean(out)

    def features(
        self, run: TrainedRun, target: Any = None, splits: Sequence[str] = ("train", "test")
    ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
        """Penultimate features of `run`'s backbone on `target`'s data, extracted once
        ([`extract_run_features`][etfcore.training.extract.extract_run_features]).

        Parameters
        ----------
        run
            The pretrained run.
        target
            Config keys the target changes.
        splits
            The splits returned.

        Returns
        -------
        dict
            `{split: (features (N, p) float32, labels (N,))}`.

        Raises
        ------
        ParameterError
            When the target has no such split.
        """
        from ..training.extract import extract_run_features

        cfg = self._target(run, target)
        out_dir = os.path.join(run.run_dir, "features", self._key(cfg))
        done = os.path.join(out_dir, "done.json")
        if not (self.options.cache and os.path.isfile(done)):
            extract_run_features(run.run_dir, cfg, out_dir=out_dir, splits=("train", "val", "test"))
            _write_json(done, {"splits": ["train", "val", "test"]})
        out = {}
        for s in splits:
            f = os.path.join(out_dir, f"{s}_features.npy")
            if not os.path.isfile(f):
                raise ParameterError(f"run {run.run_dir} has no {s!r} split for this target")
            out[s] = (load_npy(f), load_npy(os.path.join(out_dir, f"{s}_labels.npy")))
        return out

    def probe(self, run: TrainedRun, target: Any = None, *, seed: int = 0, **kw: Any):
        """Linear probe ([`linear_probe`][etfcore.transfer.probe.linear_probe]) of `run`'s
        frozen features on `target`: trained on the target's training split, tested on its test
        split.

        Parameters
        ----------
        run
            The pretrained run.
        target
            Config keys the target changes.
        seed
            The probe's seed.
        **kw
            Passed to `linear_probe` (e.g. a coarser `grid` in quick runs).

        Returns
        -------
        ProbeResult
            The [`ProbeResult`][etfcore.transfer.probe.ProbeResult].
        """
        from ..transfer import linear_probe

        f = self.features(run, target)
        (xtr, ytr), (xte, yte) = f["train"], f["test"]
        return linear_probe(xtr, ytr, xte, yte, seed=seed, device="cpu", **kw)


@dataclasses.dataclass
class Report:
    """One experiment's outcome with everything needed to print it or write it down.

    Parameters
    ----------
    experiment
        The experiment.
    settings
        Its settings.
    seeds
        The seeds run.
    results
        One measurement mapping per seed.
    outcome
        The verdict, effects, table and notes.
    seconds
        The wall time from its first seed (started or read) to its summary; experiments that
        share a pool of workers overlap, so these do not add up to a command's time.
    computed_seconds
        The time spent computing seeds (not read from the cache).
    figure
        The figure's path, or `None`.
    form
        The scale form run.
    recorded_seconds
        Every seed's CPU time as recorded when it was computed (in this run or, for a seed
        read from the cache, in the run that computed it), summed over seeds: what the
        results cost, whether or not this run recomputed them.
    unrecorded_seeds
        Seeds read from cache entries written before CPU time was recorded: not counted in
        `recorded_seconds`.
    """

    experiment: Experiment
    settings: Dict[str, Any]
    seeds: Tuple[int, ...]
    results: List[Dict[str, Any]]
    outcome: Outcome
    seconds: float
    computed_seconds: float
    figure: Optional[str]
    form: str = ""
    recorded_seconds: float = 0.0
    unrecorded_seeds: int = 0

    def text(self) -> str:
        e, o = self.experiment, self.outcome
        lines = [
            f"{e.name} — {e.citation}",
            f"claim: {e.claim}",
            f"paper: {e.paper_result}",
            "",
            o.table.text(),
            "",
            *[f"  {x.describe()}" for x in o.effects],
            f"verdict: {o.verdict.value}",  # type: ignore[union-attr]
        ]
        lines += [f"  note: {n}" for n in o.notes]
        if self.figure:
            lines.append(f"figure: {self.figure}")
        lines.append(
            f"({len(self.seeds)} seeds; {self.seconds:.0f} s wall; seeds not in the cache took "
            f"{self.computed_seconds:.0f} s, summed over parallel jobs; all seeds "
            f"{self.recorded_seconds:.0f} CPU-s as recorded when computed{self._unrecorded()})"
        )
        return "\n".join(lines)

    def _unrecorded(self) -> str:
        k = self.unrecorded_seeds
        return (f" (not counting {k} seed{'s' * (k > 1)} computed before CPU time was recorded)"
                if k else "")  # fmt: skip

    def markdown(self, figure_href: Optional[str] = None) -> str:
        e, o = self.experiment, self.outcome
        lines = [
            f"### `{e.name}`",
            "",
            f"*{e.citation}.* **Claim:** {e.claim}",
            "",
            f"**In the paper:** {e.paper_result}",
            "",
            o.table.markdown(),
            "",
        ]
        if self.figure:
            lines += [f"![{e.name}]({figure_href or self.figure})", ""]
        lines.append(f"**Verdict: {o.verdict.value}.**")  # type: ignore[union-attr]
        lines += ["", *[f"- {x.describe()}" for x in o.effects]]
        if o.notes:
            lines += ["", *[f"- {n}" for n in o.notes]]
        seeds = ", ".join(str(s) for s in self.seeds)
        lines += [
            "",
            f"<small>Form {self.form or '?'}; seeds {seeds}; settings "
            f"`{json.dumps(self.settings, sort_keys=True)}`; {self.recorded_seconds:.0f} CPU-s "
            f"of computing, summed over seeds as recorded when each was computed"
            f"{self._unrecorded()}.</small>",
            "",
        ]
        return "\n".join(lines)


def _seed_path(options: RunOptions, exp: Experiment, settings: Mapping[str, Any], seed: int):
    key = digest([exp.name, exp.version, settings])
    return os.path.join(os.path.abspath(options.out_dir), exp.name, key, f"seed_{seed}.json")


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One intra-op thread on CPU (small models: more only add overhead; parallelism comes from
    seeds in processes), restored afterwards."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _experiment_of(where: Tuple[str, str]) -> Experiment:
    """The experiment class at `(module, qualname)`, imported (a worker process has only the
    names)."""
    obj: Any = importlib.import_module(where[0])
    for part in where[1].split("."):
        obj = getattr(obj, part)
    return obj()


def _run_one_seed(
    exp: Any, options: RunOptions, settings: Dict[str, Any], seed: int
) -> Tuple[Dict[str, Any], float, float]:
    """One seed, in this process or a worker (`exp` is then its `(module, qualname)`):
    computes, caches and returns its measurements, its wall and its CPU seconds."""
    if isinstance(exp, tuple):
        exp = _experiment_of(exp)
    t0, c0 = time.perf_counter(), time.process_time()
    with _one_thread():
        result = _json_clean(exp.run_seed(Context(options), settings, seed))
    # CPU time of this process (not of data-loader worker processes, nor GPU time)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    _write_json(
        _seed_path(options, exp, settings, seed),
        {"experiment": exp.name, "version": exp.version, "settings": settings, "seed": seed,
         "seconds": seconds, "cpu_seconds": cpu_seconds, "result": result},
    )  # fmt: skip
    return result, seconds, cpu_seconds


def _run_one_seed_in_worker(
    where: Tuple[str, str], options: RunOptions, settings: Dict[str, Any], seed: int
) -> Tuple[Dict[str, Any], float, float, List[Any]]:
    """`_run_one_seed` in a worker process, with
    the warnings it raised recorded (not printed there) for the parent to raise again."""
    from .._progress import record_warnings

    with record_warnings() as recorded:
        result, seconds, cpu_seconds = _run_one_seed(where, options, settings, seed)
    return result, seconds, cpu_seconds, recorded


def _cached_entry(path: str) -> Optional[Tuple[Dict[str, Any], Optional[float]]]:
    """A cached seed's results and the CPU seconds it took when it was computed (`None` in
    entries written before CPU time was recorded: their wall time depended on what else ran),
    or `None` (absent or damaged: it is recomputed)."""
    cached = _cached_json(path)
    if not (isinstance(cached, dict) and "result" in cached):
        return None
    v = cached.get("cpu_seconds")
    ok = isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
    return cached["result"], float(v) if ok else None


def seeds_in_cache(exp: Experiment, options: RunOptions) -> List[int]:
    """The seeds of ``options`` whose results ``exp`` has in the cache (none with
    ``options.cache`` off): what a run will read instead of computing.

    Parameters
    ----------
    exp : Experiment
        The experiment.
    options : RunOptions
        The run's options (seeds, output directory, cache).

    Returns
    -------
    list of int
        Seeds with a cache entry (checked for presence only; a damaged entry is recomputed).
    """
    if not options.cache:
        return []
    settings = _json_clean(exp.settings(options))
    return [s for s in options.seeds if os.path.isfile(_seed_path(options, exp, settings, s))]


def _compute_seeds(
    exp: Experiment, options: RunOptions, settings: Dict[str, Any], progress: Any = None
) -> Tuple[Dict[int, Dict[str, Any]], float, float, int]:
    """Every seed's results (from the cache or computed in this process; worker processes are
    `etfcore.experiments.run_experiments`'), the wall seconds spent computing here, and every
    seed's CPU seconds
    as recorded when it was computed (cached ones included), and the number of cached seeds
    without a recorded CPU time; one ``progress.done`` per seed."""
    results: Dict[int, Dict[str, Any]] = {}
    recorded, unrecorded = 0.0, 0
    n = len(options.seeds)

    def report(seed: int, seconds: float = 0.0, cached: bool = False) -> None:
        if progress is not None:
            label = f"{exp.name} seed {seed} ({len(results)}/{n})"
            progress.done(label, seconds=seconds, cached=cached)

    todo = []
    for seed in options.seeds:
        cached = _cached_entry(_seed_path(options, exp, settings, seed)) if options.cache else None
        if cached is not None:
            results[seed], cpu = cached
            if cpu is None:
                unrecorded += 1
            else:
                recorded += cpu
            report(seed, cached=True)
        else:
            todo.append(seed)
    computed = 0.0
    for seed in todo:
        results[seed], s, cpu = _run_one_seed(exp, options, settings, seed)
        computed += s
        recorded += cpu
        report(seed, s)
    return results, computed, recorded, unrecorded


def _draw(exp: Experiment, settings, results, path: str) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the training extra
        return None
    fig = plt.figure(figsize=(10, 3.4))
    try:
        if not exp.plot(settings, results, fig):
            return None
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fig.tight_layout()
        save_with(path, lambda f: fig.savefig(f, format="png", dpi=100))
        return path
    finally:
        plt.close(fig)


def finish_experiment(
    exp: Experiment, options: RunOptions, settings: Dict[str, Any],
    by_seed: Mapping[int, Dict[str, Any]], computed: float, recorded: float, t0: float,
    unrecorded: int = 0,
) -> Report:  # fmt: skip
    """Summarise an experiment whose every seed is in `by_seed`, draw its figure and write
    `<out>/<name>/report.md` (`t0`: the `time.perf_counter()` at which it started)."""
    results = [by_seed[s] for s in options.seeds]
    outcome = exp.summarise(settings, results)
    root = os.path.abspath(options.out_dir)
    figure = _draw(exp, settings, results, os.path.join(root, "figures", f"{exp.name}.png"))
    report = Report(
        exp, settings, tuple(options.seeds), results, outcome, time.perf_counter() - t0,
        computed, figure, options.form, recorded, unrecorded,
    )  # fmt: skip
    os.makedirs(os.path.join(root, exp.name), exist_ok=True)
    write_text(
        os.path.join(root, exp.name, "report.md"),
        report.markdown(figure_href=f"../figures/{exp.name}.png"),
    )
    return report


def summary_table(reports: Sequence[Report]) -> str:
    """Markdown: one row per experiment with its form and seeds, claim, verdict and main
    effect."""
    lines = [
        "| experiment | form (seeds) | claim | verdict | main effect (detectable ≥) |",
        "|---|---|---|---|---|",
    ]
    for r in reports:
        eff = r.outcome.effects[0]
        sc, u = eff.scale, eff.unit
        main = (f"{eff.name}: {eff.mean * sc:+.3g} ± {eff.std * sc:.2g}{u} "
                f"(≥ {eff.mde * sc:.2g}{u})")
        claim = r.experiment.claim.replace("|", "\\|")
        verdict = r.outcome.verdict.value  # type: ignore[union-attr]
        form = f"{r.form or '?'} ({len(r.seeds)})"
        lines.append(f"| `{r.experiment.name}` | {form} | {claim} | {verdict} | {main} |")
    return "\n".join(lines)


INTRO = """\
Each experiment below tests one central claim of a paper etfcore implements, on data that needs
no download, at a scale two CPU cores run in minutes to hours. Each seed measures a signed
*effect* in the direction the paper claims (positive = as the paper says), paired by seed; its
**95% interval** is `m ± t·s/√n` (mean `m`, sample standard deviation `s`, `n` seeds, Student's
`t_{0.975, n−1}`), and each effect fixes in advance the smallest effect `δ` that counts as
relevant. **holds**: the interval lies above 0 and `m ≥ δ`; **partly holds**: above 0 but
`m < δ`, or a claim with several effects of which the resolved ones disagree; **does not hold at
this scale**: the interval excludes every relevant effect (its upper end is below `δ`);
**inconclusive**: the interval contains both 0 and `δ` — the data cannot tell. Equivalence claims
("comparable", "keeps the accuracy") test the paired difference against a margin `±Δ` with two
one-sided tests (TOST): they hold when the 95% interval lies inside `(−Δ, Δ)`. An effect shown
without "relevant ≥" has `δ = 0` (any positive effect counts; it does not hold when the interval
lies at or below 0). A claim measured by several effects holds when all hold and does not hold
when every resolved one does not; inconclusive effects beside resolved ones leave the verdict to
the resolved ones (so a "does not hold" row may show an inconclusive main effect: see its other
effects); any other mix partly holds. Next to each
verdict, *detectable ≥ x* is the design's power: the smallest true effect it would find in 80% of
repetitions, `(t_{0.975, n−1} + t_{0.80, n−1})·s/√n` (for an equivalence, the smallest margin
it could establish, with `t_{0.90}`). A claim that does not reproduce here may still hold at the
papers' scale (ResNets on ImageNet or CIFAR for hundreds of epochs): the verdicts are about what
these runs show, and each experiment's notes say what was tried. Re-running a command reuses the
cached runs and only redraws."""


FORMS_TEXT = """\
**Scale forms.** `--form quick` (`--quick`): each experiment's CPU-minutes form, 3 seeds, aimed
at about 30 min for all of them on two idle CPU cores. Measured (7 Dec 2026, from an empty
cache, nothing else running): `etfcore reproduce all --quick --jobs 2` took 23.1 min of wall
time and 42.3 CPU-min (the seeds' recorded CPU time). One pool of workers serves all the
experiments: seed `s` of an experiment starts once seed `s` of the one before is done, so runs
they share are trained once and both cores stay busy (with a pool per experiment, each
experiment's third seed ran alone: 32.4 min the day before).
`--form cpu` (the default): larger data and longer runs, 5 seeds (e.g. MNIST-1D with 50 000
training signals and a 1-D CNN for Yang et al., a class-count sweep up to K = 100 for the hinge
loss). Measured (Dec 2026, two idle cores): 241 CPU-min for its 70 seeds, about 2 h 8 min of
wall time with two or three jobs (its first design, with a 100-epoch zoo, fine-tuning on every
target and every long-tail ablation at two ρ, would have taken five hours or more).
`--form gpu --data cifar10|cifar100`: the papers' networks where an experiment has them —
ResNet-32 for `002-*` (200 epochs at every ρ, 5 ρ × 3 methods × 2 mixup settings + ablations) and
`004-*` (200 epochs; `004-coarse-to-fine` needs `cifar100`), ResNet-18 for
`001-weights-align-means`; the other experiments stay on their embedded data. They need the
CIFAR python archives unpacked under `./data` (`cifar-10-batches-py`, `cifar-100-python`) and,
as an estimate from ResNet-32's cost (≈ 10 s per CIFAR epoch on one modern GPU, less on the
long-tail subsets), some 15–25 GPU-hours per seed for `002-long-tail-dr`, 2–3 for
`004-long-tail-minor`, about 3 for `004-coarse-to-fine` (5 runs × 200 epochs on CIFAR-100),
40–60 for `004-nc1-vs-tau`'s sweep of 7 variants × 11 τ⁺ values, about 0.5 for
`001-weights-align-means` (one ResNet-18, 100 epochs), and nothing beyond `002-long-tail-dr` for
`002-imbalanced-collapse`, whose four runs are among its runs (trained once through the cache) —
not measured here (no GPU run has been made). Nothing is downloaded: the archives must be
there. Every form is tested to build valid training configs (`tests/test_experiments_forms.py`)."""


def machine_description() -> str:
    """`"2 CPU cores (x86_64, Linux), Python 3.12, torch 2.x"`: where a report was made."""
    import platform

    try:
        import torch

        tv = f", torch {torch.__version__.split('+')[0]}"
        if torch.cuda.is_available():
            tv += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:  # pragma: no cover - the runner needs torch anyway
        tv = ""
    return (f"{os.cpu_count()} CPU cores ({platform.machine()}, {platform.system()}), "
            f"Python {platform.python_version()}{tv}")


def made_by(
    reports: Sequence[Report], command: str, machine: str, wall_seconds: Optional[float] = None
) -> str:
    """The report's provenance sentence: command, form(s), machine, the seeds' computing time
    as recorded when each was computed, and the command's wall time (`wall_seconds`; by
    default the experiments' own times, summed, which is right when they ran one by one)."""
    forms = sorted({r.form for r in reports if r.form})
    form = f" (form{'s' if len(forms) > 1 else ''}: {', '.join(forms)})" if forms else ""
    recorded = sum(r.recorded_seconds for r in reports)
    unrecorded = sum(r.unrecorded_seeds for r in reports)
    wall = sum(r.seconds for r in reports) if wall_seconds is None else wall_seconds
    computed = sum(r.computed_seconds for r in reports)
    this_run = (
        f"this command took {wall / 60:.1f} min of wall time"
        + (" (every seed read from the cache)" if computed == 0 and recorded > 0 else "")
    )
    return (
        f"Made by `{command}`{form} on {machine}. Its seeds took {recorded / 60:.1f} CPU-min "
        f"of computing, summed over seeds as each was recorded when computed (with several "
        f"jobs they ran side by side; a run shared by experiments counts where it was first "
        f"trained"
        + (f"; not counting {unrecorded} seeds computed before CPU time was recorded"
           if unrecorded else "")
        + f"); {this_run}."
    )


def write_report(
    reports: Sequence[Report],
    path: str,
    *,
    command: str,
    figures_dir: Optional[str] = None,
    pages_dir: Optional[str] = None,
    machine: Optional[str] = None,
    wall_seconds: Optional[float] = None,
) -> None:
    """Write every experiment's section under a summary table, grouped by paper, with the
    command, the machine and the wall time.

    Parameters
    ----------
    reports
        The reports.
    path
        The Markdown file written.
    command
        The command that made the reports.
    figures_dir
        Figures are copied there when given (else linked where they are), relative to `path`.
    pages_dir
        When it holds a page `<module>.md` for an experiment module (its protocols and
        investigations), each paper's section links it.
    machine
        The machine's description (default
        [`machine_description`][etfcore.experiments.runner.machine_description]).
    wall_seconds
        The command's wall time (default: the experiments' times summed).
    """
    base = os.path.dirname(os.path.abspath(path))
    parts = [
        "# Reproductions",
        "",
        INTRO,
        "",
        made_by(reports, command, machine or machine_description(), wall_seconds),
        "",
        FORMS_TEXT,
        "",
        summary_table(reports),
        "",
    ]
    paper = None
    for r in reports:
        if r.experiment.paper != paper:
            paper = r.experiment.paper
            parts += [f"## {PAPERS[paper].cite()}", ""]
            module = type(r.experiment).__module__.rsplit(".", 1)[-1]
            page = os.path.join(pages_dir, f"{module}.md") if pages_dir else None
            if page and os.path.isfile(page):
                rel = os.path.relpath(page, base)
                parts += [f"Protocols, choices and investigations: [{module}]({rel}).", ""]
        figure = r.figure
        if figure and figures_dir:
            os.makedirs(figures_dir, exist_ok=True)
            figure = shutil.copy(figure, os.path.join(figures_dir, os.path.basename(figure)))
        href = os.path.relpath(figure, base) if figure else None
        parts.append(r.markdown(figure_href=href))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_text(path, "\n".join(parts))


def select(names: Sequence[str]) -> List[Experiment]:
    """Experiments named in `names` (`all` = every one, in registry order)."""
    experiments = load_experiments()
    if not names or "all" in names:
        return list(experiments.values())
    return [get_experiment(n) for n in names]


__all__ = [
    "Context",
    "Report",
    "TrainedRun",
    "digest",
    "get_experiment",
    "load_experiments",
    "seeds_in_cache",
    "select",
    "summary_table",
    "write_report",
    "machine_description",
    "quiet_lightning",
]
