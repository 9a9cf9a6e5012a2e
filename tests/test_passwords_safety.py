"""set_moodle_passwords.py when things go wrong: secrets kept out of sight, config.json and
the database whole whatever happens (signals, a second run, a lost commit), and every
mistake one line."""

import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
import time

import bcrypt
import pytest
from password_tools import SITE_FLAG, run_tool, snapshot, usernames
from proxy import CommitCutter

from helpers import ROOT
from moodleload.database import passwords as smp
from moodleload.exits import SETUP_DATABASE_PROBLEM, SETUP_USAGE

# ---- secrets

def test_the_password_can_come_from_a_file(pg_db, tmp_path, capsys):
    (tmp_path / "pw").write_text("FromFile1!\n")
    assert run_tool(pg_db, tmp_path, "--count", "1", "--password-file", str(tmp_path / "pw"), password=None) == 0
    assert json.loads((tmp_path / "config.json").read_text())["users"][0]["password"] == "FromFile1!"
    assert "[WARN]" not in capsys.readouterr().out


def test_a_password_on_the_command_line_works_with_a_warning(pg_db, tmp_path, capsys):
    assert run_tool(pg_db, tmp_path, "--count", "1") == 0
    assert "--password is visible to every user" in capsys.readouterr().out


def test_the_database_password_can_come_from_a_file(pg_db, tmp_path):
    pg_db.query("CREATE ROLE filereader LOGIN SUPERUSER PASSWORD 'secret'")
    (tmp_path / "dbpw").write_text("secret\n")
    arguments = ["--db-name", pg_db.name, "--db-host", pg_db.pg.socketdir, "--db-port",
                 str(pg_db.pg.port), "--db-user", "filereader", "--count", "1", "--password", "pw",
                 "--config", str(tmp_path / "config.json")]
    assert smp.main([*SITE_FLAG, *arguments, "--db-pass-file", str(tmp_path / "dbpw")]) == 0
    assert usernames(tmp_path / "config.json") == ["tool_generator_000100"]
    (tmp_path / "dbpw").write_text("wrong\n")  # the file is what authenticates
    assert smp.main([*SITE_FLAG, *arguments, "--db-pass-file", str(tmp_path / "dbpw")]) == SETUP_DATABASE_PROBLEM


def test_the_hash_never_appears_in_a_statements_text(pg_db, tmp_path):
    pg_db.query("""
        CREATE TABLE seen (query text);
        CREATE FUNCTION remember() RETURNS trigger AS $$
        BEGIN INSERT INTO seen VALUES (current_query()); RETURN NEW; END $$ LANGUAGE plpgsql;
        CREATE TRIGGER remember BEFORE UPDATE ON mdl_user FOR EACH ROW EXECUTE FUNCTION remember();
    """)
    assert run_tool(pg_db, tmp_path, "--count", "2") == 0
    queries = [row[0] for row in pg_db.query("SELECT query FROM seen")]
    assert queries and not [query for query in queries if "$2y$" in query]
    assert pg_db.query("SELECT count(*) FROM mdl_user WHERE password LIKE '$2y$%'") == [(2,)]


# ---- config.json, whatever happens

def script(moodle_db, tmp_path, *extra) -> list:
    (tmp_path / "pw").write_text("Killed1!\n")
    return [sys.executable, os.path.join(ROOT, "set_moodle_passwords.py"), *moodle_db.cli_args(), *SITE_FLAG,
            "--config", str(tmp_path / "config.json"), "--password-file", str(tmp_path / "pw"), *extra]


def slow_commit(moodle_db, seconds: float) -> None:
    """A deferred trigger: COMMIT itself takes ``seconds``."""
    moodle_db.query(f"""
        CREATE FUNCTION slow() RETURNS trigger AS $$
        BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$ LANGUAGE plpgsql;
        CREATE CONSTRAINT TRIGGER slow AFTER UPDATE ON mdl_user DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW WHEN (NEW.id = 100) EXECUTE FUNCTION slow();
    """)


def wait_for_commit(moodle_db, process) -> None:
    for _ in range(400):
        if moodle_db.query("SELECT 1 FROM pg_stat_activity WHERE application_name = 'set_moodle_passwords'"
                           " AND state = 'active' AND query = 'COMMIT'"):
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.025)
    raise AssertionError("the COMMIT never started")


def hashes_agree_with_config(moodle_db, tmp_path) -> bool:
    config = json.loads((tmp_path / "config.json").read_text())
    rows = dict(moodle_db.query("SELECT username, password FROM mdl_user"))
    return all(bcrypt.checkpw(user["password"].encode(), rows[user["username"]].encode())
               for user in config["users"])


def write_old_config(moodle_db, tmp_path) -> None:
    assert run_tool(moodle_db, tmp_path, "--count", "3", password="Before1!") == 0


def test_sigterm_during_commit_completes_both_the_database_and_the_config(pg_db, tmp_path):
    write_old_config(pg_db, tmp_path)
    slow_commit(pg_db, 1.5)
    process = subprocess.Popen(script(pg_db, tmp_path, "--count", "3"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_for_commit(pg_db, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 143
    assert "completed first" in err and "Traceback" not in err
    assert json.loads((tmp_path / "config.json").read_text())["users"][0]["password"] == "Killed1!"
    assert hashes_agree_with_config(pg_db, tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_sigkill_during_commit_is_made_whole_by_running_again(pg_db, tmp_path):
    write_old_config(pg_db, tmp_path)
    slow_commit(pg_db, 1.0)
    process = subprocess.Popen(script(pg_db, tmp_path, "--count", "3"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_for_commit(pg_db, process)
    process.kill()
    process.wait()
    time.sleep(1.5)  # the server finishes the COMMIT it had received
    assert not hashes_agree_with_config(pg_db, tmp_path)  # the database moved on, config.json did not
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and stat.S_IMODE(leftovers[0].stat().st_mode) == 0o600
    again = subprocess.run(script(pg_db, tmp_path, "--count", "3"), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "left by an earlier run that was killed" in again.stdout
    assert hashes_agree_with_config(pg_db, tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_while_hashing_at_a_high_cost_stops_within_a_second_changing_nothing(pg_db, tmp_path, signum,
                                                                                      status):
    write_old_config(pg_db, tmp_path)
    before, config_before = snapshot(pg_db), (tmp_path / "config.json").read_text()
    process = subprocess.Popen(script(pg_db, tmp_path, "--count", "3", "--bcrypt-cost", "14"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    sent = time.monotonic()
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - sent < 1.0
    assert process.returncode == status
    assert "nothing was changed" in err and "Traceback" not in err
    assert snapshot(pg_db) == before and (tmp_path / "config.json").read_text() == config_before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_second_run_on_the_same_config_refuses_while_the_first_holds_it(pg_db, tmp_path, capsys):
    folder = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        before = snapshot(pg_db)
        assert run_tool(pg_db, tmp_path, "--count", "1") == SETUP_USAGE
        assert "another set_moodle_passwords.py" in capsys.readouterr().err
        assert snapshot(pg_db) == before
    finally:
        os.close(folder)


def test_two_runs_at_once_never_mix_their_results(pg_db, tmp_path):
    slow_commit(pg_db, 1.0)
    first = subprocess.Popen(script(pg_db, tmp_path, "--count", "3"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    wait_for_commit(pg_db, first)
    second = subprocess.run(script(pg_db, tmp_path, "--count", "5"), capture_output=True, text=True, timeout=60)
    first.communicate(timeout=30)
    assert first.returncode == 0 and second.returncode == SETUP_USAGE
    assert "another set_moodle_passwords.py" in second.stderr
    assert len(usernames(tmp_path / "config.json")) == 3


def test_a_read_only_config_is_not_replaced(pg_db, tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"base_url": "https://x.test", "users": []}))
    path.chmod(0o400)
    before = snapshot(pg_db)
    assert run_tool(pg_db, tmp_path, "--count", "1") == SETUP_USAGE
    assert "read-only" in capsys.readouterr().err
    assert snapshot(pg_db) == before
    assert json.loads(path.read_text()) == {"base_url": "https://x.test", "users": []}


def test_a_symlinked_config_is_written_through_to_its_target(pg_db, tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "config.json"
    target.write_text(json.dumps({"base_url": "https://x.test", "users": []}))
    (tmp_path / "config.json").symlink_to(target)
    assert run_tool(pg_db, tmp_path, "--count", "1") == 0
    assert (tmp_path / "config.json").is_symlink()
    assert usernames(target) == ["tool_generator_000100"]


# ---- every other mistake: one line, the documented exit

@pytest.mark.parametrize("content, complaint", [
    (b'{"users": [], "caf\xe9": 1}', "not UTF-8"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (b'{"users": [{"username": "a", "password": 12345}]}', "password is not a string"),
], ids=["latin-1", "deep", "password-not-a-string"])
def test_a_bad_config_is_one_line(pg_db, tmp_path, capsys, content, complaint):
    (tmp_path / "config.json").write_bytes(content)
    before = snapshot(pg_db)
    assert run_tool(pg_db, tmp_path, password=None) == SETUP_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and complaint in err
    assert snapshot(pg_db) == before


@pytest.mark.parametrize("flag, value, complaint", [
    ("--count", str(2 ** 63), "--count"), ("--count", "0", "--count"), ("--bcrypt-cost", "20", "--bcrypt-cost"),
    ("--allow-auth", "ldap;x", "--allow-auth"),
])
def test_numbers_and_names_out_of_range_are_one_line(pg_db, tmp_path, capsys, flag, value, complaint):
    assert run_tool(pg_db, tmp_path, flag, value) == SETUP_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and complaint in err


def test_a_password_that_is_not_utf8_is_one_line(pg_db, tmp_path):
    command = [os.fsencode(part) for part in script(pg_db, tmp_path, "--count", "1")]
    command += [b"--password", b"caf\xe9"]
    command = [part for part in command if part not in (b"--password-file", os.fsencode(tmp_path / "pw"))]
    result = subprocess.run(command, capture_output=True, timeout=60)
    assert result.returncode == SETUP_USAGE
    assert b"not valid UTF-8" in result.stderr and b"Traceback" not in result.stderr


def test_dry_run_into_a_closed_pipe_has_no_traceback(pg_db, tmp_path):
    shell = " ".join(f"'{part}'" for part in script(pg_db, tmp_path, "--count", "200", "--dry-run",
                                                     "--where", "true"))
    result = subprocess.run(["bash", "-c", f"{shell} | true; exit ${{PIPESTATUS[0]}}"], capture_output=True,
                            text=True, timeout=60)
    assert result.stderr == "[ERROR] standard output was closed before the end\n"
    assert result.returncode == SETUP_USAGE


def test_the_lock_is_on_the_folder_a_symlinked_config_is_really_written_in(pg_db, tmp_path, capsys):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "config.json"
    target.write_text(json.dumps({"base_url": "https://x.test", "users": []}))
    (tmp_path / "config.json").symlink_to(target)
    folder = os.open(tmp_path / "real", os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        assert run_tool(pg_db, tmp_path, "--count", "1") == SETUP_USAGE
        assert "another set_moodle_passwords.py" in capsys.readouterr().err
    finally:
        os.close(folder)


# ---- never a value nobody gave

def seed_command(pg_db, *extra) -> list:
    """The product description's own command, with this test's database in place of its
    host and port (the flags and their order as the description gives them)."""
    return [sys.executable, os.path.join(ROOT, "set_moodle_passwords.py"), "--db-name", pg_db.name,
            "--db-user", pg_db.pg.superuser, "--db-pass", "S3cret", "--db-host", pg_db.pg.socketdir,
            "--db-port", str(pg_db.pg.port), "--prefix", "mdl_", "--count", "50", "--password", "Passw0rd!",
            "--config", "config.json", *extra]


def test_the_seeds_own_command_in_an_empty_folder_writes_users_and_password_and_says_what_to_add(pg_db, tmp_path):
    result = subprocess.run(seed_command(pg_db), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    config = json.loads((tmp_path / "config.json").read_text())
    assert len(config["users"]) == 50 and {user["password"] for user in config["users"]} == {"Passw0rd!"}
    assert "base_url" not in config  # never a made-up address
    assert oct((tmp_path / "config.json").stat().st_mode & 0o777) == "0o600"
    warnings = [line for line in result.stdout.splitlines() if "base_url" in line]
    assert len(warnings) == 1 and warnings[0].startswith("[WARN] config.json has no base_url")
    assert "S3cret" not in result.stdout + result.stderr


def test_the_seeds_own_dry_run_in_an_empty_folder_shows_the_users_and_writes_nothing(pg_db, tmp_path):
    before = snapshot(pg_db)
    result = subprocess.run(seed_command(pg_db, "--dry-run"), cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "these 50 users would get the new password" in result.stdout and "has no base_url" in result.stdout
    assert snapshot(pg_db) == before and not (tmp_path / "config.json").exists()


def test_the_examples_placeholder_address_is_kept_out_of_the_written_config_and_said(pg_db, tmp_path, capsys):
    with open(os.path.join(ROOT, "config.example.json")) as handle:
        (tmp_path / "config.json").write_text(handle.read())
    assert smp.main([*pg_db.cli_args(), "--password", "pw", "--config", str(tmp_path / "config.json")]) == 0
    assert "has no base_url" in capsys.readouterr().out


def test_moodle_load_refuses_a_config_without_the_sites_address_in_one_line(tmp_path, capsys):
    import moodle_load
    for base_url in (None, "https://moodle.example.test"):
        config = {"users": [{"username": "u1", "password": "p"}], "urls": [{"path": "/my/"}]}
        if base_url:
            config["base_url"] = base_url
        (tmp_path / "config.json").write_text(json.dumps(config))
        code = moodle_load.main(["--config", str(tmp_path / "config.json"), "--rpm", "60", "--duration", "1"])
        err = capsys.readouterr().err
        assert code == 128 and err.count("\n") == 1 and "base_url" in err and "[ERROR]" in err


def test_base_url_given_by_flag_is_written(pg_db, tmp_path):
    assert run_tool(pg_db, tmp_path, "--count", "1", "--base-url", "http://127.0.0.1:8080/") == 0
    assert json.loads((tmp_path / "config.json").read_text())["base_url"] == "http://127.0.0.1:8080"


# ---- a commit in doubt is found out, never reported as "nothing changed"

def through_cutter(moodle_db, tmp_path, when: str, refuse_after_cut: bool = False):
    """(the tool's database flags through a proxy that cuts at COMMIT, the proxy)."""
    if moodle_db.family == "pgsql":
        folder = tmp_path / "proxy"
        folder.mkdir()
        name = f".s.PGSQL.{moodle_db.pg.port}"
        cutter = CommitCutter(str(folder / name), os.path.join(moodle_db.pg.socketdir, name), when, refuse_after_cut)
        flags = ["--db-name", moodle_db.name, "--db-host", str(folder), "--db-port", str(moodle_db.pg.port),
                 "--db-user", moodle_db.pg.superuser]
    else:
        cutter = CommitCutter(str(tmp_path / "proxy.sock"), moodle_db.cluster.socket, when, refuse_after_cut)
        flags = ["--db-type", "mariadb", "--db-name", moodle_db.name, "--db-socket", str(tmp_path / "proxy.sock"),
                 "--db-user", moodle_db.cluster.superuser]
    return flags, cutter


def test_a_commit_done_whose_answer_was_lost_is_found_out_and_the_config_written(moodle_db, tmp_path, capsys):
    flags, cutter = through_cutter(moodle_db, tmp_path, "after")
    with cutter:
        code = smp.main([*flags, *SITE_FLAG, "--count", "3", "--password", "pw", "--config",
                         str(tmp_path / "config.json")])
    assert cutter.cut.is_set()
    assert code == 0
    assert "reconnected to check: the commit was done (3 users hold the new password)" in capsys.readouterr().err
    names = usernames(tmp_path / "config.json")
    rows = moodle_db.query("SELECT username, password FROM mdl_user WHERE username IN %s", (tuple(names),))
    assert len(rows) == 3 and all(bcrypt.checkpw(b"pw", row[1].replace("$2y$", "$2b$", 1).encode()) for row in rows)


def test_a_commit_that_never_reached_the_server_is_checked_and_said_to_have_changed_nothing(moodle_db, tmp_path,
                                                                                            capsys):
    before = snapshot(moodle_db)
    flags, cutter = through_cutter(moodle_db, tmp_path, "before")
    with cutter:
        code = smp.main([*flags, *SITE_FLAG, "--count", "3", "--password", "pw", "--config",
                         str(tmp_path / "config.json")])
    assert code == SETUP_DATABASE_PROBLEM
    assert "reconnected to check: no selected user holds the new password" in capsys.readouterr().err
    assert snapshot(moodle_db) == before and not (tmp_path / "config.json").exists()


def test_a_commit_nobody_can_check_is_reported_as_unknown_with_what_to_do(moodle_db, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(smp, "RECHECK_PAUSE_SECONDS", 0.1)
    flags, cutter = through_cutter(moodle_db, tmp_path, "after", refuse_after_cut=True)
    with cutter:
        code = smp.main([*flags, *SITE_FLAG, "--count", "3", "--password", "pw", "--config",
                         str(tmp_path / "config.json")])
    assert code == SETUP_DATABASE_PROBLEM
    err = capsys.readouterr().err
    assert "could not be reached again to check whether it committed: the 3 selected users" in err
    assert "run this again with the same password" in err and "nothing changed" not in err
