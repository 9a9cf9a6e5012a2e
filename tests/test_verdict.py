"""Gates and verdicts: which exit status a run ends with, and why."""

import errno
import socket

import pytest

from helpers import run_load, write_config
from moodleload.exits import (
    EXIT_BAD,
    EXIT_CANNOT_JUDGE,
    EXIT_FAULT,
    EXIT_GOOD,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from moodleload.judging.verdict import Gates, RunFacts, Verdict, decide, delivery_problems, judge_run
from moodleload.results.comparison import Comparison
from moodleload.results.sections import Generator, Logins, Metadata
from moodleload.results.summary import Percentiles, Summary, UrlSummary
from moodleload.site.httpclient import unreachable
from moodleload.site.moodle import failure_of


def test_a_gate_breach_is_bad_and_says_which_number_breached(sim_factory, tmp_path, capsys):
    server = sim_factory()
    assert run_load(write_config(tmp_path / "c.json", server.url), "--max-p95-ms", "0.01") == EXIT_BAD
    out = capsys.readouterr().out
    assert "[VERDICT] bad (exit 1)" in out and "> --max-p95-ms 0.01" in out


@pytest.mark.parametrize("flag, value", [("--max-p99-ms", "0.01"), ("--min-rpm-ratio", "1.5")])
def test_other_gates_breach_too(sim_factory, tmp_path, flag, value):
    server = sim_factory()
    assert run_load(write_config(tmp_path / "c.json", server.url), flag, value) == EXIT_BAD


def test_error_rate_gate_and_the_cannot_judge_line(sim_factory, tmp_path):
    server = sim_factory()
    urls = [{"path": "/my/", "weight": 3}, {"path": "/course/view.php?id=999999", "name": "missing"}]
    config = write_config(tmp_path / "c.json", server.url, urls=urls)
    assert run_load(config, "--max-error-rate", "0.05") == EXIT_BAD
    # Under the gate, but "missing" never once succeeded: never good (issue 14).
    assert run_load(config, "--max-error-rate", "0.9") == EXIT_CANNOT_JUDGE
    assert run_load(config, "--cannot-judge-error-rate", "0.1") == EXIT_CANNOT_JUDGE


def test_gates_that_hold_are_good(sim_factory, tmp_path):
    server = sim_factory()
    assert run_load(write_config(tmp_path / "c.json", server.url), "--max-p95-ms", "5000",
                    "--min-rpm-ratio", "0.9", "--max-error-rate", "0") == EXIT_GOOD


# ---- the run's own trust signals gate every verdict (pure: no load)

def summary(requests: int = 100, success: int | None = None, failures: dict | None = None,
            page: str = "page") -> Summary:
    """A run's summary: 100 requests at 600 RPM, all succeeded unless said, p95 50 ms, p99 80 ms."""
    success = requests if success is None else success
    return Summary(600.0, 600.0, requests, success, Percentiles(p95=50.0, p99=80.0), failures=failures or {},
                   urls={page: UrlSummary(requests, success, requests - success)})


METADATA = Metadata(rpm=600, duration_s=10, warmup_s=0, measured_seconds=10, blocks=20, concurrency=10, seed=1,
                    config_sha256="c0ffee", interrupted=False)


def generator(**changes) -> Generator:
    return Generator(**{"tokens_dropped": 0, "sent_in_window": 100, "due_in_window": 100, "paused_s": 0.0,
                        **changes})


def comparison(verdict: str, rows: dict, undecided: str | None = None) -> Comparison:
    """A comparison with the baseline that found ``verdict``; ``rows``: page -> (verdict, reason)."""
    return Comparison.from_dict({"verdict": verdict, "alpha_per_url": 0.05, "max_regression_pct": 10.0,
                                 "not_comparable": [], "undecided": undecided, "notes": [],
                                 "urls": {name: {"verdict": word, "reasons": [reason]}
                                          for name, (word, reason) in rows.items()}})


REGRESSION = comparison("regression", {"page": ("regression", "x1.50")})


def test_a_run_that_did_all_it_was_asked_has_no_delivery_problem():
    assert delivery_problems(generator(), METADATA, []) == []


def test_a_generator_that_stood_still_is_a_delivery_problem():
    [problem] = delivery_problems(generator(paused_s=2.0, tokens_dropped=20, sent_in_window=80), METADATA, [])
    assert problem.startswith("the generator stood still for 2.0 s of the measured window")


def test_requests_due_but_not_sent_in_the_window_are_a_delivery_problem():
    [problem] = delivery_problems(generator(sent_in_window=50), METADATA, [])
    assert problem.startswith("only 50 of the 100 requests due in the measured window were sent in it (50%")


def test_a_generator_that_was_the_bottleneck_is_a_delivery_problem():
    [problem] = delivery_problems(generator(), METADATA, ["its event loop woke up to 900 ms late (p99)"])
    assert "the generator was the bottleneck (its event loop woke up to 900 ms late (p99))" in problem


def test_results_before_0_7_take_what_was_due_from_the_rate():
    older = generator(sent_in_window=50, due_in_window=None)
    assert delivery_problems(older, METADATA, [])[0].startswith("only 50 of the 100 requests due")


@pytest.mark.parametrize("comparison", [None, REGRESSION], ids=["would-be-good", "would-be-bad"])
def test_a_run_with_a_delivery_problem_is_neither_good_nor_bad(comparison):
    verdict = decide(summary(), Gates(), comparison, None, ["the generator stood still for 2.0 s"])
    assert verdict.status == EXIT_CANNOT_JUDGE and verdict.reasons == ("the generator stood still for 2.0 s",)


def test_a_gate_breach_with_a_delivery_problem_is_not_bad_either():
    verdict = decide(summary(), Gates(max_p95_ms=1), None, None, ["only 50 of the 100 requests"])
    assert verdict.status == EXIT_CANNOT_JUDGE


def test_without_problems_the_same_run_is_good_or_bad():
    assert decide(summary(), Gates(), None).status == EXIT_GOOD
    assert decide(summary(), Gates(), REGRESSION).status == EXIT_BAD


# ---- a site that cannot be reached is not the commit's business

def test_logins_that_could_not_open_a_socket_stop_the_bisect_with_the_remedy():
    logins = Logins(ok=60, failed={"out of file descriptors": 440})
    verdict = decide(summary(), Gates(), None, logins)
    assert verdict.status == EXIT_UNREACHABLE
    assert verdict.reasons[0] == ("the generator could not open sockets: 440 of 500 logins (raise the open-file "
                                  "limit (ulimit -n) or lower --concurrency); the commit was not measured")


def test_a_site_answering_errors_is_the_commits_business_not_unreachable():
    failing = summary(success=0, failures={"http_500": 100})
    assert decide(failing, Gates(), None).status == EXIT_CANNOT_JUDGE


def test_an_unknown_host_and_running_out_of_files_are_both_unreachable():
    unknown = unreachable("moodle.invalid", 80, socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    out_of_files = unreachable("127.0.0.1", 80, OSError(errno.EMFILE, "Too many open files"))
    assert failure_of(unknown) == "unreachable" and "Name or service not known" in str(unknown)
    assert failure_of(out_of_files) == "out_of_files"


def test_a_site_out_of_reach_for_part_of_the_run_is_never_a_regression_of_the_commit():
    partly = summary(success=80, failures={"unreachable": 20})
    verdict = decide(partly, Gates(), REGRESSION)
    assert verdict.status == EXIT_CANNOT_JUDGE
    assert verdict.reasons[0].startswith("the site could not be reached for 20 of 100 requests")


# ---- the one function that chooses the exit status, branch by branch, without a load

def healthy_summary(requests: int = 100) -> Summary:
    return summary(requests, page="course")


REGRESSION = comparison("regression", {"course": ("regression", "x1.20, shown slower than 10 %")})
UNSURE = comparison("unsure", {"course": ("unsure", "interval 0.9-1.3")},
                    undecided="these runs rule out only slowdowns above 17.8 %")
NOT_RECORDED = Verdict(EXIT_FAULT, "not recorded", ("the results could not be written to run.json",))


@pytest.mark.parametrize("facts, status, word", [
    (dict(), EXIT_GOOD, "good"),
    (dict(comparison=REGRESSION), EXIT_BAD, "bad"),
    (dict(comparison=UNSURE), EXIT_CANNOT_JUDGE, "cannot judge"),
    (dict(undelivered=("the generator stood still for 10.0 s of the measured window",)), EXIT_CANNOT_JUDGE,
     "cannot judge"),
    (dict(undelivered=("the generator stood still",), comparison=REGRESSION), EXIT_CANNOT_JUDGE, "cannot judge"),
    (dict(summary=healthy_summary(requests=0)), EXIT_CANNOT_JUDGE, "cannot judge"),
    (dict(not_recorded=NOT_RECORDED, comparison=REGRESSION), EXIT_FAULT, "not recorded"),
    (dict(not_recorded=NOT_RECORDED, logged_in=0), EXIT_FAULT, "not recorded"),
    (dict(logged_in=0), EXIT_CANNOT_JUDGE, "cannot judge"),
    (dict(logged_in=0, interrupted=EXIT_SIGINT), EXIT_SIGINT, "interrupted"),
    (dict(dead_shards=("shard 2/2 died",)), EXIT_CANNOT_JUDGE, "cannot judge"),
    (dict(dead_shards=("shard 2/2 died",), interrupted=EXIT_SIGTERM), EXIT_SIGTERM, "interrupted"),
    (dict(interrupted=EXIT_SIGTERM, comparison=REGRESSION), EXIT_SIGTERM, "interrupted"),
    (dict(stopped_early=True, comparison=REGRESSION), EXIT_CANNOT_JUDGE, "cannot judge"),
    (dict(summary=None, confirmation=Verdict(EXIT_BAD, "not confirmed")), EXIT_BAD, "not confirmed"),
    (dict(summary=None, confirmation=Verdict(EXIT_GOOD, "confirmed")), EXIT_GOOD, "confirmed"),
    (dict(summary=None, child_failed=EXIT_USAGE), EXIT_USAGE, "not measured"),
    (dict(summary=None, child_failed=EXIT_FAULT, interrupted=EXIT_SIGTERM), EXIT_FAULT, "not measured"),
    (dict(summary=None, dead_shards=("shard 1/2 was killed by SIGKILL", "shard 2/2 was killed by SIGKILL")),
     EXIT_CANNOT_JUDGE, "cannot judge"),
], ids=["good", "bad", "unsure", "undelivered", "undelivered-beats-bad", "no-requests", "not-recorded-beats-bad",
        "not-recorded-without-logins", "no-logins", "stopped-while-logging-in", "dead-shard", "stopped-with-dead-shard",
        "stopped-beats-bad", "saved-stopped-run", "pairs-not-confirmed", "pairs-confirmed", "child-usage-mistake",
        "child-fault-beats-signal", "no-shard-saved-results"])
def test_the_exit_status_of_a_run_is_chosen_in_one_place(facts, status, word):
    arguments = {"summary": healthy_summary(), "gates": Gates(), **facts}
    verdict = judge_run(RunFacts(**arguments))
    assert (verdict.status, verdict.word) == (status, word)


def test_a_site_nobody_could_reach_stops_the_bisect_and_says_what_to_check():
    logins = Logins(ok=0, failed={"site unreachable": 5})
    verdict = judge_run(RunFacts(healthy_summary(), Gates(), logins=logins, logged_in=0))
    assert verdict.status == EXIT_UNREACHABLE and "check base_url" in verdict.reasons[0]


def test_inside_a_bisect_an_unsure_answer_that_every_step_would_repeat_stops_it_with_the_remedy():
    from moodleload.judging.verdict import Verdict, baseline_limit
    from moodleload.results.comparison import Comparison
    unsure = Verdict(125, "cannot judge", ("these runs rule out only slowdowns above 14.0 %",), undecided=True)
    one_run = Comparison.from_dict({"verdict": "unsure", "method": "blocks", "alpha_per_url": 0.01,
                                    "max_regression_pct": 10, "urls": {},
                                    "more_runs": {"candidate": 1, "baseline": 2}})
    stopped = baseline_limit(unsure, one_run)
    assert (stopped.status, stopped.word) == (128, "bisect stopped")
    assert "record three baseline runs" in stopped.reasons[0] and stopped.reasons[1] == unsure.reasons[0]
    weak = Comparison.from_dict({**one_run.to_dict(), "method": "runs",
                                 "more_runs": {"candidate": None, "baseline": 4}})
    assert "record about 4 more baseline runs" in baseline_limit(unsure, weak).reasons[0]
    more_of_this_commit = Comparison.from_dict({**one_run.to_dict(), "method": "runs", "more_runs": {"candidate": 2}})
    assert baseline_limit(unsure, more_of_this_commit) is unsure  # the commit's own runs may still decide
    bad = Verdict(1, "bad", ("course: DB reads 128 -> 168 per page",))
    assert baseline_limit(bad, one_run) is bad
