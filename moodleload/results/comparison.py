"""The comparison of a run with its baseline, as a typed value.  compare.py (two runs, block
by block) and runcompare.py (runs against their spread) build it row by row; everything
else (the verdict, the reports, --sizing) reads these fields.  It is saved inside the
results (``comparison``) as ``to_dict`` gives it, and read back by ``from_dict``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, TypeVar

from moodleload.exits import UsageError
from moodleload.results.check import is_count, is_number


class RowVerdict(StrEnum):
    """What the comparison says of a page, and of the whole run: saved as its text."""

    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    SAME = "same"  # a slowdown beyond the tolerance ruled out
    UNSURE = "unsure"  # neither shown nor ruled out: more runs would tell
    NOT_COMPARABLE = "not comparable"  # the runs were made with other settings


VERDICTS = tuple(RowVerdict)


class Judge(StrEnum):
    """--judge: what decides a verdict (judging/work.py says why each); saved as its text."""

    TIME = "time"  # service time only: what users wait for
    WORK = "work"  # the CPU time per answer and the DB reads: what the code does
    BOTH = "both"  # time, and a work regression alone is bad too


class Measure(StrEnum):
    """What a row's verdict rests on (``decided_by``), and the two measures a page is judged by."""

    TIME = "time"
    WORK = "work"


# ---- what a saved comparison may hold: each field's check, one place, for every reader

# Numbers within the bounds the results' other numbers keep (resultcheck.MAX_MAGNITUDE).
_number = is_number


def _optional_number(value: Any) -> bool:
    return value is None or is_number(value)


def _count(value: Any) -> bool:
    return value is None or is_count(value)


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _optional_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _optional_texts(value: Any) -> bool:
    return value is None or _texts(value)


def _pair(value: Any) -> bool:
    """(baseline, this run), either unknown."""
    return value is None or (isinstance(value, list) and len(value) == 2 and all(map(_optional_number, value)))


def _interval(value: Any) -> bool:
    return value is None or (isinstance(value, list) and len(value) == 2 and all(map(_number, value)))


Check = Callable[[Any], bool]
FieldsCheck = Callable[[Any], "str | None"]


def _one_of(*choices: Any) -> Check:
    return lambda value: value in choices


def _fields(checks: dict[str, Check], required: tuple[str, ...] = ()) -> FieldsCheck:
    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return "not an object"
        for key in required:
            if key not in value:
                return f"{key} is missing"
        for key, is_right in checks.items():
            if key in value and not is_right(value[key]):
                return f"{key} is {value[key]!r:.40}"
        return None
    return check


def _optional(check: FieldsCheck) -> Check:
    return lambda value: value is None or check(value) is None


def _counts(value: Any) -> bool:
    """(baseline, this run) counts."""
    return value is None or (isinstance(value, list) and len(value) == 2 and all(map(is_count, value)))


def _optional_bool(value: Any) -> bool:
    return value is None or isinstance(value, bool)


_WORK_ROW = _fields({"cpu_ms": _pair, "verdict": _one_of(*VERDICTS), "reasons": _texts, "ratio": _optional_number,
                     "ratio_ci95": _interval, "rules_out_pct": _optional_number, "p_value": _optional_number,
                     "noise_pct": _optional_number, "detectable_pct": _optional_number, "runs": _counts,
                     "measured": _one_of(None, *VERDICTS)}, required=("verdict", "reasons"))
_ROW = _fields({"verdict": _one_of(*VERDICTS), "reasons": _texts, "base_ms": _optional_number,
                "new_ms": _optional_number, "ratio": _optional_number, "ratio_ci95": _interval,
                "p_value": _optional_number, "db_reads": _pair, "rules_out_pct": _optional_number,
                "detectable_pct": _optional_number, "server_ms": _pair, "work": _optional(_WORK_ROW),
                "decided_by": _one_of(*Measure), "alpha": _optional_number, "relative_ratio": _optional_number,
                "noise_pct": _optional_number, "blocks": _counts, "runs": _counts, "failure_rate": _pair,
                "failure_rise_upper": _optional_number, "failures_ruled_out": _optional_bool,
                "failure_margin": _optional_number}, required=("verdict", "reasons"))
_CHANGE = _fields({"query": _text, "tables": _texts, **{f"{side}_{key}": _number for side in ("base", "new")
                                                        for key in ("calls", "ms", "work")},
                   **{f"{key}_change": _number for key in ("calls", "ms", "work")},
                   **{f"{key}_changed": _optional_bool for key in ("calls", "ms", "work")},
                   "page": _text, "calls_change_per_view": _number},
                  required=("query", "tables", "base_calls", "new_calls", "calls_change", "base_ms", "new_ms",
                            "ms_change"))
_WHOLE_WORK = _fields({"unit": _text, "base": _number, "new": _number, "noise": _number, "base_runs": _count,
                       "new_runs": _count}, required=("unit", "base", "new", "noise", "base_runs", "new_runs"))


def _changes(value: Any) -> bool:
    return isinstance(value, list) and all(_CHANGE(change) is None for change in value)


_STATEMENTS = _fields({"per": _one_of("request", "page view"), "by_calls": _changes, "by_time": _changes,
                       "by_work": _changes, "work": _optional(_WHOLE_WORK), "base_runs": _count, "new_runs": _count},
                      required=("per", "by_calls", "by_time"))
_MORE_RUNS = _fields({"candidate": _count, "baseline": _count, "each": _count})
_COMPARISON = _fields({"verdict": _one_of(*VERDICTS), "method": _one_of("blocks", "runs"),
                       "judge": _one_of(*Judge), "work_would_decide": _optional_text,
                       "alpha_per_url": lambda value: _number(value) and 0 < value <= 1,
                       "max_regression_pct": _number, "urls": lambda value: isinstance(value, dict),
                       "notes": _texts, "not_comparable": _optional_texts, "rules_out_pct": _optional_number,
                       "site_rules_out_pct": _optional_number, "site_detectable_pct": _optional_number,
                       "undecided": _optional_text, "more_runs": _optional(_MORE_RUNS), "advice": _texts,
                       "statements": _optional(_STATEMENTS), "db_work_regression": _optional_text,
                       "baseline_runs": _count, "candidate_runs": _count, "failure_margin": _optional_number,
                       "spread_pct": _optional_number},
                      required=("verdict", "alpha_per_url", "max_regression_pct", "urls"))


def comparison_problem(raw: Any) -> str | None:
    """What is wrong with a saved comparison, or None: every field a reader formats or sums
    is of its type, so a damaged file is one line (exit 128), never a crash in a report."""
    problem = _COMPARISON(raw)
    if problem:
        return problem
    for name, row in raw["urls"].items():
        problem = _ROW(row)
        if problem:
            return f"urls[{name!r:.60}]: {problem}"
    if raw.get("statements") is not None:
        problem = _STATEMENTS(raw["statements"])
        if problem:
            return f"statements: {problem}"
    return None


# ---- the typed form: each class's fields are its saved keys (``key`` where the saved name
# differs); a field that is None is not written, and reads back as None.

def _saved(key: str | None = None, read: Callable[[Any], Any] | None = None, default: Any = None) -> Any:
    """A field whose saved key is ``key`` (its own name when None), read with ``read``."""
    return field(default=default, metadata={"key": key, "read": read})


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value)


def _read_fields(cls: type[Typed], raw: dict[str, Any], **given: Any) -> Typed:
    """An instance of the dataclass ``cls`` from its saved form (``given``: fields not saved in it)."""
    values = dict(given)
    for item in fields(cls):  # type: ignore[arg-type]
        if item.name in given:
            continue
        key = item.metadata.get("key") or item.name
        if raw.get(key) is not None:
            read = item.metadata.get("read")
            values[item.name] = read(raw[key]) if read is not None else raw[key]
    return cls(**values)


def _write_fields(instance: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The saved form of a dataclass of this module: its fields that are not None, by saved key."""
    saved: dict[str, Any] = {}
    for item in fields(instance):
        value = getattr(instance, item.name)
        if item.name in skip or value is None:
            continue
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        elif isinstance(value, tuple):
            value = [entry.to_dict() if hasattr(entry, "to_dict") else entry for entry in value]
        saved[item.metadata.get("key") or item.name] = value
    return saved


Typed = TypeVar("Typed")
Pair = tuple[Any, Any]  # (baseline, this run), either may be None


@dataclass(frozen=True)
class WorkRow:
    """One row's work against the baseline: the PHP worker's CPU time per answer (work.py)."""

    cpu_ms: Pair = _saved(read=_tuple, default=(None, None))  # mean ms per answer, None where not known
    verdict: RowVerdict = _saved(read=RowVerdict, default=RowVerdict.UNSURE)
    reasons: tuple[str, ...] = _saved(read=_tuple, default=())
    ratio: float | None = None
    interval: Pair | None = _saved("ratio_ci95", _tuple)  # 95 % interval of the ratio
    p_value: float | None = None
    noise_pct: float | None = None  # the run-to-run spread of CPU time (runs)
    detectable_pct: float | None = None
    rules_out_pct: float | None = None
    runs: Pair | None = _saved(read=_tuple)  # runs with data: (baseline, this commit)
    measured: RowVerdict | None = _saved(read=RowVerdict)  # what the work said before a doubt held it

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WorkRow:
        return _read_fields(cls, raw)

    def to_dict(self) -> dict[str, Any]:
        return _write_fields(self)


@dataclass(frozen=True)
class ComparisonRow:
    """One URL's line in the comparison with the baseline."""

    name: str = ""
    verdict: RowVerdict = _saved(read=RowVerdict, default=RowVerdict.UNSURE)
    reasons: tuple[str, ...] = _saved(read=_tuple, default=())
    base_ms: float | None = None
    new_ms: float | None = None
    ratio: float | None = None
    interval: Pair | None = _saved("ratio_ci95", _tuple)  # 95 % interval of the ratio
    p_value: float | None = None
    alpha: float | None = None  # the page's own significance level (runs)
    relative_ratio: float | None = None  # against the other pages (runs)
    noise_pct: float | None = None  # the run-to-run spread of service time (runs)
    db_reads: Pair = _saved(read=_tuple, default=(None, None))  # None where a page had no footer
    rules_out_pct: float | None = None  # the slowdown above which the data rule it out (good needs < tolerance)
    detectable_pct: float | None = None  # the smallest slowdown these runs can call (runs against their spread)
    server_ms: Pair | None = _saved(read=_tuple)  # Moodle's own server time (footer, median ms)
    work: WorkRow | None = _saved(read=WorkRow.from_dict)  # the CPU time per answer, where the footer gave it
    decided_by: Measure = _saved(read=Measure, default=Measure.TIME)  # what the row's verdict rests on (--judge)
    blocks: Pair | None = _saved(read=_tuple)  # time blocks with data (one run a side)
    runs: Pair | None = _saved(read=_tuple)  # runs with data (runs against their spread)
    failure_rate: Pair | None = _saved(read=_tuple)
    failure_rise_upper: float | None = None  # the rise of the failure rate the data do not rule out
    failures_ruled_out: bool | None = None
    failure_margin: float | None = None

    @classmethod
    def from_dict(cls, name: str, row: dict[str, Any]) -> ComparisonRow:
        return _read_fields(cls, row, name=name)

    def to_dict(self) -> dict[str, Any]:
        return _write_fields(self, skip=("name",))


@dataclass(frozen=True)
class StatementChange:
    """One statement whose calls, time or work per request (or page view) changed."""

    query: str = ""
    tables: tuple[str, ...] = _saved(read=_tuple, default=())
    base_calls: float = 0.0
    new_calls: float = 0.0
    calls_change: float = 0.0
    calls_changed: bool | None = None  # beyond the baseline runs' noise (None before 0.7)
    base_ms: float = 0.0
    new_ms: float = 0.0
    ms_change: float = 0.0
    ms_changed: bool | None = None
    base_work: float | None = None  # buffer pages or rows examined per request (0.7+)
    new_work: float | None = None
    work_change: float | None = None
    work_changed: bool | None = None
    page: str | None = None  # the one page whose DB reads moved, where one did (statements.attribute)
    calls_change_per_view: float | None = None  # the change seen from that page

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StatementChange:
        return _read_fields(cls, raw)

    def to_dict(self) -> dict[str, Any]:
        return _write_fields(self)


@dataclass(frozen=True)
class WholeWork:
    """The database's whole work per request on each side, with the baseline runs' noise."""

    unit: str = ""
    base: float = 0.0
    new: float = 0.0
    noise: float = 0.0
    base_runs: int = 0
    new_runs: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WholeWork:
        return _read_fields(cls, raw)

    def to_dict(self) -> dict[str, Any]:
        return _write_fields(self)


def _read_changes(raw: list[dict[str, Any]]) -> tuple[StatementChange, ...]:
    return tuple(StatementChange.from_dict(change) for change in raw)


@dataclass(frozen=True)
class StatementChanges:
    """The statements that changed most from the baseline's runs to this commit's
    (judging.statements.statement_changes), by calls, time and work."""

    per: str = "request"  # "request", or "page view" where only one URL ran
    base_runs: int | None = None
    new_runs: int | None = None
    by_calls: tuple[StatementChange, ...] = _saved(read=_read_changes, default=())
    by_time: tuple[StatementChange, ...] = _saved(read=_read_changes, default=())
    by_work: tuple[StatementChange, ...] = _saved(read=_read_changes, default=())
    work: WholeWork | None = _saved(read=WholeWork.from_dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StatementChanges:
        return _read_fields(cls, raw)

    def to_dict(self) -> dict[str, Any]:
        return _write_fields(self)


@dataclass(frozen=True)
class MoreRuns:
    """How many more runs would decide, at the spread measured (None: none within reach)."""

    candidate: int | None = None  # of this commit
    baseline: int | None = None  # of the baseline
    each: int | None = None  # of both

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> MoreRuns:
        return _read_fields(cls, raw)

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "baseline": self.baseline, "each": self.each}


@dataclass(frozen=True)
class Comparison:
    """What the runs of a commit say against its baseline's, page by page and as a whole."""

    verdict: RowVerdict = _saved(read=RowVerdict, default=RowVerdict.UNSURE)
    method: str = _saved(default="blocks")  # "blocks" (one run a side) or "runs"
    judge: Judge = _saved(read=Judge, default=Judge.TIME)  # --judge (comparisons before 0.7: time)
    alpha_per_url: float = 0.05
    max_regression_pct: float = 0.0
    rows: dict[str, ComparisonRow] = field(default_factory=dict, metadata={"key": "urls"})
    failure_margin: float | None = None
    notes: tuple[str, ...] = _saved(read=_tuple, default=())
    not_comparable: tuple[str, ...] = _saved(read=_tuple, default=())
    baseline_runs: int | None = None
    candidate_runs: int | None = None
    spread_pct: float | None = None  # the run-to-run spread of the baseline's runs (runs)
    rules_out_pct: float | None = None
    site_rules_out_pct: float | None = None
    site_detectable_pct: float | None = None
    undecided: str | None = None
    # When time could not decide: what the work would have said (runcompare.work_would_decide)
    work_would_decide: str | None = None
    more_runs: MoreRuns = _saved(read=MoreRuns.from_dict, default=MoreRuns())
    advice: tuple[str, ...] = _saved(read=_tuple, default=())
    statements: StatementChanges | None = _saved(read=StatementChanges.from_dict)
    db_work_regression: str | None = None

    @classmethod
    def from_dict(cls, raw: object, where: str = "comparison") -> Comparison:
        """A saved comparison, refused in one line when it is not one."""
        problem = comparison_problem(raw)
        if problem:
            raise UsageError(f"{where} is damaged ({problem})")
        assert isinstance(raw, dict)  # comparison_problem refuses anything else
        return cls.read_checked(raw)

    @classmethod
    def read_checked(cls, raw: dict[str, Any]) -> Comparison:
        """The typed form of a saved comparison ``comparison_problem`` found nothing wrong with."""
        return _read_fields(cls, raw, rows={name: ComparisonRow.from_dict(name, row)
                                            for name, row in raw["urls"].items()})

    def to_dict(self) -> dict[str, Any]:
        saved = _write_fields(self, skip=("rows",))
        saved["urls"] = {name: row.to_dict() for name, row in self.rows.items()}
        return saved

    def with_note(self, note: str) -> Comparison:
        return replace(self, notes=(*self.notes, note))

    def with_statements(self, changes: StatementChanges | None, work_regression: str | None = None) -> Comparison:
        """With the statements that changed; ``work_regression``: the line that calls the
        database's whole work per request a regression (statements.work_regression)."""
        if work_regression is None or self.verdict == RowVerdict.NOT_COMPARABLE:
            return replace(self, statements=changes, db_work_regression=work_regression)
        return replace(self, statements=changes, db_work_regression=work_regression, verdict=RowVerdict.REGRESSION,
                       undecided=None)

    def rows_with(self, verdict: RowVerdict) -> list[ComparisonRow]:
        return [row for row in self.rows.values() if row.verdict == verdict]
