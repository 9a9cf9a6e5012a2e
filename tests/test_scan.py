"""A scan of a commit range with examples/scan-range.sh: every k-th commit measured with
the bisect step's own routine, the step found and the bisect for it named; resumed
without measuring again."""

import os
import subprocess

from test_bisect import git, make_repo, site_settings, step_environment

from helpers import ROOT, free_port

SCAN = os.path.join(ROOT, "examples", "scan-range.sh")


def test_a_scan_finds_the_step_measures_nothing_twice_and_names_the_bisect(tmp_path):
    good = site_settings(course_ms=30, course_reads=128)
    slow = site_settings(course_ms=40, course_reads=128)
    commits = make_repo(tmp_path / "moodle", [good] * 13 + [slow] * 11)  # commit 13 brought it
    env = {**step_environment(tmp_path, free_port()), "STRIDE": "3", "LOAD_DURATION": "4",
           "RESULTS_DIR": str(tmp_path / "scan")}
    repo = tmp_path / "moodle"
    first = subprocess.run([SCAN, commits[0], commits[-1]], cwd=repo, env=env, capture_output=True, text=True,
                           timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "24 commits, every 3-th: 9 to measure, 9 not yet measured" in first.stderr
    course = [line for line in first.stdout.splitlines() if line.startswith("course:")]
    assert len(course) == 1 and "slower" in course[0], first.stdout
    assert f"012-{commits[12][:7]}" in course[0] and f"015-{commits[15][:7]}" in course[0]
    assert not [line for line in first.stdout.splitlines() if line.startswith("dashboard:")]
    assert f"git bisect start {commits[15][:7]} {commits[12][:7]}" in first.stdout
    assert git(repo, "rev-parse", "HEAD") == commits[-1]  # the checkout is put back
    kept = sorted(path.name for path in (tmp_path / "scan").iterdir())
    assert len([name for name in kept if name.endswith(".json")]) == 9 and not [n for n in kept if "partial" in n]

    again = subprocess.run([SCAN, commits[0], commits[-1]], cwd=repo, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and "9 to measure, 0 not yet measured" in again.stderr
    assert "measuring" not in again.stderr and course[0] in again.stdout


def test_a_range_too_short_for_a_step_is_refused_before_any_run(tmp_path):
    commits = make_repo(tmp_path / "moodle", [site_settings(course_ms=30, course_reads=128)] * 4)
    env = {**step_environment(tmp_path, free_port()), "STRIDE": "1", "RESULTS_DIR": str(tmp_path / "scan")}
    result = subprocess.run([SCAN, commits[0], commits[-1]], cwd=tmp_path / "moodle", env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 128 and "a step needs three on each side" in result.stderr
    assert not list((tmp_path / "scan").glob("*.json"))
