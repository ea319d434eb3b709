"""The pieces of one reproduction: the paper and its claim, the experiment's settings, one
seed's measurements, and the verdict computed from the measured effect and its spread.

An experiment measures, per seed, a signed **effect** in the direction the paper claims
(positive = as the paper says; e.g. "fine-label probe accuracy of hinge CE minus that of CE",
paired by seed). Over ``n`` seeds with mean ``m`` and sample standard deviation ``s`` (ddof 1),
the one-sided 95% bounds are ``m ∓ t·s/√n`` (``t`` Student's 0.95 quantile with ``n − 1``
degrees of freedom). The verdict of one effect:

- **holds**: the lower bound is above 0 and ``m`` reaches the claim's smallest relevant effect
  ``min_effect`` (0 unless the experiment says otherwise);
- **partly holds**: ``m > 0`` and either the lower bound is above 0 (a real effect smaller than
  ``min_effect``) or ``m`` exceeds its own spread ``s``;
- **does not hold at this scale**: otherwise (no effect, an effect within its spread, or the
  opposite one). With one seed nothing is significant: at most *partly holds*.

A claim measured by several effects holds when all hold, does not hold when none holds and
none partly holds, and partly holds otherwise (:func:`combine`).

>>> Effect("gain", (0.03, 0.05, 0.04)).verdict
<Verdict.HOLDS: 'holds'>
>>> Effect("gain", (0.03, -0.02, 0.01)).verdict
<Verdict.DOES_NOT_HOLD: 'does not hold at this scale'>
>>> combine([Verdict.HOLDS, Verdict.DOES_NOT_HOLD])
<Verdict.PARTLY: 'partly holds'>
"""

from __future__ import annotations

import dataclasses
import enum
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import ParameterError

# Student's t, one-sided 0.95 quantile, by degrees of freedom (1..30); 1.645 beyond.
_T95 = (
    6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812,
    1.796, 1.782, 1.771, 1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725,
    1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701, 1.699, 1.697,
)  # fmt: skip


def t95(dof: int) -> float:
    """Student's t one-sided 0.95 quantile with ``dof`` degrees of freedom.

    >>> t95(2), t95(1000)
    (2.92, 1.645)
    """
    if dof < 1:
        raise ParameterError(f"degrees of freedom must be >= 1, got {dof}")
    return _T95[dof - 1] if dof <= len(_T95) else 1.645


class Verdict(str, enum.Enum):
    """What the measurements say about a claim at the scale they were taken."""

    HOLDS = "holds"
    PARTLY = "partly holds"
    DOES_NOT_HOLD = "does not hold at this scale"


@dataclasses.dataclass(frozen=True)
class Effect:
    """Per-seed values of one signed effect (positive = in the claim's direction).

    ``name`` says what was subtracted from what; ``scale`` and ``unit`` are for display only
    (``scale=100, unit=" points"`` shows accuracies as percentage points); ``min_effect`` is in
    the values' own units.
    """

    name: str
    values: Tuple[float, ...]
    min_effect: float = 0.0
    scale: float = 1.0
    unit: str = ""

    def __post_init__(self) -> None:
        v = tuple(float(x) for x in self.values)
        if not v:
            raise ParameterError(f"effect {self.name!r} has no values")
        if not all(math.isfinite(x) for x in v):
            raise ParameterError(f"effect {self.name!r} has a non-finite value: {v}")
        object.__setattr__(self, "values", v)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof 1; 0 with one value)."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0

    @property
    def half_width(self) -> float:
        """``t·s/√n`` of the one-sided 95% bounds (infinite with one value)."""
        return t95(self.n - 1) * self.std / math.sqrt(self.n) if self.n > 1 else math.inf

    @property
    def lower(self) -> float:
        return self.mean - self.half_width

    @property
    def verdict(self) -> Verdict:
        m = self.mean
        if self.lower > 0 and m >= self.min_effect:
            return Verdict.HOLDS
        if m > 0 and (self.lower > 0 or (self.n > 1 and m > self.std) or self.n == 1):
            return Verdict.PARTLY
        return Verdict.DOES_NOT_HOLD

    def describe(self) -> str:
        """``"name: +2.10 ± 0.80 points (3 seeds; 95% lower bound +1.18) → holds"``."""
        s, u = self.scale, self.unit
        bound = f"95% lower bound {self.lower * s:+.3g}{u}" if self.n > 1 else "one seed"
        return (
            f"{self.name}: {self.mean * s:+.3g} ± {self.std * s:.2g}{u} "
            f"({self.n} seed{'s' if self.n != 1 else ''}; {bound}) → {self.verdict.value}"
        )


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """All hold → holds; none holds or partly holds → does not hold; otherwise partly."""
    vs = list(verdicts)
    if not vs:
        raise ParameterError("combine needs at least one verdict")
    if all(v is Verdict.HOLDS for v in vs):
        return Verdict.HOLDS
    if all(v is Verdict.DOES_NOT_HOLD for v in vs):
        return Verdict.DOES_NOT_HOLD
    return Verdict.PARTLY


def mean_std(values: Sequence[float], *, scale: float = 1.0, digits: int = 3) -> str:
    """``"0.912 ± 0.004"`` (sample std, ddof 1); NaNs are dropped; ``"—"`` when none is left.

    >>> mean_std([0.9, 0.92, 0.91], scale=100, digits=1)
    '91.0 ± 1.0'
    """
    v = np.asarray([x for x in values if x is not None], dtype=float) * scale
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "—"
    sd = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return f"{v.mean():.{digits}f} ± {sd:.{digits}f}"


@dataclasses.dataclass
class Table:
    """A small results table: ``columns`` and ``rows`` of already formatted cells."""

    columns: List[str]
    rows: List[List[str]]

    def __post_init__(self) -> None:
        for r in self.rows:
            if len(r) != len(self.columns):
                raise ParameterError(f"row {r} has {len(r)} cells for {len(self.columns)} columns")

    def markdown(self) -> str:
        esc = [[str(c).replace("|", "\\|") for c in r] for r in [self.columns, *self.rows]]
        lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(self.columns)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc[1:]])

    def text(self) -> str:
        cells = [[str(c) for c in r] for r in [self.columns, *self.rows]]
        widths = [max(len(r[j]) for r in cells) for j in range(len(self.columns))]
        fmt = [
            "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, ws)))
            for r, ws in ((r, widths) for r in cells)
        ]
        return "\n".join([fmt[0], "-" * len(fmt[0]), *fmt[1:]])


@dataclasses.dataclass
class Outcome:
    """What :meth:`Experiment.summarise` returns: the verdict, the effects behind it, the table
    (ours beside the paper's numbers where they are comparable), and notes on what was
    investigated. ``verdict`` defaults to :func:`combine` of the effects' verdicts."""

    effects: List[Effect]
    table: Table
    notes: List[str] = dataclasses.field(default_factory=list)
    verdict: Optional[Verdict] = None

    def __post_init__(self) -> None:
        if self.verdict is None:
            self.verdict = combine(e.verdict for e in self.effects)


@dataclasses.dataclass(frozen=True)
class Paper:
    key: str
    authors: str
    title: str
    year: int

    def cite(self) -> str:
        return f"{self.authors}, “{self.title}” ({self.year})"


PAPERS: Dict[str, Paper] = {
    p.key: p
    for p in (
        Paper("000", "Tiomoko Ali et al.", "Deep neural network models trained with a fixed "
              "random classifier transfer better across domains", 2023),
        Paper("001", "Seddik & Tamaazousti",
              "Neural networks classify through the class-wise means of their representations",
              2022),
        Paper("002", "Yang et al.", "Do we really need a learnable classifier at the end of "
              "deep neural network?", 2022),
        Paper("003", "Xu & Liu",
              "Quantifying the variability collapse of neural networks", 2023),
        Paper("004", "anonymous (under review)",
              "Do we need neural collapse? Learning diverse features for fine-grained and "
              "long-tail classification", 2023),
        Paper("benchmark", "etfcore", "Model selection on an offline zoo of backbones", 2026),
    )
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How ``etfcore reproduce`` runs: ``quick`` (the CPU-minutes form), ``seeds``, ``data``
    (a dataset name replacing the embedded default where the experiment allows it),
    ``accelerator`` (Lightning's), ``out_dir`` (results, cached runs, figures), ``cache``
    (reuse cached per-seed results and runs), ``jobs`` (seeds run in parallel processes),
    ``progress`` (per-batch progress bars)."""

    quick: bool = False
    seeds: Tuple[int, ...] = (0, 1, 2)
    data: Optional[str] = None
    accelerator: str = "auto"
    out_dir: str = "out/reproduce"
    cache: bool = True
    jobs: int = 1
    progress: bool = False


class Experiment(ABC):
    """One claim of one paper. Subclass it in a module of :mod:`etfcore.experiments`, fill the
    class attributes and the three methods, and decorate the class with :func:`register`.

    - :meth:`settings`: everything that changes the result (sizes, epochs, data), JSON values
      only; its hash, with ``name`` and ``version``, keys the per-seed cache;
    - :meth:`run_seed`: one seed's measurements as a JSON mapping, through the public API and
      the :class:`~etfcore.experiments.runner.Context` (cached training, fine-tuning, features,
      probes);
    - :meth:`summarise`: the :class:`Outcome` of every seed's measurements;
    - :meth:`plot` (optional): the figure.
    """

    name: ClassVar[str]
    paper: ClassVar[str]  # a key of PAPERS
    claim: ClassVar[str]
    paper_result: ClassVar[str]  # the paper's numbers (or "qualitative: …"), shown beside ours
    version: ClassVar[int] = 1  # bump when run_seed changes: cached results are then ignored

    @abstractmethod
    def settings(self, options: RunOptions) -> Dict[str, Any]:
        """The experiment's settings for these options (``options.quick``, ``options.data``)."""

    @abstractmethod
    def run_seed(self, ctx: Any, settings: Mapping[str, Any], seed: int) -> Dict[str, Any]:
        """One seed's measurements (JSON values: numbers, strings, lists, dicts)."""

    @abstractmethod
    def summarise(
        self, settings: Mapping[str, Any], results: Sequence[Mapping[str, Any]]
    ) -> Outcome:
        """The verdict, effects, table and notes from every seed's measurements."""

    def plot(
        self, settings: Mapping[str, Any], results: Sequence[Mapping[str, Any]], fig: Any
    ) -> bool:
        """Draws the figure on a matplotlib ``fig``; returns False when there is none."""
        return False

    @property
    def citation(self) -> str:
        return PAPERS[self.paper].cite()


REGISTRY: Dict[str, Experiment] = {}


def register(cls: type) -> type:
    """Class decorator adding an instance of an :class:`Experiment` subclass to
    :data:`REGISTRY` under its ``name`` (unique; its ``paper`` must be a key of
    :data:`PAPERS`)."""
    exp = cls()
    if exp.name in REGISTRY and type(REGISTRY[exp.name]) is not cls:
        raise ParameterError(f"two experiments are named {exp.name!r}")
    if exp.paper not in PAPERS:
        raise ParameterError(f"experiment {exp.name!r}: unknown paper {exp.paper!r}")
    REGISTRY[exp.name] = exp
    return cls
