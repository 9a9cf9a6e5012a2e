"""A real `git bisect run` with examples/bisect-step.sh finds the commit that made a page slower."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from helpers import ROOT, free_port, installer_config, write_config

STEP = os.path.join(ROOT, "examples", "bisect-step.sh")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}


def site_settings(course_ms: float, course_reads: int, run_noise: float = 0.0) -> dict:
    pages = {kind: {"latency_ms": 30, "jitter": 0.05} for kind in ("my", "course", "login", "login_post")}
    pages["course"] = {"latency_ms": course_ms, "jitter": 0.05, "db_reads": course_reads}
    return {"pages": pages, "run_noise": run_noise}


def git(repo, *args) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                            env={**os.environ, **GIT_ENV})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def make_repo(path, sites: list, trees: list | None = None) -> list:
    """A stand-in for the Moodle repository: each commit configures the simulated site and,
    where ``trees`` says, lays out Moodle's code as it was then (files written by a function)."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    commits = []
    for number, settings in enumerate(sites):
        if trees is not None:
            trees[number](path)
        (path / "site.json").write_text(json.dumps(settings))
        (path / "CHANGES").write_text(f"change {number}\n")
        git(path, "add", "-A", ".")
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
            "RESULTS_DIR": str(tmp_path / "results"), "LOAD_RPM": "2400", "LOAD_DURATION": "8",
            "LOAD_WARMUP": "1", "LOAD_CONCURRENCY": "4", "LOAD_ARGS": "--blocks 10",
            "PREPARE_CMD": start, "CLEANUP_CMD": stop}


def bisect(tmp_path, sites: list) -> tuple[subprocess.CompletedProcess, list, str]:
    """Runs the whole bisect; returns git's answer, the commits and the bisect log (every mark)."""
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
    return result, commits, git(repo, "bisect", "log")


def assert_no_commit_was_misjudged(log: str, commits: list, culprit: int) -> None:
    """The promise a bisect lives on: a commit is marked good only before the culprit and bad only
    from it on. A skip (125) is never wrong; it only leaves git more candidates."""
    for mark, commit in re.findall(r"^git bisect (good|bad) ([0-9a-f]{40})", log, re.MULTILINE):
        assert (commits.index(commit) < culprit) == (mark == "good"), f"{commit} marked {mark}\n{log}"


def assert_found(result, commits: list, culprit: int) -> None:
    assert result.returncode == 0 and f"{commits[culprit]} is the first bad commit" in result.stdout, \
        result.stdout + result.stderr


def assert_found_or_honestly_skipped(result, commits: list, culprit: int) -> None:
    """Where other work on the machine hides a wall-time change, steps answer 125 with their reason
    and git ends listing the candidates: the culprit must be one of them."""
    output = result.stdout + result.stderr
    if re.search(r"^[0-9a-f]{40} is the first bad commit", result.stdout, re.MULTILINE):
        assert_found(result, commits, culprit)
        return
    assert "only 'skip'ped commits left to test" in output, output
    assert commits[culprit] in output[output.index("could be any of"):], output
    assert "more runs of this commit would not decide" in output or "cannot test this commit" in output, output


@pytest.mark.parametrize("regression", ["db_reads", "latency"])
def test_git_bisect_run_finds_the_commit_that_made_the_course_page_worse(tmp_path, regression):
    good = site_settings(course_ms=30, course_reads=128)
    bad = site_settings(course_ms=45, course_reads=128) if regression == "latency" \
        else site_settings(course_ms=30, course_reads=168)
    sites = [good] * 5 + [bad] * 3  # the sixth commit brought the regression
    result, commits, log = bisect(tmp_path, sites)
    assert_no_commit_was_misjudged(log, commits, culprit=5)
    if regression == "db_reads":  # the counters are exact: they decide on any machine
        assert_found(result, commits, culprit=5)
    else:
        assert_found_or_honestly_skipped(result, commits, culprit=5)


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


# ---- a step that cannot tell runs again, sized from the noise (issue 22)

def test_a_snapshot_that_is_not_there_stops_the_bisect_before_anything_runs(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "PRETEST_DUMP": str(tmp_path / "missing.dump"),
           "RESULTS_DIR": str(tmp_path / "results"), "PREPARE_CMD": f"touch {tmp_path}/prepared"}
    result = subprocess.run([STEP], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 128
    assert "PRETEST_DUMP" in result.stderr and "not a readable file" in result.stderr
    assert not (tmp_path / "prepared").exists()


def test_a_ten_percent_slower_step_on_a_noisy_site_is_never_answered_good(tmp_path):
    """Every start of the simulated site shifts all its pages by a lognormal 6 %, as a
    prepared real site on a busy machine does: a +10 % step gets more runs, then 1 or 125."""
    repo = tmp_path / "moodle"
    commits = make_repo(repo, [site_settings(30, 128, run_noise=0.06), site_settings(33, 128, run_noise=0.06)])
    env = {**step_environment(tmp_path, free_port()), "MAX_RUNS": "3", "MAX_BASELINE_RUNS": "4",
           "LOAD_ARGS": "--blocks 10 --max-regression 5"}
    git(repo, "checkout", "-q", commits[0])
    baseline = subprocess.run([STEP, "--baseline"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert baseline.returncode == 0, baseline.stderr
    git(repo, "checkout", "-q", commits[1])
    for _ in range(2):
        step = subprocess.run([STEP], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        assert step.returncode in (1, 125), step.stdout[-3000:] + step.stderr
        if step.returncode == 125:
            assert "unsure: about" in step.stderr or "would not decide" in step.stderr, step.stderr


def test_the_baseline_says_what_a_bisect_will_cost_before_it_starts(tmp_path):
    repo = tmp_path / "moodle"
    commits = make_repo(repo, [site_settings(30, 128)] * 9)
    env = step_environment(tmp_path, free_port())
    git(repo, "bisect", "start", commits[-1], commits[0])
    git(repo, "checkout", "-q", commits[0])
    baseline = subprocess.run([STEP, "--baseline"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert baseline.returncode == 0, baseline.stderr
    assert re.search(r"calling 10 % needs about \d+ runs? a step, \d+ minutes a step, about [\d.]+ hours for a "
                     r"bisect of 8 commits \(4 steps\)", baseline.stderr), baseline.stderr
    assert "baseline run 1 of 3" in baseline.stderr and re.search(r"baseline run 3 of 3, about \d+ min left",
                                                                   baseline.stderr), baseline.stderr


def test_a_baseline_run_that_wrote_no_results_is_not_reported_as_written(tmp_path):
    repo = tmp_path / "moodle"
    make_repo(repo, [site_settings(30, 128)])
    env = {**step_environment(tmp_path, free_port()), "PREPARE_CMD": "true", "CLEANUP_CMD": "true"}
    result = subprocess.run([STEP, "--baseline"], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode >= 128  # nothing listens: no login, no good baseline; the bisect must not start
    assert "written to" not in result.stderr and "baseline run 1 exited" in result.stderr


# ---- the culprit confirmed against its parent, in alternating pairs

def test_the_confirmation_confirms_the_culprit_and_clears_an_innocent_commit(tmp_path):
    good, bad = site_settings(30, 128), site_settings(40, 128)
    result, commits, log = bisect(tmp_path, [good] * 3 + [bad] * 2)
    assert_no_commit_was_misjudged(log, commits, culprit=3)
    assert_found(result, commits, culprit=3)
    repo = tmp_path / "moodle"
    env = {**step_environment(tmp_path, free_port()), "PAIRS": "3"}
    confirmed = subprocess.run([STEP, "--confirm"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
    assert re.search(r"\[VERDICT\] confirmed \(exit 0\)\n\[VERDICT\]   course x1\.\d\d \(1\.\d\d-1\.\d\d\) in 3 of 3 "
                     r"pairs", confirmed.stdout), confirmed.stdout
    innocent = subprocess.run([STEP, "--confirm", commits[2]], cwd=repo, env=env, capture_output=True, text=True,
                              timeout=600)
    assert innocent.returncode == 1, innocent.stdout + innocent.stderr
    assert "[VERDICT] not confirmed (exit 1)" in innocent.stdout
    assert git(repo, "rev-parse", "HEAD") != commits[2]  # the checkout is put back


# ---- Moodle's code layouts a bisect can cross: up to 5.0 everything at the top; 5.1.x the web
# code under public/ with the CLI scripts still at the top (admin/cli/); later trees the CLI
# under public/admin/cli/ too, some with bin/moodle (docs/moodle-5.1.md)

RECORDER = ("<?php file_put_contents(getenv('PREPARED_LOG'), '{tag} ' . trim(shell_exec('git rev-parse HEAD'))"
            " . \"\\n\", FILE_APPEND);\n")


def moodle_50(path):
    for name in ("admin/cli/upgrade.php", "admin/cli/purge_caches.php"):
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(RECORDER.replace("{tag}", f"top:{name}"))
    (path / "version.php").write_text("<?php\n$version  = 2025041400.06;\n$release  = '5.0.6+ (Build: 20260403)';\n")
    (path / "config.php").write_text("<?php // the site's settings\n")


def moodle_51x(path):
    """A 5.1.x tree as the real 5.1.3+ has it: public/ holds the web code, version.php and a
    config.php that loads the top one; admin/cli/ stayed at the top; no public/admin/cli/."""
    subprocess.run(["rm", "-rf", str(path / "version.php"), str(path / "public")], check=True)
    for name in ("admin/cli/upgrade.php", "admin/cli/purge_caches.php"):
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(RECORDER.replace("{tag}", f"top:{name}"))
    (path / "public").mkdir()
    (path / "public/version.php").write_text("<?php\n$version  = 2025100603.04;\n"
                                             "$release  = '5.1.3+ (Build: 20260227)';\n")
    (path / "public/config.php").write_text("<?php require_once(__DIR__ . '/../config.php');\n")
    (path / "config.php").write_text("<?php // the site's settings\n")


def moodle_51(path, with_bin: bool = False):
    """A later development tree: the CLI scripts moved under public/admin/cli/ too."""
    subprocess.run(["rm", "-rf", str(path / "admin"), str(path / "version.php")], check=True)
    names = ["admin/cli/upgrade.php"] + ([] if with_bin else ["admin/cli/purge_caches.php"])
    for name in names:
        (path / "public" / name).parent.mkdir(parents=True, exist_ok=True)
        (path / "public" / name).write_text(RECORDER.replace("{tag}", f"public:{name}"))
    if with_bin:
        (path / "public/admin/cli/purge_caches.php").unlink(missing_ok=True)
        (path / "bin").mkdir(exist_ok=True)
        (path / "bin/moodle").write_text(RECORDER.replace("{tag}", "bin:moodle"))
    (path / "public/version.php").write_text("<?php\n$version  = 2025100600.00;\n"
                                             "$release  = '5.1 (Build: 20251006)';\n")


@pytest.mark.skipif(not shutil.which("php") and not os.environ.get("CI"), reason="no php (make test installs it)")
def test_a_bisect_across_the_three_layouts_prepares_every_step_with_its_own_scripts(tmp_path):
    good, bad = site_settings(30, 128), site_settings(30, 168)
    trees = [moodle_50, moodle_50, moodle_51x, moodle_51x, moodle_51, lambda path: moodle_51(path, with_bin=True),
             lambda path: moodle_51(path, with_bin=True)]
    sites = [good, good, good, good, good, bad, bad]
    repo = tmp_path / "moodle"
    commits = make_repo(repo, sites, trees)
    port = free_port()
    env = step_environment(tmp_path, port)
    env["RELOAD_CMD"] = env.pop("PREPARE_CMD")  # the layout's own scripts prepare; the reload starts the site
    env["PREPARED_LOG"] = str(tmp_path / "prepared.log")
    # The counters carry the regression here (DB reads +40); a wide time tolerance lets each
    # unchanged step be shown good even where other work on the machine moves wall time by 10 %.
    env["LOAD_ARGS"] = "--blocks 10 --max-regression 50"
    git(repo, "checkout", "-q", commits[0])
    baseline = subprocess.run([STEP, "--baseline"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert baseline.returncode == 0, baseline.stderr
    git(repo, "checkout", "-q", "main")
    git(repo, "bisect", "start", commits[-1], commits[0])
    result = subprocess.run(["git", "bisect", "run", STEP], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=900)
    assert_no_commit_was_misjudged(git(repo, "bisect", "log"), commits, culprit=5)
    assert_found(result, commits, culprit=5)
    layout = {commits[0]: "top", commits[1]: "top", commits[2]: "top", commits[3]: "top", commits[4]: "public",
              commits[5]: "bin", commits[6]: "bin"}
    prepared = [line.split() for line in (tmp_path / "prepared.log").read_text().splitlines()]
    assert {commit for _, commit in prepared} >= {commits[0], commits[5]}
    assert {commit for _, commit in prepared} & {commits[2], commits[3]}  # a 5.1.x step was prepared too
    for script, commit in prepared:
        where = script.split(":")[0]
        assert where == layout[commit] or (layout[commit] == "bin" and script == "public:admin/cli/upgrade.php"), \
            (script, commit)
    recorded = read_results(tmp_path / "results" / f"{commits[5][:7]}.json")["metadata"]["moodle"]
    assert recorded["release"] == "5.1 (Build: 20251006)" and recorded["commit"] == commits[5]
    assert recorded["layout"].startswith("5.1+")
    stepped = [read_results(tmp_path / "results" / f"{commit[:7]}.json")["metadata"]["moodle"]
               for commit in commits[2:4] if (tmp_path / "results" / f"{commit[:7]}.json").exists()]
    assert all(moodle["release"] == "5.1.3+ (Build: 20260227)" and moodle["layout"].startswith("5.1+")
               for moodle in stepped)


def test_a_tree_of_neither_layout_stops_the_bisect_with_one_line(tmp_path):
    repo = tmp_path / "moodle"
    make_repo(repo, [site_settings(30, 128)])
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "baseline.json").write_text("{}")
    env = step_environment(tmp_path, free_port())
    env.pop("PREPARE_CMD")
    env["CLEANUP_CMD"] = "true"
    result = subprocess.run([STEP], cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 128
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "neither public/admin/cli/upgrade.php (Moodle after 5.1.x) nor admin/cli/upgrade.php (up to 5.0, and " \
           "5.1.x)" in lines[0]


def read_results(path) -> dict:
    with open(path) as handle:
        return json.load(handle)


# ---- the product description's own bisect: one baseline run, moodle_load.py in the script (issue 37)

def seed_script(tmp_path, env: dict) -> str:
    """The bisect script of the product description: start the site at the checked-out
    commit, the same load against one saved baseline run, the verdict as the exit status."""
    script = tmp_path / "bisect.sh"
    script.write_text(f"""#!/usr/bin/env bash
bash -c '{env["PREPARE_CMD"]}' || exit 125
baseline=(); [ -f "{tmp_path}/base.json" ] && baseline=(--baseline "{tmp_path}/base.json")
"{sys.executable}" "{ROOT}/moodle_load.py" --config "{env["LOAD_CONFIG"]}" --rpm 2400 --duration 6 --warmup 1 \\
    --concurrency 4 --blocks 10 --progress 0 "${{baseline[@]}}" "$@"
status=$?
bash -c '{env["CLEANUP_CMD"]}'
exit $status
""")
    script.chmod(0o755)
    return str(script)


def test_a_one_baseline_bisect_stops_at_once_with_the_remedy_instead_of_skipping_every_commit(tmp_path):
    good, more_reads = site_settings(30, 128), site_settings(30, 168)
    repo = tmp_path / "moodle"
    commits = make_repo(repo, [good] * 4 + [more_reads] * 4)  # the fifth commit adds 40 DB reads
    env = step_environment(tmp_path, free_port())
    script = seed_script(tmp_path, env)
    git(repo, "checkout", "-q", commits[0])
    baseline = subprocess.run([script, "--output", str(tmp_path / "base.json")], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=300)
    assert baseline.returncode == 0, baseline.stdout + baseline.stderr
    git(repo, "checkout", "-q", "main")
    git(repo, "bisect", "start", commits[-1], commits[0])
    git(repo, "checkout", "-q", commits[5])
    counted = subprocess.run([script], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert counted.returncode == 1 and "DB reads 128 -> 168" in counted.stdout  # counters still decide
    result = subprocess.run(["git", "bisect", "run", script], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "only 'skip'ped commits" not in output
    assert "[VERDICT] bisect stopped (exit 128)" in output
    assert "one baseline run cannot show how whole runs move" in output and "record three baseline runs" in output


def test_a_snapshot_with_the_superusers_statistics_extension_restores_as_the_moodle_user(pg_db, tmp_path):
    """docs/measuring.md has a superuser run CREATE EXTENSION pg_stat_statements in the Moodle
    database: the extension is then the superuser's, the Moodle user's dump holds it, and a
    restore that tried to drop it as the Moodle user would fail every step (issue 37)."""
    owner = "moodleowner"
    pg_db.query(f"CREATE ROLE {owner} LOGIN PASSWORD 'S3cret'")
    pg_db.query(f"ALTER DATABASE {pg_db.name} OWNER TO {owner}")
    pg_db.query(f"ALTER SCHEMA public OWNER TO {owner}")
    for (table,) in pg_db.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"):
        pg_db.query(f"ALTER TABLE {table} OWNER TO {owner}")
    pg_db.query("CREATE EXTENSION pg_stat_statements")  # as the superuser, as the docs say
    config = installer_config("pgsql", "localhost", pg_db.name, owner, "S3cret",
                              {"dbpersist": 0, "dbport": pg_db.pg.port, "dbsocket": pg_db.pg.socketdir})
    (tmp_path / "config.php").write_text(config)
    snapshot = tmp_path / "pretest.dump"
    dumped = subprocess.run(["pg_dump", "-Fc", "-f", str(snapshot), "-h", pg_db.pg.socketdir, "-p",
                             str(pg_db.pg.port), "-U", owner, pg_db.name], env={**os.environ, "PGPASSWORD": "S3cret"},
                            capture_output=True, text=True)
    assert dumped.returncode == 0, dumped.stderr
    listed = subprocess.run(["pg_restore", "-l", str(snapshot)], capture_output=True, text=True).stdout
    assert "EXTENSION - pg_stat_statements" in listed  # the snapshot holds it
    before = pg_db.query("SELECT id, password FROM mdl_user ORDER BY id")
    pg_db.query("UPDATE mdl_user SET password = 'changed by a step'")
    env = {**os.environ, "PYTHON": sys.executable, "PRETEST_DUMP": str(snapshot),
           "MOODLE_CONFIG": str(tmp_path / "config.php"), "RESULTS_DIR": str(tmp_path / "results")}
    for variable in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "DB_TYPE", "DB_NAME"):
        env.pop(variable, None)
    result = subprocess.run([STEP, "--restore"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert pg_db.query("SELECT id, password FROM mdl_user ORDER BY id") == before
    assert pg_db.query("SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'pg_stat_statements'") \
        == [(pg_db.pg.superuser,)]


@pytest.mark.parametrize("script", ["bisect-step.sh", "scan-range.sh"])
def test_help_prints_every_setting_and_exits_0(script):
    result = subprocess.run([os.path.join(ROOT, "examples", script), "--help"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0 and "LOAD_CONFIG" in result.stdout and "RESULTS_DIR" in result.stdout
    assert not any(line.startswith("#") for line in result.stdout.splitlines())


@pytest.mark.parametrize("script", ["bisect-step.sh", "scan-range.sh"])
def test_an_unknown_option_is_a_usage_mistake_that_stops_a_bisect_not_a_step(tmp_path, script):
    result = subprocess.run([os.path.join(ROOT, "examples", script), "--bogus"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 128 and result.stderr.count("\n") == 1


def test_a_step_whose_snapshot_cannot_be_restored_stops_the_bisect_instead_of_skipping(tmp_path):
    """A fault of the machine (a database down, a damaged dump) is no verdict on the commit:
    skipping would skip every commit after it and end in "could be any of"."""
    repo = tmp_path / "moodle"
    make_repo(repo, [site_settings(30, 128)])
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "baseline.json").write_text("{}")
    env = {**step_environment(tmp_path, free_port()), "RESTORE_CMD": "echo 'database is down' >&2; exit 2",
           "PREPARE_CMD": f"touch {tmp_path}/prepared", "CLEANUP_CMD": "true"}
    result = subprocess.run([STEP], cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 128, result.stderr
    assert "RESTORE_CMD failed: a fault of the machine, not of this commit" in result.stderr
    assert not (tmp_path / "prepared").exists()
