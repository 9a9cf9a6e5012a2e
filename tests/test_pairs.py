"""Confirming a culprit from alternating runs of it and its parent, judged pair by pair."""

import json
import os
import random
import re

import pytest

import moodle_load
from helpers import DATA
from moodleload.exits import EXIT_BAD, EXIT_CANNOT_JUDGE, EXIT_GOOD, EXIT_USAGE
from moodleload.judging.compare import Thresholds
from moodleload.judging.pairs import confirm
from sim.synthetic import synthetic_run


@pytest.fixture(scope="module")
def recorded():
    with open(os.path.join(DATA, "recorded-run.json")) as handle:
        return json.load(handle)


def pairs(recorded, count: int, slowdown: dict | None, seed: int, spread: float = 0.03):
    """Parent and culprit runs that drift together: each pair shares the machine's state."""
    rng = random.Random(seed)
    parents, culprits = [], []
    for _ in range(count):
        drift = rng.lognormvariate(0.0, spread)
        shifted = {name: drift for name in recorded["urls"]}
        slowed = {name: drift * (slowdown or {}).get(name, 1.0) for name in recorded["urls"]}
        parents.append(synthetic_run(recorded, rng, shifted, run_shift_sd=0.005, block_drift_sd=0.01))
        culprits.append(synthetic_run(recorded, rng, slowed, run_shift_sd=0.005, block_drift_sd=0.01))
    return parents, culprits


def test_a_culprit_ten_percent_slower_is_confirmed_although_the_machine_drifts(recorded):
    parents, culprits = pairs(recorded, 4, {"course": 1.10}, seed=1, spread=0.05)
    verdict, rows = confirm(parents, culprits, Thresholds(max_regression_pct=5))
    assert verdict.status == EXIT_GOOD and verdict.word == "confirmed"
    assert re.fullmatch(r"course x1\.(09|1\d) \(1\.\d\d-1\.\d\d\) in 4 of 4 pairs", verdict.reasons[0]), verdict.reasons


def test_an_innocent_commit_is_not_confirmed(recorded):
    parents, culprits = pairs(recorded, 4, None, seed=2, spread=0.05)
    verdict, _ = confirm(parents, culprits, Thresholds(max_regression_pct=5))
    assert verdict.status == EXIT_BAD and verdict.word == "not confirmed"


def test_too_few_pairs_for_a_small_tolerance_cannot_tell_and_say_how_many_more(recorded):
    parents, culprits = pairs(recorded, 2, {"course": 1.03}, seed=3, spread=0.05)
    verdict, _ = confirm(parents, culprits, Thresholds(max_regression_pct=2))
    assert verdict.status == EXIT_CANNOT_JUDGE
    assert "more pairs would decide" in verdict.reasons[0]


def test_the_command_line_needs_whole_pairs(tmp_path, capsys):
    path = os.path.join(DATA, "real-site", "base.json")
    assert moodle_load.main(["--pairs", path, path, path]) == EXIT_USAGE
    assert "even number" in capsys.readouterr().err


def test_a_confirmation_asked_for_a_report_is_refused_before_it_reads_anything(tmp_path, capsys):
    path = os.path.join(DATA, "real-site", "base.json")
    assert moodle_load.main(["--pairs", path, path, "--report", str(tmp_path / "r.html")]) == EXIT_USAGE
    assert "--pairs writes no --report" in capsys.readouterr().err and not (tmp_path / "r.html").exists()
