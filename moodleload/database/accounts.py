"""Which accounts set_moodle_passwords.py may touch, and the SQL that touches them.

Guards that are never lifted: deleted, suspended, the guest, site admins and users of
another MNet host.  Guards lifted only when asked for by name: accounts whose ``auth`` is
not ``manual`` (``--allow-auth``: nologin is a disabled account, ldap/oauth2/cas/... have
no password of the site's own) and unconfirmed accounts (``--allow-unconfirmed``).  The
guards are applied when the rows are selected (and locked) and again in the UPDATE, so an
account suspended or made admin meanwhile is left alone."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from moodleload.database.family import DatabaseError, DatabaseFamily
from moodleload.database.postgres import Postgres
from moodleload.exits import UsageError

# maketestsite's (admin/tool/generator) accounts: what is plainly test data on any site.
TEST_USERS_CONDITION = "u.username LIKE 'tool!_generator!_%' ESCAPE '!'"

# Preferences that keep a user from logging in: lockout state and forced password change.
BLOCKING_PREFERENCES = (
    "login_lockout", "login_lockout_secret", "login_lockout_ignored", "login_failed_count",
    "login_failed_last", "login_failed_count_since_success", "auth_forcepasswordchange",
)


@dataclass(frozen=True)
class SelectedUser:
    id: int
    username: str


@dataclass(frozen=True)
class Guards:
    prefix: str
    auths: tuple[str, ...] = ("manual",)
    allow_unconfirmed: bool = False


class SqlDialect(Protocol):
    """How a family's SQL quotes names and strings and starts a comment (its class or an instance)."""

    quote_chars: str
    line_comment_chars: str
    backslash_strings: bool


def check_where(where: str, database: SqlDialect = Postgres) -> str:
    """``where`` if it is one SQL expression and nothing else; a UsageError otherwise.
    Outside string literals and quoted names (as ``database`` reads them) it may not close a
    parenthesis it did not open, end the statement (;), start a comment, or use dollar
    quoting: so it cannot escape the ``AND (...)`` it is put in, drop the LIMIT or run a
    second statement."""
    if not where.strip():
        raise UsageError("--where is empty")
    depth = 0
    position = 0
    length = len(where)
    while position < length:
        char = where[position]
        if char == "'":
            escapes = database.backslash_strings and position > 0 and where[position - 1] in "eE" and \
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
        elif char in database.quote_chars:
            closing = where.find(char, position + 1)
            if closing < 0:
                raise UsageError("--where has a quoted name that is never closed")
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
        elif where.startswith("--", position) or where.startswith("/*", position) \
                or char in database.line_comment_chars:
            raise UsageError("--where may not hold SQL comments")
        elif char == "$":
            raise UsageError("--where may not use $ (dollar quoting or parameters)")
        position += 1
    if depth:
        raise UsageError("--where leaves a parenthesis open")
    return where


def table(database: DatabaseFamily, guards_or_prefix: Guards | str, name: str) -> str:
    prefix = guards_or_prefix if isinstance(guards_or_prefix, str) else guards_or_prefix.prefix
    return database.quote(prefix + name)


def guard_sql(database: DatabaseFamily, guards: Guards) -> str:
    """The conditions every touched row of {user} u meets, as SQL on ``u`` (auth names are
    checked plain words, the prefix a plain name: both safe to write into the text)."""
    config = table(database, guards, "config")
    text = ("u.deleted = 0 AND u.suspended = 0 AND u.username <> 'guest'"
            f" AND {database.not_same('u.id', database.config_number(config, 'siteguest'))}"
            f" AND u.mnethostid = COALESCE({database.config_number(config, 'mnet_localhost_id')}, 1)"
            f" AND {database.not_site_admin('u.id', config)}"
            f" AND u.auth IN ({', '.join(repr(auth) for auth in guards.auths)})")
    if not guards.allow_unconfirmed:
        text += " AND u.confirmed = 1"
    return text


def selection_query(database: DatabaseFamily, guards: Guards, where: str | None, count: int, lock: bool) -> str:
    """Most recent accounts first (highest id) that meet the guards and ``where`` (by default
    maketestsite's test users); ``lock`` holds them until the transaction ends."""
    condition = where if where is not None else TEST_USERS_CONDITION
    query = (f"SELECT u.id, u.username FROM {table(database, guards, 'user')} u"
             f" WHERE {guard_sql(database, guards)} AND ({condition}) ORDER BY u.id DESC LIMIT {int(count)}")
    return query + database.lock_clause if lock else query


def select_users(cur: Any, database: DatabaseFamily, guards: Guards, where: str | None, count: int,
                 lock: bool) -> list[SelectedUser]:
    cur.execute(selection_query(database, guards, where, count, lock))
    users = [SelectedUser(row[0], row[1]) for row in cur.fetchall()]
    if len(users) > count:  # cannot happen with a checked --where: a last line of defence
        raise DatabaseError(f"the selection returned {len(users)} rows for --count {count}: nothing changed")
    return users


def discover_parameters(cur: Any, database: DatabaseFamily, prefix: str,
                        users: Sequence[SelectedUser]) -> dict[str, dict[str, list[int]]]:
    """Value lists of real ids for URLs and journeys: the courses the selected users are
    enrolled in, the forums and page resources of those courses, the discussions of those
    forums that students may reply in (not news or Q and A forums) and their first posts
    (the posts a reply form answers), and the users themselves."""
    def t(name: str) -> str:
        return table(database, prefix, name)

    ids = tuple(user.id for user in users)
    cur.execute(f"SELECT DISTINCT e.courseid FROM {t('user_enrolments')} ue JOIN {t('enrol')} e ON e.id = ue.enrolid"
                " WHERE ue.userid IN %s AND ue.status = 0 AND e.status = 0 AND e.courseid > 1"
                " ORDER BY e.courseid", (ids,))
    found = {"courseid": [row[0] for row in cur.fetchall()]}
    if found["courseid"]:
        courses = tuple(found["courseid"])
        cur.execute(f"SELECT m.name, cm.id FROM {t('course_modules')} cm JOIN {t('modules')} m ON m.id = cm.module"
                    " WHERE m.name IN ('forum', 'page') AND cm.course IN %s AND cm.deletioninprogress = 0"
                    " ORDER BY cm.id", (courses,))
        modules = cur.fetchall()
        found["cmid"] = [cmid for name, cmid in modules if name == "forum"]
        found["pagecmid"] = [cmid for name, cmid in modules if name == "page"]
        cur.execute(f"SELECT d.id, d.firstpost FROM {t('forum_discussions')} d JOIN {t('forum')} f ON f.id = d.forum"
                    " WHERE d.course IN %s AND f.type NOT IN ('news', 'qanda') ORDER BY d.id", (courses,))
        discussions = cur.fetchall()
        found["discussionid"] = [row[0] for row in discussions]
        found["postid"] = [row[1] for row in discussions]
    found["userid"] = sorted(ids)
    return {name: {"values": [int(value) for value in values]} for name, values in found.items() if values}


def holding(cur: Any, database: DatabaseFamily, guards: Guards, users: Sequence[SelectedUser],
            password_hash: str) -> list[SelectedUser]:
    """The users whose row holds ``password_hash`` now (compared here: the hash never goes
    into a statement)."""
    cur.execute(f"SELECT id, password FROM {table(database, guards, 'user')} WHERE id IN %s",
                (tuple(user.id for user in users),))
    have = {row[0] for row in cur.fetchall() if row[1] == password_hash}
    return [user for user in users if user.id in have]


def apply_changes(cur: Any, database: DatabaseFamily, guards: Guards, users: Sequence[SelectedUser],
                  password_hash: str) -> tuple[list[SelectedUser], int]:
    """Set-based updates inside the caller's transaction; returns (the users changed, the
    preferences removed).  The hash reaches the server apart from the statements that use
    it (database.store_hash); a row changed is one holding the new hash afterwards (bcrypt's
    random salt makes that hash unique)."""
    database.store_hash(cur, password_hash)
    user_table = table(database, guards, "user")
    ids = tuple(user.id for user in users)
    cur.execute(f"UPDATE {user_table} u SET password = (SELECT hash FROM moodleload_password), auth = 'manual',"
                f" confirmed = 1, timemodified = %s WHERE u.id IN %s AND {guard_sql(database, guards)}",
                (int(time.time()), ids))
    cur.execute(f"SELECT id FROM {user_table} WHERE id IN %s AND password = (SELECT hash FROM moodleload_password)",
                (ids,))
    changed_ids = {row[0] for row in cur.fetchall()}
    changed = [user for user in users if user.id in changed_ids]
    if not changed_ids:
        return changed, 0
    cur.execute(f"DELETE FROM {table(database, guards, 'user_preferences')} WHERE userid IN %s AND name IN %s",
                (tuple(sorted(changed_ids)), BLOCKING_PREFERENCES))
    return changed, cur.rowcount
