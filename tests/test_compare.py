"""Comparing a run with its baseline: the statistics, calibrated on a recorded real run."""

import copy
import json
import math
import os
import random

import pytest

import moodle_load
from helpers import DATA, fast_settings, read, run_load, write_config
from moodleload.exits import EXIT_BAD, EXIT_CANNOT_JUDGE, EXIT_USAGE, UsageError
from moodleload.judging.compare import (
    FAILURE_MARGIN,
    Thresholds,
    compare_documents,
    failure_rise_upper,
    judge_counts,
    mann_whitney_p,
    ratio_interval,
)
from moodleload.reports import html as htmlreport
from moodleload.results.comparison import Comparison, comparison_problem
from moodleload.results.histogram import Histogram
from moodleload.results.model import Results


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


def _sampler(histogram: Histogram, rng: random.Random):
    buckets = sorted(histogram.counts)
    weights = [histogram.counts[b] for b in buckets]

    def draw() -> float:
        bucket = rng.choices(buckets, weights)[0]
        return Histogram.BASE ** (bucket + rng.random()) / 1000.0
    return draw


def resampled_run(recorded: dict, rng: random.Random, slowdown: dict | None = None) -> Results:
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
        raw.pop("blocks_service_fine_ms", None)  # the blocks drawn here are the only ones
    return Results.from_dict(run, "a resampled run")


@pytest.fixture(scope="module")
def recorded():
    with open(os.path.join(DATA, "recorded-run.json")) as handle:
        return json.load(handle)


def test_footer_counters_are_reported_per_url(sim_factory, tmp_path, capsys):
    server = sim_factory(steady_settings(course_reads=73))
    assert run_load(write_config(tmp_path / "c.json", server.url, urls=TWO_URLS), output=tmp_path / "r.json") == 0
    urls = read(tmp_path / "r.json")["summary"]["urls"]
    assert urls["course"]["db_reads_median"] == 73 and urls["dashboard"]["db_reads_median"] == 43
    assert urls["course"]["server_time_ms_median"] > 20
    assert "73/1" in capsys.readouterr().out


def test_more_db_reads_on_a_page_is_a_regression(sim_factory, tmp_path, capsys):
    config_path = tmp_path / "c.json"
    server = sim_factory(steady_settings())
    assert run_load(write_config(config_path, server.url, urls=TWO_URLS), output=tmp_path / "base.json") == 0
    server.site.settings = steady_settings(course_reads=168)  # the same site at the next commit
    assert run_load(write_config(config_path, server.url, urls=TWO_URLS), "--baseline", str(tmp_path / "base.json"),
                    output=tmp_path / "new.json") == EXIT_BAD
    out = capsys.readouterr().out
    assert "course: DB reads 128 -> 168 per page" in out
    assert read(tmp_path / "new.json")["comparison"]["urls"]["course"]["verdict"] == "regression"


def test_compare_mode_judges_two_saved_runs_without_load(sim_factory, tmp_path, capsys):
    config_path = tmp_path / "c.json"
    enough_blocks = ("--blocks", "10", "--concurrency", "4")
    server = sim_factory(steady_settings())
    assert run_load(write_config(config_path, server.url, urls=TWO_URLS), *enough_blocks, rpm=6000, duration=4,
                    output=tmp_path / "base.json") == 0
    server.site.settings = steady_settings(course_reads=140)  # the same site at the next commit
    assert run_load(write_config(config_path, server.url, urls=TWO_URLS), *enough_blocks, rpm=6000, duration=4,
                    output=tmp_path / "new.json") == 0
    assert moodle_load.main(["--compare", str(tmp_path / "base.json"), str(tmp_path / "new.json"),
                             "--output", str(tmp_path / "judged.json")]) == EXIT_BAD
    assert "ratio" in capsys.readouterr().out
    judged = json.loads((tmp_path / "judged.json").read_text())  # --output: the new run with its comparison
    assert judged["comparison"]["verdict"] == "regression" and judged["urls"] == json.loads(
        (tmp_path / "new.json").read_text())["urls"]
    # A run against itself is one run, not two: refused, never "good" for want of a difference.
    assert moodle_load.main(["--compare", str(tmp_path / "base.json"), str(tmp_path / "base.json")]) == EXIT_USAGE


def test_too_little_data_cannot_judge(sim_factory, tmp_path, capsys):
    server = sim_factory(steady_settings())
    config = write_config(tmp_path / "c.json", server.url, urls=TWO_URLS)
    assert run_load(config, rpm=120, duration=2, output=tmp_path / "base.json") == 0
    assert run_load(config, rpm=120, duration=2, output=tmp_path / "new.json") == 0
    assert moodle_load.main(["--compare", str(tmp_path / "base.json"), str(tmp_path / "new.json")]) \
        == EXIT_CANNOT_JUDGE
    out = capsys.readouterr().out
    assert "too few blocks with data" in out and "run longer, at a higher rate, or with fewer --blocks" in out


def test_compare_refuses_a_file_that_is_not_results(tmp_path, capsys):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    assert moodle_load.main(["--compare", str(tmp_path / "x.json"), str(tmp_path / "x.json")]) == EXIT_USAGE
    assert "is not a moodle_load.py results file" in capsys.readouterr().err


def test_mann_whitney_separates_shifted_samples_and_not_equal_ones():
    assert mann_whitney_p(list(range(1, 11)), list(range(11, 21))) < 0.001
    assert mann_whitney_p([5.0] * 10, [5.0] * 10) == 1.0
    assert mann_whitney_p([1, 3, 5, 7, 9], [2, 4, 6, 8, 10]) > 0.5


def test_an_unchanged_site_is_not_flagged_in_at_least_19_of_20_comparisons(recorded):
    rng = random.Random(2024)
    verdicts = [compare_documents(resampled_run(recorded, rng), resampled_run(recorded, rng),
                                     Thresholds()).verdict for _ in range(20)]
    assert verdicts.count("same") >= 19, verdicts


def test_one_page_20_percent_slower_is_flagged(recorded):
    rng = random.Random(7)
    name = "course"
    flagged = 0
    for _ in range(20):
        comparison = compare_documents(resampled_run(recorded, rng),
                                          resampled_run(recorded, rng, {name: 1.2}), Thresholds())
        flagged += comparison.rows[name].verdict == "regression"
        assert all(row.verdict != "regression" for other, row in comparison.rows.items() if other != name)
    assert flagged >= 19


def test_the_recorded_run_is_a_real_run(recorded):
    assert recorded["summary"]["requests"] >= 1000 and recorded["metadata"]["blocks"] == 20
    assert math.isclose(recorded["summary"]["req_per_min_observed"], 600, rel_tol=0.02)


def test_the_ratio_comes_with_a_95_percent_interval_that_holds_the_truth(recorded):
    rng = random.Random(11)
    comparison = compare_documents(resampled_run(recorded, rng), resampled_run(recorded, rng, {"course": 1.2}),
                                      Thresholds())
    low, high = comparison.rows["course"].interval
    assert low < 1.2 < high and high - low < 0.2
    low, high = comparison.rows["dashboard"].interval
    assert low < 1.0 < high
    assert ratio_interval([10.0] * 10, [12.0] * 10) == (1.2, 1.2)


def test_no_failure_in_a_few_requests_does_not_rule_out_a_rise_of_failures():
    """0 failures in 80 requests leave room for a 3 % failure rate: good is not shown."""
    few = judge_counts(0, 80, 0, 80, None, None, Thresholds(), 0.025, {})
    many = judge_counts(0, 400, 0, 400, None, None, Thresholds(), 0.025, {})
    assert not few.failures_ruled_out and few.failure_rise_upper > FAILURE_MARGIN
    assert many.failures_ruled_out


def test_the_rise_of_failures_bound_grows_with_the_failures_seen():
    assert failure_rise_upper(0, 1000, 30, 1000, 0.05) > failure_rise_upper(0, 1000, 0, 1000, 0.05) + 0.02


# ---- a saved comparison read back: damaged in any field, it is refused in one line

NOISY = os.path.join(DATA, "real-site-noisy")
WRONG_VALUES = ("text", None, -1, 1e308, True, [None, None], {"a": 1}, [1])


def _paths(value, path=()):
    """Every field of a JSON document, as the keys that reach it; of a list and of the pages'
    rows, only the first (the others are of its kind)."""
    yield path
    if isinstance(value, dict):
        children = list(value.items())[:1] if path[-1:] == ("urls",) else value.items()
    else:
        children = enumerate(value[:1]) if isinstance(value, list) else ()
    for key, child in children:
        yield from _paths(child, (*path, key))


def _replaced(document, path, wrong):
    damaged = copy.deepcopy(document)
    holder = damaged
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = wrong
    return damaged


@pytest.fixture(scope="module")
def saved_comparison(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    bases = [os.path.join(NOISY, f"baseline-{n}.json") for n in (1, 2, 3)]
    moodle_load.main(["--compare", *bases, os.path.join(NOISY, "slow-1.json"), "--judge", "both",
                      "--output", str(folder / "compared.json")])
    return read(folder / "compared.json")


def test_a_saved_comparison_is_typed_rows_that_save_and_read_back_unchanged(saved_comparison):
    """The comparison is its typed rows, nothing beside them: what it saves reads back to the
    same value, and the saved form is what the file held (fields that were None left out)."""
    comparison = Comparison.from_dict(saved_comparison["comparison"])
    assert comparison.rows and all(row.work is not None for row in comparison.rows.values())
    assert Comparison.from_dict(comparison.to_dict()) == comparison
    assert without_nones(json.loads(json.dumps(comparison.to_dict()))) == without_nones(saved_comparison["comparison"])


def without_nones(tree):
    if isinstance(tree, dict):
        return {key: without_nones(value) for key, value in tree.items() if value is not None}
    return [without_nones(value) for value in tree] if isinstance(tree, list) else tree


def test_a_damaged_saved_comparison_is_refused_in_one_line(saved_comparison, tmp_path, capsys):
    with open(tmp_path / "damaged.json", "w") as handle:
        json.dump(_replaced(saved_comparison, ("comparison", "notes"), [None]), handle)
    assert moodle_load.main([str(tmp_path / "damaged.json"), "--report", str(tmp_path / "r.html")]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert (captured.out + captured.err).strip().splitlines() == [
        f"[ERROR] results: {tmp_path / 'damaged.json'}: its comparison is damaged (notes is [None])"]
    assert not (tmp_path / "r.html").exists()


def test_a_saved_comparison_with_any_field_of_the_wrong_type_is_refused_or_reported_never_a_crash(
        saved_comparison, tmp_path, capsys, monkeypatch):
    assert saved_comparison["comparison"]["urls"]  # the document walked below is a whole comparison
    # The charts draw the run, never its comparison (unchanged by every damage below), and cost
    # 0.4 s a report: the report is made whole here, without them.
    monkeypatch.setattr(htmlreport, "run_charts", lambda document: [])
    reported = 0
    for path in _paths(saved_comparison["comparison"]):
        for wrong in WRONG_VALUES if path else ():
            damaged = _replaced(saved_comparison, ("comparison", *path), wrong)
            if comparison_problem(damaged["comparison"]):
                with pytest.raises(UsageError, match="its comparison is damaged"):
                    Results.from_dict(damaged, "damaged.json")
                continue
            with open(tmp_path / "damaged.json", "w") as handle:
                json.dump(damaged, handle)
            status = moodle_load.main([str(tmp_path / "damaged.json"), "--report", str(tmp_path / "r.html"),
                                       "--export-csv", str(tmp_path / "r.csv"),
                                       "--export-junit", str(tmp_path / "r.xml")])
            captured = capsys.readouterr()
            assert status < 200, (path, wrong, captured.out + captured.err)
            reported += 1
    # The wrong values a comparison may hold (None where a field is optional, a number in a
    # note's place...) were reported, not only refused: every field the typed comparison reads
    # is checked, so about 70 of the damages get through to the reports.
    assert reported > 50


@pytest.mark.parametrize("added, more_work", [(2, False), (2.5, True), (40, True), (-40, False)])
def test_the_db_read_rule_is_one_rule_for_the_baseline_comparison_and_the_pairs(added, more_work):
    from moodleload.judging.pairs import judge_page

    thresholds = Thresholds(max_db_reads_increase=2.0)
    assert thresholds.more_db_reads(100, 100 + added) is more_work
    counted = judge_counts(0, 1000, 0, 1000, 100, 100 + added, thresholds, 0.05, {})
    assert (counted.verdict == "regression") is more_work
    paired = judge_page([(0.0, 100, 100 + added)] * 4, thresholds, 0.05)
    assert paired.more_db_reads is more_work and paired.same_reads is not more_work
