"""The comparison of a run with its baseline, as a typed value.  compare.py (two runs, block
by block) and runcompare.py (runs against their spread) build its saved form; everything
else (the verdict, the reports, --sizing) reads these fields.  It is saved inside the
results (``comparison``) as ``to_dict`` gives it, and read back by ``from_dict``."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import StrEnum

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


# ---- what a saved comparison may hold: each field's check, one place, for every reader

# Numbers within the bounds the results' other numbers keep (resultcheck.MAX_MAGNITUDE).
_number = is_number


def _optional_number(value) -> bool:
    return value is None or is_number(value)


def _count(value) -> bool:
    return value is None or is_count(value)


def _text(value) -> bool:
    return isinstance(value, str)


def _optional_text(value) -> bool:
    return value is None or isinstance(value, str)


def _texts(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _optional_texts(value) -> bool:
    return value is None or _texts(value)


def _pair(value) -> bool:
    """(baseline, this run), either unknown."""
    return value is None or (isinstance(value, list) and len(value) == 2 and all(map(_optional_number, value)))


def _interval(value) -> bool:
    return value is None or (isinstance(value, list) and len(value) == 2 and all(map(_number, value)))


def _one_of(*choices):
    return lambda value: value in choices


def _fields(checks: dict, required: tuple = ()):
    def check(value) -> str | None:
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


def _optional(check):
    return lambda value: value is None or check(value) is None


_WORK_ROW = _fields({"cpu_ms": _pair, "verdict": _one_of(*VERDICTS), "reasons": _texts, "ratio": _optional_number,
                     "ratio_ci95": _interval, "rules_out_pct": _optional_number,
                     "detectable_pct": _optional_number}, required=("verdict", "reasons"))
_ROW = _fields({"verdict": _one_of(*VERDICTS), "reasons": _texts, "base_ms": _optional_number,
                "new_ms": _optional_number, "ratio": _optional_number, "ratio_ci95": _interval,
                "p_value": _optional_number, "db_reads": _pair, "rules_out_pct": _optional_number,
                "detectable_pct": _optional_number, "server_ms": _pair, "work": _optional(_WORK_ROW),
                "decided_by": _one_of("time", "work")}, required=("verdict", "reasons"))
_CHANGE = _fields({"query": _text, "tables": _texts, **{f"{side}_{key}": _number for side in ("base", "new")
                                                        for key in ("calls", "ms", "work")},
                   **{f"{key}_change": _number for key in ("calls", "ms", "work")},
                   "page": _text, "calls_change_per_view": _number},
                  required=("query", "tables", "base_calls", "new_calls", "calls_change", "base_ms", "new_ms",
                            "ms_change"))
_WHOLE_WORK = _fields({"unit": _text, "base": _number, "new": _number, "noise": _number, "base_runs": _count,
                       "new_runs": _count}, required=("unit", "base", "new", "noise", "base_runs", "new_runs"))


def _changes(value) -> bool:
    return isinstance(value, list) and all(_CHANGE(change) is None for change in value)


_STATEMENTS = _fields({"per": _one_of("request", "page view"), "by_calls": _changes, "by_time": _changes,
                       "by_work": _changes, "work": _optional(_WHOLE_WORK)}, required=("per", "by_calls", "by_time"))
_MORE_RUNS = _fields({"candidate": _count, "baseline": _count, "each": _count})
_COMPARISON = _fields({"verdict": _one_of(*VERDICTS), "method": _one_of("blocks", "runs"),
                       "judge": _one_of("time", "work", "both"), "work_would_decide": _optional_text,
                       "alpha_per_url": lambda value: _number(value) and 0 < value <= 1,
                       "max_regression_pct": _number, "urls": lambda value: isinstance(value, dict),
                       "notes": _texts, "not_comparable": _optional_texts, "rules_out_pct": _optional_number,
                       "site_rules_out_pct": _optional_number, "site_detectable_pct": _optional_number,
                       "undecided": _optional_text, "more_runs": _optional(_MORE_RUNS), "advice": _texts,
                       "statements": _optional(_STATEMENTS), "db_work_regression": _optional_text,
                       "baseline_runs": _count, "candidate_runs": _count},
                      required=("verdict", "alpha_per_url", "max_regression_pct", "urls"))


def comparison_problem(raw) -> str | None:
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


@dataclass(frozen=True)
class WorkRow:
    """One row's work against the baseline: the PHP worker's CPU time per answer (work.py)."""

    cpu_ms: tuple  # (baseline, this run) mean ms per answer, None where not known
    verdict: RowVerdict
    reasons: tuple
    ratio: float | None = None
    interval: tuple | None = None  # 95 % interval of the ratio
    rules_out_pct: float | None = None
    detectable_pct: float | None = None

    @classmethod
    def from_dict(cls, raw: dict | None) -> WorkRow | None:
        if raw is None:
            return None
        interval = tuple(raw["ratio_ci95"]) if raw.get("ratio_ci95") else None
        return cls(tuple(raw.get("cpu_ms") or (None, None)), RowVerdict(raw["verdict"]), tuple(raw["reasons"]),
                   raw.get("ratio"), interval, raw.get("rules_out_pct"), raw.get("detectable_pct"))


@dataclass(frozen=True)
class ComparisonRow:
    """One URL's line in the comparison with the baseline."""

    name: str
    base_ms: float | None
    new_ms: float | None
    ratio: float | None
    interval: tuple | None  # 95 % interval of the ratio
    p_value: float | None
    db_reads: tuple  # (baseline, this run), None where a page had no footer
    verdict: RowVerdict
    reasons: tuple
    rules_out_pct: float | None = None  # the slowdown above which the data rule it out (good needs < tolerance)
    detectable_pct: float | None = None  # the smallest slowdown these runs can call (runs against their spread)
    server_ms: tuple | None = None  # Moodle's own server time (footer, median ms): (baseline, this run)
    work: WorkRow | None = None  # the CPU time per answer, where the row's footer gave it
    decided_by: str = "time"  # "time" or "work": what the row's verdict rests on (--judge)

    @classmethod
    def from_dict(cls, name: str, row: dict) -> ComparisonRow:
        interval = tuple(row["ratio_ci95"]) if row.get("ratio_ci95") else None
        server = tuple(row["server_ms"]) if row.get("server_ms") else None
        return cls(name, row.get("base_ms"), row.get("new_ms"), row.get("ratio"), interval, row.get("p_value"),
                   tuple(row.get("db_reads") or (None, None)), RowVerdict(row["verdict"]), tuple(row["reasons"]),
                   row.get("rules_out_pct"), row.get("detectable_pct"), server, WorkRow.from_dict(row.get("work")),
                   row.get("decided_by", "time"))


@dataclass(frozen=True)
class MoreRuns:
    """How many more runs would decide, at the spread measured (None: none within reach)."""

    candidate: int | None = None  # of this commit
    baseline: int | None = None  # of the baseline
    each: int | None = None  # of both


class Comparison:
    """What the runs of a commit say against its baseline's, page by page and as a whole."""

    def __init__(self, raw: dict):
        self._raw = raw
        self.verdict = RowVerdict(raw["verdict"])
        self.method: str = raw.get("method", "blocks")  # "blocks" (one run a side) or "runs"
        self.judge: str = raw.get("judge", "time")  # --judge: time, work or both (comparisons before 0.7: time)
        # When time could not decide: what the work would have said (runcompare.work_would_decide)
        self.work_would_decide: str | None = raw.get("work_would_decide")
        self.alpha_per_url: float = raw["alpha_per_url"]
        self.max_regression_pct: float = raw["max_regression_pct"]
        self.rows = {name: ComparisonRow.from_dict(name, row) for name, row in raw["urls"].items()}
        self.notes: tuple[str, ...] = tuple(raw.get("notes", ()))
        self.not_comparable: tuple[str, ...] = tuple(raw.get("not_comparable") or ())
        self.rules_out_pct: float | None = raw.get("rules_out_pct")
        self.site_rules_out_pct: float | None = raw.get("site_rules_out_pct")
        self.site_detectable_pct: float | None = raw.get("site_detectable_pct")
        self.undecided: str | None = raw.get("undecided")
        needed = raw.get("more_runs") or {}
        self.more_runs = MoreRuns(needed.get("candidate"), needed.get("baseline"), needed.get("each"))
        self.advice: tuple[str, ...] = tuple(raw.get("advice", ()))
        self.statements: dict | None = raw.get("statements")  # statements.statement_changes's format
        self.db_work_regression: str | None = raw.get("db_work_regression")

    @classmethod
    def from_dict(cls, raw, where: str = "comparison") -> Comparison:
        """A saved comparison, refused in one line when it is not one."""
        problem = comparison_problem(raw)
        if problem:
            raise UsageError(f"{where} is damaged ({problem})")
        return cls(raw)

    def to_dict(self) -> dict:
        return copy.deepcopy(self._raw)

    def with_note(self, note: str) -> Comparison:
        raw = self.to_dict()
        raw["notes"] = [*raw.get("notes", []), note]
        return Comparison(raw)

    def with_statements(self, changes: dict, work_regression: str | None = None) -> Comparison:
        """With the statements that changed; ``work_regression``: the line that calls the
        database's whole work per request a regression (statements.work_regression)."""
        raw = self.to_dict()
        raw["statements"] = changes
        if work_regression is not None:
            raw["db_work_regression"] = work_regression
            if raw["verdict"] != RowVerdict.NOT_COMPARABLE:
                raw["verdict"] = RowVerdict.REGRESSION
                raw["undecided"] = None
        return Comparison(raw)

    def rows_with(self, verdict: RowVerdict) -> list[ComparisonRow]:
        return [row for row in self.rows.values() if row.verdict == verdict]
