"""Each family's own statement statistics, read as raw rows: PostgreSQL's
``pg_stat_statements``, MariaDB's and MySQL's
``performance_schema.events_statements_summary_by_digest``.  Each row is (normalised text,
calls, rows, milliseconds, work); ``load.statements`` turns two snapshots into a run's
section.  Only reads: nothing here resets them (other people's tools read them too)."""

from __future__ import annotations

from typing import Any

PG_SNAPSHOT = ("SELECT query, sum(calls), sum(rows), sum(total_exec_time), sum(shared_blks_hit + shared_blks_read) "
               "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() "
               "GROUP BY query")
MY_SNAPSHOT = ("SELECT DIGEST_TEXT, SUM(COUNT_STAR), SUM(SUM_ROWS_SENT + SUM_ROWS_AFFECTED), "
               "SUM(SUM_TIMER_WAIT) / 1000000000, SUM(SUM_ROWS_EXAMINED) "
               "FROM performance_schema.events_statements_summary_by_digest "
               "WHERE SCHEMA_NAME = DATABASE() AND DIGEST_TEXT IS NOT NULL GROUP BY DIGEST_TEXT")

PG_HOW_TO = ("add shared_preload_libraries = 'pg_stat_statements' to postgresql.conf, restart PostgreSQL, then "
             "run CREATE EXTENSION pg_stat_statements; in the Moodle database")
MY_HOW_TO = ("start the server with performance_schema=ON (a line in the [mysqld] section of its my.cnf, then "
             "a restart) and let the Moodle database user SELECT on performance_schema.*")


class Unavailable(Exception):
    """The statistics cannot be read: the one line says how to switch them on."""


def pg_statement_rows(conn: Any) -> list[tuple[Any, ...]]:
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
    return list(rows)


def my_statement_rows(conn: Any) -> list[tuple[Any, ...]]:
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
    return list(rows)
