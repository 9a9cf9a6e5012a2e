"""Exports behind one interface: CSV and a JUnit summary beside the HTML report, from any mode."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ElementTree

import moodle_load
from helpers import run_load, write_config
from moodleload.exits import EXIT_BAD, EXIT_GOOD, EXIT_USAGE
from moodleload.reports.exporters import EXPORTERS


def test_every_exporter_has_its_own_option_and_destination():
    assert len({exporter.option for exporter in EXPORTERS}) == len({exporter.dest for exporter in EXPORTERS}) \
        == len(EXPORTERS)


def test_a_run_against_its_baseline_exports_one_csv_row_per_url_with_ratio_and_verdict(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "config.json", server.url)
    assert run_load(config, "--blocks", "6", rpm=3000, duration=4, output=tmp_path / "base.json") == EXIT_GOOD
    status = run_load(config, "--blocks", "6", "--baseline", str(tmp_path / "base.json"), "--export-csv",
                      str(tmp_path / "run.csv"), "--max-p95-ms", "0.001", rpm=3000, duration=4)
    assert status == EXIT_BAD
    with open(tmp_path / "run.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["url"] for row in rows] == ["dashboard", "course", "forum", "profile"]
    assert all(float(row["ratio"]) > 0 and row["verdict"] and row["exit_status"] == "1" for row in rows)
    assert all(int(row["requests"]) == int(row["success"]) + int(row["failure"]) for row in rows)


def test_the_junit_summary_fails_a_bad_run_and_names_why(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "config.json", server.url)
    assert run_load(config, "--max-p95-ms", "0.001", "--export-junit", str(tmp_path / "run.xml")) == EXIT_BAD
    suite = ElementTree.parse(tmp_path / "run.xml").getroot()
    verdict = suite.find("testcase[@name='verdict']")
    assert suite.get("failures") == "1" and "--max-p95-ms" in verdict.find("failure").get("message")


def test_a_good_run_is_a_passing_junit_summary(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "config.json", server.url)
    assert run_load(config, "--export-junit", str(tmp_path / "run.xml")) == EXIT_GOOD
    suite = ElementTree.parse(tmp_path / "run.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("1", "0", "0")


def test_a_saved_run_is_exported_without_load(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "config.json", server.url)
    assert run_load(config, output=tmp_path / "run.json") == EXIT_GOOD
    requests_before = server.site.stats.requests
    assert moodle_load.main([str(tmp_path / "run.json"), "--export-csv", str(tmp_path / "run.csv")]) == EXIT_GOOD
    assert server.site.stats.requests == requests_before and (tmp_path / "run.csv").read_text().startswith("url,")


def test_an_export_onto_the_results_file_is_refused_before_any_load(sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "config.json", server.url)
    path = str(tmp_path / "run.json")
    assert run_load(config, "--export-csv", path, output=path) == EXIT_USAGE
    assert server.site.stats.requests == 0 and "--export-csv" in capsys.readouterr().err


def test_a_run_where_nobody_could_log_in_still_writes_the_asked_export(sim_factory, tmp_path):
    server = sim_factory(password="another password")
    config = write_config(tmp_path / "config.json", server.url)
    assert run_load(config, "--export-junit", str(tmp_path / "run.xml")) == EXIT_USAGE  # every password refused
    suite = ElementTree.parse(tmp_path / "run.xml").getroot()
    assert suite.get("skipped") == "1" and "refused the password" in suite.find("testcase/skipped").get("message")


def test_a_merge_ends_in_the_merged_runs_verdict_and_writes_the_asked_export(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "config.json", server.url)
    for shard in (1, 2):
        assert run_load(config, "--shard", f"{shard}/2", output=tmp_path / f"s{shard}.json") == EXIT_GOOD
    status = moodle_load.main(["--merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json"), "--output",
                               str(tmp_path / "merged.json"), "--export-csv", str(tmp_path / "merged.csv"),
                               "--max-p95-ms", "0.001"])
    assert status == EXIT_BAD  # the gate judges the merged run, as --processes' parent does
    assert (tmp_path / "merged.csv").read_text().splitlines()[1].endswith(",bad,1")


HOSTILE_NAMES = ["=HYPERLINK(\"http://x\")", "+1+1", "-2", "@SUM(A1)", "\x1b[31mred\x1b[0m", "$^^^$", "$\\x$",
                 "bell\x07and\x00nul"]


def hostile_runs():
    """Two runs of pages with names a site or a config could hand over, compared."""
    import json
    import os
    import random

    from helpers import DATA
    from moodleload.judging.runcompare import compare_runs
    from moodleload.results.model import Results
    from sim.synthetic import synthetic_run
    with open(os.path.join(DATA, "recorded-run.json")) as handle:
        recorded = json.load(handle)
    template = next(iter(recorded["urls"].values()))
    recorded["urls"] = {name: template for name in HOSTILE_NAMES}
    rng = random.Random(5)
    runs = [synthetic_run(recorded, rng, run_shift_sd=0.01) for _ in range(3)]
    from moodleload.judging.compare import Thresholds
    return runs[-1], runs[0], compare_runs(runs[:2], runs[2:], Thresholds()), Results


def test_hostile_page_names_are_data_in_every_export_and_report(capsys):
    import io

    from moodleload.console import Printer
    from moodleload.judging.verdict import Gates, decide
    from moodleload.reports.exporters import CsvExporter, Exported, HtmlExporter, JunitExporter
    from moodleload.reports.text import format_comparison, format_report
    new, base, comparison, _ = hostile_runs()
    verdict = decide(new.summary, Gates(), comparison)
    exported = Exported(new, verdict, base, comparison)
    rows = list(csv.reader(io.StringIO(CsvExporter().render(exported))))[1:]
    assert all(not row[0].startswith(("=", "+", "-", "@")) for row in rows)  # no formula runs
    assert {row[0] for row in rows} >= {"'=HYPERLINK(\"http://x\")", "'+1+1", "'-2", "'@SUM(A1)"}
    suite = ElementTree.fromstring(JunitExporter().render(exported))  # well-formed XML
    assert len(suite.findall("testcase")) == len(HOSTILE_NAMES) + 1
    page = HtmlExporter().render(exported)  # matplotlib reads none of it as maths
    assert "\x1b" not in page and "=HYPERLINK(&quot;http://x&quot;)" in page
    screen = io.StringIO()
    printer = Printer(stream=screen)
    printer(format_report(new))
    printer(format_comparison(comparison))
    for line in verdict.lines():
        printer(line)
    assert "\x1b" not in screen.getvalue() and "\x07" not in screen.getvalue() and "\x00" not in screen.getvalue()


def test_hostile_page_names_and_commit_subjects_are_data_in_the_range_report():
    from moodleload.scan.plan import StepOutcome
    from moodleload.scan.report import render_range_report
    new, base, _, _ = hostile_runs()
    outcome = {"interval": ["000-aaaaaaa", "002-ccccccc"], "direction": "regression", "steps": HOSTILE_NAMES[:3],
               "max_regression_pct": 5.0, "max_db_reads_increase": 2.0, "baseline": [], "commit": "c" * 40,
               "subject": "$^^^$ \x1b[31m<script>alert(1)</script>", "confirmation": "confirmed", "reasons": []}
    page = render_range_report([base, base, new], ["000-aaaaaaa", "001-\x1b[31m<b>\"'", "002-ccccccc"], [],
                               [StepOutcome.from_dict(outcome)], ("aaaaaaa", "ccccccc"))
    assert "\x1b" not in page and "<script>" not in page and "<b>" not in page and "&lt;script&gt;" in page
    assert page.count("<svg") >= len(HOSTILE_NAMES)  # a chart per page, none stopped by its name


def test_hostile_statement_text_and_release_string_are_data_in_the_console_and_the_report(tmp_path, capsys):
    import json

    import moodle_load
    new, base, _, _ = hostile_runs()
    query = "SELECT '\x1b[2J<script>alert(1)</script>' FROM mdl_user WHERE id = $1"
    release = "5.0.6+ (Build: 20260403) \x1b]0;owned\x07<b>evil</b>"
    for name, document, calls_per_request in (("base", base, 1), ("new", new, 9)):
        raw = document.to_dict()
        requests = document.summary.requests
        raw["metadata"]["moodle"] = {"release": release, "version": "2025041406.06", "commit": "a" * 40,
                                     "layout": "up to 5.0: code at the top", "uncommitted_changes": False}
        raw["statements"] = {"source": "pg_stat_statements", "left_out": 0, "work": 3 * requests,
                             "work_unit": "buffer pages",
                             "statements": [{"query": query, "calls": calls_per_request * requests, "rows": requests,
                                             "ms": 0.1 * requests, "work": 3 * requests}]}
        with open(tmp_path / f"{name}.json", "w") as handle:
            json.dump(raw, handle)
    status = moodle_load.main(["--compare", str(tmp_path / "base.json"), str(tmp_path / "new.json"),
                               "--report", str(tmp_path / "report.html")])
    screen = capsys.readouterr().out
    assert status in (0, 1, 125)
    assert "Database statements that changed" in screen and "<script>alert(1)</script>" in screen  # as text
    assert "\x1b" not in screen and "\x07" not in screen
    page = (tmp_path / "report.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;evil&lt;/b&gt;" in page
    assert "<script>" not in page and "<b>evil" not in page and "\x1b" not in page and "\x07" not in page
    from moodleload.reports.text import format_report
    from moodleload.results.model import Results
    with open(tmp_path / "new.json") as handle:
        report = format_report(Results.from_dict(json.load(handle), "new.json"))  # as a run prints it
    assert "Moodle under test: 5.0.6+ (Build: 20260403) ?]0;owned?<b>evil</b>" in report and "\x1b" not in report
