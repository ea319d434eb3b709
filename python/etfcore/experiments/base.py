r"""The pieces of one reproduction: the paper and its claim, the experiment's settings, one
seed's measurements, and the verdict computed from the measured effect and its spread.

An experiment measures, per seed, a signed **effect** in the direction the paper claims
(positive = as the paper says; e.g. "fine-label probe accuracy of hinge CE minus that of CE",
paired by seed). Over $n$ seeds with mean $m$ and sample standard deviation $s$ (ddof 1),
the effect's **95% interval** is the two-sided Student interval $m \pm t\, s/\sqrt n$ with
$t = t_{0.975,\, n-1}$. Each effect fixes in advance the smallest effect that counts as
relevant, $\delta$ = `min_effect` (0: any positive effect is relevant).

A *directional* claim ("A beats B") gets one of four verdicts:

- **holds**: the interval lies above 0 and $m \ge \delta$;
- **partly holds**: the interval lies above 0 but $m < \delta$ (a real effect smaller than the
  relevant size);
- **does not hold at this scale**: the interval excludes every relevant effect (its upper end is
  below $\delta$; with $\delta = 0$, at most 0) while containing 0 or lying below it;
- **inconclusive**: the interval contains both 0 and $\delta$ (with $\delta = 0$: 0 and some
  positive effect) — the data cannot tell. One seed is always inconclusive.

An *equivalence* claim ("B is as good as A", `Effect.margin` set) is tested with two
one-sided tests (TOST) on the paired difference $d$ (B − A, per seed) and its 95% interval
$[lo, hi]$ against the margin $\pm\Delta$: **holds** when $-\Delta < lo$ and $hi < \Delta$;
**does not hold** when the interval lies wholly outside $[-\Delta, \Delta]$; **inconclusive**
when it contains 0 and $-\Delta$ or $\Delta$; **partly holds** otherwise (a non-zero difference
straddling the margin with its mean inside it; outside it: does not hold). Each one-sided test
is then at the 2.5% level.

**Power.** Next to each verdict stands the smallest effect the design could detect,

$$
\mathrm{MDE} = (t_{0.975,\, n-1} + t_{0.80,\, n-1})\, s / \sqrt n,
$$

the true effect whose interval would lie above 0 in 80% of repetitions (normal approximation
with $s$ taken as the true spread); for an equivalence claim, the smallest margin it could
establish for a true difference of 0, $(t_{0.975,\, n-1} + t_{0.90,\, n-1})\, s / \sqrt n$. An
MDE above $\delta$ (or $\Delta$) says the design is under-powered for the claim: more seeds are
needed.

A claim measured by several effects ([`combine`][etfcore.experiments.base.combine]) holds when
all hold, does not hold when all do not hold, is inconclusive when none is resolved, and partly
holds otherwise.

Examples
--------
>>> Effect("gain", (0.03, 0.05, 0.04)).verdict
<Verdict.HOLDS: 'holds'>
>>> Effect("gain", (0.03, -0.02, 0.01)).verdict
<Verdict.INCONCLUSIVE: 'inconclusive'>
>>> Effect("gain", (0.001, -0.002, 0.0, 0.001, -0.001), min_effect=0.02).verdict
<Verdict.DOES_NOT_HOLD: 'does not hold at this scale'>
>>> Effect("B − A", (0.004, -0.003, 0.001, 0.0, 0.002), margin=0.02).verdict
<Verdict.HOLDS: 'holds'>
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


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                    -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta $I_x(a, b)$."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lbeta + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(x: float, dof: float) -> float:
    """Student's t distribution function at `x` with `dof` degrees of freedom.

    Examples
    --------
    >>> round(t_cdf(0.0, 3), 12), round(t_cdf(2.353363, 3), 4)
    (0.5, 0.95)
    """
    if dof <= 0:
        raise ParameterError(f"degrees of freedom must be > 0, got {dof}")
    tail = 0.5 * _betainc(dof / 2.0, 0.5, dof / (dof + x * x))
    return 1.0 - tail if x > 0 else tail


def t_quantile(p: float, dof: float) -> float:
    """Student's t quantile: the `x` with `t_cdf(x, dof) = p` (bisection to 1e-10).

    Parameters
    ----------
    p
        The probability, in `(0, 1)`.
    dof
        The degrees of freedom.

    Raises
    ------
    ParameterError
        When `p` is outside `(0, 1)`.

    Examples
    --------
    >>> round(t_quantile(0.975, 4), 4), round(t_quantile(0.5, 7), 12)
    (2.7764, 0.0)
    """
    if not 0.0 < p < 1.0:
        raise ParameterError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, dof)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, dof) < p:
        lo, hi = hi, hi * 2.0
    while hi - lo > 1e-10 * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, dof) < p else (lo, mid)
    return 0.5 * (lo + hi)


def t95(dof: int) -> float:
    """Student's t one-sided 0.95 quantile with `dof` degrees of freedom.

    Examples
    --------
    >>> round(t95(2), 3)
    2.92
    """
    if dof < 1:
        raise ParameterError(f"degrees of freedom must be >= 1, got {dof}")
    return t_quantile(0.95, dof)


LEVEL = 0.95
"""Level of the two-sided interval."""
POWER = 0.80
"""Power of the minimum detectable effect."""


class Verdict(str, enum.Enum):
    """What the measurements say about a claim at the scale they were taken."""

    HOLDS = "holds"
    PARTLY = "partly holds"
    DOES_NOT_HOLD = "does not hold at this scale"
    INCONCLUSIVE = "inconclusive"


@dataclasses.dataclass(frozen=True)
class Effect:
    r"""Per-seed values of one signed effect (positive = in the claim's direction), or of a
    paired difference for an equivalence claim (`margin` set).

    Its verdict, interval and detectable effect are as in the
    [module documentation][etfcore.experiments.base].

    Parameters
    ----------
    name
        What was subtracted from what.
    values
        One value per seed, finite.
    min_effect
        The smallest relevant effect $\delta \ge 0$ of a directional claim, fixed in advance, in
        the values' own units.
    scale
        For display only (`scale=100, unit=" points"` shows accuracies as percentage points).
    unit
        For display only.
    margin
        The equivalence margin $\Delta > 0$ (fixed in advance, in the values' own units); `None`
        for a directional claim.

    Raises
    ------
    ParameterError
        For no value, a non-finite value, a negative `min_effect` or a margin that is not
        positive.
    """

    name: str
    values: Tuple[float, ...]
    min_effect: float = 0.0
    scale: float = 1.0
    unit: str = ""
    margin: Optional[float] = None

    def __post_init__(self) -> None:
        v = tuple(float(x) for x in self.values)
        if not v:
            raise ParameterError(f"effect {self.name!r} has no values")
        if not all(math.isfinite(x) for x in v):
            raise ParameterError(f"effect {self.name!r} has a non-finite value: {v}")
        if self.min_effect < 0:
            raise ParameterError(f"effect {self.name!r}: min_effect must be >= 0")
        if self.margin is not None and not self.margin > 0:
            raise ParameterError(f"effect {self.name!r}: an equivalence margin must be > 0")
        object.__setattr__(self, "values", v)

    @property
    def equivalence(self) -> bool:
        return self.margin is not None

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
        r"""$t_{0.975,\, n-1}\, s/\sqrt n$ of the two-sided 95% interval (infinite with one
        value)."""
        if self.n < 2:
            return math.inf
        return t_quantile(0.5 + LEVEL / 2, self.n - 1) * self.std / math.sqrt(self.n)

    @property
    def lower(self) -> float:
        return self.mean - self.half_width

    @property
    def upper(self) -> float:
        return self.mean + self.half_width

    @property
    def mde(self) -> float:
        r"""The smallest effect the design could detect (see the
        [module documentation][etfcore.experiments.base]).

        For a directional claim $(t_{0.975} + t_{0.80})\, s/\sqrt n$, for an equivalence claim
        the smallest margin it could establish, $(t_{0.975} + t_{0.90})\, s/\sqrt n$; infinite
        with one value.
        """
        if self.n < 2:
            return math.inf
        dof = self.n - 1
        beta = (1 + POWER) / 2 if self.equivalence else POWER
        return (t_quantile(0.5 + LEVEL / 2, dof) + t_quantile(beta, dof)) * self.std / math.sqrt(
            self.n
        )

    @property
    def verdict(self) -> Verdict:
        m, lo, hi = self.mean, self.lower, self.upper
        if self.margin is not None:
            d = self.margin
            if -d < lo and hi < d:
                return Verdict.HOLDS
            if lo > d or hi < -d:
                return Verdict.DOES_NOT_HOLD
            if lo <= 0 <= hi:  # contains 0 and (since not inside) one of ±Δ
                return Verdict.INCONCLUSIVE
            return Verdict.PARTLY if abs(m) < d else Verdict.DOES_NOT_HOLD
        delta = self.min_effect
        if lo > 0:
            return Verdict.HOLDS if m >= delta else Verdict.PARTLY
        if hi < delta or (delta == 0 and hi <= 0):
            return Verdict.DOES_NOT_HOLD
        return Verdict.INCONCLUSIVE

    def describe(self) -> str:
        """One line, e.g. `"name: +2.10 ± 0.80 points (3 seeds; 95% interval [+0.1, +4.1];
        detectable ≥ 3.1; relevant ≥ 1) → holds"`."""
        s, u = self.scale, self.unit
        if self.n > 1:
            info = (f"95% interval [{self.lower * s:+.3g}, {self.upper * s:+.3g}]{u}; "
                    f"detectable ≥ {self.mde * s:.2g}{u}")
        else:
            info = "one seed"
        if self.margin is not None:
            info += f"; equivalence margin ±{self.margin * s:.3g}{u} (TOST)"
        elif self.min_effect > 0:
            info += f"; relevant ≥ {self.min_effect * s:.3g}{u}"
        return (
            f"{self.name}: {self.mean * s:+.3g} ± {self.std * s:.2g}{u} "
            f"({self.n} seed{'s' if self.n != 1 else ''}; {info}) → {self.verdict.value}"
        )


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """The verdict of a claim measured by several effects.

    All hold → holds; all do not hold → does not hold; all inconclusive → inconclusive;
    otherwise partly holds (some resolved parts hold, or the resolved ones disagree). Unresolved
    effects beside resolved ones: the claim is judged on the resolved ones, and is at most
    partly holding.

    Raises
    ------
    ParameterError
        For no verdict.

    Examples
    --------
    >>> combine([Verdict.DOES_NOT_HOLD, Verdict.INCONCLUSIVE]).value
    'does not hold at this scale'
    """
    vs = list(verdicts)
    if not vs:
        raise ParameterError("combine needs at least one verdict")
    if all(v is Verdict.HOLDS for v in vs):
        return Verdict.HOLDS
    resolved = [v for v in vs if v is not Verdict.INCONCLUSIVE]
    if not resolved:
        return Verdict.INCONCLUSIVE
    if all(v is Verdict.DOES_NOT_HOLD for v in resolved):
        return Verdict.DOES_NOT_HOLD
    return Verdict.PARTLY


def mean_std(values: Sequence[float], *, scale: float = 1.0, digits: int = 3) -> str:
    """Mean and sample standard deviation (ddof 1) as text, e.g. `"0.912 ± 0.004"`.

    NaNs (and `None`) are dropped; `"—"` when none is left.

    Parameters
    ----------
    values
        The values.
    scale
        Multiplies the values first.
    digits
        Decimal places.

    Examples
    --------
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
    """A small results table of already formatted cells.

    Parameters
    ----------
    columns
        The header cells.
    rows
        The rows, each with one cell per column.

    Raises
    ------
    ParameterError
        For a row with another number of cells.
    """

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
    """What [`Experiment.summarise`][etfcore.experiments.base.Experiment.summarise] returns.

    Parameters
    ----------
    effects
        The effects behind the verdict.
    table
        Ours beside the paper's numbers where they are comparable.
    notes
        What was investigated.
    verdict
        Defaults to [`combine`][etfcore.experiments.base.combine] of the effects' verdicts.
    """

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


FORMS = ("quick", "cpu", "gpu")
"""The scale forms of `etfcore reproduce`."""


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How `etfcore reproduce` runs.

    Parameters
    ----------
    quick
        The CPU-minutes form.
    seeds
        The seeds.
    data
        A dataset name replacing the embedded default where the experiment allows it.
    accelerator
        Lightning's accelerator.
    out_dir
        Where results, cached runs and figures go.
    cache
        Reuse cached per-seed results and runs.
    jobs
        Seeds run in parallel processes.
    progress
        Per-batch progress bars.
    form
        `quick`, `cpu` or `gpu` ([`FORMS`][etfcore.experiments.base.FORMS]); derived from
        `quick` when not given.

    Raises
    ------
    ParameterError
        For an unknown form, or one that contradicts `quick`.

    Examples
    --------
    >>> RunOptions(quick=True).form, RunOptions().form
    ('quick', 'cpu')
    """

    quick: bool = False
    seeds: Tuple[int, ...] = (0, 1, 2, 3, 4)
    data: Optional[str] = None
    accelerator: str = "auto"
    out_dir: str = "out/reproduce"
    cache: bool = True
    jobs: int = 1
    progress: bool = False
    form: str = ""

    def __post_init__(self) -> None:
        form = self.form or ("quick" if self.quick else "cpu")
        if form not in FORMS:
            raise ParameterError(f"unknown form {form!r}; known: {', '.join(FORMS)}")
        if self.quick != (form == "quick"):
            raise ParameterError(f"quick={self.quick} contradicts form={form!r}")
        if len(set(self.seeds)) != len(tuple(self.seeds)):
            raise ParameterError(f"seeds must be distinct, got {tuple(self.seeds)}")
        object.__setattr__(self, "form", form)


class Experiment(ABC):
    """One claim of one paper.

    Subclass it in a module of `etfcore.experiments`, fill the class attributes and the three
    methods, and decorate the class with [`register`][etfcore.experiments.base.register].

    - [`settings`][etfcore.experiments.base.Experiment.settings]: everything that changes the
      result (sizes, epochs, data), JSON values only; its hash, with `name` and `version`, keys
      the per-seed cache;
    - [`run_seed`][etfcore.experiments.base.Experiment.run_seed]: one seed's measurements as a
      JSON mapping, through the public API and the
      [`Context`][etfcore.experiments.runner.Context] (cached training, fine-tuning, features,
      probes);
    - [`summarise`][etfcore.experiments.base.Experiment.summarise]: the
      [`Outcome`][etfcore.experiments.base.Outcome] of every seed's measurements;
    - [`plot`][etfcore.experiments.base.Experiment.plot] (optional): the figure.

    Attributes
    ----------
    name : str
        The experiment's name (`etfcore reproduce NAME`).
    paper : str
        The key of its paper.
    claim : str
        The claim tested.
    paper_result : str
        The paper's numbers (or `"qualitative: …"`), shown beside ours.
    version : int
        Bumped when `run_seed` changes: cached results are then ignored.
    """

    name: ClassVar[str]
    paper: ClassVar[str]  # a key of PAPERS
    claim: ClassVar[str]
    paper_result: ClassVar[str]  # the paper's numbers (or "qualitative: …"), shown beside ours
    version: ClassVar[int] = 1  # bump when run_seed changes: cached results are then ignored

    @abstractmethod
    def settings(self, options: RunOptions) -> Dict[str, Any]:
        """The experiment's settings for these options (`options.quick`, `options.data`).

        Parameters
        ----------
        options
            How the run goes.

        Returns
        -------
        dict
            Everything that changes the result, JSON values only.
        """

    @abstractmethod
    def run_seed(self, ctx: Any, settings: Mapping[str, Any], seed: int) -> Dict[str, Any]:
        """One seed's measurements.

        Parameters
        ----------
        ctx
            The [`Context`][etfcore.experiments.runner.Context]: cached training, fine-tuning,
            features and probes.
        settings
            The experiment's settings.
        seed
            The seed.

        Returns
        -------
        dict
            JSON values: numbers, strings, lists, dicts.
        """

    @abstractmethod
    def summarise(
        self, settings: Mapping[str, Any], results: Sequence[Mapping[str, Any]]
    ) -> Outcome:
        """The verdict, effects, table and notes from every seed's measurements.

        Parameters
        ----------
        settings
            The experiment's settings.
        results
            One measurement mapping per seed.
        """

    def plot(
        self, settings: Mapping[str, Any], results: Sequence[Mapping[str, Any]], fig: Any
    ) -> bool:
        """Draw the figure on a matplotlib `fig`.

        Parameters
        ----------
        settings
            The experiment's settings.
        results
            One measurement mapping per seed.
        fig
            The matplotlib figure.

        Returns
        -------
        bool
            `False` when there is no figure.
        """
        return False

    @property
    def citation(self) -> str:
        return PAPERS[self.paper].cite()


REGISTRY: Dict[str, Experiment] = {}


def register(cls: type) -> type:
    """Class decorator adding an instance of an
    [`Experiment`][etfcore.experiments.base.Experiment] subclass to `REGISTRY` under its
    `name`.

    Raises
    ------
    ParameterError
        When another experiment has the name, or its `paper` is not a key of `PAPERS`.
    """
    exp = cls()
    if exp.name in REGISTRY and type(REGISTRY[exp.name]) is not cls:
        raise ParameterError(f"two experiments are named {exp.name!r}")
    if exp.paper not in PAPERS:
        raise ParameterError(f"experiment {exp.name!r}: unknown paper {exp.paper!r}")
    REGISTRY[exp.name] = exp
    return cls
