"""How many runs a bisect needs, from the measured noise, and what it will cost."""

import os

from helpers import DATA
from moodleload.judging.compare import Thresholds
from moodleload.judging.sizing import cost_line, main, plan_baseline, runs_for_identical_code
from moodleload.results.model import load_document


def baselines(folder, names):
    return [load_document(os.path.join(DATA, folder, f"{name}.json")) for name in names]


def test_a_quiet_baseline_needs_one_run_a_step():
    bases = baselines("real-site", ["base", "same-1", "same-2"])
    assert runs_for_identical_code(bases, Thresholds(max_regression_pct=10)) == 1


def test_a_noisy_baseline_needs_more_runs_and_more_baseline_runs_for_a_small_tolerance():
    bases = baselines("real-site-noisy", ["baseline-1", "baseline-2", "baseline-3"])  # 6 % a page run to run
    runs, extra = plan_baseline(bases, Thresholds(max_regression_pct=15), max_runs=6)
    assert runs > 1 and extra == 0
    runs, extra = plan_baseline(bases, Thresholds(max_regression_pct=10), max_runs=6)
    assert extra > 0  # the three baseline runs cannot support 10 % within 6 runs a step


def test_a_tolerance_below_the_noise_is_refused_with_what_would_help():
    bases = baselines("real-site-noisy", ["baseline-1", "baseline-2", "baseline-3"])
    assert plan_baseline(bases, Thresholds(max_regression_pct=5), max_runs=6) == (None, None)


def test_the_cost_counts_the_steps_of_a_bisect():
    assert cost_line(3, 160, 1000, 5) == ("calling 5 % needs about 3 runs a step, 8 minutes a step, about 1.3 "
                                          "hours for a bisect of 1000 commits (10 steps)")


def test_the_baseline_sizing_prints_shell_assignments(capsys):
    files = [os.path.join(DATA, "real-site-noisy", f"baseline-{number}.json") for number in (1, 2, 3)]
    assert main(["baseline", *files, "--max-regression", "10"]) == 0
    captured = capsys.readouterr()
    assert "extra_baseline_runs=3" in captured.out and "cannot support 10 %" in captured.err


def test_the_baseline_sizing_says_when_only_less_noise_would_help(capsys):
    files = [os.path.join(DATA, "real-site-noisy", f"baseline-{number}.json") for number in (1, 2, 3)]
    assert main(["baseline", *files, "--max-regression", "5"]) == 0
    captured = capsys.readouterr()
    assert "extra_baseline_runs=\n" in captured.out and "lower the noise" in captured.err
