r"""The two-pass mode: scores that need per-sample posteriors, streamed without the ``N × D``
matrix.

ETran (its LDA and energy terms), SFDA, NCTI and LEEP average a function of each sample's
posterior under a classifier that is itself built from statistics of *all* samples. They cannot
be finished in one pass, but they need no more than a second (SFDA a third) pass over the same
chunks:

1. **first pass** — the sufficient statistics (`etfcore.CollapseStats`: counts, class sums,
   the scatter `FᵀF`, in float64) and, for LEEP, the soft joint of target labels and the source
   head's outputs (`K × K_s`);
2. **second pass** — each chunk's posteriors under the classifier fixed by pass 1, reduced at
   once to what each score keeps: sums of true-class posteriors, the lowest energies (ETran),
   a triangular factor of each class's posterior matrix (NCTI), LEEP's log-likelihoods, and
   for SFDA the statistics of the confidence-mixed features;
3. **third pass** (SFDA only) — the true-class posteriors of the mixed features under the
   discriminant refit on them. The mixed features depend on each sample's first-stage posterior
   and the refit on all of them, so no two-pass form exists.

Every pass is mergeable: shards fill copies of one state and `TwoPassScores.merge` adds them
(after the first pass, only states built from the same first-pass statistics merge). Chunks
may be numpy arrays or torch tensors: with tensors, every pass runs on the tensors' device in
float64 (importing this module never imports torch).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from .._validation import as_count, as_features, as_float, as_index, as_labels, as_str
from ..errors import (
    DTypeError,
    IncompatibleStatsError,
    LabelError,
    NonFiniteError,
    ParameterError,
    ShapeError,
    TooFewClassesError,
)
from ..stats import CollapseStats
from ._array_ops import _core, _is_torch, _Numpy, _Torch
from ._two_pass_scores import Chunk, FirstPass, accumulators
from .discriminant_scores import ETranComponents, SFDAResult
from .ncti import NCTIComponents

__all__ = ["TWO_PASS_SCORES", "TwoPassResult", "TwoPassScores", "two_pass_scores"]

#: The scores of the two-pass mode, and the passes each needs.
TWO_PASS_SCORES: Dict[str, int] = {"etran": 2, "sfda": 3, "ncti": 2, "leep": 2}


# ----------------------------------------------------------------------------- result
@dataclasses.dataclass(frozen=True)
class TwoPassResult:
    """What `TwoPassScores.result` returns.

    Attributes
    ----------
    etran : ETranComponents or None
        The three raw ETran terms (as `etfcore.transfer.etran` returns them).
    sfda : SFDAResult or None
        SFDA with its choices (as `etfcore.transfer.sfda`).
    ncti : NCTIComponents or None
        NCTI's raw terms (as `etfcore.transfer.ncti_components`); combine candidates with
        `etfcore.transfer.ncti`.
    leep : float or None
        LEEP of the source head's outputs (as `etfcore.transfer.leep`).
    num_samples : int
        The rows seen in each pass.
    passes : int
        The passes made over the data.
    """

    etran: Optional[ETranComponents]
    sfda: Optional[SFDAResult]
    ncti: Optional[NCTIComponents]
    leep: Optional[float]
    num_samples: int
    passes: int


# ------------------------------------------------------------------------------ state
class TwoPassScores:
    r"""ETran, SFDA, NCTI and LEEP from two passes (SFDA three) over the same chunks.

    Feed every chunk to `first_pass`, then
    the same chunks (any chunking, any order) to
    `second_pass` and, when SFDA is asked
    for, to `third_pass`; then
    `result`. Nothing of size ``N × D`` is
    kept: the state is the first pass's statistics (``O(K·D + D²)``), the classifiers they fix,
    and per score: two sums (ETran, SFDA), the ``⌊energy_fraction·N⌋`` lowest energies (ETran),
    a ``K × K`` triangular factor per class (NCTI: ``K³`` numbers, 8 GiB at ``K = 1000``) and a
    ``K × K_s`` joint (LEEP).

    Parameters
    ----------
    num_classes : int
        ``K``: labels are integers in ``0..K-1``; only classes with samples in the first pass
        take part (at least two).
    dim : int
        ``D``, the feature dimension.
    scores : sequence of str
        Any of ``"etran"``, ``"sfda"``, ``"ncti"``, ``"leep"``. LEEP needs ``source_probs`` in
        every chunk and reads no features.
    energy_fraction : float, default 0.005
        ETran's energy term keeps the lowest $\max(1, \lfloor \text{energy\_fraction} \cdot N
        \rfloor)$ values, $N$ known from the first pass (see `etfcore.transfer.etran`).
    lda_mode : {"paper", "public"}, default "paper"
        ETran's LDA term: the shrunk LDA of SFDA's first stage, or what the public code computes
        (see `etfcore.transfer.etran`).
    shrinkage : float, optional
        ETran's LDA shrinkage; by default $\max(e^{-5 \lambda_{\max}(\Sigma_W)}, 10^{-10})$.
    rtol : float, optional
        ETran's SVD term keeps the eigenvalues of $F^\top F$ above `rtol` times the largest
        (default $D \varepsilon$ of the input precision).
    sfda_shrinkage : float, optional
        SFDA's shrinkage $s$ (see `etfcore.transfer.sfda`); by default from `shrinkage_rule`.
    shrinkage_rule : {"exact", "power3"}, default "exact"
        How SFDA finds $\lambda_{\max}(\Sigma_W)$: an eigendecomposition, or the reference
        code's three power iterations.
    pca_dim : int
        NCTI's PCA dimension (see `etfcore.transfer.ncti_components`).
    logits : bool
        ``source_probs`` are the source head's logits (a softmax is applied).
    device_stats : callable, optional
        `device_stats(K, D, like)` returns a statistics accumulator on the device of the
        tensor `like` (`update`, `to_core`, `to_bytes`); it is what lets the passes run on torch
        tensors where they live. [`TorchTwoPassScores`][etfcore.training.TorchTwoPassScores]
        passes one (float64 states on the device); without it, chunks must be numpy arrays.

    Notes
    -----
    Every data-dependent choice of the in-memory functions is a function of the first pass's
    statistics, so the results equal theirs up to rounding: the LDA shrinkage
    ``s = max(exp(-5λ_max(Σ_W)), 10⁻¹⁰)``, NCTI's PCA axes and shrinkage from ``Σ_T``, the
    energy's sample count from ``N``. NCTI's class term needs the singular values of each
    class's ``n_k × K`` posterior matrix: the pass keeps an R factor of it (stacked rows are
    re-factored by QR once they outnumber ``K``), whose singular values are the same — a Gram
    matrix would lose those below ``√eps`` of the largest.

    Examples
    --------
    >>> from etfcore import data, transfer
    >>> x, y = data.load_digits()
    >>> tp = transfer.TwoPassScores(10, 64, scores=("etran", "sfda"))
    >>> for p in range(tp.passes):
    ...     for a in range(0, len(y), 500):
    ...         _ = tp.feed(p, x[a:a + 500], y[a:a + 500])
    >>> r = tp.result()
    >>> abs(r.sfda.value - transfer.sfda(x, y).value) < 1e-10
    True
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        scores: Sequence[str] = ("etran", "sfda", "ncti"),
        energy_fraction: float = 0.005,
        lda_mode: str = "paper",
        shrinkage: Optional[float] = None,
        rtol: Optional[float] = None,
        sfda_shrinkage: Optional[float] = None,
        shrinkage_rule: str = "exact",
        pca_dim: int = 64,
        logits: bool = False,
        device_stats: Optional[Callable[[int, int, Any], Any]] = None,
    ) -> None:
        self.num_classes = as_count(num_classes, "num_classes")
        if device_stats is not None and not callable(device_stats):
            raise ParameterError("device_stats must be callable: (K, D, like) -> statistics")
        self._device_stats = device_stats
        self.dim = as_count(dim, "dim")
        names = [as_str(s, "score").lower() for s in scores]
        unknown = [s for s in names if s not in TWO_PASS_SCORES]
        if unknown or not names:
            raise ParameterError(
                f"scores must be a non-empty subset of {sorted(TWO_PASS_SCORES)}, "
                f"got {list(scores)}"
            )
        self.scores: Tuple[str, ...] = tuple(dict.fromkeys(names))
        frac = as_float(energy_fraction, "energy_fraction")
        if not 0.0 < frac <= 1.0:
            raise ParameterError(f"energy_fraction must be in (0, 1], got {frac}")
        mode = as_str(lda_mode, "lda_mode")
        if mode not in ("paper", "public"):
            raise ParameterError(f"lda_mode must be 'paper' or 'public', got {mode!r}")
        rule = as_str(shrinkage_rule, "shrinkage_rule")
        if rule not in ("exact", "power3"):
            raise ParameterError(f"shrinkage_rule must be 'exact' or 'power3', got {rule!r}")
        for name, v in (("shrinkage", shrinkage), ("sfda_shrinkage", sfda_shrinkage)):
            if v is not None and not 0.0 <= as_float(v, name) <= 1.0:
                raise ParameterError(f"{name} must be in [0, 1], got {v}")
        self._opt = dict(
            energy_fraction=frac, lda_mode=mode,
            shrinkage=None if shrinkage is None else float(shrinkage),
            rtol=None if rtol is None else float(rtol),
            sfda_shrinkage=None if sfda_shrinkage is None else float(sfda_shrinkage),
            shrinkage_rule=rule, pca_dim=as_count(pca_dim, "pca_dim"), logits=bool(logits),
        )
        self.passes = max(TWO_PASS_SCORES[s] for s in self.scores)
        self.stage = 1
        self._ops: Any = None  # backend of the chunks (fixed by the first one)
        self._needs_features = any(s != "leep" for s in self.scores)
        self._stats: Any = None  # the first pass's statistics (core ones once it is closed)
        self._joint: Any = None  # LEEP's soft joint, summed
        self._rows = [0, 0, 0]
        self._first: Optional[FirstPass] = None  # what the first pass fixed
        self._scores: Dict[str, Any] = {}  # one accumulator per score, from the second pass on
        self._codes: Dict[str, Any] = {}  # class indices among the present ones, per device
        self._key = ""
        self._coarse = False  # a chunk coarser than float64 (sets ETran's default cut)

    # ------------------------------------------------------------------- chunk input
    def _chunk(self, features: Any, labels: Any, source_probs: Any):
        """Validated ``(x, y, theta, kind)`` of one chunk in float64 on its backend; ``kind``
        (its backend, whether it was coarser than float64) becomes the state's by
        `_commit_kind` once the chunk has been taken whole."""
        like = features if features is not None else source_probs
        ops = _Torch if _is_torch(like) else _Numpy
        if ops is _Torch and self._device_stats is None and self._needs_features:
            raise DTypeError(
                "torch tensors need statistics on their device: use "
                "etfcore.training.TorchTwoPassScores, or pass numpy arrays"
            )
        if self._ops is not None and ops is not self._ops:
            raise DTypeError("mix of numpy arrays and torch tensors across chunks; use one kind")
        x = theta = None
        coarse = False
        if ops is _Torch:
            import torch

            y = labels.detach().to(device=like.device) if _is_torch(labels) else \
                torch.as_tensor(as_labels(labels), device=like.device)
            if y.dtype.is_floating_point or y.dtype == torch.bool or y.ndim != 1:
                raise DTypeError(f"labels must be a 1-D integer tensor, got {y.dtype}, {y.ndim}-D")
            y = y.to(torch.int64)
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise LabelError(f"labels must lie in 0..{self.num_classes - 1}")
        else:
            y = as_labels(labels)
            if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                raise LabelError(f"labels must lie in 0..{self.num_classes - 1}, got "
                                 f"{int(y.min())}..{int(y.max())}")
        if self._needs_features:
            if features is None:
                raise ParameterError("features are needed for " + ", ".join(self.scores))
            if ops is _Torch:
                if features.ndim != 2 or not features.is_floating_point():
                    raise DTypeError("features must be a 2-D floating-point tensor")
                coarse = features.dtype != __import__("torch").float64
                x = ops.f64(features, features)
                if not bool(x.isfinite().all()):
                    raise NonFiniteError("features contain a non-finite value (NaN or Inf)")
            else:
                h = as_features(features)
                coarse = h.dtype != np.float64
                x = np.asarray(h, dtype=np.float64)
                if not np.all(np.isfinite(x)):
                    raise NonFiniteError("features contain a non-finite value (NaN or Inf)")
            if x.shape[1] != self.dim:
                raise ShapeError(f"features have {x.shape[1]} columns, expected {self.dim}")
            if x.shape[0] != y.shape[0]:
                raise ShapeError(f"{x.shape[0]} feature rows but {y.shape[0]} labels")
        if "leep" in self.scores:
            theta = self._source(source_probs, y.shape[0], ops, like)
        return x, y, theta, (ops, coarse)

    def _commit_kind(self, kind: Tuple[Any, bool]) -> None:
        """The backend of a chunk that was taken (fixed by the first), and its precision."""
        self._ops = kind[0]
        self._coarse |= kind[1]

    def _source(self, source_probs: Any, n: int, ops: Any, like: Any):
        if source_probs is None:
            raise ParameterError("LEEP needs source_probs (the source head's outputs) per chunk")
        t = ops.f64(source_probs, like)
        if t.ndim != 2 or t.shape[0] != n:
            raise ShapeError(f"source_probs must be {n} × K_s, got {tuple(t.shape)}")
        if ops is _Torch:
            finite = bool(t.isfinite().all())
        else:
            finite = bool(np.all(np.isfinite(t)))
        if not finite:
            raise NonFiniteError("source_probs contain a non-finite value")
        if self._opt["logits"]:
            return ops.exp(ops.log_softmax(t))
        if ops.scalar(t.min()) < 0 or (n and ops.scalar(abs(t.sum(1) - 1).max()) > 1e-4):
            raise ParameterError("source_probs rows must be non-negative and sum to 1 (softmax "
                                 "of the source head); pass logits=True for logits")
        return t

    def _code(self, y):
        """Labels as indices among the first pass's present classes."""
        assert self._first is not None
        dev = str(getattr(y, "device", "cpu"))
        if dev not in self._codes:
            code = np.full(self.num_classes, -1, dtype=np.int64)
            code[self._first.present] = np.arange(self._first.present.size)
            self._codes[dev] = self._ops.index(code, y)
        c = self._codes[dev][y]
        if c.shape[0] and self._ops.scalar(c.min()) < 0:
            raise LabelError("a label of this pass had no sample in the first pass")
        return c

    # ---------------------------------------------------------------------- the passes
    def feed(self, pass_index: int, features: Any, labels: Any,
             source_probs: Any = None) -> TwoPassScores:
        """Adds one chunk to pass ``pass_index`` (0-based: 0, 1, and 2 for SFDA); a pass
        beyond the current one closes the current one first."""
        i = as_index(pass_index, "pass_index")
        fn = (self.first_pass, self.second_pass, self.third_pass)
        if i >= self.passes:
            raise ParameterError(f"these scores need {self.passes} passes; got pass {i}")
        return fn[i](features, labels, source_probs)

    def _new_stats(self, like: Any) -> Any:
        """Empty statistics on the backend of the chunk `like`."""
        if _is_torch(like):
            return self._device_stats(self.num_classes, self.dim, like)
        return _Numpy.new_stats(self.num_classes, self.dim, like)

    def first_pass(self, features: Any, labels: Any, source_probs: Any = None) -> TwoPassScores:
        """Adds a chunk to the statistics (and LEEP's joint). All-or-nothing per chunk."""
        if self.stage != 1:
            raise ParameterError("the first pass is closed; start a new TwoPassScores")
        x, y, theta, kind = self._chunk(features, labels, source_probs)
        ops = kind[0]
        j = None
        if theta is not None:
            j = ops.index_add(self.num_classes, y, theta)
            if self._joint is not None and self._joint.shape != j.shape:
                raise ShapeError(f"source_probs have {j.shape[1]} columns, earlier chunks "
                                 f"{self._joint.shape[1]}")
        if self._needs_features:  # all-or-nothing: the one step that validates goes first
            stats = self._new_stats(x) if self._stats is None else self._stats
            stats.update(x, y)
            self._stats = stats
        if j is not None:
            self._joint = j if self._joint is None else self._joint + j
        self._commit_kind(kind)
        self._rows[0] += int(y.shape[0])
        return self

    def close_pass(self) -> TwoPassScores:
        """Ends the current pass and fixes what the next needs (called by the next pass's first
        chunk when not called before). Copies made after it start the next pass empty, so
        shards can each take a copy, run the next pass, and `merge`."""
        if self.stage == 1:
            self._close_first()
        elif self.stage == 2:
            if self._rows[1] != self._rows[0]:
                raise ParameterError(f"the second pass saw {self._rows[1]} rows, the first "
                                     f"{self._rows[0]}: feed the same chunks")
            if self.passes < 3:
                raise ParameterError("no pass follows the second for these scores")
            self._close_second()
        else:
            raise ParameterError("the last pass cannot be closed; call result()")
        self.stage += 1
        return self

    def _close_first(self) -> None:
        n = self._rows[0]
        if n == 0:
            raise ParameterError("the first pass saw no rows")
        ops = self._ops
        stats = None
        if self._needs_features:
            stats = _core(self._stats)
            present = stats.present_classes()
        else:
            present = np.flatnonzero(ops.host(self._joint).sum(1) > 0)
        if present.size < 2:
            raise TooFewClassesError(
                f"at least 2 classes with samples are needed, but only {present.size} present")
        first = FirstPass(stats, self._joint, present, n, self._coarse, ops)
        scores = accumulators(self.scores, first, self._opt, self._new_stats)
        h = hashlib.sha256(repr(sorted(self._opt.items())).encode())
        if stats is not None:
            h.update(stats.to_bytes())
        if self._joint is not None:
            h.update(np.ascontiguousarray(ops.host(self._joint)).tobytes())
        self._stats, self._first, self._scores, self._key = stats, first, scores, h.hexdigest()

    def _close_second(self) -> None:
        assert self._first is not None
        mixed = self._scores["sfda"].close_second(self._first.present)
        self._key = hashlib.sha256(self._key.encode() + mixed).hexdigest()

    def _later_chunk(self, features: Any, labels: Any, source_probs: Any) -> Chunk:
        """A chunk of a later pass (its kind is the first pass's: `_chunk` checks it)."""
        x, y, theta, _ = self._chunk(features, labels, source_probs)
        return Chunk(x, y, self._code(y), theta)

    def second_pass(self, features: Any, labels: Any, source_probs: Any = None) -> TwoPassScores:
        """Adds a chunk of the second pass: the posteriors under the classifiers of pass 1.
        All-or-nothing per chunk: every score's part is computed before any is added."""
        if self.stage == 1:
            self.close_pass()
        if self.stage != 2:
            raise ParameterError("the second pass is closed")
        chunk = self._later_chunk(features, labels, source_probs)
        parts = [(acc, acc.measure(chunk)) for acc in self._scores.values()]
        # the one addition that validates (SFDA's statistics update) goes first
        for acc, part in sorted(parts, key=lambda ap: ap[0].name != "sfda"):
            acc.add(part)
        self._rows[1] += int(chunk.y.shape[0])
        return self

    def third_pass(self, features: Any, labels: Any, source_probs: Any = None) -> TwoPassScores:
        """Adds a chunk of SFDA's third pass: the true-class posteriors of the mixed features
        under the discriminant refit on them (pass 2's statistics)."""
        if self.passes < 3:
            raise ParameterError("only SFDA needs a third pass")
        while self.stage < 3:  # closing an unfed second pass says so
            self.close_pass()
        chunk = self._later_chunk(features, labels, source_probs)
        sfda = self._scores["sfda"]
        sfda.add_third(sfda.measure_third(chunk))
        self._rows[2] += int(chunk.y.shape[0])
        return self

    # -------------------------------------------------------------------- merge, result
    def copy(self) -> TwoPassScores:
        """An independent copy (the statistics and accumulators copied)."""
        import copy as _copy

        other = TwoPassScores.__new__(TwoPassScores)
        other.__dict__.update(self.__dict__)
        if self._stats is not None:
            other._stats = self._stats.copy() if isinstance(self._stats, CollapseStats) \
                else _copy.deepcopy(self._stats)
        other._joint = None if self._joint is None else self._joint * 1.0
        other._rows = list(self._rows)
        other._scores = {name: acc.copy() for name, acc in self._scores.items()}
        other._codes = dict(self._codes)
        return other

    def merge(self, other: TwoPassScores) -> TwoPassScores:
        """Adds another state of the same pass into this one.

        In the first pass any two states merge (their statistics and joints add). In a later
        pass both must come from the same first-pass statistics (copies taken after
        `close_pass`); an
        `IncompatibleStatsError` says when not.
        """
        if not isinstance(other, TwoPassScores):
            raise IncompatibleStatsError(f"can only merge a TwoPassScores, got "
                                         f"{type(other).__name__}")
        if (other.scores, other._opt, other.num_classes, other.dim) != \
                (self.scores, self._opt, self.num_classes, self.dim):
            raise IncompatibleStatsError("the two states compute different scores or options")
        if other.stage != self.stage:
            raise IncompatibleStatsError(f"the states are in different passes ({self.stage} and "
                                         f"{other.stage})")
        if self._ops is not None and other._ops is not None and other._ops is not self._ops:
            raise IncompatibleStatsError("one state holds numpy arrays, the other torch tensors")
        if self.stage == 1:
            self._merge_first(other)
            return self
        if other._key != self._key:
            raise IncompatibleStatsError(
                "the states were built from different first-pass statistics (copy one state "
                "after close_pass() for every shard)")
        # SFDA first: merging its statistics is the one step that can fail
        for name, acc in sorted(self._scores.items(), key=lambda kv: kv[0] != "sfda"):
            if acc.passes >= self.stage:  # a score whose passes are over has nothing to add
                acc.merge(other._scores[name], self.stage)
        self._rows[self.stage - 1] += other._rows[self.stage - 1]
        return self

    def _merge_first(self, other: TwoPassScores) -> None:
        oj = other._joint
        if oj is not None and self._joint is not None and self._joint.shape != oj.shape:
            raise IncompatibleStatsError("the LEEP joints have different source classes")
        if other._stats is not None:  # the only step that can fail otherwise: done first
            self._stats = _core(other._stats) if self._stats is None else \
                _core(self._stats).merge(_core(other._stats))
        if oj is not None:
            self._joint = oj * 1.0 if self._joint is None else self._joint + oj
        self._ops = self._ops or other._ops
        self._rows[0] += other._rows[0]
        self._coarse |= other._coarse

    def result(self) -> TwoPassResult:
        """The scores, once every pass has seen every row (the counts of rows per pass must
        agree with the first pass's)."""
        if self.stage < self.passes or self._rows[self.passes - 1] != self._rows[0]:
            raise ParameterError(
                f"the passes are incomplete: rows seen per pass {self._rows[:self.passes]}, "
                f"{self.passes} passes needed")
        first = self._first
        assert first is not None
        out = {name: acc.result(first) for name, acc in self._scores.items()}
        return TwoPassResult(out.get("etran"), out.get("sfda"), out.get("ncti"), out.get("leep"),
                             first.num_samples, self.passes)


def two_pass_scores(
    batches: Callable[[], Iterable[Tuple[Any, ...]]],
    num_classes: int,
    dim: int,
    **options: Any,
) -> TwoPassResult:
    """Runs `TwoPassScores` over re-iterable data.

    Parameters
    ----------
    batches : callable
        Called once per pass; returns an iterable of ``(features, labels)`` or
        ``(features, labels, source_probs)`` chunks — the same rows every time (a data loader
        without shuffling, or chunks of a memory-mapped file).
    num_classes : int
        $K$, as for `TwoPassScores`: labels are integers in `0..K-1`.
    dim : int
        $D$, the feature dimension.
    **options
        The scores and their options (see `TwoPassScores`).

    Returns
    -------
    TwoPassResult
        The scores, the row count and the passes made.

    Examples
    --------
    >>> from etfcore import data, transfer
    >>> x, y = data.load_digits()
    >>> r = transfer.two_pass_scores(lambda: ((x[a:a + 600], y[a:a + 600])
    ...                                       for a in range(0, len(y), 600)), 10, 64)
    >>> r.passes, r.num_samples
    (3, 1797)
    """
    state = TwoPassScores(num_classes, dim, **options)
    for p in range(state.passes):
        for chunk in batches():
            if not 2 <= len(chunk) <= 3:
                raise ParameterError("each chunk must be (features, labels[, source_probs])")
            state.feed(p, *chunk)
    return state.result()
