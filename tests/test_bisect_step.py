"""The bisect step's pure parts: its settings from the environment, checked before anything
runs, and the layout each checked-out commit's own files say (the real step under git
bisect is in test_bisect.py)."""

import os
import subprocess
import sys

import pytest

from helpers import ROOT
from moodleload.bisect.prepare import code_folder, purge_command
from moodleload.bisect.settings import StepEnd, read_settings
from moodleload.bisect.step import exit_status


def settings(**environment):
    return read_settings(environment, "/toolkit", "/tmp")


def test_the_settings_default_to_the_documented_load_and_limits():
    step = settings()
    assert step.load == ("--rpm", "600", "--duration", "120", "--warmup", "30", "--concurrency", "20", "--seed", "1")
    assert (step.baseline_runs, step.max_runs, step.max_step_seconds, step.max_baseline_runs, step.pairs) == \
        (3, 6, 90 * 60, 12, 4)
    assert step.results_dir == "/toolkit/bisect" and step.load_config == "/toolkit/config.json"
    assert (step.new_term, step.old_term) == ("bad", "good")
    assert (settings(BISECT_FOR="improvement").new_term, settings(BISECT_FOR="improvement").old_term) == \
        ("fast", "slow")


@pytest.mark.parametrize("environment, complaint", [
    ({"BISECT_FOR": "faster"}, "BISECT_FOR must be regression or improvement"),
    ({"MAX_RUNS": "six"}, "MAX_RUNS must be a whole number of at least 1, not 'six'"),
    ({"BASELINE_RUNS": "0"}, "BASELINE_RUNS must be a whole number of at least 1, not '0'"),
    ({"PRETEST_DUMP": "missing.dump"}, "PRETEST_DUMP missing.dump is not a readable file"),
    ({"MOODLE_CONFIG": "nowhere/config.php"}, "MOODLE_CONFIG nowhere/config.php is not a readable file"),
    ({"LOAD_ARGS": "--max-regression '5"}, "LOAD_ARGS cannot be split into flags"),
])
def test_a_wrong_setting_stops_the_bisect_naming_what_to_fix(environment, complaint):
    with pytest.raises(StepEnd) as stopped:
        settings(**environment)
    assert stopped.value.status == 128 and complaint in str(stopped.value.message)


def test_the_sizing_judges_with_the_tolerance_load_args_gives_the_load():
    step = settings(LOAD_ARGS="--insecure --max-regression 5 --judge work")
    assert step.sizing_flags == {"--max-regression": "5", "--judge": "work"}
    assert step.load_args == ("--insecure", "--max-regression", "5", "--judge", "work")


def make(path, *files):
    for name in files:
        os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
        open(os.path.join(path, name), "w").close()


def test_each_layout_a_bisect_can_cross_is_prepared_with_its_own_scripts(tmp_path):
    up_to_50, release_51, later = (str(tmp_path / name) for name in ("50", "51x", "later"))
    make(up_to_50, "admin/cli/upgrade.php", "admin/cli/purge_caches.php", "version.php")
    make(release_51, "admin/cli/upgrade.php", "admin/cli/purge_caches.php", "public/version.php")
    make(later, "public/admin/cli/upgrade.php", "bin/moodle", "public/version.php")
    assert (code_folder(up_to_50), purge_command(up_to_50, ".")) == (".", ["./admin/cli/purge_caches.php"])
    assert (code_folder(release_51), purge_command(release_51, ".")) == (".", ["./admin/cli/purge_caches.php"])
    assert (code_folder(later), purge_command(later, "public")) == ("public", ["bin/moodle", "admin:purge-caches"])
    with pytest.raises(StepEnd, match="neither public/admin/cli/upgrade.php"):
        code_folder(str(tmp_path))


def test_a_load_ended_by_a_signal_reports_the_shells_status():
    assert exit_status(-15) == 143 and exit_status(125) == 125


def test_the_package_step_refuses_an_unknown_mode_as_a_usage_mistake(tmp_path):
    result = subprocess.run([sys.executable, "-m", "moodleload.bisect", "--bogus"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 128 and "unknown option '--bogus'" in result.stderr
