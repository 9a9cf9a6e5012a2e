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

The difference of two snapshots (``window_delta``) is pure, apart from the two snapshot
queries, so tests call it directly; the saved section is ``results.statements`` and its
comparison ``judging.statements``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from moodleload.database.family import Unavailable
from moodleload.results.statements import (
    HIDDEN,
    KEPT_STATEMENTS,
    MAX_QUERY_CHARS,
    WORK_UNITS,
    StatementCounts,
    Statements,
)

if TYPE_CHECKING:
    from moodleload.database.family import DatabaseFamily

OWN_STATEMENTS = ("pg_stat_statements", "events_statements_summary_by_digest", "@@performance_schema",
                  "pg_extension")

# =========================================================================== snapshots (I/O)

Snapshot = dict[str, list[float]]  # normalised statement -> [calls, rows, milliseconds, work]


def snapshot(database: DatabaseFamily, conn: Any) -> Snapshot:
    """normalised statement -> [calls, rows, milliseconds, work], as the server has them now
    (the family reads its own statistics: DatabaseFamily.statement_rows)."""
    return _rows(database.statement_rows(conn))


def _rows(rows: Iterable[Sequence[Any]]) -> Snapshot:
    counts: Snapshot = {}
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

    def __init__(self, database: DatabaseFamily, deadline: float = SNAPSHOT_SECONDS):
        self.database = database  # the site's database family (family.DatabaseFamily), with its settings
        self.deadline = deadline
        self.conn = None
        self.before: Snapshot | None = None
        self.result: Statements | None = None
        self.problem: str | None = None  # set when a snapshot failed during the run
        self.off: str | None = None  # the line that says how to switch the statistics on, when they are off
        self.stuck = False  # a snapshot still waits for the database: its thread owns the connection
        self.lock = threading.Lock()  # one connection: a snapshot at a time

    def open(self) -> str | None:
        """Connect and read once, before any load: None when the statistics can be read, else the
        line that says how to switch them on (the run goes on without them).  A connection that
        fails, or a database that does not answer, raises databases.DatabaseError: that is the
        user's to fix before the load."""
        from moodleload.database.family import DatabaseError

        self.conn = self.database.connect()
        if not self._bounded(lambda: snapshot(self.database, self.conn), "checking"):
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
            self.before = snapshot(self.database, self.conn)

        self._bounded(first, "first")

    def window_closed(self) -> None:
        if self.before is None or self.conn is None:
            return

        def last() -> None:
            assert self.before is not None
            self.result = window_delta(self.before, snapshot(self.database, self.conn), self.database.statements_source)

        self._bounded(last, "last")

    def _bounded(self, read: Callable[[], object], which: str) -> bool:
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

def window_delta(before: Snapshot, after: Snapshot, source: str) -> Statements:
    """What the measured window added: the results' ``statements`` section.  A statement
    whose counts fell was evicted or reset during the run: it counts from zero."""
    statements: list[StatementCounts] = []
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
            statement_work = int(round(max(work, 0)))
            statements.append(StatementCounts(query, int(round(calls)), int(round(max(rows, 0))),
                                              round(max(milliseconds, 0.0), 3), statement_work))
            total_work += statement_work
    busiest = sorted(statements, key=lambda s: -s.calls)[:KEPT_STATEMENTS]
    slowest = sorted(statements, key=lambda s: -s.ms)[:KEPT_STATEMENTS]
    heaviest = sorted(statements, key=lambda s: -s.work)[:KEPT_STATEMENTS]
    kept = {s.query: s for s in busiest + slowest + heaviest}
    # The total is of every statement, kept or not: the database's whole work in the window.
    return Statements(source, tuple(sorted(kept.values(), key=lambda s: (-s.calls, s.query))),
                      left_out=len(statements) - len(kept), work=total_work, work_unit=WORK_UNITS[source],
                      hidden_calls=hidden_calls)


