"""Judging the work a page did (Moodle's own CPU time per answer) beside the time it took:
--judge time|work|both, on synthetic runs whose wall time is as noisy as a busy machine's."""

import copy
import json
import os
import random
import re

import pytest

from helpers import DATA
from moodleload.judging.compare import Thresholds, compare_documents
from moodleload.judging.runcompare import compare_runs
from moodleload.judging.work import cpu_problem, tick_resolution
from moodleload.results.model import Results
from sim.synthetic import synthetic_run

# The recorded run's pages with a CPU time per answer like a real 2-core Moodle's (ms).
CPU = {"dashboard": 60.0, "course": 80.0, "forum": 70.0, "profile": 40.0}
BUSY = 0.06  # wall time's run-to-run spread on a busy machine: 6 %


@pytest.fixture(scope="module")
def recorded():
    with open(os.path.join(DATA, "recorded-run.json")) as handle:
        return json.load(handle)


def runs(recorded, count: int, seed: int, cpu=None, slowdown=None, wall=BUSY):
    rng = random.Random(seed)
    return [synthetic_run(recorded, rng, slowdown, run_shift_sd=wall, cpu_ms=cpu or CPU) for _ in range(count)]


def slower(page: str, factor: float) -> dict:
    return {**CPU, page: CPU[page] * factor}


def test_on_a_busy_machine_identical_code_is_good_by_its_work_where_time_cannot_tell(recorded):
    bases, news = runs(recorded, 3, 1), runs(recorded, 2, 2)
    by_work = compare_runs(bases, news, Thresholds(max_regression_pct=5, judge="work"))
    by_time = compare_runs(bases, news, Thresholds(max_regression_pct=5, judge="time"))
    assert by_work.verdict == "same"
    assert by_time.verdict == "unsure"
    assert all(row.decided_by == "work" for row in by_work.rows.values())


def test_a_cpu_slowdown_of_one_page_is_bad_by_its_work_and_the_reason_says_cpu_time(recorded):
    bases, news = runs(recorded, 3, 3), runs(recorded, 2, 4, cpu=slower("course", 1.10))
    comparison = compare_runs(bases, news, Thresholds(max_regression_pct=5, judge="work"))
    course = comparison.rows["course"]
    assert course.verdict == "regression" and comparison.verdict == "regression"
    assert course.reasons[0].startswith("CPU time per answer 8")
    assert course.work is not None and 1.05 < course.work.ratio < 1.16
    assert [name for name, row in comparison.rows.items() if row.verdict == "regression"] == ["course"]


def test_a_slowdown_that_only_waits_is_not_called_by_the_work(recorded):
    """A commit that sleeps (a lock, a slow external call) makes pages wait, not work: the
    work cannot see it; that is --judge work's limit, and time is the measure for it."""
    bases = runs(recorded, 3, 5, wall=0.005)
    news = runs(recorded, 2, 6, slowdown={"course": 1.3}, wall=0.005)
    assert compare_runs(bases, news, Thresholds(max_regression_pct=5, judge="work")).rows["course"].verdict == "same"
    assert compare_runs(bases, news, Thresholds(max_regression_pct=5, judge="time")).rows["course"].verdict \
        == "regression"


def test_under_both_a_work_regression_alone_is_bad(recorded):
    bases, news = runs(recorded, 3, 7), runs(recorded, 2, 8, cpu=slower("forum", 1.25))
    comparison = compare_runs(bases, news, Thresholds(max_regression_pct=10, judge="both"))
    forum = comparison.rows["forum"]
    assert forum.verdict == "regression" and forum.decided_by == "work"
    assert "CPU time per answer" in forum.reasons[0]


def test_when_time_cannot_decide_the_comparison_says_the_work_would(recorded):
    bases, news = runs(recorded, 3, 9), runs(recorded, 2, 10)
    comparison = compare_runs(bases, news, Thresholds(max_regression_pct=5, judge="both"))
    assert comparison.verdict == "unsure"
    assert comparison.work_would_decide is not None
    assert comparison.work_would_decide.startswith("--judge work would decide: the CPU time per answer rules out")


def without_cpu_line(document: Results, page: str) -> Results:
    raw = copy.deepcopy(document.to_dict())
    raw["urls"][page].pop("blocks_cpu_ticks")
    raw["urls"][page]["footer"].pop("cpu_ticks")
    return Results.from_dict(raw)


def test_under_work_a_page_whose_footer_lacks_the_cpu_line_cannot_be_judged_never_good(recorded):
    bases = runs(recorded, 3, 11)
    news = [without_cpu_line(document, "profile") for document in runs(recorded, 2, 12)]
    comparison = compare_runs(bases, news, Thresholds(max_regression_pct=5, judge="work"))
    profile = comparison.rows["profile"]
    assert comparison.verdict == "unsure" and profile.verdict == "unsure"
    assert "CPU time not judged" in profile.reasons[0] and "posix" in profile.reasons[0]


def test_under_time_a_missing_cpu_line_changes_nothing(recorded):
    bases = runs(recorded, 3, 13, wall=0.005)
    news = [without_cpu_line(document, "profile") for document in runs(recorded, 2, 14, wall=0.005)]
    comparison = compare_runs(bases, news, Thresholds(max_regression_pct=5, judge="time"))
    assert comparison.rows["profile"].verdict == "same"


def test_readings_that_cannot_be_true_leave_the_pages_work_unjudged(recorded):
    document = runs(recorded, 1, 15)[0]
    raw = document.to_dict()
    raw["urls"]["course"]["footer"]["cpu_unreadable"] = {"1": 3}
    damaged = Results.from_dict(raw).urls["course"]
    assert "3 of its footers gave a CPU time that cannot be true" in cpu_problem(damaged, "page", 5)


def test_too_few_answers_for_the_ten_ms_tick_are_not_judged(recorded):
    document = runs(recorded, 1, 16, cpu={**CPU, "profile": 4.0})[0]
    profile = document.urls["profile"]
    assert tick_resolution(profile) > 0.05
    assert "too few for the 10 ms tick" in cpu_problem(profile, "page", 5)
    assert cpu_problem(document.urls["course"], "page", 5) is None


def test_a_web_service_call_without_footer_is_judged_by_its_failures_alone_under_work(recorded):
    def as_call(document: Results) -> Results:
        raw = document.to_dict()
        raw["row_kinds"] = {**{name: "page" for name in raw["urls"]}, "profile": "web-service call"}
        raw["urls"]["profile"].pop("blocks_cpu_ticks")
        raw["urls"]["profile"]["footer"] = {}  # JSON answers carry no footer
        return Results.from_dict(raw)
    bases = [as_call(document) for document in runs(recorded, 3, 17)]
    news = [as_call(document) for document in runs(recorded, 2, 18)]
    comparison = compare_runs(bases, news, Thresholds(max_regression_pct=5, judge="work"))
    assert comparison.rows["profile"].work is None
    assert comparison.rows["profile"].verdict == "same"


def test_one_run_a_side_compares_the_work_block_by_block(recorded):
    base = runs(recorded, 1, 19, wall=0.005)[0]
    slow = runs(recorded, 1, 20, cpu=slower("dashboard", 1.3), wall=0.005)[0]
    comparison = compare_documents(base, slow, Thresholds(max_regression_pct=10, judge="work"))
    dashboard = comparison.rows["dashboard"]
    assert dashboard.verdict == "regression" and dashboard.reasons[0].startswith("CPU time per answer")
    same = compare_documents(base, runs(recorded, 1, 21, wall=0.005)[0], Thresholds(max_regression_pct=10,
                                                                                   judge="work"))
    assert same.rows["dashboard"].verdict != "regression"


def test_the_cpu_time_travels_through_the_saved_results_and_merges_by_adding(recorded):
    first, second = runs(recorded, 2, 22)
    saved = Results.from_dict(json.loads(json.dumps(first.to_dict())))
    assert saved.urls["course"].cpu_ms_mean == pytest.approx(first.urls["course"].cpu_ms_mean)
    assert saved.summary.urls["course"].cpu_ms_mean == round(first.urls["course"].cpu_ms_mean, 2)
    raw = [first.to_dict(), second.to_dict()]
    raw[0]["metadata"]["shards"], raw[1]["metadata"]["shards"] = ["1/2"], ["2/2"]
    merged = Results.merge([Results.from_dict(document) for document in raw])
    assert merged.urls["course"].cpu_requests == first.urls["course"].cpu_requests + second.urls["course"].cpu_requests
    assert sum(sum(block.values()) for block in merged.urls["course"].blocks_cpu_ticks) == \
        merged.urls["course"].cpu_requests


def test_pairs_confirm_a_cpu_slowdown_by_the_work_and_clear_identical_code(recorded):
    from moodleload.judging.pairs import confirm
    rng = random.Random(23)
    parents = [synthetic_run(recorded, rng, run_shift_sd=BUSY, cpu_ms=CPU) for _ in range(4)]
    culprits = [synthetic_run(recorded, rng, run_shift_sd=BUSY, cpu_ms=slower("course", 1.15)) for _ in range(4)]
    verdict, _ = confirm(parents, culprits, Thresholds(max_regression_pct=5, judge="work"))
    assert verdict.word == "confirmed" and verdict.reasons[0].startswith("course CPU time per answer x1.1")
    same = [synthetic_run(recorded, rng, run_shift_sd=BUSY, cpu_ms=CPU) for _ in range(4)]
    verdict, _ = confirm(parents, same, Thresholds(max_regression_pct=10, judge="work"))
    assert verdict.word == "not confirmed"


def test_a_range_has_a_cpu_series_per_page_and_its_step_is_found(recorded):
    from moodleload.scan.changepoints import find_all
    rng = random.Random(24)
    documents = [synthetic_run(recorded, rng, run_shift_sd=BUSY, cpu_ms=CPU if commit < 6 else slower("course", 1.12))
                 for commit in range(12)]
    steps = {item.series: item.step for item in find_all(documents)}
    assert "course CPU" in steps and (steps["course CPU"].before, steps["course CPU"].after) == (5, 6)
    assert not [series for series in steps if series.endswith(" CPU") and series != "course CPU"]


def test_a_rise_of_the_databases_work_alone_makes_the_verdict_bad_with_its_line(recorded):
    from moodleload.judging.verdict import Gates, decide
    bases, news = runs(recorded, 3, 25, wall=0.005), runs(recorded, 2, 26, wall=0.005)
    comparison = compare_runs(bases, news, Thresholds(max_regression_pct=10, judge="work"))
    assert comparison.verdict == "same"
    line = "database work per request 100.0 -> 130.0 buffer pages, x1.300 (beyond the baseline runs' own spread of 6.0)"
    heavier = comparison.with_statements({"per": "request", "by_calls": [], "by_time": []}, line)
    verdict = decide(news[-1].summary, Gates(), heavier)
    assert (verdict.word, verdict.reasons[-1]) == ("bad", line)


def test_every_view_shows_the_work_and_what_decided(recorded):
    import csv
    import io
    import xml.etree.ElementTree as ElementTree

    from moodleload.judging.verdict import Gates, decide
    from moodleload.reports.exporters import CsvExporter, Exported, JunitExporter
    from moodleload.reports.html import render_report
    from moodleload.reports.text import format_comparison, format_report
    bases, news = runs(recorded, 3, 27), runs(recorded, 1, 28, cpu=slower("course", 1.3))
    comparison = compare_runs(bases, news, Thresholds(max_regression_pct=10, judge="work"))
    verdict = decide(news[0].summary, Gates(), comparison)
    exported = Exported(news[0], verdict, bases[0], comparison)
    rows = {row["url"]: row for row in csv.DictReader(io.StringIO(CsvExporter().render(exported)))}
    assert float(rows["course"]["cpu_ratio"]) > 1.2 and rows["course"]["decided_by"] == "work"
    assert float(rows["course"]["cpu_ms_mean"]) == pytest.approx(news[0].urls["course"].cpu_ms_mean, abs=0.01)
    case = ElementTree.fromstring(JunitExporter().render(exported)).find("testcase[@name='course']")
    assert case.get("decided_by") == "work" and "CPU time per answer" in case.find("failure").get("message")
    assert "Work: Moodle's own CPU time per answer" in format_comparison(comparison)
    assert " CPU " in format_report(news[0]).splitlines()[2]
    page = render_report(news[0], verdict, bases[0], comparison)
    assert "The work: Moodle's own CPU time per answer" in page and "CPU ms (mean)" in page


def test_a_scans_step_that_only_the_work_showed_is_bisected_by_the_work():
    from types import SimpleNamespace

    from moodleload.scan.changepoints import Found, Step
    from moodleload.scan.plan import Interval
    from moodleload.scan.runner import bisect_environment
    scan = SimpleNamespace(environment={"LOAD_ARGS": "--insecure"})
    step = Step(4, 5, 1.1, 0.095, 0.001)
    by_work = Interval(4, 5, "regression", (Found("course CPU", step, False),))
    by_both = Interval(4, 5, "regression", (Found("course CPU", step, False), Found("course", step, False)))
    assert bisect_environment(scan, by_work, "/tmp/x", 5, 2)["LOAD_ARGS"].endswith("--judge work")
    assert "--judge" not in bisect_environment(scan, by_both, "/tmp/x", 5, 2)["LOAD_ARGS"]


def test_the_margin_on_failures_is_a_setting_and_short_runs_with_no_failure_decide_with_a_wider_one(recorded):
    bases, news = runs(recorded, 3, 29, wall=0.005), runs(recorded, 1, 30, wall=0.005)
    strict = compare_runs(bases, news, Thresholds(max_regression_pct=10, judge="time", failure_margin=0.002))
    assert strict.verdict == "unsure" and "--max-failure-rise" in strict.undecided
    wide = compare_runs(bases, news, Thresholds(max_regression_pct=10, judge="time", failure_margin=0.05))
    assert wide.verdict == "same"


def on_machine(document: Results, load_average: float) -> Results:
    raw = document.to_dict()
    raw["machine"] = {"cpus": 2.0, "busy_cores": 2.0, "other_busy_cores": 1.9, "steal_share": 0.0,
                      "load_average": load_average}
    return Results.from_dict(raw)


def test_a_machine_busier_than_during_the_baseline_leaves_the_work_unjudged_never_a_wrong_call(recorded):
    """The work a page does moves with contention too (preemptions, cold caches): a run on a
    machine much busier than the baseline's says so, and neither calls it good nor bad."""
    loads = (5.8, 6.0, 6.2)
    bases = [on_machine(document, load) for document, load in zip(runs(recorded, 3, 31), loads, strict=True)]
    news = [on_machine(runs(recorded, 1, 32, cpu=slower("profile", 1.08))[0], 8.4)]
    comparison = compare_runs(bases, news, Thresholds(max_regression_pct=5, judge="work"))
    profile = comparison.rows["profile"]
    assert profile.verdict == "unsure" and comparison.verdict == "unsure"
    assert "the load machine was busier than during the baseline (load average 4.2 per core against 2.9-3.1)" \
        in profile.reasons[0]
    steady = [on_machine(runs(recorded, 1, 32, cpu=slower("profile", 1.3))[0], 6.1)]
    assert compare_runs(bases, steady, Thresholds(max_regression_pct=5, judge="work")).rows["profile"].verdict \
        == "regression"


def test_the_ordinary_scatter_of_a_quiet_machines_load_is_no_doubt():
    from moodleload.load.machine import contention_shift
    from moodleload.results.sections import Machine

    def machine(load: float) -> Machine:
        return Machine(busy_cores=0.1, other_busy_cores=0.0, cpus=2.0, load_average=load)

    quiet = [machine(load) for load in (0.2, 0.3, 0.25)]
    assert contention_shift(quiet, [machine(0.6)]) is None  # 0.3 per core: scatter
    assert contention_shift(quiet, [machine(2.2)]) is not None
    assert contention_shift(quiet, [None]) is None  # not recorded: nothing to say


def test_the_report_says_what_requests_counts_where_pages_made_web_service_calls(recorded):
    from moodleload.reports.text import format_report
    raw = copy.deepcopy(recorded)
    raw["row_kinds"] = {**{name: "page" for name in raw["urls"]}, "profile": "web-service call"}
    document = Results.from_dict(raw)
    calls = document.urls["profile"].requests
    line = next(line for line in format_report(document).splitlines() if line.startswith("requests: "))
    assert line == (f"requests: {document.summary.requests} in all = {document.summary.requests - calls} page views "
                    f"and journey steps, paced at 600 a minute, + {calls} web-service calls the pages made beside "
                    f"them (not counted in the rate)")


def beside(document: Results, other_busy_cores: float) -> Results:
    """The run as if the load machine's other processes had kept ``other_busy_cores`` busy."""
    raw = document.to_dict()
    raw["machine"] = {"cpus": 2.0, "busy_cores": other_busy_cores + 0.1, "other_busy_cores": other_busy_cores,
                      "steal_share": 0.0, "load_average": None}
    return Results.from_dict(raw)


QUIET_SPREAD = 0.005  # a quiet machine: whole runs within half a per cent of each other


@pytest.mark.parametrize("judge", ["time", "both"])
def test_a_machine_busier_than_during_the_baseline_never_makes_identical_code_bad_by_time(recorded, judge):
    """Two busy loops beside a commit's runs after a quiet baseline: every page waits 30 % longer
    for a core.  Not the commit's doing: the answer is 125 and says why, never bad."""
    bases = [beside(document, 0.05) for document in runs(recorded, 3, 41, wall=QUIET_SPREAD)]
    news = [beside(document, 1.9) for document in runs(recorded, 2, 42, wall=QUIET_SPREAD,
                                                           slowdown={name: 1.3 for name in CPU})]
    comparison = compare_runs(bases, news, Thresholds(max_regression_pct=10, judge=judge))
    assert comparison.verdict == "unsure"
    assert all(row.verdict == "unsure" for row in comparison.rows.values())
    # the site's own CPU time (the footer's, the site answered on 127.0.0.1) is not the neighbours'
    assert re.search(r"the load machine was busier than during the baseline \(its other processes kept 1\.\d of "
                     r"its 2 cores busy, against 0\.0-0\.0; the pages as a whole x1\.[23]\d\d\)",
                     comparison.rows["course"].reasons[-1])
    same_machine = compare_runs(bases, [beside(document, 0.05) for document in news],
                                Thresholds(max_regression_pct=10, judge=judge))
    assert same_machine.verdict == "regression"  # the same slowdown on the baseline's machine is the commit's


def test_on_a_busier_machine_one_page_that_slowed_alone_is_still_the_commits(recorded):
    """The machine moves every page that waits on its cores; one page 30 % slower while the
    others held is the commit's doing, whatever the neighbours did."""
    bases = [beside(document, 0.05) for document in runs(recorded, 3, 41, wall=QUIET_SPREAD)]
    news = [beside(document, 1.9) for document in runs(recorded, 2, 42, wall=QUIET_SPREAD, slowdown={"course": 1.3})]
    comparison = compare_runs(bases, news, Thresholds(max_regression_pct=10, judge="time"))
    assert comparison.verdict == "regression" and comparison.rows["course"].verdict == "regression"


def test_on_a_busier_machine_more_work_is_still_bad_under_both(recorded):
    bases = [beside(document, 0.05) for document in runs(recorded, 3, 43, wall=QUIET_SPREAD)]
    news = [beside(document, 1.9) for document in runs(recorded, 2, 44, wall=QUIET_SPREAD, cpu=slower("course", 1.3),
                                                           slowdown={name: 1.3 for name in CPU})]
    comparison = compare_runs(bases, news, Thresholds(max_regression_pct=10, judge="both"))
    assert comparison.rows["course"].verdict == "regression" and comparison.rows["course"].decided_by == "work"
    assert comparison.rows["dashboard"].verdict == "unsure"


def test_a_machine_quieter_than_during_the_baseline_shows_no_good_where_the_waiting_it_took_away_was_large(recorded):
    """A baseline taken beside busy loops, a commit measured on a quiet machine where every page
    waits 25 % less: the course page's 12 % slowdown hides under the waiting that went away, so
    a time that held proves nothing."""
    bases = [beside(document, 1.9) for document in runs(recorded, 3, 45, wall=QUIET_SPREAD)]
    faster = {**{name: 0.75 for name in CPU}, "course": 0.75 * 1.12}
    news = [beside(document, 0.05) for document in runs(recorded, 2, 46, wall=QUIET_SPREAD, slowdown=faster)]
    comparison = compare_runs(bases, news, Thresholds(max_regression_pct=10, judge="time"))
    assert comparison.verdict == "unsure" and comparison.rows["course"].verdict == "unsure"
    assert "the load machine was quieter than during the baseline" in comparison.rows["course"].reasons[-1]
    assert "; the pages as a whole x0.7" in comparison.rows["course"].reasons[-1]


def test_a_quieter_machine_that_did_not_move_the_times_leaves_them_to_be_judged(recorded):
    """A site whose pages do not wait on the load machine's cores (the waiting is elsewhere):
    the neighbours went away and nothing got faster, so nothing can hide; judged as usual."""
    bases = [beside(document, 1.9) for document in runs(recorded, 3, 45, wall=QUIET_SPREAD)]
    news = [beside(document, 0.05) for document in runs(recorded, 2, 46, wall=QUIET_SPREAD)]
    comparison = compare_runs(bases, news, Thresholds(max_regression_pct=10, judge="time"))
    assert comparison.verdict == "same"


def test_the_sites_own_cpu_on_a_loopback_site_is_not_counted_as_the_neighbours():
    from moodleload.judging.compare import neighbour_cores

    with open(os.path.join(DATA, "recorded-run.json")) as handle:
        raw = json.load(handle)
    rng = random.Random(47)
    document = synthetic_run(raw, rng, cpu_ms=CPU)
    site_cores = sum(record.cpu_ms_mean * record.cpu_requests for record in document.urls.values()) / 1000.0 \
        / document.metadata.measured_seconds
    local, remote = document.to_dict(), document.to_dict()
    local["metadata"]["target"], remote["metadata"]["target"] = "http://127.0.0.1:8080", "https://moodle.example.org"
    for raw_run in (local, remote):
        raw_run["machine"] = {"cpus": 2.0, "busy_cores": 1.5, "other_busy_cores": 1.4, "steal_share": 0.0}
    assert neighbour_cores(Results.from_dict(local)) == pytest.approx(max(0.0, 1.4 - site_cores))
    assert neighbour_cores(Results.from_dict(remote)) == 1.4
