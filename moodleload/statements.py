"""What the database did for a run: each normalised statement's calls, rows, time and work,
from the server's own statement statistics, before and after the measured window.  The
work is what a busy machine cannot inflate: PostgreSQL's buffer pages touched
(shared_blks_hit + shared_blks_read), MariaDB's and MySQL's rows examined.

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
MIN_WORK_CHANGE = 1.0  # buffer pages or rows examined per request
# The mix of pages differs a little from run to run (each request's page is drawn), so a
# statement's calls per request move with it: a change within a tenth of its rate is the mix.
RELATIVE_FLOOR = 0.1
# What pg_stat_statements shows for another user's statement when the reader may not see it
# (it lacks pg_read_all_stats): the server's GROUP BY folds all of them into this one text.
HIDDEN = "<insufficient privilege>"
OWN_STATEMENTS = ("pg_stat_statements", "events_statements_summary_by_digest", "@@performance_schema",
                  "pg_extension")

PG_SNAPSHOT = ("SELECT query, sum(calls), sum(rows), sum(total_exec_time), sum(shared_blks_hit + shared_blks_read) "
               "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() "
               "GROUP BY query")
MY_SNAPSHOT = ("SELECT DIGEST_TEXT, SUM(COUNT_STAR), SUM(SUM_ROWS_SENT + SUM_ROWS_AFFECTED), "
               "SUM(SUM_TIMER_WAIT) / 1000000000, SUM(SUM_ROWS_EXAMINED) "
               "FROM performance_schema.events_statements_summary_by_digest "
               "WHERE SCHEMA_NAME = DATABASE() AND DIGEST_TEXT IS NOT NULL GROUP BY DIGEST_TEXT")
# What each source's work is counted in.
WORK_UNITS = {"pg_stat_statements": "buffer pages", "performance_schema": "rows examined"}

PG_HOW_TO = ("add shared_preload_libraries = 'pg_stat_statements' to postgresql.conf, restart PostgreSQL, then "
             "run CREATE EXTENSION pg_stat_statements; in the Moodle database")
MY_HOW_TO = ("start the server with performance_schema=ON (a line in the [mysqld] section of its my.cnf, then "
             "a restart) and let the Moodle database user SELECT on performance_schema.*")


class Unavailable(Exception):
    """The statistics cannot be read: the one line says how to switch them on."""


# =========================================================================== snapshots (I/O)

def snapshot(family: str, conn) -> dict:
    """normalised statement -> [calls, rows, milliseconds, work], as the server has them now."""
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
    for query, *numbers in rows:
        if query is None or any(own in query for own in OWN_STATEMENTS):
            continue
        text = " ".join(str(query).split())[:MAX_QUERY_CHARS]
        entry = counts.setdefault(text, [0.0, 0.0, 0.0, 0.0])
        for position, value in enumerate(numbers[:4]):
            entry[position] += float(value or 0)
    return counts


# A snapshot takes milliseconds; a database that has not answered in this long (a stopped
# backend, a lost network) never will in time: the run ends without the statistics, within
# the same grace a stopping signal gives the requests in flight.
SNAPSHOT_SECONDS = 5.0


class Watcher:
    """One connection of its own to the site's database, held for the run: a snapshot when
    the measured window opens and one after the last request of it has ended.  Every
    snapshot runs on a daemon thread of its own and is waited for at most SNAPSHOT_SECONDS:
    a database that stops answering costs the run its statistics, never its end."""

    def __init__(self, database, deadline: float = SNAPSHOT_SECONDS):
        self.database = database  # databases.Postgres or MySQL, with its settings
        self.family = database.family
        self.deadline = deadline
        self.conn = None
        self.before: dict | None = None
        self.result: dict | None = None
        self.problem: str | None = None  # set when a snapshot failed during the run
        self.off: str | None = None  # the line that says how to switch the statistics on, when they are off
        self.stuck = False  # a snapshot still waits for the database: its thread owns the connection
        self.lock = threading.Lock()  # one connection: a snapshot at a time

    def open(self) -> str | None:
        """Connect and read once, before any load: None when the statistics can be read, else the
        line that says how to switch them on (the run goes on without them).  A connection that
        fails, or a database that does not answer, raises databases.DatabaseError: that is the
        user's to fix before the load."""
        from .databases import DatabaseError

        self.conn = self.database.connect()
        if not self._bounded(lambda: snapshot(self.family, self.conn), "checking"):
            raise DatabaseError(f"the database at {self.database.where()} did not answer a read of its statement "
                                f"statistics within {self.deadline:g} s; check that it is up and not locked")
        problem, off, self.problem, self.off = self.problem, self.off, None, None
        if problem is None:
            return None
        self.close()
        if off is not None:
            return off
        raise DatabaseError(problem)

    def window_opens(self) -> None:
        def first() -> None:
            self.before = snapshot(self.family, self.conn)

        self._bounded(first, "first")

    def window_closed(self) -> None:
        if self.before is None or self.conn is None:
            return

        def last() -> None:
            assert self.before is not None
            self.result = window_delta(self.before, snapshot(self.family, self.conn), source_of(self.family))

        self._bounded(last, "last")

    def _bounded(self, read, which: str) -> bool:
        """Run one snapshot on its own daemon thread, waiting at most the deadline: False when
        the database did not answer in time (the thread is left to it; the process's end ends it)."""
        if self.stuck:
            return False
        done = threading.Event()

        def reading() -> None:
            with self.lock:
                try:
                    read()
                except Exception as error:  # noqa: BLE001  the load goes on; the results say why there is nothing
                    self.problem = f"query statistics lost: the {which} snapshot failed ({_first_line(error)})"
                    self.off = str(error) if isinstance(error, Unavailable) else None
            done.set()

        threading.Thread(target=reading, name=f"query statistics ({which} snapshot)", daemon=True).start()
        if done.wait(self.deadline):
            return True
        self.stuck = True
        self.problem = (f"query statistics lost: the database did not answer the {which} snapshot within "
                        f"{self.deadline:g} s")
        return False

    def close(self) -> None:
        # A snapshot that never came back holds the connection: closing it under that thread
        # could block as long, so it is left for the process's end.
        if self.stuck or not self.lock.acquire(timeout=self.deadline):
            return
        try:
            self._close()
        finally:
            self.lock.release()

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
    total_work = 0
    hidden_calls = 0
    for query, counts in after.items():
        calls, rows, milliseconds, work = (list(counts) + [0.0])[:4]
        old = before.get(query)
        if old is not None and calls >= old[0]:
            previous = (list(old) + [0.0])[:4]
            calls, rows, milliseconds, work = (now - then for now, then in zip((calls, rows, milliseconds, work),
                                                                                previous, strict=True))
        if query == HIDDEN:  # many statements under one text: never named as one that changed
            hidden_calls = int(round(max(calls, 0)))
            continue
        if calls > 0:
            statements.append({"query": query, "calls": int(round(calls)), "rows": int(round(max(rows, 0))),
                               "ms": round(max(milliseconds, 0.0), 3), "work": int(round(max(work, 0)))})
            total_work += statements[-1]["work"]
    busiest = sorted(statements, key=lambda s: -s["calls"])[:KEPT_STATEMENTS]
    slowest = sorted(statements, key=lambda s: -s["ms"])[:KEPT_STATEMENTS]
    heaviest = sorted(statements, key=lambda s: -s["work"])[:KEPT_STATEMENTS]
    kept = {s["query"]: s for s in busiest + slowest + heaviest}
    # The total is of every statement, kept or not: the database's whole work in the window.
    section = {"source": source, "statements": sorted(kept.values(), key=lambda s: (-s["calls"], s["query"])),
               "left_out": len(statements) - len(kept), "work": total_work, "work_unit": WORK_UNITS[source]}
    if hidden_calls:
        section["hidden_calls"] = hidden_calls
    return section


def hidden_warning(section: dict | None, user: str | None) -> str | None:
    """The line that says statements of the window were hidden from the statistics' reader."""
    if not section or not section.get("hidden_calls"):
        return None
    seen = sum(entry["calls"] for entry in section["statements"])
    who = f" {user}" if user else " the user --query-stats connects as"
    return (f"query statistics incomplete: {section['hidden_calls']} calls in the window were by statements "
            f"the database user may not read ({HIDDEN}; {seen} calls could be read), left out of the "
            f"comparison; connect as the Moodle database user, or GRANT pg_read_all_stats TO{who}")


def statements_problem(section) -> str | None:
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


def per_request(document: Results) -> dict | None:
    """query -> (calls, milliseconds, work) per request of the run (per page view when only one URL ran)."""
    section = document.statements
    requests = document.summary.requests  # of the measured window, as the statistics' snapshots
    if not section or not requests:
        return None
    return {entry["query"]: (entry["calls"] / requests, entry["ms"] / requests, entry.get("work", 0) / requests)
            for entry in section["statements"] if entry["query"] != HIDDEN}


def work_per_request(document: Results) -> float | None:
    """The database's whole work in the window per request (None without statistics or before 0.7)."""
    section = document.statements
    requests = document.summary.requests
    if not section or not requests or "work" not in section:
        return None
    return section["work"] / requests


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


def _mean_and_noise(values: list) -> tuple[float, float]:
    """The mean of the baseline runs' values and three of their standard deviations (0 with one run)."""
    return statistics.fmean(values), 3 * statistics.stdev(values) if len(values) > 1 else 0.0


def statement_changes(bases: list, news: list, top: int = TOP_CHANGES) -> dict | None:
    """The statements whose calls, time or work per request changed most from the
    baseline's runs to this commit's, beyond the spread of the baseline's own runs (three
    standard deviations where there are two or more, else the floors), and the database's
    whole work per request on each side.  None when a side has no statistics."""
    base_rates = [rates for rates in map(per_request, bases) if rates is not None]
    new_rates = [rates for rates in map(per_request, news) if rates is not None]
    if not base_rates or not new_rates:
        return None
    queries = set().union(*base_rates, *new_rates)
    changes = []
    for query in queries:
        change: dict = {"query": query, "tables": tables_in(query)}
        for position, key, floor in ((0, "calls", MIN_CALLS_CHANGE), (1, "ms", MIN_MS_CHANGE),
                                     (2, "work", MIN_WORK_CHANGE)):
            base, noise = _mean_and_noise([rates.get(query, (0.0, 0.0, 0.0))[position] for rates in base_rates])
            new = statistics.fmean(rates.get(query, (0.0, 0.0, 0.0))[position] for rates in new_rates)
            digits = 4 if key == "ms" else 3
            change[f"base_{key}"], change[f"new_{key}"] = round(base, digits), round(new, digits)
            change[f"{key}_change"] = round(change[f"new_{key}"] - change[f"base_{key}"], digits)
            change[f"{key}_changed"] = abs(change[f"{key}_change"]) >= max(floor, noise,
                                                                             RELATIVE_FLOOR * max(base, new))
        if change["calls_changed"] or change["ms_changed"] or change["work_changed"]:
            changes.append(change)
    one_url = all(len(document.urls) == 1 for document in bases + news)
    result: dict = {"per": "page view" if one_url else "request", "base_runs": len(base_rates),
                    "new_runs": len(new_rates)}
    for key, listed in (("calls", "by_calls"), ("ms", "by_time"), ("work", "by_work")):
        result[listed] = _most_changed(changes, key, top)
    result["work"] = whole_work(bases, news)
    return result


def _most_changed(changes: list, key: str, top: int) -> list:
    """The ``top`` changes whose ``key`` (calls, ms, work) changed, largest change first."""
    changed = [change for change in changes if change[f"{key}_changed"]]
    return sorted(changed, key=lambda change: (-abs(change[f"{key}_change"]), change["query"]))[:top]


def whole_work(bases: list, news: list) -> dict | None:
    """The database's whole work per request on each side (PostgreSQL's buffer pages, MariaDB's
    rows examined), with the baseline runs' noise: None where a side has none recorded."""
    base = [value for value in map(work_per_request, bases) if value is not None]
    new = [value for value in map(work_per_request, news) if value is not None]
    if not base or not new:
        return None
    units = {document.statements.get("work_unit") for document in bases + news if document.statements}
    base_mean, noise = _mean_and_noise(base)
    new_mean = statistics.fmean(new)
    return {"unit": "/".join(sorted(unit for unit in units if unit)), "base": round(base_mean, 3),
            "new": round(new_mean, 3), "noise": round(noise, 3), "base_runs": len(base), "new_runs": len(new)}


def work_regression(work: dict | None, tolerance_pct: float) -> str | None:
    """The line that calls the database's whole work per request a regression, or None: a
    rise above the tolerance and beyond three standard deviations of the baseline's own
    runs (so it needs two or more of them with statistics)."""
    if not work or work["base_runs"] < 2 or work["base"] <= 0:
        return None
    rise = work["new"] - work["base"]
    if work["new"] / work["base"] - 1 <= tolerance_pct / 100.0 or rise <= max(work["noise"], MIN_WORK_CHANGE):
        return None
    return (f"database work per request {work['base']:.1f} -> {work['new']:.1f} {work['unit']}, "
            f"x{work['new'] / work['base']:.3f} (beyond the baseline runs' own spread of {work['noise']:.1f})")


def moved_page(db_reads: dict) -> str | None:
    """The one page whose footer DB reads moved (page -> (baseline, this run) medians), or
    None where none or several did: only then is a statement's change clearly that page's."""
    moved = [page for page, (before, after) in db_reads.items()
             if before is not None and after is not None and abs(after - before) >= 1]
    return moved[0] if len(moved) == 1 else None


def attribute(changes: dict, page: str, share: float) -> dict:
    """The statement changes seen from the one page whose footer DB reads moved: a change of
    calls per request of the whole mix is, on that page, the change divided by its share of
    the requests (a +40-reads course page is +40 calls per view, not +14.4 per request)."""
    if share <= 0:
        return changes
    for change in changes["by_calls"]:
        change["page"] = page
        change["calls_change_per_view"] = round(change["calls_change"] / share, 2)
    return changes


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
    work_change: float = 0.0  # buffer pages or rows examined per request (0 before 0.7)


def changed_statements(changes: dict) -> tuple[str, list[StatementChange]]:
    """(what the numbers are per: "request" or "page view", the statements that changed,
    most changed calls first, then most changed time, each once)."""
    seen: set = set()
    rows = []
    for change in changes["by_calls"] + changes["by_time"] + changes.get("by_work", []):
        if change["query"] in seen:
            continue
        seen.add(change["query"])
        rows.append(StatementChange(change["query"], tuple(change["tables"]), change["base_calls"],
                                    change["new_calls"], change["calls_change"], change["base_ms"], change["new_ms"],
                                    change["ms_change"], change.get("work_change", 0.0)))
    return changes["per"], rows


def change_lines(changes: dict | None) -> list:
    """The report's lines: ``+40.0 calls per request: SELECT ... (mdl_user)``."""
    if not changes:
        return []
    per = changes["per"]
    lines = []
    work = changes.get("work")
    if work:
        lines.append(f"database work per {per}: {work['base']:.1f} -> {work['new']:.1f} {work['unit']} "
                     f"(baseline runs' spread {work['noise']:.1f})")
    for change in changes["by_calls"]:
        if "page" in change:
            lines.append(f"{change['calls_change_per_view']:+.1f} calls per view of {change['page']}, the page whose "
                         f"DB reads moved ({change['calls_change']:+.1f} per {per} of the mix): "
                         f"{shortened(change['query'])}{_tables(change)}")
            continue
        lines.append(f"{change['calls_change']:+.1f} calls per {per} ({change['base_calls']:.1f} -> "
                     f"{change['new_calls']:.1f}): {shortened(change['query'])}{_tables(change)}")
    for change in changes["by_time"]:
        if change in changes["by_calls"]:
            continue
        lines.append(f"{change['ms_change']:+.2f} ms per {per} ({change['base_ms']:.2f} -> {change['new_ms']:.2f} ms):"
                     f" {shortened(change['query'])}{_tables(change)}")
    unit = work["unit"] if work else "work"
    for change in changes.get("by_work", []):
        if change in changes["by_calls"] or change in changes["by_time"]:
            continue
        lines.append(f"{change['work_change']:+.1f} {unit} per {per} ({change['base_work']:.1f} -> "
                     f"{change['new_work']:.1f}): {shortened(change['query'])}{_tables(change)}")
    return lines


def _tables(change: dict) -> str:
    return f" [{', '.join(change['tables'])}]" if change["tables"] else ""
