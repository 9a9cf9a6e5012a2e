"""Bisect-grade runs: reproducible load, results as data, footer counters, verdicts."""

import copy
import json
import math
import os
import random

import pytest

import moodle_load
from helpers import fast_settings, read, run_load, write_config
from moodleload.compare import Thresholds, compare_documents, mann_whitney_p, ratio_interval
from moodleload.exits import EXIT_BAD, EXIT_CANNOT_JUDGE, EXIT_GOOD, EXIT_USAGE
from moodleload.histogram import Histogram
from moodleload.moodle import parse_footer

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def steady_settings(course_ms: float = 30.0, course_reads: int = 128):
    """Pages slow enough that loopback noise is small against them."""
    settings = fast_settings()
    for kind in ("my", "course", "forum", "profile"):
        settings.pages[kind].latency_ms = 30.0
        settings.pages[kind].jitter = 0.05
    settings.pages["course"].latency_ms = course_ms
    settings.pages["course"].db_reads = course_reads
    return settings


TWO_URLS = [{"path": "/my/", "name": "dashboard"}, {"path": "/course/view.php?id={courseid}", "name": "course"}]


# ---- reproducible load

def test_two_runs_with_the_same_seed_send_the_identical_request_sequence(sim_factory, tmp_path):
    logs = []
    for seed in ("5", "5", "6"):
        server = sim_factory()
        config = write_config(tmp_path / "c.json", server.url, users=3)
        assert run_load(config, "--concurrency", "1", "--seed", seed, rpm=1200, duration=2) == 0
        logs.append(list(server.site.stats.log))
    assert len(logs[0]) == 3 + 40  # each login lands on /my/ once, then 40 scheduled requests
    assert logs[0] == logs[1]
    assert logs[0] != logs[2]


def test_the_default_seed_is_fixed_and_printed(sim_factory, tmp_path, capsys):
    server = sim_factory()
    assert run_load(write_config(tmp_path / "c.json", server.url), output=tmp_path / "r.json") == 0
    assert ", seed 1" in capsys.readouterr().out
    assert read(tmp_path / "r.json")["metadata"]["seed"] == 1


def test_warmup_load_runs_but_is_not_counted(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    assert run_load(config, "--warmup", "1", rpm=600, duration=2, output=tmp_path / "r.json") == 0
    result = read(tmp_path / "r.json")
    assert result["summary"]["requests"] == 20
    assert len(server.site.stats.log) == 5 + 30  # 5 logins landing on /my/, 10 warm-up requests, 20 measured
    assert result["metadata"]["warmup_s"] == 1


# ---- results as data

def test_the_results_document_carries_what_a_later_comparison_needs(sim_factory, tmp_path):
    server = sim_factory()
    assert run_load(write_config(tmp_path / "c.json", server.url), "--blocks", "4", output=tmp_path / "r.json") == 0
    result = read(tmp_path / "r.json")
    meta = result["metadata"]
    for key in ("version", "argv", "seed", "config_sha256", "started_at", "duration_s", "target", "rpm"):
        assert meta[key] is not None, key
    dashboard = result["urls"]["dashboard"]
    assert len(dashboard["blocks_service_ms"]) == 4
    assert sum(block["count"] for block in dashboard["blocks_service_ms"]) == dashboard["success"]
    assert Histogram.from_dict(dashboard["service_ms"]).count == dashboard["success"]


def test_shards_merged_give_the_same_requests_per_url_as_one_run(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=6)
    assert run_load(config, rpm=1200, duration=2, output=tmp_path / "whole.json") == 0
    for k in (1, 2):
        assert run_load(config, "--shard", f"{k}/2", rpm=1200, duration=2, output=tmp_path / f"s{k}.json") == 0
        assert read(tmp_path / f"s{k}.json")["logins"]["ok"] == 3
    assert moodle_load.main(["--merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json"),
                    "--output", str(tmp_path / "merged.json")]) == 0
    whole, merged = read(tmp_path / "whole.json"), read(tmp_path / "merged.json")
    assert {n: u["requests"] for n, u in merged["urls"].items()} == {n: u["requests"] for n, u in whole["urls"].items()}
    assert merged["metadata"]["rpm"] == 1200 and merged["summary"]["requests"] == 40
    response = Histogram.from_dict(merged["urls"]["course"]["response_ms"])
    assert response.count == merged["urls"]["course"]["success"]
    # Percentiles come from the added histograms, not from averaging: the merged median lies
    # between the shards' medians, and the summary has the same shape as a single run's.
    shard_medians = [read(tmp_path / f"s{k}.json")["summary"]["urls"]["course"]["service_ms_p50"] for k in (1, 2)]
    assert min(shard_medians) <= merged["summary"]["urls"]["course"]["service_ms_p50"] <= max(shard_medians)
    assert merged["summary"].keys() == whole["summary"].keys()
    assert merged["summary"]["urls"]["course"].keys() == whole["summary"]["urls"]["course"].keys()


def test_processes_run_shards_and_merge_them(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=6)
    assert run_load(config, rpm=1200, duration=2, output=tmp_path / "whole.json") == 0
    assert run_load(config, "--processes", "2", rpm=1200, duration=2, output=tmp_path / "two.json") == 0
    whole, two = read(tmp_path / "whole.json"), read(tmp_path / "two.json")
    assert {n: u["requests"] for n, u in two["urls"].items()} == {n: u["requests"] for n, u in whole["urls"].items()}
    assert two["metadata"]["shards"] == ["1/2", "2/2"] and two["logins"]["ok"] == 6


def test_merging_results_of_different_configs_is_refused(sim_factory, tmp_path, capsys):
    server = sim_factory()
    assert run_load(write_config(tmp_path / "a.json", server.url), output=tmp_path / "a-r.json") == 0
    assert run_load(write_config(tmp_path / "b.json", server.url, urls=TWO_URLS), output=tmp_path / "b-r.json") == 0
    assert moodle_load.main(["--merge", str(tmp_path / "a-r.json"), str(tmp_path / "b-r.json"),
                    "--output", str(tmp_path / "m.json")]) == EXIT_USAGE
    assert "different configs" in capsys.readouterr().err


# ---- Moodle's performance footer

def test_the_footer_of_a_real_moodle_page_is_parsed():
    with open(os.path.join(DATA, "footer-my.html"), "rb") as handle:
        footer = parse_footer(b"<html>" + b"x" * 200000 + handle.read())
    assert footer == {"db_reads": 43, "db_writes": 1, "server_time_ms": pytest.approx(78.92),
                      "memory_peak_mb": 8.2, "included_files": 566, "session_wait_ms": 0.0}


def test_a_page_without_footer_has_no_counters():
    assert parse_footer(b"<html><body>no footer</body></html>") is None


def test_footer_counters_are_reported_per_url(sim_factory, tmp_path, capsys):
    server = sim_factory(steady_settings(course_reads=73))
    assert run_load(write_config(tmp_path / "c.json", server.url, urls=TWO_URLS), output=tmp_path / "r.json") == 0
    urls = read(tmp_path / "r.json")["summary"]["urls"]
    assert urls["course"]["db_reads_median"] == 73 and urls["dashboard"]["db_reads_median"] == 43
    assert urls["course"]["server_time_ms_median"] > 20
    assert "73/1" in capsys.readouterr().out


# ---- gates

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
    assert run_load(config, "--max-error-rate", "0.9") == EXIT_GOOD
    assert run_load(config, "--cannot-judge-error-rate", "0.1") == EXIT_CANNOT_JUDGE


def test_gates_that_hold_are_good(sim_factory, tmp_path):
    server = sim_factory()
    assert run_load(write_config(tmp_path / "c.json", server.url), "--max-p95-ms", "5000",
                    "--min-rpm-ratio", "0.9", "--max-error-rate", "0") == EXIT_GOOD


# ---- against a baseline

def test_more_db_reads_on_a_page_is_a_regression(sim_factory, tmp_path, capsys):
    config_path = tmp_path / "c.json"
    server = sim_factory(steady_settings())
    assert run_load(write_config(config_path, server.url, urls=TWO_URLS), output=tmp_path / "base.json") == 0
    server = sim_factory(steady_settings(course_reads=168))
    assert run_load(write_config(config_path, server.url, urls=TWO_URLS), "--baseline", str(tmp_path / "base.json"),
                    output=tmp_path / "new.json") == EXIT_BAD
    out = capsys.readouterr().out
    assert "course: DB reads 128 -> 168 per page" in out
    assert read(tmp_path / "new.json")["comparison"]["urls"]["course"]["verdict"] == "regression"


def test_compare_mode_judges_two_saved_runs_without_load(sim_factory, tmp_path, capsys):
    config_path = tmp_path / "c.json"
    enough_blocks = ("--blocks", "10", "--concurrency", "4")
    server = sim_factory(steady_settings())
    assert run_load(write_config(config_path, server.url, urls=TWO_URLS), *enough_blocks, rpm=2400, duration=4,
                    output=tmp_path / "base.json") == 0
    server = sim_factory(steady_settings(course_reads=140))
    assert run_load(write_config(config_path, server.url, urls=TWO_URLS), *enough_blocks, rpm=2400, duration=4,
                    output=tmp_path / "new.json") == 0
    assert moodle_load.main(["--compare", str(tmp_path / "base.json"), str(tmp_path / "new.json")]) == EXIT_BAD
    assert moodle_load.main(["--compare", str(tmp_path / "base.json"), str(tmp_path / "base.json")]) == EXIT_GOOD
    assert "ratio" in capsys.readouterr().out


def test_too_little_data_cannot_judge(sim_factory, tmp_path, capsys):
    server = sim_factory(steady_settings())
    config = write_config(tmp_path / "c.json", server.url, urls=TWO_URLS)
    assert run_load(config, rpm=120, duration=2, output=tmp_path / "base.json") == 0
    base = str(tmp_path / "base.json")
    assert moodle_load.main(["--compare", base, base]) == EXIT_CANNOT_JUDGE
    assert "too few blocks with data" in capsys.readouterr().out


def test_compare_refuses_a_file_that_is_not_results(tmp_path, capsys):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    assert moodle_load.main(["--compare", str(tmp_path / "x.json"), str(tmp_path / "x.json")]) == EXIT_USAGE
    assert "is not a moodle_load.py results file" in capsys.readouterr().err


def test_mann_whitney_separates_shifted_samples_and_not_equal_ones():
    assert mann_whitney_p(list(range(1, 11)), list(range(11, 21))) < 0.001
    assert mann_whitney_p([5.0] * 10, [5.0] * 10) == 1.0
    assert mann_whitney_p([1, 3, 5, 7, 9], [2, 4, 6, 8, 10]) > 0.5


# ---- calibration on a recorded run: no false alarms, a 20 % slowdown found

def _sampler(histogram: Histogram, rng: random.Random):
    buckets = sorted(histogram.counts)
    weights = [histogram.counts[b] for b in buckets]

    def draw() -> float:
        bucket = rng.choices(buckets, weights)[0]
        return Histogram.BASE ** (bucket + rng.random()) / 1000.0
    return draw


def resampled_run(recorded: dict, rng: random.Random, slowdown: dict | None = None) -> dict:
    """A run drawn from the recorded per-URL service-time distributions, with the recorded
    number of requests per block and a per-block drift (runs are autocorrelated)."""
    run = copy.deepcopy(recorded)
    for name, raw in run["urls"].items():
        draw = _sampler(Histogram.from_dict(recorded["urls"][name]["service_ms"]), rng)
        factor = (slowdown or {}).get(name, 1.0)
        blocks = []
        for block in recorded["urls"][name]["blocks_service_ms"]:
            drift = rng.lognormvariate(0.0, 0.03)
            histogram = Histogram()
            for _ in range(block["count"]):
                histogram.record(draw() * drift * factor)
            blocks.append(histogram.to_dict())
        raw["blocks_service_ms"] = blocks
    return run


@pytest.fixture(scope="module")
def recorded():
    with open(os.path.join(DATA, "recorded-run.json")) as handle:
        return json.load(handle)


def test_an_unchanged_site_is_not_flagged_in_at_least_19_of_20_comparisons(recorded):
    rng = random.Random(2024)
    verdicts = [compare_documents(resampled_run(recorded, rng), resampled_run(recorded, rng),
                                     Thresholds())["verdict"] for _ in range(20)]
    assert verdicts.count("same") >= 19, verdicts


def test_one_page_20_percent_slower_is_flagged(recorded):
    rng = random.Random(7)
    name = "course"
    flagged = 0
    for _ in range(20):
        comparison = compare_documents(resampled_run(recorded, rng),
                                          resampled_run(recorded, rng, {name: 1.2}), Thresholds())
        flagged += comparison["urls"][name]["verdict"] == "regression"
        assert all(row["verdict"] != "regression" for other, row in comparison["urls"].items() if other != name)
    assert flagged >= 19


def test_the_recorded_run_is_a_real_run(recorded):
    assert recorded["summary"]["requests"] >= 1000 and recorded["metadata"]["blocks"] == 20
    assert math.isclose(recorded["summary"]["req_per_min_observed"], 600, rel_tol=0.02)


def test_the_ratio_comes_with_a_95_percent_interval_that_holds_the_truth(recorded):
    rng = random.Random(11)
    comparison = compare_documents(resampled_run(recorded, rng), resampled_run(recorded, rng, {"course": 1.2}),
                                      Thresholds())
    low, high = comparison["urls"]["course"]["ratio_ci95"]
    assert low < 1.2 < high and high - low < 0.2
    low, high = comparison["urls"]["dashboard"]["ratio_ci95"]
    assert low < 1.0 < high
    assert ratio_interval([10.0] * 10, [12.0] * 10) == (1.2, 1.2)
