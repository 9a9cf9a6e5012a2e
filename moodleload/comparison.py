"""The comparison of a run with its baseline, as a typed value.  compare.py (two runs, block
by block) and runcompare.py (runs against their spread) build its saved form; everything
else (the verdict, the reports, --sizing) reads these fields.  It is saved inside the
results (``comparison``) as ``to_dict`` gives it, and read back by ``from_dict``."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from .exits import UsageError

VERDICTS = ("regression", "improvement", "same", "unsure", "not comparable")


@dataclass(frozen=True)
class WorkRow:
    """One row's work against the baseline: the PHP worker's CPU time per answer (work.py)."""

    cpu_ms: tuple  # (baseline, this run) mean ms per answer, None where not known
    verdict: str
    reasons: tuple
    ratio: float | None = None
    interval: tuple | None = None  # 95 % interval of the ratio
    rules_out_pct: float | None = None
    detectable_pct: float | None = None

    @classmethod
    def from_dict(cls, raw: dict | None) -> WorkRow | None:
        if raw is None:
            return None
        if raw["verdict"] not in VERDICTS or not isinstance(raw["reasons"], list):
            raise ValueError(f"a work row's verdict {raw['verdict']!r}")
        interval = tuple(raw["ratio_ci95"]) if raw.get("ratio_ci95") else None
        return cls(tuple(raw.get("cpu_ms") or (None, None)), raw["verdict"], tuple(raw["reasons"]), raw.get("ratio"),
                   interval, raw.get("rules_out_pct"), raw.get("detectable_pct"))


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
    verdict: str
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
                   tuple(row.get("db_reads") or (None, None)), row["verdict"], tuple(row["reasons"]),
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
        self.verdict: str = raw["verdict"]
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
        try:
            if raw["verdict"] not in VERDICTS or not isinstance(raw["urls"], dict):
                raise ValueError(f"verdict {raw['verdict']!r}")
            if raw.get("judge", "time") not in ("time", "work", "both"):
                raise ValueError(f"judge {raw['judge']!r}")
            for row in raw["urls"].values():
                if row["verdict"] not in VERDICTS or not isinstance(row["reasons"], list):
                    raise ValueError(f"a row's verdict {row['verdict']!r}")
            return cls(raw)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise UsageError(f"{where} is damaged ({error})") from None

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
            if raw["verdict"] != "not comparable":
                raw["verdict"] = "regression"
                raw["undecided"] = None
        return Comparison(raw)

    def rows_with(self, verdict: str) -> list[ComparisonRow]:
        return [row for row in self.rows.values() if row.verdict == verdict]
