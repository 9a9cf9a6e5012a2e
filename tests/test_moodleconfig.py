"""--moodle-config: a site's config.php, in the forms Moodle's installer writes it, read with
php (run up to its lib/setup.php) and without (plain assignments, nothing executed)."""

import json
import os
import shutil

import pytest

from helpers import installer_config
from moodleload.database import passwords as smp
from moodleload.database.moodleconfig import parse_plain, read_moodle_config
from moodleload.exits import SETUP_DATABASE_PROBLEM, SETUP_USAGE, UsageError

HAS_PHP = shutil.which("php") is not None
READERS = ["php", "text"]


def need_php():
    if not HAS_PHP:
        if os.environ.get("CI"):
            pytest.fail("php is not installed: tools/system-packages.sh test installs php-cli")
        pytest.skip("php not installed")


def read(path, reader: str):
    if reader == "php":
        need_php()
    return read_moodle_config(str(path), php="auto" if reader == "php" else None)


def no_php_on_path(monkeypatch, tmp_path):
    empty = tmp_path / "no-php-here"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))


# ---- reading

@pytest.mark.parametrize("reader", READERS)
def test_a_pgsql_config_with_dboptions_gives_every_setting(tmp_path, reader):
    path = tmp_path / "config.php"
    path.write_text(installer_config("pgsql", "localhost", "moodle", "moodleuser", "it's \\ secret",
                                     {"dbpersist": 0, "dbport": 5433, "dbsocket": "", "dbcollation": "utf8"}))
    config = read(path, reader)
    assert {name: config.get(name) for name in ("dbtype", "dbhost", "dbname", "dbuser", "dbpass", "prefix",
                                                "wwwroot", "dbport", "dbsocket")} == {
        "dbtype": "pgsql", "dbhost": "localhost", "dbname": "moodle", "dbuser": "moodleuser",
        "dbpass": "it's \\ secret", "prefix": "mdl_", "wwwroot": "https://school.example.test/moodle",
        "dbport": "5433", "dbsocket": None}


@pytest.mark.parametrize("reader", READERS)
def test_a_mariadb_config_without_dboptions_gives_no_port_or_socket(tmp_path, reader):
    path = tmp_path / "config.php"
    path.write_text(installer_config("mariadb", "db.internal", "moodle", "root", "", None, prefix="m_"))
    config = read(path, reader)
    assert (config.get("dbtype"), config.get("dbhost"), config.get("prefix"), config.get("dbpass")) == \
        ("mariadb", "db.internal", "m_", None)
    assert config.get("dbport") is None and config.get("dbsocket") is None


@pytest.mark.parametrize("reader", READERS)
def test_commented_out_settings_are_not_read_and_the_last_assignment_wins(tmp_path, reader):
    path = tmp_path / "config.php"
    text = installer_config("pgsql", "localhost", "moodle", "u", "p", None)
    text = text.replace("$CFG->wwwroot", "// $CFG->dbname = 'commented';\n/* $CFG->dbuser = 'block'; */\n"
                                         "# $CFG->dbhost = 'hash';\n$CFG->dbname = 'second';\n$CFG->wwwroot")
    path.write_text(text)
    config = read(path, reader)
    assert (config.get("dbname"), config.get("dbuser"), config.get("dbhost")) == ("second", "u", "localhost")


def test_lib_setup_php_never_runs(tmp_path):
    need_php()
    (tmp_path / "lib").mkdir()
    marker = tmp_path / "setup-ran"
    (tmp_path / "lib" / "setup.php").write_text(f"<?php file_put_contents('{marker}', 'ran'); exit(9);\n")
    path = tmp_path / "config.php"
    path.write_text(installer_config("pgsql", "localhost", "moodle", "u", "p", None))
    assert read(path, "php").get("dbname") == "moodle"
    assert not marker.exists()


def test_the_5_1_layouts_public_lib_setup_php_never_runs_either(tmp_path):
    """Since Moodle 5.1 config.php stays at the top and ends in public/lib/setup.php."""
    need_php()
    (tmp_path / "public" / "lib").mkdir(parents=True)
    marker = tmp_path / "setup-ran"
    (tmp_path / "public" / "lib" / "setup.php").write_text(f"<?php file_put_contents('{marker}', 'ran'); exit(9);\n")
    path = tmp_path / "config.php"
    path.write_text(installer_config("mariadb", "localhost", "moodle51", "u", "p", None)
                    .replace("__DIR__ . '/lib/setup.php'", "__DIR__ . '/public/lib/setup.php'"))
    assert read(path, "php").get("dbname") == "moodle51"
    assert read(path, "text").get("dbname") == "moodle51"
    assert not marker.exists()


def test_php_honours_what_config_php_computes(tmp_path, monkeypatch):
    need_php()
    monkeypatch.setenv("MOODLE_DB_PASS", "from-the-environment")
    path = tmp_path / "config.php"
    path.write_text(installer_config("pgsql", "localhost", "moodle", "u", "p", None)
                    .replace("'p';", "getenv('MOODLE_DB_PASS');"))
    assert read(path, "php").get("dbpass") == "from-the-environment"


def test_without_php_a_setting_made_by_code_is_named_with_the_remedy(tmp_path):
    path = tmp_path / "config.php"
    path.write_text(installer_config("pgsql", "localhost", "moodle", "u", "p", None)
                    .replace("'p';", "getenv('MOODLE_DB_PASS');"))
    config = read(path, "text")
    assert config.get("dbname") == "moodle"  # what is plain is still read
    with pytest.raises(UsageError, match=r"sets dbpass by code, which is not run without php: install php-cli.*flag"):
        config.get("dbpass")


def test_without_php_a_password_built_by_code_is_never_quoted_not_even_its_literal_part(tmp_path):
    path = tmp_path / "config.php"
    path.write_text(installer_config("pgsql", "localhost", "moodle", "u", "p", None)
                    .replace("'p';", "'Sekrit-' . getenv('MOODLE_DB_SUFFIX');"))
    with pytest.raises(UsageError) as raised:
        read(path, "text").get("dbpass")
    assert "Sekrit" not in str(raised.value) and "sets dbpass by code" in str(raised.value)


def test_double_quoted_strings_with_variables_are_code_not_text():
    config = parse_plain('<?php $CFG->dbname = "moodle_$suffix"; $CFG->dbuser = "a\\tb";')
    assert config.get("dbuser") == "a\tb"
    with pytest.raises(UsageError):
        config.get("dbname")


@pytest.mark.parametrize("reader", READERS)
def test_a_file_that_is_not_moodles_config_is_one_line(tmp_path, reader):
    path = tmp_path / "config.php"
    path.write_text("<?php echo 'hello';\n")
    with pytest.raises(UsageError, match="is it Moodle's config.php|does not set"):
        read(path, reader)


def test_a_missing_config_php_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        read_moodle_config(str(tmp_path / "config.php"))


def test_php_that_fails_is_one_line(tmp_path):
    need_php()
    path = tmp_path / "config.php"
    path.write_text("<?php $CFG = new stdClass(); $CFG->dbname = 'x'; throw new Exception('broken on purpose');\n")
    with pytest.raises(UsageError, match="php could not read"):
        read(path, "php")


# ---- the whole set-up from config.php

def site_config(db, tmp_path, with_options: bool = True) -> str:
    if db.family == "pgsql":
        text = installer_config("pgsql", "localhost", db.name, db.pg.superuser, "",
                                {"dbpersist": 0, "dbport": db.pg.port, "dbsocket": db.pg.socketdir})
    else:
        text = installer_config("mariadb", "localhost", db.name, db.cluster.superuser, "",
                                {"dbpersist": 0, "dbport": "", "dbsocket": db.cluster.socket,
                                 "dbcollation": "utf8mb4_unicode_ci"})
    path = tmp_path / "site" / "config.php"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("reader", READERS)
def test_config_php_is_the_whole_set_up_and_writes_base_url(moodle_db, tmp_path, reader, monkeypatch, capsys):
    config_php = site_config(moodle_db, tmp_path)
    if reader == "text":
        no_php_on_path(monkeypatch, tmp_path)
    else:
        need_php()
    assert smp.main(["--moodle-config", config_php, "--count", "3", "--password", "pw",
                     "--config", str(tmp_path / "config.json")]) == 0
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["base_url"] == "https://school.example.test/moodle"
    assert [user["username"] for user in written["users"]] == [
        "tool_generator_000100", "tool_generator_000099", "tool_generator_000098"]
    assert "base_url https://school.example.test/moodle (config.php's wwwroot)" in capsys.readouterr().out


def test_flags_override_config_php(moodle_db, tmp_path, capsys):
    config_php = site_config(moodle_db, tmp_path)
    assert smp.main(["--moodle-config", config_php, "--prefix", "other_", "--count", "1", "--password", "pw",
                     "--config", str(tmp_path / "config.json")]) == SETUP_DATABASE_PROBLEM
    assert "is --prefix 'other_' right" in capsys.readouterr().err


def test_dry_run_says_where_each_setting_came_from_and_hides_the_password(moodle_db, tmp_path, capsys):
    config_php = site_config(moodle_db, tmp_path)
    if moodle_db.family == "mysql":  # an account that needs the password config.php gives
        moodle_db.query("CREATE USER IF NOT EXISTS 'dry'@'localhost' IDENTIFIED BY 'Sekrit-42'")
        moodle_db.query(f"GRANT ALL ON `{moodle_db.name}`.* TO 'dry'@'localhost'")
        user = "dry"
    else:  # the throwaway server trusts its superuser on the socket: the password is given but unused
        user = moodle_db.pg.superuser
    with open(config_php) as handle:
        text = handle.read()
    with open(config_php, "w") as handle:
        handle.write(text.replace("$CFG->dbpass    = '';", "$CFG->dbpass    = 'Sekrit-42';"))
    assert smp.main(["--moodle-config", config_php, "--db-user", user, "--dry-run",
                     "--password", "pw", "--config", str(tmp_path / "config.json")]) == 0
    out = capsys.readouterr()
    assert "Sekrit-42" not in out.out + out.err
    dbtype = "pgsql" if moodle_db.family == "pgsql" else "mariadb"
    for said in (f"type {dbtype} (config.php)", f"name {moodle_db.name} (config.php)", f"user {user} (--db-user)",
                 "password (hidden) (config.php)", "prefix mdl_ (config.php)"):
        assert said in out.out
    assert not (tmp_path / "config.json").exists()


def test_a_base_url_the_user_chose_is_kept_with_a_warning(moodle_db, tmp_path, capsys):
    config_php = site_config(moodle_db, tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"base_url": "http://10.0.0.5:8080", "users": []}))
    assert smp.main(["--moodle-config", config_php, "--count", "1", "--password", "pw",
                     "--config", str(tmp_path / "config.json")]) == 0
    assert json.loads((tmp_path / "config.json").read_text())["base_url"] == "http://10.0.0.5:8080"
    assert "[WARN] base_url kept as http://10.0.0.5:8080" in capsys.readouterr().out


def test_a_port_that_is_no_number_is_one_line_naming_where_it_came_from(tmp_path, monkeypatch, capsys):
    no_php_on_path(monkeypatch, tmp_path)
    path = tmp_path / "config.php"
    path.write_text(installer_config("mariadb", "127.0.0.1", "moodle", "u", "p", {"dbport": "\u00b2"}))
    assert smp.main(["--moodle-config", str(path), "--password", "pw",
                     "--config", str(tmp_path / "config.json")]) == SETUP_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(config.php) is not a port number" in err


def test_a_wwwroot_with_credentials_is_written_but_never_printed(pg_db, tmp_path, capsys):
    config_php = site_config(pg_db, tmp_path)
    with open(config_php) as handle:
        text = handle.read()
    with open(config_php, "w") as handle:
        handle.write(text.replace("https://school.example.test/moodle", "https://tester:Sekrit-42@school.example.test"))
    assert smp.main(["--moodle-config", config_php, "--count", "1", "--password", "pw",
                     "--config", str(tmp_path / "config.json")]) == 0
    out = capsys.readouterr()
    assert json.loads((tmp_path / "config.json").read_text())["base_url"] == \
        "https://tester:Sekrit-42@school.example.test"
    assert "Sekrit-42" not in out.out + out.err and "base_url https://school.example.test (config.php's wwwroot)" \
        in out.out
