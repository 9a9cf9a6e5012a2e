"""Which database of which site: the database flags both scripts take, the site's config.php
and the family's own defaults, settled once into one family's connection settings, before
the database is touched."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from moodleload.database.families import family_of, fill_defaults
from moodleload.database.family import SettingName, Settings, SettingValue
from moodleload.database.moodleconfig import offer_moodle_settings, read_moodle_config
from moodleload.database.testpassword import read_secret_file
from moodleload.exits import UsageError

DEFAULT_PREFIX = "mdl_"


@dataclass(frozen=True)
class DatabaseFlags:
    """The database flags both scripts take (moodle_load.py for --query-stats), read once
    from the parsed command line."""

    moodle_config: str | None = None
    db_type: str | None = None
    db_name: str | None = None
    db_user: str | None = None
    db_pass_file: str | None = None
    db_pass: str | None = None
    db_host: str | None = None
    db_port: int | None = None
    db_socket: str | None = None
    prefix: str | None = None

    @classmethod
    def from_options(cls, options: argparse.Namespace) -> DatabaseFlags:
        return cls(**{field.name: getattr(options, field.name, None) for field in fields(cls)})

    def password(self) -> str | None:
        if self.db_pass_file:
            return read_secret_file(self.db_pass_file, "--db-pass-file")
        return self.db_pass  # else None: libpq, ~/.my.cnf or config.php give it


@dataclass(frozen=True)
class SiteDatabase:
    """Where the site's database is and what its config.php said: settled once, before the
    database is touched."""

    family: str
    settings: Settings
    prefix: str
    prefix_origin: str  # "--prefix", "config.php" or "default"
    wwwroot: str | None  # config.php's $CFG->wwwroot, where one was read
    moodle_how: str | None  # how config.php was read (PHP, or as text)


def connection_settings(flags: DatabaseFlags) -> SiteDatabase:
    """The database from the flags first, then the site's config.php, then the family's own
    defaults (PG* variables and ~/.pgpass through libpq; ~/.my.cnf, port 3306, the socket),
    with the table prefix and the site's wwwroot."""
    moodle = read_moodle_config(flags.moodle_config) if flags.moodle_config else None
    dbtype, dbtype_origin = (flags.db_type, "--db-type") if flags.db_type else \
        ((moodle.get("dbtype"), "config.php") if moodle and moodle.get("dbtype") else ("pgsql", "default"))
    family = family_of(str(dbtype))
    settings = Settings()
    settings.offer("type", dbtype, dbtype_origin)
    flagged: tuple[tuple[SettingName, SettingValue | None], ...] = (
        ("name", flags.db_name), ("user", flags.db_user), ("password", flags.password()),
        ("host", flags.db_host), ("port", flags.db_port), ("socket", flags.db_socket))
    for name, value in flagged:
        settings.offer(name, value, "--db-" + {"name": "name", "password": "pass-file" if flags.db_pass_file
                                               else "pass"}.get(name, name))
    if moodle:
        offer_moodle_settings(moodle, family, settings)
    fill_defaults(family, settings)
    if not settings.given("name"):
        raise UsageError("give --db-name (or --moodle-config with the site's config.php)")
    if flags.prefix is not None:
        prefix, prefix_origin = flags.prefix, "--prefix"
    else:
        prefix = (moodle.get("prefix") if moodle else None) or DEFAULT_PREFIX
        prefix_origin = "config.php" if moodle and moodle.get("prefix") else "default"
    return SiteDatabase(family, settings, prefix, prefix_origin, moodle.get("wwwroot") if moodle else None,
                        moodle.how if moodle else None)
