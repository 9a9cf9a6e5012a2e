"""The database families Moodle runs on, by name: each family is one class (``postgres``,
``mysql``) satisfying ``family.DatabaseFamily``; a new family is one more module and its line
in FAMILIES.  Moodle's $CFG->dbtype names, the messages that list them and the family a
name stands for are all read from the classes here."""

from __future__ import annotations

from moodleload.database.family import DatabaseFamily, Settings
from moodleload.database.mysql import MySQL
from moodleload.database.postgres import Postgres
from moodleload.exits import UsageError

FAMILIES: dict[str, type[Postgres] | type[MySQL]] = {Postgres.family: Postgres, MySQL.family: MySQL}

# $CFG->dbtype (and the other names a family answers to) -> its family.
MOODLE_DBTYPES = {name: family.family for family in FAMILIES.values() for name in (*family.dbtypes, *family.aliases)}
# Moodle's own names, as messages list them: "pgsql, mariadb, mysqli or auroramysql".
_MOODLE_NAMES = [dbtype for family in FAMILIES.values() for dbtype in family.dbtypes]
DBTYPE_NAMES = ", ".join(_MOODLE_NAMES[:-1]) + " or " + _MOODLE_NAMES[-1]


def database_for(family: str, settings: Settings, application: str = "set_moodle_passwords") -> DatabaseFamily:
    """The family's implementation; a family nobody wrote is an error, never another family's SQL."""
    if family not in FAMILIES:
        raise UsageError(f"database family {family!r} is not supported: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[family](settings, application)


def fill_defaults(family: str, settings: Settings) -> None:
    """What no flag and no config.php gave, from each family's own conventions."""
    FAMILIES[family].fill_defaults(settings)


def family_of(dbtype: str) -> str:
    family = MOODLE_DBTYPES.get(dbtype.strip().lower())
    if family is None:
        raise UsageError(f"database type {dbtype!r} is not one Moodle 5.0 runs on: give {DBTYPE_NAMES}")
    return family
