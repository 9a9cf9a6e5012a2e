"""The database's own statement statistics beside a run: snapshots either side of the
measured window, never a reset, and a comparison that names the statement that changed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import bcrypt
import pytest
from conftest import MariaMoodleDb, seeded_mariadb

from helpers import DATA, PASSWORD, ROOT, read, run_load, write_config
from moodleload.database.families import database_for
from moodleload.database.family import Settings
from moodleload.exits import EXIT_SIGTERM, EXIT_USAGE
from moodleload.judging.statements import (
    attribute,
    change_lines,
    moved_page,
    shortened,
    statement_changes,
    tables_in,
    work_regression,
)
from moodleload.load.statements import Watcher, window_delta
from moodleload.reports.html import render_report
from moodleload.results.check import document_problem
from moodleload.results.comparison import StatementChanges
from moodleload.results.model import Results
from moodleload.results.statements import HIDDEN, hidden_warning
from sim.moodledb import SiteData

EXTRA_QUERY = "SELECT id, username FROM mdl_user WHERE id = 7"
COURSE_ONLY = [{"path": "/course/view.php?id={courseid}", "name": "course"}]


# ---- the pure parts

def test_the_window_keeps_what_it_added_and_never_a_negative_count():
    before = {"SELECT a FROM mdl_user": [10, 10, 5.0], "SELECT b FROM mdl_course": [50, 5, 1.0]}
    after = {"SELECT a FROM mdl_user": [30, 30, 9.0], "SELECT b FROM mdl_course": [3, 3, 0.5],
             "SELECT c FROM mdl_log": [4, 0, 0.2]}
    delta = window_delta(before, after, "pg_stat_statements")
    counts = {entry.query: entry.calls for entry in delta.statements}
    # mdl_course fell: evicted or reset during the run, so it counts from zero
    assert counts == {"SELECT a FROM mdl_user": 20, "SELECT b FROM mdl_course": 3, "SELECT c FROM mdl_log": 4}


def test_statements_hidden_from_the_reader_are_counted_never_named_as_one_statement():
    before = {"SELECT 1": [10, 10, 1.0, 5], HIDDEN: [100, 100, 9.0, 50]}
    after = {"SELECT 1": [20, 20, 2.0, 10], HIDDEN: [700, 700, 60.0, 350]}
    section = window_delta(before, after, "pg_stat_statements")
    assert [entry.query for entry in section.statements] == ["SELECT 1"]
    assert section.hidden_calls == 600 and section.work == 5
    assert hidden_warning(section, "watcher") == (
        "query statistics incomplete: 600 calls in the window were by statements the database user may not read "
        "(<insufficient privilege>; 10 calls could be read), left out of the comparison; connect as the Moodle "
        "database user, or GRANT pg_read_all_stats TO watcher")
    assert hidden_warning(window_delta(before, {"SELECT 1": [20, 20, 2.0, 10]}, "pg_stat_statements"), "u") is None


def test_the_window_keeps_each_statements_work_and_the_databases_whole_work():
    before = {"SELECT a FROM mdl_user": [10, 10, 5.0, 100], "SELECT b FROM mdl_course": [50, 5, 1.0, 40]}
    after = {"SELECT a FROM mdl_user": [30, 30, 9.0, 400], "SELECT b FROM mdl_course": [60, 6, 1.5, 60]}
    delta = window_delta(before, after, "pg_stat_statements")
    assert {entry.query: entry.work for entry in delta.statements} == {
        "SELECT a FROM mdl_user": 300, "SELECT b FROM mdl_course": 20}
    assert (delta.work, delta.work_unit) == (320, "buffer pages")
    assert window_delta({}, {"SELECT 1": [1, 1, 0.1, 7]}, "performance_schema").work_unit == "rows examined"


def with_work(document_: Results, work: int) -> Results:
    raw = document_.to_dict()
    raw["statements"]["work"] = work
    raw["statements"]["work_unit"] = "buffer pages"
    return Results.from_dict(raw)


def test_the_databases_work_per_request_is_bad_only_above_the_tolerance_and_the_baselines_spread():
    steady = {"SELECT * FROM mdl_course WHERE id = $1": 100}
    bases = [with_work(document(steady), work) for work in (10000, 10200, 9800)]  # 100 pages a request, 2 % apart
    heavier = statement_changes(bases, [with_work(document(steady), 13000)])
    assert work_regression(heavier.work, 10) == ("database work per request 100.0 -> 130.0 buffer pages, x1.300 "
                                                    "(beyond the baseline runs' own spread of 6.0)")
    assert work_regression(statement_changes(bases, [with_work(document(steady), 10500)]).work, 10) is None
    one_baseline = statement_changes(bases[:1], [with_work(document(steady), 13000)])
    assert work_regression(one_baseline.work, 10) is None  # no spread known: named, not judged
    assert change_lines(heavier)[0] == ("database work per page view: 100.0 -> 130.0 buffer pages (baseline runs' "
                                        "spread 6.0)")


def test_a_statement_change_is_told_per_view_of_the_one_page_whose_db_reads_moved():
    assert moved_page({"course": (128, 168), "dashboard": (43, 43)}) == "course"
    assert moved_page({"course": (128, 168), "dashboard": (43, 50)}) is None
    assert moved_page({"course": (None, None)}) is None
    changes = StatementChanges.from_dict({"per": "request", "by_time": [], "by_calls": [
        {"query": EXTRA_QUERY, "tables": ["mdl_user"], "calls_change": 14.4, "base_calls": 0.0, "new_calls": 14.4}]})
    attributed = attribute(changes, "course", 0.36)
    assert change_lines(attributed)[0] == ("+40.0 calls per view of course, the page whose DB reads moved (+14.4 per "
                                           "request of the mix): SELECT id, username FROM mdl_user WHERE id = 7 "
                                           "[mdl_user]")


def test_a_statement_names_its_tables_in_either_familys_quoting():
    assert tables_in("SELECT u.id FROM mdl_user u JOIN mdl_user_enrolments ue ON ue.userid = u.id") == \
        ["mdl_user", "mdl_user_enrolments"]
    assert tables_in("UPDATE `mdl_sessions` SET `timemodified` = ?") == ["mdl_sessions"]
    assert tables_in('INSERT INTO "mdl_logstore_standard_log" (a) VALUES ($1)') == ["mdl_logstore_standard_log"]


def test_a_long_statement_is_shortened_keeping_its_start_and_end():
    text = "SELECT " + ", ".join(f"column_{n}" for n in range(60)) + " FROM mdl_user WHERE id = $1"
    short = shortened(text)
    assert len(short) <= 110 and short.startswith("SELECT column_0") and short.endswith("WHERE id = $1")


def statements_section(calls: dict) -> dict:
    return {"source": "pg_stat_statements", "left_out": 0,
            "statements": [{"query": q, "calls": c, "rows": c, "ms": c * 0.01} for q, c in calls.items()]}


def document(calls: dict | None, requests: int = 100) -> Results:
    """A run of one page ("course", ``requests`` of it) whose statistics counted ``calls``."""
    raw = read(os.path.join(DATA, "recorded-run.json"))
    url = next(iter(raw["urls"].values()))
    raw["urls"] = {"course": {**url, "requests": requests, "success": requests, "failure": 0, "failures": {}}}
    raw["row_kinds"] = {"course": "page"}
    if calls is not None:
        raw["statements"] = statements_section(calls)
    return Results.from_dict(raw)


def test_the_comparison_names_the_statement_whose_calls_per_page_view_rose():
    steady = {"SELECT * FROM mdl_course WHERE id = $1": 100}
    bases = [document(steady), document({**steady, "SELECT * FROM mdl_course WHERE id = $1": 101})]
    news = [document({**steady, EXTRA_QUERY: 4000})]
    changes = statement_changes(bases, news)
    assert [change.query for change in changes.by_calls] == [EXTRA_QUERY]
    assert change_lines(changes)[0].startswith("+40.0 calls per page view (0.0 -> 40.0): SELECT id, username FROM "
                                               "mdl_user WHERE id = 7 [mdl_user]")


def test_a_change_within_the_baselines_own_spread_is_not_named():
    query = "SELECT * FROM mdl_config"
    bases = [document({query: 100}), document({query: 300}), document({query: 200})]
    assert statement_changes(bases, [document({query: 290})]).by_calls == ()


def test_no_statements_on_a_side_means_no_statement_comparison():
    bare = document(None, requests=10)
    assert statement_changes([bare], [document({"SELECT 1": 1})]) is None


def test_a_damaged_statements_section_is_refused_when_read():
    damaged = statements_section({"SELECT 1": 1})
    damaged["statements"][0]["calls"] = -5
    from moodleload.results.statements import statements_problem
    assert statements_problem(damaged) == "statements: calls of an entry is not a count"


# ---- against real servers

def with_known_passwords(moodle_db, count: int = 5) -> None:
    hashed = "$2y$" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()[4:]
    for number in range(1, count + 1):
        moodle_db.query("UPDATE mdl_user SET password = %s WHERE username = %s",
                        (hashed, f"tool_generator_{number:06d}"))


def site_on(moodle_db, sim_factory):
    conn = moodle_db.connect()
    data = SiteData.from_database(conn)
    conn.close()
    users = moodle_db.users()
    return sim_factory(users=users, data=data), users


def one_run(moodle_db, sim_factory, tmp_path, *flags) -> tuple:
    """(exit status, the site) of one run of the course page with --query-stats on ``moodle_db``'s site."""
    with_known_passwords(moodle_db)
    server, users = site_on(moodle_db, sim_factory)
    try:
        config = write_config(tmp_path / "config.json", server.url, urls=COURSE_ONLY)
        return run_load(config, "--query-stats", *flags, output=tmp_path / "run.json"), server
    finally:
        users.close()


def baseline_then_extra_query(moodle_db, sim_factory, tmp_path, capsys) -> tuple:
    with_known_passwords(moodle_db)
    server, users = site_on(moodle_db, sim_factory)
    try:
        config = write_config(tmp_path / "config.json", server.url, urls=COURSE_ONLY)
        flags = ["--query-stats", *moodle_db.cli_args(), "--blocks", "4"]
        assert run_load(config, *flags, rpm=900, duration=3, output=tmp_path / "base.json") == 0
        pages = server.site.settings.pages
        pages["course"] = replace(pages["course"], queries=[[EXTRA_QUERY, 40]])
        capsys.readouterr()
        status = run_load(config, *flags, "--baseline", str(tmp_path / "base.json"), rpm=900, duration=3,
                          output=tmp_path / "new.json")
        return status, capsys.readouterr().out, read(tmp_path / "base.json"), read(tmp_path / "new.json")
    finally:
        users.close()


def assert_extra_query_named(status, out, base, new, source):
    assert status in (0, 1, 125)
    assert base["statements"]["source"] == new["statements"]["source"] == source
    assert document_problem(new) is None
    named = new["comparison"]["statements"]["by_calls"][0]
    assert "mdl_user" in named["tables"] and named["new_calls"] == pytest.approx(40.0, abs=0.5)
    assert "+40.0 calls per page view" in out or "+39.9 calls per page view" in out


def test_postgresql_statistics_name_the_query_a_commit_added(pg_db, sim_factory, tmp_path, capsys):
    pg_db.query("CREATE EXTENSION pg_stat_statements")
    status, out, base, new = baseline_then_extra_query(pg_db, sim_factory, tmp_path, capsys)
    assert_extra_query_named(status, out, base, new, "pg_stat_statements")
    assert "WHERE id = $1" in new["comparison"]["statements"]["by_calls"][0]["query"]  # the server's normal form
    # the database's work: buffer pages touched, more with 40 more lookups a view
    assert new["statements"]["work_unit"] == "buffer pages" and new["statements"]["work"] > base["statements"]["work"]
    assert "database work per page view" in out
    run = Results.from_dict(new)
    page = render_report(run, None, Results.from_dict(base), run.comparison)
    assert "Database statements that changed (per page view of the run)" in page
    assert "<code>SELECT id, username FROM mdl_user WHERE id = $1</code>" in page


def test_the_statistics_are_never_reset(pg_db, sim_factory, tmp_path, capsys):
    pg_db.query("CREATE EXTENSION pg_stat_statements")
    pg_db.query("SELECT count(*) FROM mdl_config WHERE name = 'another user of these statistics'")
    count = "SELECT sum(calls) FROM pg_stat_statements WHERE query = 'SELECT count(*) FROM mdl_config WHERE name = $1'"
    before = pg_db.query(count)[0][0]
    baseline_then_extra_query(pg_db, sim_factory, tmp_path, capsys)
    assert pg_db.query(count)[0][0] >= before >= 1


def test_without_the_extension_one_line_says_how_to_switch_it_on_and_the_run_goes_on(pg_db, sim_factory, tmp_path,
                                                                                     capsys):
    status, _ = one_run(pg_db, sim_factory, tmp_path, *pg_db.cli_args())
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if "pg_stat_statements" in line]
    assert status == 0 and len(warnings) == 1 and warnings[0].startswith("[WARN] query statistics off")
    assert "shared_preload_libraries" in warnings[0] and "CREATE EXTENSION" in warnings[0]
    assert "statements" not in read(tmp_path / "run.json")


def test_a_reader_without_the_right_to_see_moodles_statements_is_warned_and_none_is_named(pg_db, sim_factory,
                                                                                          tmp_path, capsys):
    pg_db.query("CREATE EXTENSION pg_stat_statements")
    pg_db.query("DROP ROLE IF EXISTS lowly")
    pg_db.query("CREATE ROLE lowly LOGIN PASSWORD 'lowly-secret'")  # neither the site's user nor pg_read_all_stats
    (tmp_path / "db-pass").write_text("lowly-secret\n")
    arguments = [*pg_db.cli_args()[:-1], "lowly", "--db-pass-file", str(tmp_path / "db-pass")]
    with_known_passwords(pg_db)
    server, users = site_on(pg_db, sim_factory)
    pages = server.site.settings.pages
    pages["course"] = replace(pages["course"], queries=[[EXTRA_QUERY, 40]])  # run as the site's own user
    try:
        config = write_config(tmp_path / "config.json", server.url, urls=COURSE_ONLY)
        status = run_load(config, "--query-stats", *arguments, output=tmp_path / "run.json")
    finally:
        users.close()
    out, err = capsys.readouterr()
    warnings = [line for line in out.splitlines() if "query statistics incomplete" in line]
    assert status == 0 and len(warnings) == 1, out + err
    assert "GRANT pg_read_all_stats TO lowly" in warnings[0]
    section = read(tmp_path / "run.json")["statements"]
    assert section["hidden_calls"] > 0 and HIDDEN not in {entry["query"] for entry in section["statements"]}


def test_mariadb_without_performance_schema_gets_one_line_and_the_run_goes_on(maria_db, sim_factory, tmp_path,
                                                                             capsys):
    status, _ = one_run(maria_db, sim_factory, tmp_path, *maria_db.cli_args())
    out = capsys.readouterr().out
    assert status == 0 and "[WARN] query statistics off: the server runs with performance_schema off" in out
    assert "statements" not in read(tmp_path / "run.json")


def test_wrong_database_settings_stop_before_the_first_request(pg_db, sim_factory, tmp_path, capsys):
    arguments = pg_db.cli_args()
    arguments[arguments.index("--db-name") + 1] = "no_such_database"
    status, server = one_run(pg_db, sim_factory, tmp_path, *arguments)
    err = capsys.readouterr().err
    assert status == EXIT_USAGE and err.count("\n") == 1 and err.startswith("[ERROR] --query-stats:")
    assert server.site.stats.requests == 0


@pytest.fixture(scope="module")
def mariadb_with_statistics():
    """A MariaDB of its own, started with performance_schema on (the shared one has it off)."""
    yield from seeded_mariadb(users=20, performance_schema=True)


def test_mariadb_statistics_name_the_query_a_commit_added(mariadb_with_statistics, sim_factory, tmp_path, capsys):
    moodle_db = MariaMoodleDb(mariadb_with_statistics)
    status, out, base, new = baseline_then_extra_query(moodle_db, sim_factory, tmp_path, capsys)
    assert_extra_query_named(status, out, base, new, "performance_schema")
    assert "`mdl_user`" in new["comparison"]["statements"]["by_calls"][0]["query"]  # the server's digest text
    assert new["statements"]["work_unit"] == "rows examined" and new["statements"]["work"] > 0


def test_with_several_processes_one_shard_reads_the_statistics_for_the_whole_run(pg_db, sim_factory, tmp_path):
    pg_db.query("CREATE EXTENSION pg_stat_statements")
    with_known_passwords(pg_db, count=6)
    server, users = site_on(pg_db, sim_factory)
    pages = server.site.settings.pages
    pages["course"] = replace(pages["course"], queries=[[EXTRA_QUERY, 10]])
    try:
        config = write_config(tmp_path / "config.json", server.url, users=6, urls=COURSE_ONLY)
        status = run_load(config, "--query-stats", *pg_db.cli_args(), "--processes", "2", rpm=900, duration=3,
                          output=tmp_path / "run.json")
    finally:
        users.close()
    document = read(tmp_path / "run.json")
    extra = [entry for entry in document["statements"]["statements"] if "mdl_user WHERE id" in entry["query"]]
    requests = document["urls"]["course"]["requests"]
    assert status == 0 and extra and extra[0]["calls"] == pytest.approx(10 * requests, rel=0.05)


def test_a_frequent_statement_moving_with_the_page_mix_is_not_named():
    query = "SELECT * FROM mdl_config_plugins WHERE plugin = $1"
    assert statement_changes([document({query: 500})], [document({query: 510})]).by_calls == ()  # 5.0 -> 5.1
    assert statement_changes([document({query: 500})], [document({query: 600})]).by_calls != ()  # 5.0 -> 6.0


# ---- a database that stops answering

def watcher_backend(moodle_db) -> int:
    """The process id of the run's own statistics connection (application name moodle_load)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = moodle_db.query("SELECT pid FROM pg_stat_activity WHERE application_name = 'moodle_load'")
        if rows:
            return rows[0][0]
        time.sleep(0.05)
    raise AssertionError("the run never connected for its statistics")


def test_a_stopped_database_backend_costs_the_snapshot_its_statistics_within_the_deadline(pg_db):
    pg_db.query("CREATE EXTENSION pg_stat_statements")
    settings = Settings()
    for name, value in (("name", pg_db.name), ("host", pg_db.pg.socketdir), ("port", pg_db.pg.port),
                        ("user", pg_db.pg.superuser)):
        settings.offer(name, value, "test")
    watcher = Watcher(database_for("pgsql", settings, "moodle_load"), deadline=1.0)
    assert watcher.open() is None
    backend = watcher_backend(pg_db)
    os.kill(backend, signal.SIGSTOP)
    try:
        started = time.monotonic()
        watcher.window_opens()
        watcher.window_closed()
        watcher.close()
        waited = time.monotonic() - started
    finally:
        os.kill(backend, signal.SIGCONT)
    assert waited < 10  # one deadline of 1 s, not three, and never for ever
    assert watcher.problem == "query statistics lost: the database did not answer the first snapshot within 1 s"
    assert watcher.result is None


def test_sigterm_ends_a_run_whose_database_stopped_answering_within_the_grace(pg_db, sim_factory, tmp_path):
    pg_db.query("CREATE EXTENSION pg_stat_statements")
    with_known_passwords(pg_db)
    server, users = site_on(pg_db, sim_factory)
    config = write_config(tmp_path / "config.json", server.url, urls=COURSE_ONLY)
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "moodle_load.py"), "--config", config,
                                "--rpm", "600", "--duration", "60", "--progress", "0", "--query-stats",
                                *pg_db.cli_args(), "--output", str(tmp_path / "run.json")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    backend = watcher_backend(pg_db)
    try:
        time.sleep(3)  # logged in, the window open
        os.kill(backend, signal.SIGSTOP)
        process.send_signal(signal.SIGTERM)  # the run closes its statistics on a database that will not answer
        signalled = time.monotonic()
        out, err = process.communicate(timeout=120)
        ended_after = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
        os.kill(backend, signal.SIGCONT)
        users.close()
    assert process.returncode == EXIT_SIGTERM, err
    assert ended_after < 30, ended_after  # the 5 s grace and the 5 s snapshot deadline, on a busy machine
    assert "[WARN] query statistics lost: the database did not answer the" in out and "Traceback" not in err
    saved = read(tmp_path / "run.json")
    assert saved["metadata"]["interrupted"] and "statements" not in saved
