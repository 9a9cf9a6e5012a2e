"""What the database did for a run: each normalised statement's calls, rows and time,
from the server's own statement statistics, before and after the measured window.

PostgreSQL keeps them in ``pg_stat_statements`` (shipped with the server; on when the
library is preloaded and the extension created in the database), MariaDB and MySQL in
``performance_schema.events_statements_summary_by_digest`` (on with
``performance_schema=ON``).  Both are cumulative since the server (or someone) last reset
them, and other people's tools read them too: this module never resets them, it takes the
difference of two snapshots.  Statements are keyed by their normalised text, not by the
server's ids, which change when a database is restored between bisect steps.

The pure parts (differences, per-request figures, the comparison that names the
statements that changed, the table names of a statement) are apart from the two snapshot
queries, so tests call them directly."""

from __future__ import annotations

import math
import re
import statistics
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import Results

SOURCES = ("pg_stat_statements", "performance_schema")
KEPT_STATEMENTS = 300  # per run, the busiest by calls and by time: enough to compare, small in the results
MAX_QUERY_CHARS = 2000
TOP_CHANGES = 5
# A change of calls per request below this is rounding of the load mix, not a new query.
MIN_CALLS_CHANGE = 0.05
MIN_MS_CHANGE = 0.05
OWN_STATEMENTS = ("pg_stat_statements", "events_statements_summary_by_digest", "@@performance_schema",
                  "pg_extension")

PG_SNAPSHOT = ("SELECT query, sum(calls), sum(rows), sum(total_exec_time) FROM pg_stat_statements s "
               "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() GROUP BY query")
MY_SNAPSHOT = ("SELECT DIGEST_TEXT, SUM(COUNT_STAR), SUM(SUM_ROWS_SENT + SUM_ROWS_AFFECTED), "
               "SUM(SUM_TIMER_WAIT) / 1000000000 FROM performance_schema.events_statements_summary_by_digest "
               "WHERE SCHEMA_NAME = DATABASE() AND DIGEST_TEXT IS NOT NULL GROUP BY DIGEST_TEXT")

PG_HOW_TO = ("add shared_preload_libraries = 'pg_stat_statements' to postgresql.conf, restart PostgreSQL, then "
             "run CREATE EXTENSION pg_stat_statements; in the Moodle database")
MY_HOW_TO = ("start the server with performance_schema=ON (a line in the [mysqld] section of its my.cnf, then "
             "a restart) and let the Moodle database user SELECT on performance_schema.*")


class Unavailable(Exception):
    """The statistics cannot be read: the one line says how to switch them on."""


# =========================================================================== snapshots (I/O)

def snapshot(family: str, conn) -> dict:
    """normalised statement -> [calls, rows, milliseconds], as the server has them now."""
    return READERS[family][0](conn)


def source_of(family: str) -> str:
    return READERS[family][1]


def _pg_snapshot(conn) -> dict:
    import psycopg2

    try:
        with conn.cursor() as cur:
            cur.execute(PG_SNAPSHOT)
            rows = cur.fetchall()
    except psycopg2.Error as error:
        conn.rollback()
        first = (str(error).strip().splitlines() or ["?"])[0]
        raise Unavailable(f"query statistics off: PostgreSQL says {first!r}; to switch them on, {PG_HOW_TO}") \
            from None
    conn.rollback()  # a snapshot must not hold a transaction open across the run
    return _rows(rows)


def _my_snapshot(conn) -> dict:
    import pymysql

    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@performance_schema")
            if str(cur.fetchone()[0]) not in ("1", "ON"):
                raise Unavailable(f"query statistics off: the server runs with performance_schema off; to switch "
                                  f"them on, {MY_HOW_TO}")
            cur.execute(MY_SNAPSHOT)
            rows = cur.fetchall()
    except pymysql.Error as error:
        message = error.args[1] if len(error.args) > 1 else str(error)
        raise Unavailable(f"query statistics not readable: the server says {message!r}; {MY_HOW_TO}") from None
    conn.rollback()
    return _rows(rows)


READERS = {"pgsql": (_pg_snapshot, "pg_stat_statements"), "mysql": (_my_snapshot, "performance_schema")}


def _rows(rows) -> dict:
    counts: dict = {}
    for query, calls, rows_seen, milliseconds in rows:
        if query is None or any(own in query for own in OWN_STATEMENTS):
            continue
        text = " ".join(str(query).split())[:MAX_QUERY_CHARS]
        entry = counts.setdefault(text, [0.0, 0.0, 0.0])
        entry[0] += float(calls or 0)
        entry[1] += float(rows_seen or 0)
        entry[2] += float(milliseconds or 0)
    return counts


class Watcher:
    """One connection of its own to the site's database, held for the run: a snapshot when
    the measured window opens and one after the last request of it has ended."""

    def __init__(self, database):
        self.database = database  # databases.Postgres or MySQL, with its settings
        self.family = database.family
        self.conn = None
        self.before: dict | None = None
        self.result: dict | None = None
        self.problem: str | None = None  # set when a snapshot failed during the run
        self.lock = threading.Lock()  # one connection: a snapshot at a time, even after a cancelled wait

    def open(self) -> str | None:
        """Connect and read once, before any load: None when the statistics can be read, else the
        line that says how to switch them on (the run goes on without them).  A connection that
        fails raises databases.DatabaseError: the settings are wrong, which is the user's to fix."""
        self.conn = self.database.connect()
        try:
            snapshot(self.family, self.conn)
        except Unavailable as error:
            self.close()
            return str(error)
        except Exception:
            self.close()
            raise
        return None

    def window_opens(self) -> None:
        with self.lock:
            self._snapshot_before()

    def _snapshot_before(self) -> None:
        try:
            self.before = snapshot(self.family, self.conn)
        except Exception as error:  # noqa: BLE001  the load goes on; the results say why there is nothing
            self.problem = f"query statistics lost: the first snapshot failed ({_first_line(error)})"

    def window_closed(self) -> None:
        with self.lock:
            self._snapshot_after()

    def _snapshot_after(self) -> None:
        if self.before is None or self.conn is None:
            return
        try:
            self.result = window_delta(self.before, snapshot(self.family, self.conn), source_of(self.family))
        except Exception as error:  # noqa: BLE001
            self.problem = f"query statistics lost: the last snapshot failed ({_first_line(error)})"

    def close(self) -> None:
        with self.lock:
            self._close()

    def _close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001, S110  closing a broken connection: nothing left to do
                pass
            self.conn = None


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


# =========================================================================== pure

def window_delta(before: dict, after: dict, source: str) -> dict:
    """What the measured window added: the results' ``statements`` section.  A statement
    whose counts fell was evicted or reset during the run: it counts from zero."""
    statements = []
    for query, (calls, rows, milliseconds) in after.items():
        old = before.get(query)
        if old is not None and calls >= old[0]:
            calls, rows, milliseconds = calls - old[0], rows - old[1], milliseconds - old[2]
        if calls > 0:
            statements.append({"query": query, "calls": int(round(calls)), "rows": int(round(max(rows, 0))),
                               "ms": round(max(milliseconds, 0.0), 3)})
    busiest = sorted(statements, key=lambda s: -s["calls"])[:KEPT_STATEMENTS]
    slowest = sorted(statements, key=lambda s: -s["ms"])[:KEPT_STATEMENTS]
    kept = {s["query"]: s for s in busiest + slowest}
    return {"source": source, "statements": sorted(kept.values(), key=lambda s: (-s["calls"], s["query"])),
            "left_out": len(statements) - len(kept)}


def statements_problem(section) -> str | None:
    """What is wrong with a results file's ``statements`` section, or None."""
    if not isinstance(section, dict) or section.get("source") not in SOURCES:
        return "statements: not a section this tool writes"
    entries = section.get("statements")
    if not isinstance(entries, list) or len(entries) > 2 * KEPT_STATEMENTS:
        return "statements: the list is missing or too long"
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("query"), str) \
                or len(entry["query"]) > MAX_QUERY_CHARS:
            return "statements: an entry without its query text"
        for key in ("calls", "rows", "ms"):
            value = entry.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e15 \
                    or not math.isfinite(value):
                return f"statements: {key} of an entry is not a count"
    return None


def per_request(document: Results) -> dict | None:
    """query -> (calls, milliseconds) per request of the run (per page view when only one URL ran)."""
    section = document.statements
    requests = document.summary.requests  # of the measured window, as the statistics' snapshots
    if not section or not requests:
        return None
    return {entry["query"]: (entry["calls"] / requests, entry["ms"] / requests) for entry in section["statements"]}


TABLE_PATTERN = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+[`\"]?([A-Za-z_][A-Za-z0-9_$]*)", re.IGNORECASE)


def tables_in(query: str) -> list:
    """The tables a statement names, in order of first appearance."""
    found = []
    for name in TABLE_PATTERN.findall(query):
        if name.lower() not in ("select", "lateral") and name not in found:
            found.append(name)
    return found


def shortened(query: str, limit: int = 110) -> str:
    if len(query) <= limit:
        return query
    return query[: limit - 25] + " ... " + query[-20:]


def statement_changes(bases: list, news: list, top: int = TOP_CHANGES) -> dict | None:
    """The statements whose calls or time per request changed most from the baseline's runs
    to this commit's, beyond the spread of the baseline's own runs (three standard
    deviations where there are two or more, else the floors).  None when a side has no
    statistics."""
    base_rates = [rates for rates in map(per_request, bases) if rates is not None]
    new_rates = [rates for rates in map(per_request, news) if rates is not None]
    if not base_rates or not new_rates:
        return None
    queries = set().union(*base_rates, *new_rates)
    changes = []
    for query in queries:
        base_calls = [rates.get(query, (0.0, 0.0))[0] for rates in base_rates]
        base_ms = [rates.get(query, (0.0, 0.0))[1] for rates in base_rates]
        new_calls = statistics.fmean(rates.get(query, (0.0, 0.0))[0] for rates in new_rates)
        new_ms = statistics.fmean(rates.get(query, (0.0, 0.0))[1] for rates in new_rates)
        calls_noise = 3 * statistics.stdev(base_calls) if len(base_calls) > 1 else 0.0
        ms_noise = 3 * statistics.stdev(base_ms) if len(base_ms) > 1 else 0.0
        change = {"query": query, "tables": tables_in(query),
                  "base_calls": round(statistics.fmean(base_calls), 3), "new_calls": round(new_calls, 3),
                  "base_ms": round(statistics.fmean(base_ms), 4), "new_ms": round(new_ms, 4)}
        change["calls_change"] = round(change["new_calls"] - change["base_calls"], 3)
        change["ms_change"] = round(change["new_ms"] - change["base_ms"], 4)
        change["calls_changed"] = abs(change["calls_change"]) >= max(MIN_CALLS_CHANGE, calls_noise)
        change["ms_changed"] = abs(change["ms_change"]) >= max(MIN_MS_CHANGE, ms_noise)
        if change["calls_changed"] or change["ms_changed"]:
            changes.append(change)
    by_calls = sorted((c for c in changes if c["calls_changed"]), key=lambda c: (-abs(c["calls_change"]), c["query"]))
    by_time = sorted((c for c in changes if c["ms_changed"]), key=lambda c: (-abs(c["ms_change"]), c["query"]))
    one_url = all(len(document.urls) == 1 for document in bases + news)
    return {"per": "page view" if one_url else "request", "base_runs": len(base_rates), "new_runs": len(new_rates),
            "by_calls": by_calls[:top], "by_time": by_time[:top]}


@dataclass(frozen=True)
class StatementChange:
    """One statement whose calls or time per request (or page view) changed."""

    query: str
    tables: tuple[str, ...]
    base_calls: float
    new_calls: float
    calls_change: float
    base_ms: float
    new_ms: float
    ms_change: float


def changed_statements(changes: dict) -> tuple[str, list[StatementChange]]:
    """(what the numbers are per: "request" or "page view", the statements that changed,
    most changed calls first, then most changed time, each once)."""
    seen: set = set()
    rows = []
    for change in changes["by_calls"] + changes["by_time"]:
        if change["query"] in seen:
            continue
        seen.add(change["query"])
        rows.append(StatementChange(change["query"], tuple(change["tables"]), change["base_calls"],
                                    change["new_calls"], change["calls_change"], change["base_ms"], change["new_ms"],
                                    change["ms_change"]))
    return changes["per"], rows


def change_lines(changes: dict | None) -> list:
    """The report's lines: ``+40.0 calls per request: SELECT ... (mdl_user)``."""
    if not changes:
        return []
    per = changes["per"]
    lines = []
    for change in changes["by_calls"]:
        lines.append(f"{change['calls_change']:+.1f} calls per {per} ({change['base_calls']:.1f} -> "
                     f"{change['new_calls']:.1f}): {shortened(change['query'])}{_tables(change)}")
    for change in changes["by_time"]:
        if change in changes["by_calls"]:
            continue
        lines.append(f"{change['ms_change']:+.2f} ms per {per} ({change['base_ms']:.2f} -> {change['new_ms']:.2f} ms):"
                     f" {shortened(change['query'])}{_tables(change)}")
    return lines


def _tables(change: dict) -> str:
    return f" [{', '.join(change['tables'])}]" if change["tables"] else ""
