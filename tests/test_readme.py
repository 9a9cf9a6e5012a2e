"""The README is the product's face: short, its links resolve, and every command in it runs.

Its three shell blocks are run here as written, with only what a test machine must change
(the site's paths, a throwaway database, the simulated site for php-fpm, seconds instead of
minutes), each substitution asserted to match so that an edited README cannot slip past.
`make test` is what CI runs; `make demo` runs in tests/test_demo.py."""

import json
import os
import re
import signal
import subprocess
import sys

import pytest
from test_bisect import GIT_ENV, git, make_repo, site_settings

from helpers import ROOT, free_port, installer_config

README = os.path.join(ROOT, "README.md")


def readme_text() -> str:
    with open(README, encoding="utf-8") as handle:
        return handle.read()


def shell_blocks(text: str) -> list:
    return re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def block_with(marker: str) -> str:
    blocks = [block for block in shell_blocks(readme_text()) if marker in block]
    assert len(blocks) == 1, f"one README block runs {marker}"
    return blocks[0]


def substituted(block: str, replacements: list) -> str:
    for old, new in replacements:
        assert re.search(old, block, re.MULTILINE), f"the README no longer says {old!r}: update tests/test_readme.py"
        block = re.sub(old, lambda match, new=new: match.expand(new), block, flags=re.MULTILINE)
    return block


def test_the_readme_is_read_in_five_minutes():
    lines = readme_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines: move detail into docs/"


def test_every_link_in_the_readme_and_the_docs_resolves_inside_the_repository():
    pages = [README, os.path.join(ROOT, "CHANGELOG.md")] + [
        os.path.join(ROOT, "docs", name) for name in os.listdir(os.path.join(ROOT, "docs")) if name.endswith(".md")]
    for page in pages:
        with open(page, encoding="utf-8") as handle:
            text = handle.read()
        assert "shared/moodle" not in text and "../shared" not in text, f"{page} cites files users do not have"
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path = target.split("#")[0]
            assert os.path.exists(os.path.join(os.path.dirname(page), path)), f"{page} links to missing {target}"


def test_every_shell_block_of_the_readme_is_run_by_a_test_or_by_ci():
    blocks = shell_blocks(readme_text())
    ran = ["make demo", "set_moodle_passwords.py", "git bisect run"]  # test_demo + CI; the two tests below
    assert all(sum(marker in block for marker in ran) == 1 for block in blocks), \
        "a README shell block that no test runs: add it to tests/test_readme.py"
    assert len(blocks) == len(ran)


def moodle_site(folder, db, wwwroot: str) -> str:
    """A site folder as the README's /var/www/moodle: config.php and version.php."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.php").write_text(installer_config(
        "pgsql", "localhost", db.name, db.pg.superuser, "",
        {"dbpersist": 0, "dbport": db.pg.port, "dbsocket": db.pg.socketdir}, wwwroot=wwwroot))
    (folder / "version.php").write_text("<?php\n$version  = 2025041400.05;\n$release  = '5.0.5 (Build: 20250609)';\n")
    return str(folder)


def sim_command(db, port: int, site_json: str = "") -> list:
    return [sys.executable, "-m", "sim", "--port", str(port), "--db-host", db.pg.socketdir,
            "--db-port", str(db.pg.port), "--db-name", db.name, "--db-user", db.pg.superuser,
            *(["--site-config", site_json] if site_json else [])]


def wait_for_port(port: int) -> None:
    import socket
    import time

    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the simulated site did not start on {port}")


def real_site_script(db, site: str) -> str:
    python_bin = os.path.dirname(sys.executable)
    return substituted(block_with("set_moodle_passwords.py"), [
        (r"^python3 -m venv .*$", f'export PATH="{python_bin}:$PATH"  # the suite\'s venv, made by make'),
        (r'^\(cd "\$MOODLE" && php public/admin/tool/generator/cli/maketestsite\.php.*$',
         "true  # the seeded database has its users"),
        (r"(pg_dump -Fc -f \S+) moodle\b", rf"\1 {db.name}"),
        (r"/var/www/moodle", site),
        (r"--count 50", "--count 12"),
        (r"--duration 600 --warmup 60", "--duration 3 --warmup 1"),
        (r"python3 (set_moodle_passwords|moodle_load)\.py", rf"python3 {ROOT}/\1.py"),
        (r"(?<![/\w])examples/bisect-step\.sh", f"{ROOT}/examples/bisect-step.sh"),
    ])


def database_env(db) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PG", "LOAD_", "MOODLE"))}
    return {**env, "PGHOST": db.pg.socketdir, "PGPORT": str(db.pg.port), "PGUSER": db.pg.superuser}


def test_the_readme_real_site_steps_run_against_a_copy_of_a_site(pg_db, tmp_path):
    port = free_port()
    site = moodle_site(tmp_path / "www" / "moodle", pg_db, f"http://127.0.0.1:{port}")
    before = pg_db.query("SELECT id, password, auth FROM mdl_user ORDER BY id")
    server = subprocess.Popen(sim_command(pg_db, port), cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", real_site_script(pg_db, site)], cwd=tmp_path,
                                env=database_env(pg_db), capture_output=True, text=True, timeout=600)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    config = json.loads((tmp_path / "config.json").read_text())
    run = json.loads((tmp_path / "run.json").read_text())
    assert len(config["users"]) == 12 and config["base_url"] == f"http://127.0.0.1:{port}"
    assert run["logins"]["ok"] == 12 and run["metadata"]["moodle"]["release"].startswith("5.0.5")
    assert "[VERDICT] good (exit 0)" in result.stdout
    # The last line put the site back as it was: no account keeps the test password.
    assert pg_db.query("SELECT id, password, auth FROM mdl_user ORDER BY id") == before


def test_the_readme_bisect_finds_and_confirms_the_commit_that_made_the_site_slower(pg_db, tmp_path):
    port = free_port()
    repo = tmp_path / "moodle"
    sites = [site_settings(60, 40), site_settings(60, 40), site_settings(85, 60), site_settings(85, 60)]
    commits = make_repo(repo, sites)
    git(repo, "tag", "v5.0.5", commits[0])
    git(repo, "tag", "v5.0.6", commits[-1])
    moodle_site(repo, pg_db, f"http://127.0.0.1:{port}")  # config.php and version.php, untracked
    (repo / ".git" / "info" / "exclude").write_text("config.php\nversion.php\n")
    # What the real-site steps leave in the working folder: config.json and the snapshot.
    work = tmp_path / "work"
    work.mkdir()
    setup = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(
        line for line in real_site_script(pg_db, str(repo)).splitlines()
        if "moodle_load.py" not in line and "--concurrency" not in line and "--restore" not in line)],
        cwd=work, env=database_env(pg_db), capture_output=True, text=True, timeout=300)
    assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-2000:]
    pidfile = tmp_path / "sim.pid"
    start = (f'PYTHONPATH="{ROOT}" ' + " ".join(f'"{part}"' for part in sim_command(pg_db, port, "site.json"))
             + f' > "{tmp_path}/sim.log" 2>&1 & echo $! > "{pidfile}"; '
             f'for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && exit 0; sleep 0.1; done; '
             f'exit 1')
    stop = f'kill "$(cat "{pidfile}")"; while kill -0 "$(cat "{pidfile}")" 2>/dev/null; do sleep 0.1; done'
    script = substituted(block_with("git bisect run"), [
        (r"^TOOLKIT=\$PWD MOODLE=/var/www/moodle .*$", "true  # TOOLKIT and MOODLE: the test's environment"),
        (r"LOAD_RPM=600 LOAD_DURATION=300 LOAD_WARMUP=60",
         'LOAD_RPM=2400 LOAD_DURATION=8 LOAD_WARMUP=1 LOAD_ARGS="--blocks 10"'),
        (r'RELOAD_CMD="sudo systemctl reload php8\.2-fpm"',  # the simulated site stands in for php-fpm
         f"PREPARE_CMD='{start}' CLEANUP_CMD='{stop}'"),
    ])
    env = {**database_env(pg_db), **GIT_ENV, "TOOLKIT": ROOT, "MOODLE": str(repo),
           "RESULTS_DIR": str(tmp_path / "results")}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert f"{commits[2]} is the first bad commit" in result.stdout
    assert "[VERDICT] confirmed (exit 0)" in result.stdout + result.stderr
    assert git(repo, "rev-parse", "HEAD") == commits[0]  # git bisect reset: back where the bisect started


@pytest.fixture(autouse=True)
def _no_stray_bisect(tmp_path):
    yield
    log = tmp_path / "moodle" / ".git" / "BISECT_LOG"
    assert not log.exists(), "the README's bisect ends with git bisect reset"
