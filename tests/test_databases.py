"""set_moodle_passwords.py on MariaDB/MySQL: what that family does its own way (the shared
behaviours run on both families in test_passwords.py and test_passwords_safety.py)."""

import json
from pathlib import Path

import pytest

from moodleload.database import passwords as smp
from moodleload.database.accounts import check_where
from moodleload.database.families import fill_defaults
from moodleload.database.family import Settings
from moodleload.database.mysql import MySQL, read_my_cnf
from moodleload.database.postgres import Postgres
from moodleload.exits import SETUP_DATABASE_PROBLEM, SETUP_USAGE, UsageError

SITE_FLAG = ["--base-url", "https://moodle.test"]  # a new config.json needs the site's address


def run_tool(db, tmp_path, *extra, password="Passw0rd!"):
    return smp.main([*db.cli_args(), *SITE_FLAG,
                     "--config", str(tmp_path / "config.json"), "--password", password, *extra])


def snapshot(db):
    return db.query("SELECT id, password, auth, confirmed, timemodified FROM mdl_user ORDER BY id")


def usernames(tmp_path):
    return [user["username"] for user in json.loads((tmp_path / "config.json").read_text())["users"]]


# ---- one transaction

def test_a_failure_midway_leaves_every_row_as_it_was(maria_db, tmp_path):
    maria_db.query("INSERT INTO mdl_user_preferences (userid, name, value) VALUES (102, 'login_lockout', '1')")
    maria_db.query("CREATE TRIGGER refuse BEFORE DELETE ON mdl_user_preferences FOR EACH ROW"
                   " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'preferences are read-only today'")
    before = snapshot(maria_db)
    assert run_tool(maria_db, tmp_path, "--count", "3") == SETUP_DATABASE_PROBLEM
    assert snapshot(maria_db) == before  # the UPDATE that ran before the DELETE is rolled back
    assert not (tmp_path / "config.json").exists()


def test_the_hash_stays_out_of_the_general_query_log(maria_db, tmp_path):
    log = maria_db.cluster.tmpdir + "/general.log"
    maria_db.query(f"SET GLOBAL general_log_file = '{log}'")
    maria_db.query("SET GLOBAL general_log = 1")
    try:
        assert run_tool(maria_db, tmp_path, "--count", "2") == 0
    finally:
        maria_db.query("SET GLOBAL general_log = 0")
    with open(log, errors="replace") as handle:
        logged = handle.read()
    assert "moodleload_password" in logged or "sql_log_off" in logged  # the log did record this session
    assert "$2y$" not in logged
    assert maria_db.query("SELECT count(*) FROM mdl_user WHERE password LIKE '$2y$%'") == [(2,)]


# ---- strings and names read the way check_where reads them

def test_a_backslash_is_a_plain_character_in_strings_as_check_where_assumes(maria_db, tmp_path):
    assert run_tool(maria_db, tmp_path, "--where", "u.username = 'tool_generator_000005\\' OR u.id = 8") == 0
    assert usernames(tmp_path) == ["tool_generator_000006"]


def test_double_quotes_name_columns_as_in_postgresql(maria_db, tmp_path):
    assert run_tool(maria_db, tmp_path, "--where", "\"u\".\"id\" BETWEEN 5 AND 6") == 0
    assert usernames(tmp_path) == ["tool_generator_000004", "tool_generator_000003"]


@pytest.mark.parametrize("where", [
    "u.id = 5 # ) OR (1=1",
    "u.`'` = 1 ) OR ( u.`'` = 1",
    "u.username = 'x\\' ) OR (1=1) OR (u.username = '",
])
def test_mysql_comments_and_quotes_cannot_escape_the_guards(maria_db, tmp_path, where, capsys):
    before = snapshot(maria_db)
    assert run_tool(maria_db, tmp_path, "--where", where) == SETUP_USAGE
    assert capsys.readouterr().err.count("\n") == 1
    assert snapshot(maria_db) == before


def test_backticks_are_names_for_mysql_only():
    where = "`a)` = 1"
    assert check_where(where, MySQL) == where
    with pytest.raises(UsageError):
        check_where(where, Postgres)


# ---- connecting

def test_nothing_listening_says_to_check_host_port_and_socket(tmp_path, capsys):
    from sim.ports import free_port

    code = smp.main([*SITE_FLAG, "--db-type", "mariadb", "--db-name", "moodle", "--db-host", "127.0.0.1", "--db-port",
                     str(free_port()), "--db-user", "x", "--password", "pw", "--config", str(tmp_path / "c.json")])
    assert code == SETUP_DATABASE_PROBLEM
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach MariaDB/MySQL at 127.0.0.1:" in err and "--db-socket" in err


def test_tcp_on_the_loopback_port_works(maria_db, tmp_path):
    maria_db.query("CREATE USER IF NOT EXISTS 'tcpuser'@'127.0.0.1' IDENTIFIED BY 'tcp-secret'")
    maria_db.query(f"GRANT ALL ON `{maria_db.name}`.* TO 'tcpuser'@'127.0.0.1'")
    (tmp_path / "dbpass").write_text("tcp-secret\n")
    assert smp.main([*SITE_FLAG, "--db-type", "mysqli", "--db-name", maria_db.name, "--db-host", "127.0.0.1",
                     "--db-port", str(maria_db.cluster.port), "--db-user", "tcpuser", "--db-pass-file",
                     str(tmp_path / "dbpass"), "--count", "2", "--password", "pw",
                     "--config", str(tmp_path / "config.json")]) == 0
    assert len(usernames(tmp_path)) == 2


def test_authentication_failure_says_to_check_user_and_password(maria_db, tmp_path, capsys):
    maria_db.query("CREATE USER IF NOT EXISTS 'loadtester'@'localhost' IDENTIFIED BY 'right'")
    code = smp.main([*SITE_FLAG, "--db-type", "mariadb", "--db-name", maria_db.name,
                     "--db-socket", maria_db.cluster.socket,
                     "--db-user", "loadtester", "--db-pass", "wrong", "--password", "pw",
                     "--config", str(tmp_path / "c.json")])
    assert code == SETUP_DATABASE_PROBLEM
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "authentication failed for database user loadtester" in err


def test_missing_privileges_say_which_tables_need_them(maria_db, tmp_path, capsys):
    maria_db.query("CREATE USER IF NOT EXISTS 'reader'@'localhost' IDENTIFIED BY 'pw'")
    maria_db.query(f"GRANT SELECT ON `{maria_db.name}`.* TO 'reader'@'localhost'")
    before = snapshot(maria_db)
    code = smp.main([*SITE_FLAG, "--db-type", "mariadb", "--db-name", maria_db.name,
                     "--db-socket", maria_db.cluster.socket,
                     "--db-user", "reader", "--db-pass", "pw", "--password", "pw",
                     "--config", str(tmp_path / "c.json")])
    assert code == SETUP_DATABASE_PROBLEM
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs SELECT, UPDATE and DELETE" in err
    assert snapshot(maria_db) == before


def test_my_cnf_gives_what_no_flag_gives(maria_db, tmp_path, monkeypatch):
    maria_db.query("CREATE USER IF NOT EXISTS 'cnfuser'@'localhost' IDENTIFIED BY 'from-my-cnf'")
    maria_db.query(f"GRANT ALL ON `{maria_db.name}`.* TO 'cnfuser'@'localhost'")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".my.cnf").write_text(f"[mysql]\nuser = nobody\n\n[client]\nuser = cnfuser\npassword = \"from-my-cnf\"\n"
                                  f"socket = {maria_db.cluster.socket}\n")
    monkeypatch.setenv("HOME", str(home))
    assert smp.main([*SITE_FLAG, "--db-type", "mariadb", "--db-name", maria_db.name, "--count", "1", "--password", "pw",
                     "--config", str(tmp_path / "config.json")]) == 0
    assert usernames(tmp_path) == ["tool_generator_000100"]


def test_localhost_means_the_unix_socket_and_a_host_name_means_tcp(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("MYSQL_HOST", "MYSQL_TCP_PORT", "MYSQL_UNIX_PORT"):
        monkeypatch.delenv(variable, raising=False)
    (tmp_path / ".my.cnf").write_text("[client]\nsocket = /run/x/mysqld.sock\n")
    local = Settings()
    local.offer("host", "localhost", "--db-host")
    fill_defaults("mysql", local)
    assert MySQL(local).where() == "/run/x/mysqld.sock"
    remote = Settings()
    remote.offer("host", "db.example.test", "--db-host")
    fill_defaults("mysql", remote)
    assert MySQL(remote).where() == "db.example.test:3306"


def test_an_option_file_without_a_client_section_gives_nothing(tmp_path):
    (tmp_path / "my.cnf").write_text("[mysqld]\nport = 1\n")
    assert read_my_cnf(str(tmp_path / "my.cnf")) == {}


def test_an_unknown_database_type_is_one_line(tmp_path, capsys):
    assert smp.main([*SITE_FLAG, "--db-type", "oci", "--db-name", "x", "--password", "pw",
                     "--config", str(tmp_path / "c.json")]) == SETUP_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pgsql, mariadb, mysqli or auroramysql" in err


def test_no_database_name_anywhere_says_how_to_give_one(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PGDATABASE", raising=False)
    assert smp.main([*SITE_FLAG, "--password", "pw", "--config", str(tmp_path / "c.json")]) == SETUP_USAGE
    assert "give --db-name (or --moodle-config" in capsys.readouterr().err


def test_a_missing_socket_is_named(tmp_path, capsys):
    code = smp.main([*SITE_FLAG, "--db-type", "mariadb", "--db-name", "x", "--db-socket", str(tmp_path / "none.sock"),
                     "--password", "pw", "--config", str(tmp_path / "c.json")])
    assert code == SETUP_DATABASE_PROBLEM
    assert f"cannot reach MariaDB/MySQL at {tmp_path / 'none.sock'}" in capsys.readouterr().err


def test_params_from_db_gives_the_same_lists_on_both_families(pg_db, maria_db, tmp_path):
    lists = []
    for db in (pg_db, maria_db):
        folder = tmp_path / db.family
        folder.mkdir()
        assert run_tool(db, folder, "--count", "5", "--params-from-db") == 0
        lists.append(json.loads((folder / "config.json").read_text())["parameters"])
    assert lists[0] == lists[1] and lists[0]["cmid"]["values"] == [104, 168, 232, 296]



def test_a_hash_bound_for_the_general_query_log_is_said_at_run_time(maria_db, tmp_path, capsys):
    maria_db.query("CREATE USER IF NOT EXISTS 'nosuper'@'localhost' IDENTIFIED BY 'pw-nosuper'")
    maria_db.query(f"GRANT ALL ON `{maria_db.name}`.* TO 'nosuper'@'localhost'")
    log = Path(maria_db.cluster.tmpdir) / f"general-{maria_db.name}.log"  # where the server may write
    maria_db.query(f"SET GLOBAL general_log_file = '{log}'")
    maria_db.query("SET GLOBAL general_log = 1")
    try:
        code = smp.main([*SITE_FLAG, "--db-type", "mariadb", "--db-name", maria_db.name,
                         "--db-socket", maria_db.cluster.socket, "--db-user", "nosuper", "--db-pass", "pw-nosuper",
                         "--count", "1", "--password", "pw", "--config", str(tmp_path / "config.json")])
    finally:
        maria_db.query("SET GLOBAL general_log = 0")
    assert code == 0
    assert "[WARN] the server's general query log is on and database user nosuper may not switch it off" \
        in capsys.readouterr().err
    [(stored,)] = maria_db.query("SELECT password FROM mdl_user WHERE username = 'tool_generator_000100'")
    assert stored in log.read_text(errors="replace")  # what the warning said is what happened


def test_an_account_that_may_switch_the_log_off_keeps_the_hash_out_of_it(maria_db, tmp_path, capsys):
    log = Path(maria_db.cluster.tmpdir) / f"general-{maria_db.name}.log"  # where the server may write
    maria_db.query(f"SET GLOBAL general_log_file = '{log}'")
    maria_db.query("SET GLOBAL general_log = 1")
    try:
        assert run_tool(maria_db, tmp_path, "--count", "1") == 0
    finally:
        maria_db.query("SET GLOBAL general_log = 0")
    assert "general query log" not in capsys.readouterr().err
    [(stored,)] = maria_db.query("SELECT password FROM mdl_user WHERE username = 'tool_generator_000100'")
    assert stored not in log.read_text(errors="replace")


def test_a_family_nobody_wrote_is_an_error_not_another_familys_sql():
    from moodleload.database.families import database_for
    from moodleload.database.family import Settings
    from moodleload.exits import UsageError

    with pytest.raises(UsageError, match="not supported: mysql, pgsql"):
        database_for("oracle", Settings())


def test_every_family_is_one_class_that_satisfies_the_family_protocol():
    from moodleload.database.families import FAMILIES, database_for
    from moodleload.database.family import DatabaseFamily, Settings

    for key, family_class in FAMILIES.items():
        database = database_for(key, Settings())
        assert isinstance(database, DatabaseFamily) and type(database) is family_class
        assert database.family == key and database.statements_source
    assert len({family_class.statements_source for family_class in FAMILIES.values()}) == len(FAMILIES)
    assert not any(issubclass(one, other) for one in FAMILIES.values() for other in FAMILIES.values()
                   if one is not other)  # no family is another's subclass: the protocol is the interface
