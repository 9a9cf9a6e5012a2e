"""A scan of a commit range with examples/scan-range.sh: every k-th commit measured with
the bisect step's own routine, the step found and the bisect for it named; resumed
without measuring again."""

import json
import math
import os
import re
import subprocess

from test_bisect import GIT_ENV, git, make_repo, site_settings, step_environment

from helpers import DATA, ROOT, free_port, write_config

SCAN = os.path.join(ROOT, "examples", "scan-range.sh")


def test_a_scan_finds_the_step_measures_nothing_twice_and_prints_the_bisect_for_it(tmp_path):
    good = site_settings(course_ms=30, course_reads=128)
    slow = site_settings(course_ms=40, course_reads=128)
    commits = make_repo(tmp_path / "moodle", [good] * 13 + [slow] * 11)  # commit 13 brought it
    env = {**step_environment(tmp_path, free_port()), "STRIDE": "3", "LOAD_DURATION": "4",
           "RESULTS_DIR": str(tmp_path / "scan"), "BISECT": "0"}
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
    assert len([name for name in kept if name.endswith(".json") and name[:3].isdigit()]) == 9
    assert not [name for name in kept if "partial" in name]
    assert "scan.json" in kept and "range.html" in kept

    again = subprocess.run([SCAN, commits[0], commits[-1]], cwd=repo, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and "9 to measure, 0 not yet measured" in again.stderr
    assert "measuring" not in again.stderr and course[0] in again.stdout


def test_a_range_too_short_for_a_step_is_refused_before_any_run(tmp_path):
    commits = make_repo(tmp_path / "moodle", [site_settings(course_ms=30, course_reads=128)] * 4)
    env = {**step_environment(tmp_path, free_port()), "STRIDE": "1", "RESULTS_DIR": str(tmp_path / "scan")}
    result = subprocess.run([SCAN, commits[0], commits[-1]], cwd=tmp_path / "moodle", env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 128 and "a step needs 3 commits on each side" in result.stderr
    assert not list((tmp_path / "scan").glob("*.json"))


def three_pages(course_ms: float = 30, dashboard_ms: float = 30, participants_reads: int = 80) -> dict:
    pages = {kind: {"latency_ms": 30, "jitter": 0.05} for kind in ("login", "login_post")}
    pages["course"] = {"latency_ms": course_ms, "jitter": 0.05, "db_reads": 128}
    pages["my"] = {"latency_ms": dashboard_ms, "jitter": 0.05, "db_reads": 43}
    pages["participants"] = {"latency_ms": 30, "jitter": 0.05, "db_reads": participants_reads}
    return {"pages": pages, "run_noise": 0.0}


def test_a_scan_of_40_commits_finds_three_changes_and_the_bisects_name_their_commits(tmp_path):
    # course +15 % from commit 13, dashboard -15 % from commit 17, participants +20 DB reads from commit 28.
    # The same size both ways: the improvement's bisect judges at about half the step it found, and
    # a 10 % step left its 6-second runs short of deciding that on a shared 2-core machine.
    sites = [three_pages(course_ms=34.5 if n >= 13 else 30, dashboard_ms=25.5 if n >= 17 else 30,
                         participants_reads=100 if n >= 28 else 80) for n in range(40)]
    repo = tmp_path / "moodle"
    commits = make_repo(repo, sites)
    env = step_environment(tmp_path, free_port())
    env["LOAD_CONFIG"] = write_config(tmp_path / "three.json", json.loads(open(env["LOAD_CONFIG"]).read())["base_url"],
                                      users=8, urls=[{"path": "/my/", "name": "dashboard"},
                                                     {"path": "/course/view.php?id={courseid}", "name": "course"},
                                                     {"path": "/user/index.php?id={courseid}", "name": "participants"}])
    env.update(STRIDE="5", LOAD_DURATION="6", LOAD_RPM="6000", LOAD_CONCURRENCY="8", PAIRS="3",
               RESULTS_DIR=str(tmp_path / "scan"))
    result = subprocess.run([SCAN, commits[0], commits[-1]], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    out = result.stdout
    label = {n: f"{n:03d}-{commits[n][:7]}" for n in range(0, 40, 5)}
    steps = [line for line in out.splitlines() if re.match(r"^(course|dashboard|participants)", line)]
    assert len(steps) == 3, out  # no false step on the stretches that stayed level
    assert re.search(rf"^course: x1\.[01]\d\d \(\d+\.\d% slower\) between {label[10]} and {label[15]}", out, re.M), out
    assert re.search(rf"^dashboard: x0\.[89]\d\d \(\d+\.\d% faster\) between {label[15]} and {label[20]}", out,
                     re.M), out
    assert re.search(rf"^participants DB reads: \+20\.0 between {label[25]} and {label[30]}", out, re.M), out
    for first, word in ((13, "slower"), (17, "faster"), (28, "slower")):
        assert re.search(rf"first {word} commit {commits[first][:12]} \"change {first}\", confirmed against its "
                         rf"parent", out), out
    summary = json.loads((tmp_path / "scan" / "scan.json").read_text())
    assert [outcome["commit"] for outcome in summary["bisects"]] == [commits[13], commits[17], commits[28]]
    report = (tmp_path / "scan" / "range.html").read_text()
    assert report.count("<svg") >= 6 and commits[17][:7] in report and "<script" not in report
    assert git(repo, "rev-parse", "HEAD") == commits[-1] and not (repo / ".git" / "BISECT_LOG").exists()


# ---- the scan's arithmetic, pure

def found(series: str, before: int, change: float, counter: bool = False):
    from moodleload.scan.changepoints import Found, Step

    return Found(series, Step(before, before + 1, math.exp(change), change, 0.001), counter)


def test_a_scan_measures_every_kth_commit_and_always_the_last():
    from moodleload.scan.plan import picked_positions

    assert picked_positions(40, 5) == [0, 5, 10, 15, 20, 25, 30, 35, 39]
    assert picked_positions(11, 5) == [0, 5, 10]


def test_pages_that_stepped_between_the_same_commits_the_same_way_share_one_bisect():
    from moodleload.scan.plan import intervals_of

    intervals = intervals_of([found("course", 2, 0.14), found("course DB reads", 2, 20, True),
                              found("dashboard", 2, -0.1), found("forum", 5, 0.2)])
    assert [(i.before, i.after, i.direction, len(i.found)) for i in intervals] == [
        (2, 3, "improvement", 1), (2, 3, "regression", 2), (5, 6, "regression", 1)]


def test_a_bisects_baseline_is_the_compared_level_nearest_the_step_and_never_crosses_another():
    from moodleload.scan.plan import baseline_positions, intervals_of

    intervals = intervals_of([found("course", 2, 0.14), found("dashboard", 3, -0.1), found("forum", 5, 0.2)])
    course, dashboard, forum = intervals
    assert baseline_positions(course, intervals, 9, 3) == [0, 1, 2]
    assert baseline_positions(dashboard, intervals, 9, 3) == [4, 5]  # the new, fast level, up to the next step
    assert baseline_positions(forum, intervals, 9, 3) == [4, 5]  # not across the dashboard's step


def test_a_bisects_tolerance_is_half_the_step_unless_the_configured_one_is_smaller():
    from moodleload.scan.plan import bisect_tolerances, configured_tolerances, intervals_of

    [interval] = intervals_of([found("course", 2, math.log(1.16)), found("course DB reads", 2, 3, True)])
    assert bisect_tolerances(interval, 10.0, 2.0) == (7.7, 1.5)
    assert bisect_tolerances(interval, 5.0, 2.0) == (5.0, 1.5)
    assert configured_tolerances("--blocks 10 --max-regression 4 --max-regression=6") == (6.0, 2.0)


def test_the_commit_a_bisect_names_is_read_in_its_own_terms_and_none_when_it_ended_among_skips():
    from moodleload.scan.plan import first_commit

    commit = "a" * 40
    assert first_commit(f"{commit} is the first fast commit\n", "improvement") == commit
    assert first_commit(f"{commit} is the first bad commit\n", "regression") == commit
    assert first_commit("There are only 'skip'ped commits left to test.\nThe first bad commit could be any of:\n",
                        "regression") is None


def one_commit_checkout(tmp_path, monkeypatch) -> str:
    """A repository of one commit as the current folder, where a scan checks its commits out."""
    repo = tmp_path / "moodle"
    repo.mkdir()
    monkeypatch.chdir(repo)
    for command in (["git", "init", "-q"], ["git", "commit", "-q", "--allow-empty", "-m", "one"]):
        subprocess.run(command, check=True, env={**os.environ, **GIT_ENV})
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def test_a_run_that_could_not_judge_is_made_again_with_its_reason_said_and_its_log_kept(tmp_path, monkeypatch,
                                                                                       capsys):
    """An overnight scan on a busy machine: the step's first run of a commit could not judge
    (125); the scan says why, keeps that run's log, and measures the commit again."""
    from types import SimpleNamespace

    from moodleload.scan.runner import measure
    commit = one_commit_checkout(tmp_path, monkeypatch)
    step = tmp_path / "step.sh"
    step.write_text(f"""#!/usr/bin/env bash
count=$(( $(cat "{tmp_path}/tries" 2>/dev/null || echo 0) + 1 )); echo $count > "{tmp_path}/tries"
if [ $count -eq 1 ]; then
    printf '[VERDICT] cannot judge (exit 125)\\n[VERDICT]   the generator stood still for 2.0 s\\n' > "$2.log"
    exit 125
fi
cp "{os.path.join(DATA, "real-site", "base.json")}" "$2"; echo '[VERDICT] good (exit 0)' > "$2.log"
""")
    step.chmod(0o755)
    results = tmp_path / "results"
    results.mkdir()
    scan = SimpleNamespace(picked=[0], commits=[commit], short=lambda index: commit[:7], step_command=[str(step)],
                           environment=dict(os.environ), file_of=lambda position: str(results / "000-one.json"))
    assert measure(scan) is None
    err = capsys.readouterr().err
    assert "try 1 ended with exit 125: [VERDICT] cannot judge (exit 125) [VERDICT]   the generator stood still" in err
    assert "try 2 of 3" in err
    assert (results / "000-one.json").exists() and (results / "000-one.try1.log").exists()


def test_a_commit_that_cannot_be_measured_after_its_tries_stops_the_scan_in_one_line(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from moodleload.scan.runner import MEASURE_TRIES, measure
    commit = one_commit_checkout(tmp_path, monkeypatch)
    step = tmp_path / "step.sh"
    step.write_text("#!/usr/bin/env bash\necho '[VERDICT] cannot judge (exit 125)' > \"$2.log\"\nexit 125\n")
    step.chmod(0o755)
    scan = SimpleNamespace(picked=[0], commits=[commit], short=lambda index: commit[:7], step_command=[str(step)],
                           environment=dict(os.environ), file_of=lambda position: str(tmp_path / "000-one.json"))
    assert measure(scan) == 1
    err = capsys.readouterr().err
    assert err.count("ended with exit 125") == MEASURE_TRIES
    assert f"could not be measured (exit 125, {MEASURE_TRIES} tries): its logs are kept" in err
    assert all((tmp_path / f"000-one.try{number}.log").exists() for number in range(1, MEASURE_TRIES + 1))


# ---- nothing mixed, nothing damaged, nothing left running

def test_a_saved_step_outcome_must_be_what_the_scan_writes():
    from moodleload.scan.plan import outcome_problem

    written = {"interval": ["000-aaaaaaa", "005-bbbbbbb"], "direction": "regression", "steps": ["course: slower"],
               "max_regression_pct": 5.0, "max_db_reads_increase": 2, "baseline": ["000-aaaaaaa"],
               "commit": "a" * 40, "subject": "MDL-1 slower", "confirmation": "confirmed", "reasons": []}
    assert outcome_problem(written) is None
    assert outcome_problem([written]) == "not an object"
    assert outcome_problem({**written, "reasons": "none"}) == "reasons is missing or of the wrong type"
    assert outcome_problem({**written, "direction": "sideways"}) == "direction is neither regression nor improvement"
    assert outcome_problem({**written, "commit": "HEAD; rm -rf /"}) == "commit is not a commit id"
    assert outcome_problem({**written, "steps": [1]}) == "interval, steps, baseline and reasons must be lists of text"
    without = dict(written)
    del without["confirmation"]
    assert outcome_problem(without) == "confirmation is missing or of the wrong type"


def test_a_saved_step_outcome_reads_back_to_what_was_written():
    from moodleload.scan.plan import REGRESSION, StepOutcome

    written = {"interval": ["000-aaaaaaa", "005-bbbbbbb"], "direction": "regression", "steps": ["course: slower"],
               "max_regression_pct": 5.0, "max_db_reads_increase": 2, "baseline": ["000-aaaaaaa"],
               "commit": "a" * 40, "subject": "MDL-1 slower", "confirmation": "confirmed", "reasons": ["x1.2"]}
    outcome = StepOutcome.from_dict(written)
    assert outcome.direction == REGRESSION and outcome.confirmed and outcome.baseline == ("000-aaaaaaa",)
    assert outcome.to_dict() == written


def test_a_damaged_step_outcome_stops_the_scan_in_one_line_never_read_as_a_verdict(tmp_path):
    from types import SimpleNamespace

    import pytest

    from moodleload.exits import UsageError
    from moodleload.scan.plan import REGRESSION, Interval
    from moodleload.scan.runner import bisect_interval

    labels = ["000-aaaaaaa", "005-bbbbbbb"]
    folder = tmp_path / f"step-{labels[0]}-{labels[1]}-{REGRESSION}"
    folder.mkdir()
    (folder / "outcome.json").write_text('{"interval": 5, "confirmation": "confirmed"}')
    scan = SimpleNamespace(results_dir=str(tmp_path))
    with pytest.raises(UsageError, match=r"outcome.json is damaged \(interval is missing or of the wrong type\): "
                                         r"remove the folder .* to bisect that step again"):
        bisect_interval(scan, Interval(0, 1, REGRESSION, ()), [], labels)


def test_a_run_made_with_other_settings_is_set_aside_and_the_scan_stops_before_mixing_it_in(tmp_path, monkeypatch):
    """A scan resumed after LOAD_RPM changed: its new run would show the change as a step of every page."""
    from types import SimpleNamespace

    import pytest

    from moodleload.exits import UsageError
    from moodleload.scan.runner import measure
    commits = make_repo(tmp_path / "moodle", [site_settings(course_ms=30, course_reads=128)] * 2)
    monkeypatch.chdir(tmp_path / "moodle")
    recorded = json.loads(open(os.path.join(ROOT, "tests", "data", "recorded-run.json")).read())
    results = tmp_path / "scan"
    results.mkdir()
    (results / "000.json").write_text(json.dumps(recorded))
    other = {**recorded, "metadata": {**recorded["metadata"], "rpm": recorded["metadata"]["rpm"] * 2,
                                      "started_at": "2026-12-05T06:00:00Z"}}
    (tmp_path / "other.json").write_text(json.dumps(other))
    step = tmp_path / "step.sh"
    step.write_text(f'#!/usr/bin/env bash\ncp "{tmp_path}/other.json" "$2"\n')
    step.chmod(0o755)
    scan = SimpleNamespace(picked=[0, 1], commits=commits, short=lambda index: commits[index][:7],
                           step_command=[str(step)], environment=dict(os.environ),
                           file_of=lambda position: str(results / f"00{position}.json"))
    with pytest.raises(UsageError, match=r"001.json \(set aside as .refused.json\) cannot join the runs of this scan "
                                         r"\(the runs differ in target rate \(--rpm\): 600.0 and 1200.0, against "
                                         r"000.json\): put the settings back, or scan with another RESULTS_DIR"):
        measure(scan)
    assert sorted(path.name for path in results.iterdir()) == ["000.json", "001.refused.json"]


def test_sigterm_stops_the_scans_step_and_puts_the_checkout_back(tmp_path):
    import signal
    import sys
    import time

    repo = tmp_path / "moodle"
    make_repo(repo, [site_settings(course_ms=30, course_reads=128)] * 8)
    git(repo, "checkout", "-q", "-B", "main")
    # The toolkit the scan names (TOOLKIT) comes first on its steps' import path: its bisect
    # step is a child that sleeps, in the step's process group.
    toolkit = tmp_path / "toolkit"
    (toolkit / "moodleload" / "bisect").mkdir(parents=True)
    (toolkit / "moodleload" / "__init__.py").write_text("")
    (toolkit / "moodleload" / "bisect" / "__init__.py").write_text("")
    (toolkit / "moodleload" / "bisect" / "__main__.py").write_text(
        f'import pathlib, subprocess\nsleeper = subprocess.Popen(["sleep", "300"])\n'
        f'pathlib.Path("{tmp_path}/sleeping").write_text(str(sleeper.pid))\nsleeper.wait()\n')
    env = {**os.environ, "TOOLKIT": str(toolkit), "PYTHONPATH": ROOT, "STRIDE": "1",
           "RESULTS_DIR": str(tmp_path / "scan")}
    commits = git(repo, "rev-list", "--reverse", "HEAD").split()
    scan = subprocess.Popen([sys.executable, "-m", "moodleload.scan.runner", commits[0], commits[-1]], cwd=repo,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "sleeping").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    sleeping = int((tmp_path / "sleeping").read_text())
    scan.send_signal(signal.SIGTERM)
    _, err = scan.communicate(timeout=90)
    assert scan.returncode == 143, err
    assert "SIGTERM: the step that ran is stopped and the checkout put back on main" in err and "Traceback" not in err
    try:
        os.kill(sleeping, 0)
        still_running = True
    except ProcessLookupError:
        still_running = False
    assert not still_running
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"
    assert not list((tmp_path / "scan").glob("*.partial"))
