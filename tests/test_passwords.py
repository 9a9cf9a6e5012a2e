"""set_moodle_passwords.py against a real PostgreSQL database."""

import json
import os
import re
import stat
import subprocess
import sys

import bcrypt
import pytest

from helpers import ROOT, Browser
from moodleload import passwords as smp

LEGACY_HASH = re.compile(r"^\$2y\$10\$[A-Za-z0-9./]{53}$")  # Moodle's password_is_legacy_hash()


def run_tool(moodle_db, tmp_path, *extra, password="Passw0rd!", config_name="config.json"):
    args = [*moodle_db.cli_args(), "--config", str(tmp_path / config_name), *extra]
    if password is not None:
        args += ["--password", password]
    return smp.main(args)


def usernames(config_path):
    with open(config_path) as handle:
        return [u["username"] for u in json.load(handle)["users"]]


def snapshot(moodle_db):
    return moodle_db.query("SELECT id, password, auth, confirmed, timemodified FROM mdl_user ORDER BY id")


# ---- which users

def test_most_recent_users_come_first(moodle_db, tmp_path):
    assert run_tool(moodle_db, tmp_path, "--count", "3") == 0
    assert usernames(tmp_path / "config.json") == [
        "tool_generator_000100", "tool_generator_000099", "tool_generator_000098"]


def test_admin_guest_deleted_suspended_and_other_hosts_are_never_selected(moodle_db, tmp_path):
    moodle_db.query("UPDATE mdl_user SET deleted = 1 WHERE id = 102")
    moodle_db.query("UPDATE mdl_user SET suspended = 1 WHERE id = 101")
    moodle_db.query("UPDATE mdl_user SET mnethostid = 3 WHERE id = 100")
    moodle_db.query("UPDATE mdl_config SET value = '2,99' WHERE name = 'siteadmins'")
    before = snapshot(moodle_db)
    assert run_tool(moodle_db, tmp_path, "--count", "1000") == 0
    chosen = set(usernames(tmp_path / "config.json"))
    untouchable = {"guest", "admin", "tool_generator_000100", "tool_generator_000099",
                   "tool_generator_000098", "tool_generator_000097"}
    assert not chosen & untouchable
    assert len(chosen) == 96
    after = {row[0]: row for row in snapshot(moodle_db)}
    for row in before:
        if row[0] in (1, 2, 99, 100, 101, 102):
            assert after[row[0]] == row


def test_where_narrows_the_selection(moodle_db, tmp_path):
    assert run_tool(moodle_db, tmp_path, "--where", "username LIKE 'tool_generator_00001_'") == 0
    assert sorted(usernames(tmp_path / "config.json")) == [f"tool_generator_{n:06d}" for n in range(10, 20)]


def test_count_larger_than_the_pool_warns_and_goes_on(moodle_db, tmp_path, capsys):
    assert run_tool(moodle_db, tmp_path, "--count", "500") == 0
    assert "[WARN] only 100 users match, fewer than --count 500" in capsys.readouterr().out


def test_no_matching_user_is_an_error_that_changes_nothing(moodle_db, tmp_path, capsys):
    before = snapshot(moodle_db)
    assert run_tool(moodle_db, tmp_path, "--where", "username = 'nobody'") == smp.EXIT_NO_USERS
    assert "no user matches" in capsys.readouterr().err
    assert snapshot(moodle_db) == before
    assert not (tmp_path / "config.json").exists()


def test_bad_where_is_one_line_and_changes_nothing(moodle_db, tmp_path, capsys):
    before = snapshot(moodle_db)
    assert run_tool(moodle_db, tmp_path, "--where", "usernme = 'x'") == smp.EXIT_DATABASE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--where" in err and "usernme" in err
    assert snapshot(moodle_db) == before


# ---- what changes

def test_hash_is_moodles_legacy_bcrypt_form_and_validates(moodle_db, tmp_path):
    assert run_tool(moodle_db, tmp_path, "--count", "5") == 0
    rows = moodle_db.query("SELECT password, auth, confirmed FROM mdl_user WHERE id > 97")
    hashes = {row[0] for row in rows}
    assert len(hashes) == 1  # one hash computed once, shared by all
    (hashed,) = hashes
    assert LEGACY_HASH.match(hashed)
    assert bcrypt.checkpw(b"Passw0rd!", hashed.encode())
    assert {(row[1], row[2]) for row in rows} == {("manual", 1)}


def test_auth_and_confirmed_are_reset(moodle_db, tmp_path):
    moodle_db.query("UPDATE mdl_user SET auth = 'ldap', confirmed = 0 WHERE id = 102")
    assert run_tool(moodle_db, tmp_path, "--count", "1") == 0
    assert moodle_db.query("SELECT auth, confirmed FROM mdl_user WHERE id = 102") == [("manual", 1)]


def test_lockout_and_forced_change_preferences_are_removed(moodle_db, tmp_path):
    for name in smp.BLOCKING_PREFERENCES:
        moodle_db.query("INSERT INTO mdl_user_preferences (userid, name, value) VALUES (102, %s, '1')", (name,))
    moodle_db.query("INSERT INTO mdl_user_preferences (userid, name, value) VALUES (102, 'email_bounce_count', '1')")
    moodle_db.query("INSERT INTO mdl_user_preferences (userid, name, value) VALUES (3, 'login_lockout', '1')")
    assert run_tool(moodle_db, tmp_path, "--count", "1") == 0
    assert moodle_db.query("SELECT userid, name FROM mdl_user_preferences ORDER BY userid") == [
        (3, "login_lockout"), (102, "email_bounce_count")]


def test_a_failure_midway_leaves_every_row_as_it_was(moodle_db, tmp_path):
    moodle_db.query("INSERT INTO mdl_user_preferences (userid, name, value) VALUES (102, 'login_lockout', '1')")
    moodle_db.query("""
        CREATE FUNCTION refuse() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'preferences are read-only today'; END $$ LANGUAGE plpgsql;
        CREATE TRIGGER refuse BEFORE DELETE ON mdl_user_preferences FOR EACH ROW EXECUTE FUNCTION refuse();
    """)
    before = snapshot(moodle_db)
    assert run_tool(moodle_db, tmp_path, "--count", "3") == smp.EXIT_DATABASE
    assert snapshot(moodle_db) == before  # the UPDATE that ran before the DELETE is rolled back
    assert not (tmp_path / "config.json").exists()
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_every_selected_row_is_written_by_one_transaction(moodle_db, tmp_path):
    assert run_tool(moodle_db, tmp_path, "--count", "50") == 0
    xmins = moodle_db.query("SELECT DISTINCT xmin::text FROM mdl_user WHERE id > 52")
    assert len(xmins) == 1  # every updated row was written by the same transaction


# ---- config.json

def test_config_keys_and_their_order_are_kept(moodle_db, tmp_path):
    original = {"base_url": "https://moodle.test", "custom": {"keep": True}, "users": [],
                "parameters": {"courseid": {"min": 2, "max": 9}}, "urls": [{"path": "/my/"}]}
    (tmp_path / "config.json").write_text(json.dumps(original))
    assert run_tool(moodle_db, tmp_path, "--count", "2") == 0
    written = json.loads((tmp_path / "config.json").read_text())
    assert list(written) == list(original)
    assert written["custom"] == {"keep": True} and written["urls"] == [{"path": "/my/"}]
    assert written["users"] == [{"username": "tool_generator_000100", "password": "Passw0rd!"},
                                {"username": "tool_generator_000099", "password": "Passw0rd!"}]


def test_missing_config_is_created_from_defaults_with_mode_0600(moodle_db, tmp_path):
    assert run_tool(moodle_db, tmp_path, "--count", "2") == 0
    path = tmp_path / "config.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    written = json.loads(path.read_text())
    assert written["login_path"] == "/login/index.php" and len(written["urls"]) == 4


def test_invalid_config_is_refused_before_the_database_is_touched(moodle_db, tmp_path, capsys):
    (tmp_path / "config.json").write_text("{ not json")
    before = snapshot(moodle_db)
    assert run_tool(moodle_db, tmp_path) == smp.EXIT_USAGE
    assert "is not valid JSON" in capsys.readouterr().err
    assert snapshot(moodle_db) == before
    assert (tmp_path / "config.json").read_text() == "{ not json"


def test_config_is_replaced_by_rename_never_rewritten_in_place(moodle_db, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"base_url": "https://x.test", "users": []}))
    inode = os.stat(path).st_ino
    assert run_tool(moodle_db, tmp_path, "--count", "1") == 0
    assert os.stat(path).st_ino != inode  # a new file renamed over the old one
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_unwritable_config_directory_changes_nothing_in_the_database(moodle_db, tmp_path, capsys):
    target = tmp_path / "missing-dir" / "config.json"
    before = snapshot(moodle_db)
    code = smp.main([*moodle_db.cli_args(), "--config", str(target), "--password", "pw"])
    assert code == smp.EXIT_USAGE
    assert "cannot write" in capsys.readouterr().err
    assert snapshot(moodle_db) == before


def test_params_from_db_fills_value_lists_of_real_ids(moodle_db, tmp_path):
    assert run_tool(moodle_db, tmp_path, "--count", "5", "--params-from-db") == 0
    parameters = json.loads((tmp_path / "config.json").read_text())["parameters"]
    assert parameters["courseid"] == {"values": [10, 11, 12, 13]}
    assert parameters["cmid"] == {"values": [104, 168, 232, 296]}
    assert parameters["userid"] == {"values": [98, 99, 100, 101, 102]}


# ---- dry run

def test_dry_run_changes_nothing_anywhere(moodle_db, tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"base_url": "https://x.test", "users": []}))
    before = snapshot(moodle_db)
    assert run_tool(moodle_db, tmp_path, "--count", "2", "--dry-run", "--params-from-db") == 0
    out = capsys.readouterr().out
    assert "tool_generator_000100" in out and "dry run" in out
    assert snapshot(moodle_db) == before
    assert json.loads((tmp_path / "config.json").read_text()) == {"base_url": "https://x.test", "users": []}


# ---- passwords

def test_password_falls_back_to_the_environment_then_the_config(moodle_db, tmp_path, monkeypatch):
    monkeypatch.setenv(smp.PASSWORD_ENV, "FromEnv1!")
    assert run_tool(moodle_db, tmp_path, "--count", "1", password=None) == 0
    assert json.loads((tmp_path / "config.json").read_text())["users"][0]["password"] == "FromEnv1!"
    monkeypatch.delenv(smp.PASSWORD_ENV)
    assert run_tool(moodle_db, tmp_path, "--count", "2", password=None) == 0
    users = json.loads((tmp_path / "config.json").read_text())["users"]
    assert {u["password"] for u in users} == {"FromEnv1!"}


def test_no_password_anywhere_says_how_to_give_one(moodle_db, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(smp.PASSWORD_ENV, raising=False)
    assert run_tool(moodle_db, tmp_path, password=None) == smp.EXIT_USAGE
    assert "--password" in capsys.readouterr().err


@pytest.mark.parametrize("password, complaint", [("x" * 129, "128"), ("é" * 40, "at most 72"),
                                                 ("", "no password")], ids=["129-chars", "80-bytes", "empty"])
def test_passwords_moodle_or_bcrypt_cannot_take_are_refused_up_front(moodle_db, tmp_path, capsys, password,
                                                                      complaint, monkeypatch):
    monkeypatch.delenv(smp.PASSWORD_ENV, raising=False)
    assert run_tool(moodle_db, tmp_path, password=password) == smp.EXIT_USAGE
    assert complaint in capsys.readouterr().err


def test_bcrypt_cost_flag_sets_the_cost(moodle_db, tmp_path):
    assert run_tool(moodle_db, tmp_path, "--count", "1", "--bcrypt-cost", "5") == 0
    assert moodle_db.query("SELECT password FROM mdl_user WHERE id = 102")[0][0].startswith("$2y$05$")


# ---- database errors, one line each

def test_bad_prefix_is_refused_before_connecting(moodle_db, tmp_path, capsys):
    assert run_tool(moodle_db, tmp_path, "--prefix", "mdl_; DROP TABLE x") == smp.EXIT_USAGE
    assert "--prefix" in capsys.readouterr().err


def test_wrong_prefix_says_to_check_it(moodle_db, tmp_path, capsys):
    assert run_tool(moodle_db, tmp_path, "--prefix", "m_") == smp.EXIT_DATABASE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--prefix 'm_'" in err


def test_nothing_listening_says_to_check_host_and_port(tmp_path, capsys):
    code = smp.main(["--db-name", "moodle", "--db-host", "127.0.0.1", "--db-port", "1",
                     "--db-user", "x", "--password", "pw", "--config", str(tmp_path / "c.json")])
    assert code == smp.EXIT_DATABASE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach PostgreSQL at 127.0.0.1:1" in err


def test_authentication_failure_says_to_check_user_and_password(moodle_db, tmp_path, capsys):
    moodle_db.query("CREATE ROLE loadtester LOGIN PASSWORD 'right'")
    code = smp.main(["--db-name", moodle_db.name, "--db-host", moodle_db.pg.socketdir,
                     "--db-port", str(moodle_db.pg.port), "--db-user", "loadtester", "--db-pass", "wrong",
                     "--password", "pw", "--config", str(tmp_path / "c.json")])
    assert code == smp.EXIT_DATABASE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "authentication failed" in err and "--db-pass" in err


def test_missing_privileges_say_which_tables_need_them(moodle_db, tmp_path, capsys):
    moodle_db.query("CREATE ROLE reader LOGIN PASSWORD 'pw'")
    moodle_db.query("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader")
    before = snapshot(moodle_db)
    code = smp.main(["--db-name", moodle_db.name, "--db-host", moodle_db.pg.socketdir,
                     "--db-port", str(moodle_db.pg.port), "--db-user", "reader", "--db-pass", "pw",
                     "--password", "pw", "--config", str(tmp_path / "c.json")])
    assert code == smp.EXIT_DATABASE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs SELECT, UPDATE and DELETE" in err
    assert snapshot(moodle_db) == before


def test_libpq_environment_is_used_when_flags_are_missing(moodle_db, tmp_path, monkeypatch):
    monkeypatch.setenv("PGHOST", moodle_db.pg.socketdir)
    monkeypatch.setenv("PGPORT", str(moodle_db.pg.port))
    monkeypatch.setenv("PGUSER", moodle_db.pg.superuser)
    assert smp.main(["--db-name", moodle_db.name, "--count", "1", "--password", "pw",
                     "--config", str(tmp_path / "config.json")]) == 0


def test_the_script_never_prints_a_hash(moodle_db, tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "set_moodle_passwords.py"), *moodle_db.cli_args(),
                             "--count", "3", "--password", "pw", "--config", str(tmp_path / "config.json")],
                            capture_output=True, text=True)
    assert result.returncode == 0
    assert "$2" not in result.stdout + result.stderr


# ---- end to end

def test_the_simulated_site_accepts_every_selected_user_afterwards(moodle_db, tmp_path, db_site):
    assert run_tool(moodle_db, tmp_path, "--count", "5", "--password", "S3lected!", password=None) == 0
    for username in usernames(tmp_path / "config.json"):
        status, location, _ = Browser(db_site.url).login(username, "S3lected!")
        assert (status, location.split("=")[0]) == (303, "/login/index.php?testsession")
