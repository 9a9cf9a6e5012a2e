"""Which accounts set_moodle_passwords.py may touch, and the SQL that touches them.

Guards that are never lifted: deleted, suspended, the guest, site admins and users of
another MNet host.  Guards lifted only when asked for by name: accounts whose ``auth`` is
not ``manual`` (``--allow-auth``: nologin is a disabled account, ldap/oauth2/cas/... have
no password of the site's own) and unconfirmed accounts (``--allow-unconfirmed``).  The
guards are applied when the rows are selected (and locked) and again in the UPDATE, so an
account suspended or made admin meanwhile is left alone."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

from .exits import UsageError

# maketestsite's (admin/tool/generator) accounts: what is plainly test data on any site.
TEST_USERS_CONDITION = "u.username LIKE 'tool!_generator!_%' ESCAPE '!'"

# Preferences that keep a user from logging in: lockout state and forced password change.
BLOCKING_PREFERENCES = (
    "login_lockout", "login_lockout_secret", "login_lockout_ignored", "login_failed_count",
    "login_failed_last", "login_failed_count_since_success", "auth_forcepasswordchange",
)


class DatabaseError(Exception):
    """A database problem explained in one line: exit 1."""


@dataclass(frozen=True)
class SelectedUser:
    id: int
    username: str


@dataclass(frozen=True)
class Guards:
    prefix: str
    auths: tuple = ("manual",)
    allow_unconfirmed: bool = False


def check_where(where: str) -> str:
    """``where`` if it is one SQL expression and nothing else; a UsageError otherwise.
    Outside string literals and quoted names it may not close a parenthesis it did not
    open, end the statement (;), start a comment, or use dollar quoting: so it cannot
    escape the ``AND (...)`` it is put in, drop the LIMIT or run a second statement."""
    if not where.strip():
        raise UsageError("--where is empty")
    depth = 0
    position = 0
    length = len(where)
    while position < length:
        char = where[position]
        if char == "'":
            escapes = position > 0 and where[position - 1] in "eE" and \
                (position == 1 or not (where[position - 2].isalnum() or where[position - 2] == "_"))
            position += 1
            while True:
                if position >= length:
                    raise UsageError("--where has a string that is never closed")
                if escapes and where[position] == "\\":
                    position += 2
                    continue
                if where[position] == "'":
                    if position + 1 < length and where[position + 1] == "'":
                        position += 2
                        continue
                    break
                position += 1
        elif char == '"':
            closing = where.find('"', position + 1)
            if closing < 0:
                raise UsageError('--where has a quoted name that is never closed')
            position = closing
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise UsageError("--where closes a parenthesis it did not open: give one condition, "
                                 "e.g. \"u.username LIKE 'loadtest%'\"")
        elif char == ";":
            raise UsageError("--where may not hold ';': give one condition, not statements")
        elif where.startswith("--", position) or where.startswith("/*", position):
            raise UsageError("--where may not hold SQL comments")
        elif char == "$":
            raise UsageError("--where may not use $ (dollar quoting or parameters)")
        position += 1
    if depth:
        raise UsageError("--where leaves a parenthesis open")
    return where


def table(prefix: str, name: str):
    from psycopg2 import sql

    return sql.Identifier(prefix + name)


def _config_id(name: str) -> str:
    """A numeric setting of {config}, or NULL where it is missing or not a number."""
    return (f"(SELECT CASE WHEN btrim(value) ~ '^[0-9]+$' AND length(btrim(value)) <= 18"
            f" THEN btrim(value)::bigint END FROM {{config}} WHERE name = '{name}')")


def guard_sql(guards: Guards):
    """The conditions every touched row of {user} u meets, as SQL on ``u``."""
    from psycopg2 import sql

    text = ("u.deleted = 0 AND u.suspended = 0 AND u.username <> 'guest'"
            f" AND u.id IS DISTINCT FROM {_config_id('siteguest')}"
            f" AND u.mnethostid = COALESCE({_config_id('mnet_localhost_id')}, 1)"
            " AND u.id NOT IN (SELECT btrim(admin)::bigint FROM {config} c,"
            "   regexp_split_to_table(c.value, ',') AS admin"
            "   WHERE c.name = 'siteadmins' AND btrim(admin) ~ '^[0-9]+$' AND length(btrim(admin)) <= 18)"
            " AND u.auth IN ({auths})")
    if not guards.allow_unconfirmed:
        text += " AND u.confirmed = 1"
    return sql.SQL(text).format(config=table(guards.prefix, "config"),
                                auths=sql.SQL(", ").join(sql.Literal(auth) for auth in guards.auths))


def selection_query(guards: Guards, where: str | None, count: int, lock: bool):
    """Most recent accounts first (highest id) that meet the guards and ``where`` (by default
    maketestsite's test users); ``lock`` holds them until the transaction ends."""
    from psycopg2 import sql

    condition = sql.SQL(where if where is not None else TEST_USERS_CONDITION)
    query = sql.SQL("SELECT u.id, u.username FROM {user} u WHERE {guards} AND ({condition})"
                    " ORDER BY u.id DESC LIMIT {count}").format(
        user=table(guards.prefix, "user"), guards=guard_sql(guards), condition=condition, count=sql.Literal(count))
    return query + sql.SQL(" FOR UPDATE OF u") if lock else query


def select_users(cur, guards: Guards, where: str | None, count: int, lock: bool) -> list:
    cur.execute(selection_query(guards, where, count, lock))
    users = [SelectedUser(row[0], row[1]) for row in cur.fetchall()]
    if len(users) > count:  # cannot happen with a checked --where: a last line of defence
        raise DatabaseError(f"the selection returned {len(users)} rows for --count {count}: nothing changed")
    return users


def discover_parameters(cur, prefix: str, users: list) -> dict:
    """Value lists of real ids for the example URLs: the courses the selected users are
    enrolled in, the forums of those courses, and the users themselves."""
    from psycopg2 import sql

    ids = [user.id for user in users]
    cur.execute(sql.SQL(
        "SELECT DISTINCT e.courseid FROM {ue} ue JOIN {enrol} e ON e.id = ue.enrolid"
        " WHERE ue.userid = ANY(%s) AND ue.status = 0 AND e.status = 0 AND e.courseid > 1"
        " ORDER BY e.courseid").format(ue=table(prefix, "user_enrolments"), enrol=table(prefix, "enrol")),
        (ids,))
    courses = [row[0] for row in cur.fetchall()]
    cur.execute(sql.SQL(
        "SELECT cm.id FROM {cm} cm JOIN {modules} m ON m.id = cm.module"
        " WHERE m.name = 'forum' AND cm.course = ANY(%s) AND cm.deletioninprogress = 0"
        " ORDER BY cm.id").format(cm=table(prefix, "course_modules"), modules=table(prefix, "modules")),
        (courses,))
    forums = [row[0] for row in cur.fetchall()]
    found = {"courseid": courses, "cmid": forums, "userid": sorted(ids)}
    return {name: {"values": values} for name, values in found.items() if values}


def apply_changes(cur, guards: Guards, users: list, password_hash: str) -> tuple[list, int]:
    """Set-based updates inside the caller's transaction; returns (the users changed, the
    preferences removed).  The hash travels by COPY, never in the text of a statement, so
    it is neither in pg_stat_activity nor in the server's log of a failing statement."""
    from psycopg2 import sql

    cur.execute("CREATE TEMPORARY TABLE moodleload_password (hash text NOT NULL) ON COMMIT DROP")
    cur.copy_expert("COPY moodleload_password (hash) FROM STDIN", io.StringIO(password_hash + "\n"))
    cur.execute(sql.SQL(
        "UPDATE {user} u SET password = (SELECT hash FROM moodleload_password), auth = 'manual', confirmed = 1,"
        " timemodified = %s WHERE u.id = ANY(%s) AND {guards} RETURNING u.id").format(
        user=table(guards.prefix, "user"), guards=guard_sql(guards)),
        (int(time.time()), [user.id for user in users]))
    changed_ids = {row[0] for row in cur.fetchall()}
    changed = [user for user in users if user.id in changed_ids]
    cur.execute(sql.SQL("DELETE FROM {prefs} WHERE userid = ANY(%s) AND name = ANY(%s)").format(
        prefs=table(guards.prefix, "user_preferences")), (sorted(changed_ids), list(BLOCKING_PREFERENCES)))
    return changed, cur.rowcount
