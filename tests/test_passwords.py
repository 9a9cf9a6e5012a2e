"""set_moodle_passwords.py against real PostgreSQL and MariaDB databases: which users, what
changes, config.json, passwords, database errors, whose accounts it may touch."""

import json
import os
import stat
import subprocess
import sys

import bcrypt
import pytest
from password_tools import LEGACY_HASH, SITE_FLAG, run_tool, snapshot, usernames

from helpers import ROOT, Browser
from moodleload.database import passwords as smp
from moodleload.exits import SETUP_DATABASE_PROBLEM, SETUP_NO_USERS, SETUP_USAGE

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
    assert run_tool(moodle_db, tmp_path, "--where", "username = 'nobody'") == SETUP_NO_USERS
    assert "no user matches" in capsys.readouterr().err
    assert snapshot(moodle_db) == before
    assert not (tmp_path / "config.json").exists()


def test_bad_where_is_one_line_and_changes_nothing(moodle_db, tmp_path, capsys):
    before = snapshot(moodle_db)
    assert run_tool(moodle_db, tmp_path, "--where", "usernme = 'x'") == SETUP_DATABASE_PROBLEM
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
    assert run_tool(moodle_db, tmp_path, "--count", "1", "--allow-auth", "ldap", "--allow-unconfirmed") == 0
    assert moodle_db.query("SELECT auth, confirmed FROM mdl_user WHERE id = 102") == [("manual", 1)]


def test_lockout_and_forced_change_preferences_are_removed(moodle_db, tmp_path):
    for name in smp.BLOCKING_PREFERENCES:
        moodle_db.query("INSERT INTO mdl_user_preferences (userid, name, value) VALUES (102, %s, '1')", (name,))
    moodle_db.query("INSERT INTO mdl_user_preferences (userid, name, value) VALUES (102, 'email_bounce_count', '1')")
    moodle_db.query("INSERT INTO mdl_user_preferences (userid, name, value) VALUES (3, 'login_lockout', '1')")
    assert run_tool(moodle_db, tmp_path, "--count", "1") == 0
    assert moodle_db.query("SELECT userid, name FROM mdl_user_preferences ORDER BY userid") == [
        (3, "login_lockout"), (102, "email_bounce_count")]


def test_a_failure_midway_leaves_every_row_as_it_was(pg_db, tmp_path):
    pg_db.query("INSERT INTO mdl_user_preferences (userid, name, value) VALUES (102, 'login_lockout', '1')")
    pg_db.query("""
        CREATE FUNCTION refuse() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'preferences are read-only today'; END $$ LANGUAGE plpgsql;
        CREATE TRIGGER refuse BEFORE DELETE ON mdl_user_preferences FOR EACH ROW EXECUTE FUNCTION refuse();
    """)
    before = snapshot(pg_db)
    assert run_tool(pg_db, tmp_path, "--count", "3") == SETUP_DATABASE_PROBLEM
    assert snapshot(pg_db) == before  # the UPDATE that ran before the DELETE is rolled back
    assert not (tmp_path / "config.json").exists()
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_every_selected_row_is_written_by_one_transaction(pg_db, tmp_path):
    assert run_tool(pg_db, tmp_path, "--count", "50") == 0
    xmins = pg_db.query("SELECT DISTINCT xmin::text FROM mdl_user WHERE id > 52")
    assert len(xmins) == 1  # every updated row was written by the same transaction


# ---- config.json

def test_config_keys_and_their_order_are_kept(pg_db, tmp_path):
    original = {"base_url": "https://moodle.test", "custom": {"keep": True}, "users": [],
                "parameters": {"courseid": {"min": 2, "max": 9}}, "urls": [{"path": "/my/"}]}
    (tmp_path / "config.json").write_text(json.dumps(original))
    assert run_tool(pg_db, tmp_path, "--count", "2") == 0
    written = json.loads((tmp_path / "config.json").read_text())
    assert list(written) == list(original)
    assert written["custom"] == {"keep": True} and written["urls"] == [{"path": "/my/"}]
    assert written["users"] == [{"username": "tool_generator_000100", "password": "Passw0rd!"},
                                {"username": "tool_generator_000099", "password": "Passw0rd!"}]


def test_missing_config_is_created_from_defaults_with_mode_0600(pg_db, tmp_path):
    assert run_tool(pg_db, tmp_path, "--count", "2") == 0
    path = tmp_path / "config.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    written = json.loads(path.read_text())
    assert written["login_path"] == "/login/index.php" and len(written["urls"]) == 4


def test_invalid_config_is_refused_before_the_database_is_touched(pg_db, tmp_path, capsys):
    (tmp_path / "config.json").write_text("{ not json")
    before = snapshot(pg_db)
    assert run_tool(pg_db, tmp_path) == SETUP_USAGE
    assert "is not valid JSON" in capsys.readouterr().err
    assert snapshot(pg_db) == before
    assert (tmp_path / "config.json").read_text() == "{ not json"


def test_config_is_replaced_by_rename_never_rewritten_in_place(pg_db, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"base_url": "https://x.test", "users": []}))
    inode = os.stat(path).st_ino
    assert run_tool(pg_db, tmp_path, "--count", "1") == 0
    assert os.stat(path).st_ino != inode  # a new file renamed over the old one
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_unwritable_config_directory_changes_nothing_in_the_database(pg_db, tmp_path, capsys):
    target = tmp_path / "missing-dir" / "config.json"
    before = snapshot(pg_db)
    code = smp.main([*SITE_FLAG, *pg_db.cli_args(), "--config", str(target), "--password", "pw"])
    assert code == SETUP_USAGE
    assert "cannot write" in capsys.readouterr().err
    assert snapshot(pg_db) == before


def test_params_from_db_fills_value_lists_of_real_ids(moodle_db, tmp_path):
    assert run_tool(moodle_db, tmp_path, "--count", "5", "--params-from-db") == 0
    parameters = json.loads((tmp_path / "config.json").read_text())["parameters"]
    assert parameters["courseid"] == {"values": [10, 11, 12, 13]}
    assert parameters["cmid"] == {"values": [104, 168, 232, 296]}
    assert parameters["userid"] == {"values": [98, 99, 100, 101, 102]}
    assert parameters["pagecmid"]["values"][:3] == [41, 43, 45]  # the page resources of course 10 onwards
    assert parameters["discussionid"] == {"values": [17, 18, 19, 20, 21, 22, 23, 24]}
    assert parameters["postid"] == parameters["discussionid"]  # each discussion's first post, as seeded


def test_params_from_db_leaves_out_forums_students_cannot_reply_in(moodle_db, tmp_path):
    moodle_db.query("UPDATE mdl_forum SET type = 'news' WHERE id = 104")
    assert run_tool(moodle_db, tmp_path, "--count", "5", "--params-from-db") == 0
    parameters = json.loads((tmp_path / "config.json").read_text())["parameters"]
    assert parameters["discussionid"] == {"values": [19, 20, 21, 22, 23, 24]}


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

def test_password_falls_back_to_the_environment_then_the_config(pg_db, tmp_path, monkeypatch):
    monkeypatch.setenv(smp.PASSWORD_ENV, "FromEnv1!")
    assert run_tool(pg_db, tmp_path, "--count", "1", password=None) == 0
    assert json.loads((tmp_path / "config.json").read_text())["users"][0]["password"] == "FromEnv1!"
    monkeypatch.delenv(smp.PASSWORD_ENV)
    assert run_tool(pg_db, tmp_path, "--count", "2", password=None) == 0
    users = json.loads((tmp_path / "config.json").read_text())["users"]
    assert {u["password"] for u in users} == {"FromEnv1!"}


def test_no_password_anywhere_says_how_to_give_one(pg_db, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(smp.PASSWORD_ENV, raising=False)
    assert run_tool(pg_db, tmp_path, password=None) == SETUP_USAGE
    assert "--password" in capsys.readouterr().err


@pytest.mark.parametrize("password, complaint", [("x" * 129, "128"), ("é" * 40, "at most 72"),
                                                 ("", "no password")], ids=["129-chars", "80-bytes", "empty"])
def test_passwords_moodle_or_bcrypt_cannot_take_are_refused_up_front(pg_db, tmp_path, capsys, password,
                                                                      complaint, monkeypatch):
    monkeypatch.delenv(smp.PASSWORD_ENV, raising=False)
    assert run_tool(pg_db, tmp_path, password=password) == SETUP_USAGE
    assert complaint in capsys.readouterr().err


def test_bcrypt_cost_flag_sets_the_cost(moodle_db, tmp_path):
    assert run_tool(moodle_db, tmp_path, "--count", "1", "--bcrypt-cost", "5") == 0
    assert moodle_db.query("SELECT password FROM mdl_user WHERE id = 102")[0][0].startswith("$2y$05$")


# ---- database errors, one line each

def test_bad_prefix_is_refused_before_connecting(pg_db, tmp_path, capsys):
    assert run_tool(pg_db, tmp_path, "--prefix", "mdl_; DROP TABLE x") == SETUP_USAGE
    assert "--prefix" in capsys.readouterr().err


def test_wrong_prefix_says_to_check_it(moodle_db, tmp_path, capsys):
    assert run_tool(moodle_db, tmp_path, "--prefix", "m_") == SETUP_DATABASE_PROBLEM
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--prefix 'm_'" in err


def test_nothing_listening_says_to_check_host_and_port(tmp_path, capsys):
    code = smp.main([*SITE_FLAG, "--db-name", "moodle", "--db-host", "127.0.0.1", "--db-port", "1",
                     "--db-user", "x", "--password", "pw", "--config", str(tmp_path / "c.json")])
    assert code == SETUP_DATABASE_PROBLEM
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach PostgreSQL at 127.0.0.1:1" in err


def test_authentication_failure_says_to_check_user_and_password(pg_db, tmp_path, capsys):
    pg_db.query("CREATE ROLE loadtester LOGIN PASSWORD 'right'")
    code = smp.main([*SITE_FLAG, "--db-name", pg_db.name, "--db-host", pg_db.pg.socketdir,
                     "--db-port", str(pg_db.pg.port), "--db-user", "loadtester", "--db-pass", "wrong",
                     "--password", "pw", "--config", str(tmp_path / "c.json")])
    assert code == SETUP_DATABASE_PROBLEM
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "authentication failed" in err and "--db-pass" in err


def test_missing_privileges_say_which_tables_need_them(pg_db, tmp_path, capsys):
    pg_db.query("CREATE ROLE reader LOGIN PASSWORD 'pw'")
    pg_db.query("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader")
    before = snapshot(pg_db)
    code = smp.main([*SITE_FLAG, "--db-name", pg_db.name, "--db-host", pg_db.pg.socketdir,
                     "--db-port", str(pg_db.pg.port), "--db-user", "reader", "--db-pass", "pw",
                     "--password", "pw", "--config", str(tmp_path / "c.json")])
    assert code == SETUP_DATABASE_PROBLEM
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs SELECT, UPDATE and DELETE" in err
    assert snapshot(pg_db) == before


def test_libpq_environment_is_used_when_flags_are_missing(pg_db, tmp_path, monkeypatch):
    monkeypatch.setenv("PGHOST", pg_db.pg.socketdir)
    monkeypatch.setenv("PGPORT", str(pg_db.pg.port))
    monkeypatch.setenv("PGUSER", pg_db.pg.superuser)
    assert smp.main([*SITE_FLAG, "--db-name", pg_db.name, "--count", "1", "--password", "pw",
                     "--config", str(tmp_path / "config.json")]) == 0


def test_the_script_never_prints_a_hash(pg_db, tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "set_moodle_passwords.py"), *pg_db.cli_args(),
                             *SITE_FLAG,
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


# ---- whose account it may touch

def add_person(moodle_db, user_id: int, username: str, auth: str = "manual", confirmed: int = 1):
    moodle_db.query("INSERT INTO mdl_user (id, auth, confirmed, mnethostid, username, password, firstname,"
                    " lastname, email) VALUES (%s, %s, %s, 1, %s, 'old-hash', 'A', 'Person', 'a@example.test')",
                    (user_id, auth, confirmed, username))


def test_by_default_only_maketestsite_users_are_picked_and_it_says_so(moodle_db, tmp_path, capsys):
    add_person(moodle_db, 500, "jane.student")  # a real person, newer than every test user
    assert run_tool(moodle_db, tmp_path, "--count", "3") == 0
    assert "jane.student" not in usernames(tmp_path / "config.json")
    assert moodle_db.query("SELECT password FROM mdl_user WHERE id = 500") == [("old-hash",)]
    assert "tool_generator_*" in capsys.readouterr().out


def test_where_picks_other_accounts_when_asked_for(moodle_db, tmp_path):
    add_person(moodle_db, 500, "loadtest01")
    assert run_tool(moodle_db, tmp_path, "--where", "u.username LIKE 'loadtest%'") == 0
    assert usernames(tmp_path / "config.json") == ["loadtest01"]


@pytest.mark.parametrize("auth, confirmed", [("nologin", 1), ("ldap", 1), ("oauth2", 1), ("cas", 1),
                                             ("shibboleth", 1), ("manual", 0)])
def test_accounts_without_a_site_password_or_unconfirmed_are_never_picked(moodle_db, tmp_path, auth, confirmed):
    moodle_db.query("UPDATE mdl_user SET auth = %s, confirmed = %s WHERE id = 102", (auth, confirmed))
    assert run_tool(moodle_db, tmp_path, "--count", "1000") == 0
    assert "tool_generator_000100" not in usernames(tmp_path / "config.json")
    assert moodle_db.query("SELECT auth, confirmed, password FROM mdl_user WHERE id = 102")[0][:2] == (auth, confirmed)


def test_a_disabled_account_stays_disabled_unless_its_auth_is_named(moodle_db, tmp_path):
    moodle_db.query("UPDATE mdl_user SET auth = 'nologin' WHERE id = 102")
    assert run_tool(moodle_db, tmp_path, "--count", "1") == 0
    assert moodle_db.query("SELECT auth FROM mdl_user WHERE id = 102") == [("nologin",)]
    assert run_tool(moodle_db, tmp_path, "--count", "1", "--allow-auth", "nologin") == 0
    assert moodle_db.query("SELECT auth FROM mdl_user WHERE id = 102") == [("manual",)]


@pytest.mark.parametrize("where", [
    "1=0) OR (u.username IN ('admin','guest')",
    "1=1) OR true --",
    "u.username = 'x'; DROP TABLE mdl_user_preferences",
    "u.username = 'x' /* comment */",
    "u.username = $$x$$",
    "(u.username = 'x'",
    "u.username = 'x",
], ids=["breakout", "comment-drops-limit", "second-statement", "block-comment", "dollar-quote", "open-paren",
        "open-string"])
def test_where_cannot_escape_its_guards(moodle_db, tmp_path, capsys, where):
    before = snapshot(moodle_db)
    assert run_tool(moodle_db, tmp_path, "--where", where) == SETUP_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--where" in err
    assert snapshot(moodle_db) == before
    assert moodle_db.query("SELECT count(*) FROM mdl_user_preferences") is not None  # the table is still there


@pytest.mark.parametrize("where, expected", [
    ("u.username LIKE '%)%' OR u.username = 'tool_generator_000005'", ["tool_generator_000005"]),
    ({"pgsql": "u.username = E'tool_generator_00000\\'' OR u.id = 7",  # MySQL has no E'' strings:
      "mysql": "u.username = 'tool_generator_00000''' OR u.id = 7"}, ["tool_generator_000005"]),
    ("(u.id BETWEEN 5 AND 6) AND \"u\".\"username\" <> ';--'", ["tool_generator_000004", "tool_generator_000003"]),
], ids=["paren-in-string", "escaped-quote", "quoted-names"])
def test_where_with_quotes_and_parentheses_inside_strings_still_works(moodle_db, tmp_path, where, expected):
    where = where[moodle_db.family] if isinstance(where, dict) else where
    assert run_tool(moodle_db, tmp_path, "--where", where) == 0
    assert usernames(tmp_path / "config.json") == expected


def test_the_update_applies_the_guards_again(moodle_db):
    from moodleload.database.accounts import Guards, SelectedUser, apply_changes

    moodle_db.query("UPDATE mdl_config SET value = '2,100' WHERE name = 'siteadmins'")  # made admin meanwhile
    moodle_db.query("UPDATE mdl_user SET suspended = 1 WHERE id = 99")  # suspended meanwhile
    conn = moodle_db.connect()
    with conn.cursor() as cur:
        chosen = [SelectedUser(n, "") for n in (2, 98, 99, 100)]
        changed, _ = apply_changes(cur, moodle_db.database, Guards("mdl_"), chosen, "$2y$x")
    conn.commit()
    conn.close()
    assert [user.id for user in changed] == [98]
    assert moodle_db.query("SELECT id FROM mdl_user WHERE password = '$2y$x'") == [(98,)]


def test_a_malformed_siteadmins_value_still_keeps_admins_out(moodle_db, tmp_path):
    moodle_db.query("UPDATE mdl_config SET value = ' 2 , x, 102,' WHERE name = 'siteadmins'")  # 102: user 100
    assert run_tool(moodle_db, tmp_path, "--count", "2") == 0
    assert usernames(tmp_path / "config.json") == ["tool_generator_000099", "tool_generator_000098"]
