"""Change points over a series of commits: steps found where they are, none where the
series only scatters."""

from __future__ import annotations

import json
import math
import os
import random

from helpers import DATA
from moodleload.scan.changepoints import find_steps, main, welch
from sim.synthetic import synthetic_run


def noisy_series(levels: list, noise: float, seed: int) -> list:
    rng = random.Random(seed)
    return [math.log(level) + rng.gauss(0.0, noise) for level in levels]


def test_a_fifteen_percent_step_is_found_between_the_right_two_commits():
    levels = [100.0] * 20 + [115.0] * 20
    steps = find_steps(noisy_series(levels, 0.02, seed=1))
    assert [(step.before, step.after) for step in steps] == [(19, 20)]
    assert 1.12 < steps[0].ratio < 1.18


def test_a_slowdown_and_a_later_improvement_are_both_found():
    levels = [100.0] * 12 + [115.0] * 15 + [103.5] * 13
    steps = find_steps(noisy_series(levels, 0.02, seed=2))
    assert [step.after for step in steps] == [12, 27]
    assert steps[0].ratio > 1 > steps[1].ratio


def test_a_level_series_with_four_percent_noise_has_no_step():
    false_steps = sum(len(find_steps(noisy_series([100.0] * 40, 0.04, seed=seed))) for seed in range(50))
    assert false_steps <= 1  # alpha 0.01 over 50 series


def test_a_step_smaller_than_the_minimum_is_not_named():
    levels = [100.0] * 20 + [101.5] * 20
    assert find_steps(noisy_series(levels, 0.001, seed=3), min_step=0.03) == []


def test_db_reads_that_rise_by_twenty_are_a_step_of_their_own():
    reads = [43.0] * 25 + [63.0] * 15
    steps = find_steps(reads, min_step=2.0, log_scale=False)
    assert [(step.before, step.after, step.change) for step in steps] == [(24, 25, 20.0)]


def test_welch_sees_no_difference_between_identical_halves():
    assert welch([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == (0.0, 1.0)


def test_the_command_names_the_page_and_the_commits_around_its_step(tmp_path, capsys):
    with open(os.path.join(DATA, "recorded-run.json")) as handle:
        recorded = json.load(handle)
    rng = random.Random(5)
    paths = []
    for commit in range(10):
        document = synthetic_run(recorded, rng, {"course": 1.2} if commit >= 6 else None, run_shift_sd=0.01)
        path = tmp_path / f"commit-{commit:02d}.json"
        path.write_text(json.dumps(document.to_dict()))
        paths.append(str(path))
    assert main(paths) == 0
    lines = capsys.readouterr().out.splitlines()
    course = [line for line in lines if line.startswith("course:")]
    assert len(course) == 1 and "% slower) between" in course[0]
    assert "commit-05.json and " in course[0] and "commit-06.json" in course[0]
    assert not [line for line in lines if line.startswith(("dashboard:", "forum:", "profile:"))]
