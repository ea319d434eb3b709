r"""Ground-truth transfer tables as data: which accuracy each model reaches on each target.

The file format (CSV or JSON, chosen by the file's extension) holds one row per
``(model, target)`` pair:

- required columns ``model`` (text), ``target`` (text) and ``accuracy`` (a finite number, in the
  table's own unit: fractions or percent, the same for every row of one target);
- optional columns ``source`` (where the number was published: a citation or address),
  ``license`` (the license under which the number may be redistributed), ``metric`` (what was
  measured, e.g. ``"linear probe top-1"``); any other column is kept, as text, in the row's
  ``extra``;
- table-level metadata: in CSV, comment lines ``# key: value`` before the header; in JSON, the
  object ``{"format": "etfcore-ground-truth", "version": 1, "metadata": {...}, "rows": [...]}``.

A ``(model, target)`` pair appears at most once.
[`load_ground_truth`][etfcore.transfer.load_ground_truth] reads either form and raises
[`CorruptDataError`][etfcore.CorruptDataError] for a malformed file (naming the line or row),
[`ParameterError`][etfcore.ParameterError] for a missing file or an unknown extension;
[`GroundTruth.for_target`][etfcore.transfer.ground_truth.GroundTruth.for_target] raises
[`ParameterError`][etfcore.ParameterError] for an unknown target and
[`GroundTruth.accuracies`][etfcore.transfer.ground_truth.GroundTruth.accuracies] for a model the
table lacks.

No table is shipped with etfcore (`SHIPPED_TABLES` is empty): the published ground truths
we know of come from repositories without a license file (SFDA's, PED's, ETran's) or were not
checked for one, so their numbers are not redistributed here. Write your own table in this
format.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from ..errors import CorruptDataError, ParameterError

__all__ = [
    "GROUND_TRUTH_FORMAT",
    "GroundTruth",
    "GroundTruthRow",
    "SHIPPED_TABLES",
    "load_ground_truth",
]

#: The ``format`` tag of the JSON form.
GROUND_TRUTH_FORMAT = "etfcore-ground-truth"
_VERSION = 1
_REQUIRED = ("model", "target", "accuracy")
_OPTIONAL = ("source", "license", "metric")

#: Tables distributed with etfcore, by name (none: see the module documentation).
SHIPPED_TABLES: Dict[str, str] = {}


@dataclasses.dataclass(frozen=True)
class GroundTruthRow:
    """One measured transfer: ``model`` on ``target`` reached ``accuracy``."""

    model: str
    target: str
    accuracy: float
    source: str = ""
    license: str = ""
    metric: str = ""
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _accuracy(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise CorruptDataError(f"{where}: accuracy must be a number, got {value!r}")
    try:
        a = float(value)
    except (TypeError, ValueError):
        raise CorruptDataError(f"{where}: accuracy must be a number, got {value!r}") from None
    if not math.isfinite(a):
        raise CorruptDataError(f"{where}: accuracy must be finite, got {value!r}")
    return a


def _row(record: Mapping[str, Any], where: str) -> GroundTruthRow:
    missing = [c for c in _REQUIRED if record.get(c) in (None, "")]
    if missing:
        raise CorruptDataError(f"{where}: missing {', '.join(missing)}")
    for c in ("model", "target"):
        if not isinstance(record[c], str):
            raise CorruptDataError(f"{where}: {c} must be text, got {record[c]!r}")
    extra = {str(k): "" if v is None else str(v) for k, v in record.items()
             if k not in _REQUIRED and k not in _OPTIONAL}
    return GroundTruthRow(
        record["model"].strip(), record["target"].strip(),
        _accuracy(record["accuracy"], where),
        *("" if record.get(c) is None else str(record[c]) for c in _OPTIONAL),
        extra=extra,
    )


class GroundTruth:
    """A table of ``(model, target, accuracy)`` rows with table-level ``metadata``."""

    def __init__(self, rows: Iterable[GroundTruthRow],
                 metadata: Optional[Mapping[str, str]] = None) -> None:
        self.rows: List[GroundTruthRow] = list(rows)
        self.metadata: Dict[str, str] = {str(k): str(v) for k, v in (metadata or {}).items()}
        seen = set()
        for i, r in enumerate(self.rows):
            if not isinstance(r, GroundTruthRow):
                raise ParameterError(f"row {i} is not a GroundTruthRow: {type(r).__name__}")
            key = (r.model, r.target)
            if key in seen:
                raise CorruptDataError(
                    f"row {i}: model {r.model!r} on target {r.target!r} appears twice")
            seen.add(key)

    @classmethod
    def from_mapping(cls, accuracies: Mapping[str, float], target: str = "target",
                     **metadata: str) -> GroundTruth:
        """One target's table from ``{model: accuracy}``."""
        return cls([GroundTruthRow(str(m), str(target), _accuracy(a, f"model {m!r}"))
                    for m, a in accuracies.items()], metadata)

    def targets(self) -> List[str]:
        """The targets, in order of first appearance."""
        return list(dict.fromkeys(r.target for r in self.rows))

    def models(self, target: str) -> List[str]:
        return [r.model for r in self.rows if r.target == target]

    def for_target(self, target: Optional[str] = None) -> Dict[str, float]:
        """``{model: accuracy}`` on ``target`` (may be omitted when the table has one target)."""
        targets = self.targets()
        if target is None:
            if len(targets) != 1:
                raise ParameterError(
                    f"the table has {len(targets)} targets {targets}; name one")
            target = targets[0]
        if target not in targets:
            raise ParameterError(f"target {target!r} is not in the table; it has {targets}")
        return {r.model: r.accuracy for r in self.rows if r.target == target}

    def accuracies(self, models: Sequence[str], target: Optional[str] = None) -> List[float]:
        """The accuracies of ``models`` on ``target``, in that order."""
        table = self.for_target(target)
        missing = [m for m in models if m not in table]
        if missing:
            raise ParameterError(
                f"no ground truth for {missing} on this target; the table has {sorted(table)}")
        return [table[m] for m in models]

    def _columns(self) -> List[str]:
        extra = list(dict.fromkeys(k for r in self.rows for k in r.extra))
        return [*_REQUIRED, *_OPTIONAL, *extra]

    def to_csv(self) -> str:
        out = io.StringIO()
        for k, v in self.metadata.items():
            out.write(f"# {k}: {v}\n")
        cols = self._columns()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(cols)
        for r in self.rows:
            d = {**dataclasses.asdict(r), **r.extra}
            w.writerow([repr(r.accuracy) if c == "accuracy" else d.get(c, "") for c in cols])
        return out.getvalue()

    def to_json(self) -> str:
        rows = []
        for r in self.rows:
            d: Dict[str, Any] = {"model": r.model, "target": r.target, "accuracy": r.accuracy}
            d.update({c: getattr(r, c) for c in _OPTIONAL if getattr(r, c)})
            d.update(r.extra)
            rows.append(d)
        return json.dumps({"format": GROUND_TRUTH_FORMAT, "version": _VERSION,
                           "metadata": self.metadata, "rows": rows}, indent=1)

    def save(self, path: str) -> None:
        """Writes the CSV or JSON form, by the extension of ``path``."""
        ext = _extension(path)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(self.to_csv() if ext == ".csv" else self.to_json())

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, GroundTruth) and self.rows == other.rows
                and self.metadata == other.metadata)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"GroundTruth({len(self.rows)} rows, targets {self.targets()})"


def _extension(path: str) -> str:
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in (".csv", ".json"):
        raise ParameterError(f"a ground-truth file ends in .csv or .json, got {path!r}")
    return ext


def parse_csv(text: str) -> GroundTruth:
    """The CSV form (see the module documentation) from its text."""
    lines = text.splitlines()
    meta: Dict[str, str] = {}
    start = 0
    while start < len(lines) and (lines[start].startswith("#") or not lines[start].strip()):
        body = lines[start].lstrip("#").strip()
        if body:
            if ":" not in body:
                raise CorruptDataError(
                    f"line {start + 1}: a metadata line reads '# key: value', got {lines[start]!r}")
            k, v = body.split(":", 1)
            meta[k.strip()] = v.strip()
        start += 1
    reader = csv.DictReader(lines[start:])
    header = reader.fieldnames or []
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        raise CorruptDataError(f"line {start + 1}: the header lacks the column(s) {missing}; "
                               f"it has {header}")
    rows = []
    for i, rec in enumerate(reader):
        where = f"line {start + 2 + i}"
        if None in rec:
            raise CorruptDataError(f"{where}: more fields than the header has")
        rows.append(_row(rec, where))
    return GroundTruth(rows, meta)


def parse_json(text: str) -> GroundTruth:
    """The JSON form (see the module documentation) from its text."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise CorruptDataError(f"not valid JSON: {e}") from e
    if not isinstance(obj, dict) or obj.get("format") != GROUND_TRUTH_FORMAT:
        raise CorruptDataError(f"not a ground-truth table: the object's format must be "
                               f"{GROUND_TRUTH_FORMAT!r}")
    if obj.get("version") != _VERSION:
        raise CorruptDataError(f"unsupported ground-truth version {obj.get('version')!r}")
    rows = obj.get("rows")
    meta = obj.get("metadata") or {}
    if not isinstance(rows, list) or not isinstance(meta, dict):
        raise CorruptDataError("'rows' must be a list and 'metadata' an object")
    out = []
    for i, rec in enumerate(rows):
        if not isinstance(rec, dict):
            raise CorruptDataError(f"row {i}: must be an object, got {type(rec).__name__}")
        out.append(_row(rec, f"row {i}"))
    return GroundTruth(out, meta)


def load_ground_truth(path: Any) -> GroundTruth:
    """Reads a ground-truth table (``.csv`` or ``.json``; format in the module documentation)."""
    p = os.fspath(path)
    ext = _extension(p)
    if not os.path.exists(p):
        raise ParameterError(f"ground-truth file not found: {p}")
    with open(p, encoding="utf-8", newline="") as f:
        text = f.read()
    return parse_csv(text) if ext == ".csv" else parse_json(text)
