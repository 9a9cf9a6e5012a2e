"""What the tests of set_moodle_passwords.py share: running it against a test database and
reading what it left behind."""

import json
import re

from moodleload.database import passwords as smp

LEGACY_HASH = re.compile(r"^\$2y\$10\$[A-Za-z0-9./]{53}$")  # Moodle's password_is_legacy_hash()

SITE_FLAG = ["--base-url", "https://moodle.test"]  # a new config.json needs the site's address


SITE = "https://moodle.test"


def run_tool(moodle_db, tmp_path, *extra, password="Passw0rd!", config_name="config.json"):
    args = [*moodle_db.cli_args(), "--config", str(tmp_path / config_name), *extra]
    if not (tmp_path / config_name).exists() and "--moodle-config" not in extra and "--base-url" not in extra:
        args += ["--base-url", SITE]  # a new config needs the site's address
    if password is not None:
        args += ["--password", password]
    return smp.main(args)


def usernames(config_path):
    with open(config_path) as handle:
        return [u["username"] for u in json.load(handle)["users"]]


def snapshot(moodle_db):
    return moodle_db.query("SELECT id, password, auth, confirmed, timemodified FROM mdl_user ORDER BY id")
