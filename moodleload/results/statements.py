"""The saved ``statements`` section of a results file: what it holds (each normalised
statement's calls, rows, milliseconds and work in the measured window), its check and its
typed form.
``load.statements`` takes the snapshots that fill it; ``judging.statements`` compares it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SOURCES = ("pg_stat_statements", "performance_schema")
KEPT_STATEMENTS = 300  # per run, the busiest by calls and by time: enough to compare, small in the results
MAX_QUERY_CHARS = 2000
# What pg_stat_statements shows for another user's statement when the reader may not see it
# (it lacks pg_read_all_stats): the server's GROUP BY folds all of them into this one text.
HIDDEN = "<insufficient privilege>"
# What each source's work is counted in.
WORK_UNITS = {"pg_stat_statements": "buffer pages", "performance_schema": "rows examined"}


def hidden_warning(section: Statements | None, user: str | None) -> str | None:
    """The line that says statements of the window were hidden from the statistics' reader."""
    if section is None or not section.hidden_calls:
        return None
    seen = sum(entry.calls for entry in section.statements)
    who = f" {user}" if user else " the user --query-stats connects as"
    return (f"query statistics incomplete: {section.hidden_calls} calls in the window were by statements "
            f"the database user may not read ({HIDDEN}; {seen} calls could be read), left out of the "
            f"comparison; connect as the Moodle database user, or GRANT pg_read_all_stats TO{who}")


def statements_problem(section: object) -> str | None:
    """What is wrong with a results file's ``statements`` section, or None."""
    if not isinstance(section, dict) or section.get("source") not in SOURCES:
        return "statements: not a section this tool writes"
    entries = section.get("statements")
    total = section.get("work", 0)
    hidden = section.get("hidden_calls", 0)
    if isinstance(hidden, bool) or not isinstance(hidden, int) or not 0 <= hidden < 1e15:
        return "statements: hidden_calls is not a count"
    if isinstance(total, bool) or not isinstance(total, (int, float)) or not 0 <= total < 1e15:
        return "statements: work is not a count"
    if not isinstance(entries, list) or len(entries) > 3 * KEPT_STATEMENTS:
        return "statements: the list is missing or too long"
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("query"), str) \
                or len(entry["query"]) > MAX_QUERY_CHARS:
            return "statements: an entry without its query text"
        for key in ("calls", "rows", "ms", "work"):
            value = entry.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e15 \
                    or not math.isfinite(value):
                return f"statements: {key} of an entry is not a count"
    return None


@dataclass(frozen=True)
class StatementCounts:
    """What one normalised statement did in the measured window."""

    query: str
    calls: int
    rows: int = 0
    ms: float = 0.0
    work: float = 0  # buffer pages or rows examined (the section's work_unit)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "calls": self.calls, "rows": self.rows, "ms": self.ms, "work": self.work}


@dataclass(frozen=True)
class Statements:
    """The saved ``statements`` section (--query-stats), typed: the window's busiest
    statements, how many were left out, the database's whole work (None before 0.7) and
    the calls the reader could not see."""

    source: str
    statements: tuple[StatementCounts, ...]
    left_out: int = 0
    work: float | None = None
    work_unit: str | None = None
    hidden_calls: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Statements:
        return cls(raw["source"], tuple(StatementCounts(entry["query"], entry.get("calls", 0), entry.get("rows", 0),
                                                        entry.get("ms", 0.0), entry.get("work", 0))
                                        for entry in raw["statements"]),
                   raw.get("left_out", 0), raw.get("work"), raw.get("work_unit"), raw.get("hidden_calls", 0))

    def to_dict(self) -> dict[str, Any]:
        saved: dict[str, Any] = {"source": self.source, "statements": [entry.to_dict() for entry in self.statements],
                                 "left_out": self.left_out}
        if self.work is not None:
            saved["work"] = self.work
        if self.work_unit is not None:
            saved["work_unit"] = self.work_unit
        if self.hidden_calls:
            saved["hidden_calls"] = self.hidden_calls
        return saved
