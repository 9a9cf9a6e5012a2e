"""set_moodle_passwords.py's work: pick safe test users in a Moodle database, give them one
known password in one transaction, and list them in config.json."""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import time
from dataclasses import dataclass

from . import __version__
from .exits import UsageError  # here a mistake the operator can fix is exit 2
from .files import json_text, prepare_file, read_json

EXIT_OK = 0
EXIT_DATABASE = 1
EXIT_USAGE = 2
EXIT_NO_USERS = 3

PASSWORD_ENV = "MOODLE_TEST_PASSWORD"
DEFAULT_BCRYPT_COST = 10
MOODLE_MAX_PASSWORD_CHARS = 128  # longer passwords never validate in Moodle
BCRYPT_MAX_PASSWORD_BYTES = 72  # bcrypt ignores (or refuses) what lies beyond
PREFIX_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,30}$")

# Preferences that keep a user from logging in: lockout state and forced password change.
BLOCKING_PREFERENCES = (
    "login_lockout", "login_lockout_secret", "login_lockout_ignored", "login_failed_count",
    "login_failed_last", "login_failed_count_since_success", "auth_forcepasswordchange",
)

DEFAULT_CONFIG = {
    "base_url": "https://moodle.example.test",
    "login_path": "/login/index.php",
    "users": [],
    "parameters": {
        "courseid": {"min": 2, "max": 500},
        "cmid": {"min": 10, "max": 2000},
        "userid": {"min": 5, "max": 10000},
    },
    "urls": [
        {"path": "/my/"},
        {"path": "/course/view.php?id={courseid}"},
        {"path": "/mod/forum/view.php?id={cmid}"},
        {"path": "/user/profile.php?id={userid}"},
    ],
}


class DatabaseError(Exception):
    """A database problem explained in one line: exit 1."""


# =========================================================================== data model

@dataclass(frozen=True)
class SelectedUser:
    id: int
    username: str


@dataclass
class Plan:
    """What a run changes: the users, the hash they get, the config to write."""

    users: list
    password_hash: str
    config: dict
    parameters: dict | None = None


# =========================================================================== config

def read_config(path: str) -> tuple[dict, bool]:
    """The config to update and whether it exists; checked before the database is touched."""
    try:
        raw = read_json(path, "config")
    except FileNotFoundError:
        return copy.deepcopy(DEFAULT_CONFIG), False
    if not isinstance(raw, dict):
        raise UsageError(f"{path} must hold a JSON object")
    if "users" in raw and not isinstance(raw["users"], list):
        raise UsageError(f"{path}: 'users' must be a list")
    if "parameters" in raw and not isinstance(raw["parameters"], dict):
        raise UsageError(f"{path}: 'parameters' must be an object")
    return raw, True


def stored_password(config: dict) -> str | None:
    """The password the config's users already share, if they share one."""
    passwords = {u.get("password") for u in config.get("users", []) if isinstance(u, dict)}
    passwords.discard(None)
    return passwords.pop() if len(passwords) == 1 else None


def updated_config(config: dict, users: list, password: str, parameters: dict | None = None) -> dict:
    """The config with ``users`` replaced (and ``parameters`` merged in); every other key
    and the order of keys kept."""
    result = {}
    for key, value in config.items():
        result[key] = value
    result["users"] = [{"username": user.username, "password": password} for user in users]
    if parameters:
        merged = dict(result.get("parameters", {}))
        merged.update(parameters)
        result["parameters"] = merged
    return result


def prepare_config_file(path: str, config: dict) -> str:
    """Write the config to a private (0600: it holds a password) temp file beside ``path``
    and return its name; the caller renames it into place or removes it."""
    return prepare_file(path, json_text(config), mode=0o600)


# =========================================================================== password

def check_password(password: str) -> None:
    if not password:
        raise UsageError("the password is empty")
    if len(password) > MOODLE_MAX_PASSWORD_CHARS:
        raise UsageError(f"the password has {len(password)} characters; Moodle never accepts more "
                         f"than {MOODLE_MAX_PASSWORD_CHARS}")
    if len(password.encode("utf-8")) > BCRYPT_MAX_PASSWORD_BYTES:
        raise UsageError(f"the password is {len(password.encode('utf-8'))} bytes in UTF-8; bcrypt "
                         f"uses at most {BCRYPT_MAX_PASSWORD_BYTES}: choose a shorter one")


def moodle_bcrypt_hash(password: str, cost: int = DEFAULT_BCRYPT_COST) -> str:
    """A bcrypt hash in PHP's ``$2y$`` form: what Moodle's password_hash() writes and what
    every Moodle since 2.7 accepts.  Moodle 5.0 rewrites it to its own format at the first
    login, so later logins stay cheap (``$2b$``, Python's default, is never rewritten and
    is checked twice at every login)."""
    import bcrypt

    hashed = bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=cost)).decode("ascii")
    return "$2y$" + hashed[4:]  # $2b$ and $2y$ are the same algorithm


# =========================================================================== users

def table(prefix: str, name: str):
    from psycopg2 import sql

    return sql.Identifier(prefix + name)


def selection_query(prefix: str, where: str | None, count: int):
    """Most recent users first (highest id), never deleted, suspended, guest, site admins
    or users of another MNet host; ``where`` is the operator's own SQL condition."""
    from psycopg2 import sql

    config = table(prefix, "config")
    query = sql.SQL(
        "SELECT u.id, u.username FROM {user} u"
        " WHERE u.deleted = 0 AND u.suspended = 0 AND u.username <> 'guest'"
        " AND u.id <> COALESCE((SELECT NULLIF(value, '')::bigint FROM {config} WHERE name = 'siteguest'), 0)"
        " AND u.mnethostid = COALESCE("
        "   (SELECT NULLIF(value, '')::bigint FROM {config} WHERE name = 'mnet_localhost_id'), 1)"
        " AND NOT u.id = ANY(COALESCE(string_to_array("
        "   (SELECT regexp_replace(value, '\\s', '', 'g') FROM {config} WHERE name = 'siteadmins'), ',')"
        "   ::bigint[], '{{}}'))"
    ).format(user=table(prefix, "user"), config=config)
    if where:
        query = query + sql.SQL(" AND (") + sql.SQL(where) + sql.SQL(")")
    return query + sql.SQL(" ORDER BY u.id DESC LIMIT {}").format(sql.Literal(count))


def select_users(cur, prefix: str, where: str | None, count: int) -> list:
    cur.execute(selection_query(prefix, where, count))
    return [SelectedUser(row[0], row[1]) for row in cur.fetchall()]


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


# =========================================================================== changes

def apply_changes(cur, prefix: str, users: list, password_hash: str) -> tuple[int, int]:
    """Set-based updates inside the caller's transaction; returns (users, preferences)."""
    from psycopg2 import sql

    ids = [user.id for user in users]
    cur.execute(sql.SQL(
        "UPDATE {user} SET password = %s, auth = 'manual', confirmed = 1, timemodified = %s"
        " WHERE id = ANY(%s)").format(user=table(prefix, "user")),
        (password_hash, int(time.time()), ids))
    updated = cur.rowcount
    cur.execute(sql.SQL("DELETE FROM {prefs} WHERE userid = ANY(%s) AND name = ANY(%s)").format(
        prefs=table(prefix, "user_preferences")), (ids, list(BLOCKING_PREFERENCES)))
    return updated, cur.rowcount


# =========================================================================== database I/O

def connection_arguments(args) -> dict:
    """Only what was given: libpq fills in the rest from PG* variables and ~/.pgpass."""
    given = {"dbname": args.db_name, "user": args.db_user, "password": args.db_pass,
             "host": args.db_host, "port": args.db_port}
    arguments = {key: value for key, value in given.items() if value is not None}
    arguments["connect_timeout"] = 10
    arguments["application_name"] = "set_moodle_passwords"
    return arguments


def explain_connect_error(error, arguments: dict) -> str:
    message = str(error).strip()
    first = message.splitlines()[0] if message else type(error).__name__
    where = f"{arguments.get('host', os.environ.get('PGHOST', 'localhost'))}:" \
            f"{arguments.get('port', os.environ.get('PGPORT', 5432))}"
    lowered = message.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered \
            or "authentication failed" in lowered:
        return (f"authentication failed for database user {arguments.get('user', os.environ.get('PGUSER', '?'))}:"
                f" check --db-user and --db-pass (or PGUSER, PGPASSWORD, ~/.pgpass)")
    if "does not exist" in lowered and "database" in lowered:
        return f"{first}: check --db-name"
    if "connection refused" in lowered or "could not connect" in lowered \
            or "no such file or directory" in lowered or "timeout expired" in lowered \
            or "could not translate host name" in lowered:
        return f"cannot reach PostgreSQL at {where} ({first}): is it running? check --db-host and --db-port"
    return f"cannot connect to PostgreSQL at {where}: {first}"


def explain_query_error(error, prefix: str, where: str | None) -> str:
    import psycopg2.errors as pgerrors

    first = (getattr(error, "pgerror", None) or str(error)).strip().splitlines()[0]
    if isinstance(error, pgerrors.UndefinedTable):
        return f"{first}: is --prefix '{prefix}' right for this Moodle database?"
    if isinstance(error, pgerrors.InsufficientPrivilege):
        return (f"{first}: the database user needs SELECT, UPDATE and DELETE on the {prefix}user, "
                f"{prefix}user_preferences and {prefix}config tables")
    if where and isinstance(error, (pgerrors.SyntaxError, pgerrors.UndefinedColumn,
                                    pgerrors.UndefinedFunction, pgerrors.DatatypeMismatch,
                                    pgerrors.InvalidTextRepresentation)):
        return f"--where {where!r} is not valid SQL here: {first}"
    if where and error.pgcode and error.pgcode.startswith("42"):
        return f"--where {where!r} is not valid SQL here: {first}"
    return first


# =========================================================================== command line

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="set_moodle_passwords.py", allow_abbrev=False,
                     description="Give Moodle test users a known password and write them into config.json.",
                     epilog="Exit status: 0 done, 1 database problem, 2 usage or input mistake, "
                            "3 no user matched.")
    parser.add_argument("--db-name", required=True, help="database name")
    parser.add_argument("--db-user", help="database user (default: libpq's, PGUSER)")
    parser.add_argument("--db-pass", help="database password (default: PGPASSWORD or ~/.pgpass)")
    parser.add_argument("--db-host", help="host name or unix socket directory (default: libpq's, PGHOST)")
    parser.add_argument("--db-port", type=int, help="port (default: libpq's, PGPORT or 5432)")
    parser.add_argument("--prefix", default="mdl_", help="Moodle table prefix (default mdl_)")
    parser.add_argument("--count", type=int, default=100, help="how many users to update (default 100)")
    parser.add_argument("--password", help=f"the new password (default: ${PASSWORD_ENV}, then the "
                                           f"password already in --config)")
    parser.add_argument("--config", default="config.json", help="config.json to update (default config.json)")
    parser.add_argument("--where", help="extra SQL condition on the user table u (no leading WHERE)")
    parser.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    parser.add_argument("--params-from-db", action="store_true",
                        help="fill the config's courseid, cmid and userid parameters with real ids")
    parser.add_argument("--bcrypt-cost", type=int, default=DEFAULT_BCRYPT_COST,
                        help=f"bcrypt cost factor, 4..31 (default {DEFAULT_BCRYPT_COST})")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def resolve_password(args, config: dict) -> str:
    password = args.password or os.environ.get(PASSWORD_ENV) or stored_password(config)
    if not password:
        raise UsageError(f"no password given: pass --password, set {PASSWORD_ENV}, or keep one in "
                         f"{args.config}")
    check_password(password)
    return password


def run(args, config: dict, existed: bool, password: str) -> int:
    import psycopg2

    arguments = connection_arguments(args)
    try:
        conn = psycopg2.connect(**arguments)
    except psycopg2.Error as error:
        raise DatabaseError(explain_connect_error(error, arguments)) from None
    temporary = None
    try:
        if args.dry_run:
            conn.set_session(readonly=True)
        with conn.cursor() as cur:
            try:
                users = select_users(cur, args.prefix, args.where, args.count)
                parameters = discover_parameters(cur, args.prefix, users) \
                    if args.params_from_db and users else None
            except psycopg2.Error as error:
                raise DatabaseError(explain_query_error(error, args.prefix, args.where)) from None
            if not users:
                print("[ERROR] no user matches: nothing changed (check --where, and that the site has "
                      "users who are not admins, guests, deleted or suspended)", file=sys.stderr)
                return EXIT_NO_USERS
            if len(users) < args.count:
                print(f"[WARN] only {len(users)} users match, fewer than --count {args.count}")
            ids = [user.id for user in users]
            print(f"[INFO] {len(users)} users selected (ids {min(ids)}..{max(ids)})")
            new_config = updated_config(config, users, password, parameters)
            if args.dry_run:
                show_dry_run(args, users, config, new_config, existed)
                conn.rollback()
                return EXIT_OK
            password_hash = moodle_bcrypt_hash(password, args.bcrypt_cost)
            try:
                updated, preferences = apply_changes(cur, args.prefix, users, password_hash)
            except psycopg2.Error as error:
                raise DatabaseError(explain_query_error(error, args.prefix, args.where)) from None
            # Config first to a temp file, then the commit, then the rename: a failure at any
            # step leaves both the database and the config as they were.
            try:
                temporary = prepare_config_file(args.config, new_config)
            except OSError as error:
                raise UsageError(f"cannot write {args.config}: {error.strerror}") from None
            try:
                conn.commit()
            except psycopg2.Error as error:
                raise DatabaseError(f"commit failed, nothing changed: {str(error).strip().splitlines()[0]}") \
                    from None
            os.replace(temporary, args.config)
            temporary = None
        print(f"[INFO] updated {updated} users (bcrypt cost {args.bcrypt_cost}, auth=manual, confirmed=1), "
              f"cleared {preferences} lockout/password-change preferences, in one transaction")
        if parameters:
            print("[INFO] parameters from the database: "
                  + ", ".join(f"{name} {len(spec['values'])} values" for name, spec in parameters.items()))
        print(f"[INFO] wrote {args.config} ({len(users)} users, mode 0600)")
        return EXIT_OK
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
        conn.close()  # closing without a commit rolls back whatever was not committed


def show_dry_run(args, users: list, old: dict, new: dict, existed: bool) -> None:
    print(f"[INFO] dry run: nothing is written; these {len(users)} users would get the new password:")
    for user in users:
        print(f"  {user.id:>8}  {user.username}")
    before = {u.get("username") for u in old.get("users", []) if isinstance(u, dict)}
    after = {u["username"] for u in new["users"]}
    print(f"[INFO] {args.config} would be {'updated' if existed else 'created'}: users "
          f"{len(before)} -> {len(after)} (+{len(after - before)} -{len(before - after)})")
    for name, spec in new.get("parameters", {}).items():
        if old.get("parameters", {}).get(name) != spec:
            print(f"[INFO]   parameters.{name} -> {json.dumps(spec)[:120]}")


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if not PREFIX_PATTERN.match(args.prefix):
            raise UsageError(f"--prefix {args.prefix!r} is not a plain table prefix (letters, digits, _)")
        if args.count < 1:
            raise UsageError(f"--count must be at least 1, got {args.count}")
        if not 4 <= args.bcrypt_cost <= 31:
            raise UsageError(f"--bcrypt-cost must be between 4 and 31, got {args.bcrypt_cost}")
        config, existed = read_config(args.config)
        password = resolve_password(args, config)
        return run(args, config, existed, password)
    except UsageError as error:
        print(f"[ERROR] {error}", file=sys.stderr)
        return EXIT_USAGE
    except DatabaseError as error:
        print(f"[ERROR] {error}", file=sys.stderr)
        return EXIT_DATABASE
    except KeyboardInterrupt:
        print("[ERROR] interrupted: nothing was changed", file=sys.stderr)
        return 130

