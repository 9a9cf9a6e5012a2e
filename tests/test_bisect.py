"""A real `git bisect run` with examples/bisect-step.sh finds the commit that made a page slower."""

import json
import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT, free_port, installer_config, write_config

STEP = os.path.join(ROOT, "examples", "bisect-step.sh")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}


def site_settings(course_ms: float, course_reads: int) -> dict:
    pages = {kind: {"latency_ms": 30, "jitter": 0.05} for kind in ("my", "course", "login", "login_post")}
    pages["course"] = {"latency_ms": course_ms, "jitter": 0.05, "db_reads": course_reads}
    return {"pages": pages}


def git(repo, *args) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                            env={**os.environ, **GIT_ENV})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def make_repo(path, sites: list) -> list:
    """A stand-in for the Moodle repository: each commit configures the simulated site."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    commits = []
    for number, settings in enumerate(sites):
        (path / "site.json").write_text(json.dumps(settings))
        (path / "CHANGES").write_text(f"change {number}\n")
        git(path, "add", ".")
        git(path, "commit", "-q", "-m", f"change {number}")
        commits.append(git(path, "rev-parse", "HEAD"))
    return commits


def step_environment(tmp_path, port: int) -> dict:
    pidfile = tmp_path / "sim.pid"
    start = (f'PYTHONPATH="{ROOT}" "{sys.executable}" -m sim --port {port} --site-config site.json --users 8 '
             f'> "{tmp_path}/sim.log" 2>&1 & echo $! > "{pidfile}"; '
             f'for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && exit 0; sleep 0.1; done; '
             f'exit 1')
    stop = f'kill "$(cat "{pidfile}")"; while kill -0 "$(cat "{pidfile}")" 2>/dev/null; do sleep 0.1; done'
    config = write_config(tmp_path / "config.json", f"http://127.0.0.1:{port}", users=8,
                          urls=[{"path": "/my/", "name": "dashboard"},
                                {"path": "/course/view.php?id={courseid}", "name": "course"}])
    return {**os.environ, **GIT_ENV, "PYTHON": sys.executable, "LOAD_CONFIG": config,
            "RESULTS_DIR": str(tmp_path / "results"), "LOAD_RPM": "2400", "LOAD_DURATION": "5",
            "LOAD_WARMUP": "1", "LOAD_CONCURRENCY": "4", "LOAD_ARGS": "--blocks 10",
            "PREPARE_CMD": start, "CLEANUP_CMD": stop}


def bisect(tmp_path, sites: list) -> tuple[str, list]:
    repo = tmp_path / "moodle"
    commits = make_repo(repo, sites)
    env = step_environment(tmp_path, free_port())
    git(repo, "checkout", "-q", commits[0])
    baseline = subprocess.run([STEP, "--baseline"], cwd=repo, env=env, capture_output=True, text=True)
    assert baseline.returncode == 0, baseline.stdout + baseline.stderr
    git(repo, "checkout", "-q", "main")
    git(repo, "bisect", "start", commits[-1], commits[0])
    result = subprocess.run(["git", "bisect", "run", STEP], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"^([0-9a-f]{40}) is the first bad commit", result.stdout, re.MULTILINE)
    assert found, result.stdout
    return found.group(1), commits


@pytest.mark.parametrize("regression", ["db_reads", "latency"])
def test_git_bisect_run_finds_the_commit_that_made_the_course_page_worse(tmp_path, regression):
    good = site_settings(course_ms=30, course_reads=128)
    bad = site_settings(course_ms=45, course_reads=128) if regression == "latency" \
        else site_settings(course_ms=30, course_reads=168)
    sites = [good] * 5 + [bad] * 3  # the sixth commit brought the regression
    first_bad, commits = bisect(tmp_path, sites)
    assert first_bad == commits[5]


def test_the_step_script_refuses_to_run_without_a_baseline(tmp_path):
    repo = tmp_path / "moodle"
    make_repo(repo, [site_settings(30, 128)])
    env = {**step_environment(tmp_path, free_port()), "PREPARE_CMD": "true", "CLEANUP_CMD": "true"}
    result = subprocess.run([STEP], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 128  # above 127: git bisect stops instead of marking the commit bad
    assert "run this script with --baseline" in result.stderr


def test_a_commit_whose_site_cannot_start_is_skipped(tmp_path):
    repo = tmp_path / "moodle"
    make_repo(repo, [site_settings(30, 128)])
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "baseline.json").write_text("{}")
    env = {**step_environment(tmp_path, free_port()), "PREPARE_CMD": "exit 3", "CLEANUP_CMD": "true"}
    result = subprocess.run([STEP], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 125
    assert "PREPARE_CMD failed" in result.stderr


# ---- the snapshot put back before every step, on either database family

def site_config_php(db, tmp_path) -> str:
    if db.family == "pgsql":
        text = installer_config("pgsql", "localhost", db.name, db.pg.superuser, "",
                                {"dbpersist": 0, "dbport": db.pg.port, "dbsocket": db.pg.socketdir})
    else:
        text = installer_config("mariadb", "localhost", db.name, db.cluster.superuser, "",
                                {"dbpersist": 0, "dbport": "", "dbsocket": db.cluster.socket})
    (tmp_path / "config.php").write_text(text)
    return str(tmp_path / "config.php")


def dump(db, path) -> None:
    if db.family == "pgsql":
        command = ["pg_dump", "-Fc", "-f", str(path), "-h", db.pg.socketdir, "-p", str(db.pg.port),
                   "-U", db.pg.superuser, db.name]
        result = subprocess.run(command, capture_output=True, text=True)
    else:
        with open(path, "w") as out:
            result = subprocess.run(["mariadb-dump", "--no-defaults", f"--socket={db.cluster.socket}", "-u", "root",
                                     "--single-transaction", db.name], stdout=out, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 0, result.stderr


def test_the_step_restores_the_snapshot_with_the_settings_of_config_php(moodle_db, tmp_path):
    snapshot = tmp_path / "pretest.dump"
    dump(moodle_db, snapshot)
    before = moodle_db.query("SELECT id, password FROM mdl_user ORDER BY id")
    moodle_db.query("UPDATE mdl_user SET password = 'changed by a step' WHERE id > 50")
    moodle_db.query("DELETE FROM mdl_user_preferences")
    env = {**os.environ, "PYTHON": sys.executable, "PRETEST_DUMP": str(snapshot),
           "MOODLE_CONFIG": site_config_php(moodle_db, tmp_path), "RESULTS_DIR": str(tmp_path / "results")}
    for variable in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "DB_TYPE", "DB_NAME"):
        env.pop(variable, None)
    result = subprocess.run([STEP, "--restore"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert moodle_db.query("SELECT id, password FROM mdl_user ORDER BY id") == before
    assert "restored" in result.stderr


def test_a_snapshot_that_cannot_be_restored_stops_the_bisect(maria_db, tmp_path):
    (tmp_path / "broken.sql").write_text("THIS IS NOT SQL;\n")
    env = {**os.environ, "PYTHON": sys.executable, "PRETEST_DUMP": str(tmp_path / "broken.sql"),
           "MOODLE_CONFIG": site_config_php(maria_db, tmp_path), "RESULTS_DIR": str(tmp_path / "results")}
    result = subprocess.run([STEP, "--restore"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 128
    assert "restoring" in result.stderr and "failed" in result.stderr
