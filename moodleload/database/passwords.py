"""set_moodle_passwords.py's work: pick plainly-test accounts in a Moodle database, give
them one known password in one transaction, and list them in config.json.

Nothing is lost or leaked: the password never needs to be on the command line; the hash
never appears in a statement's text; config.json is written whole (0600) and only after
the database's commit, with SIGINT, SIGTERM and SIGHUP held back between the two, so
both hold the new password or both the old one; a run killed outright (SIGKILL) leaves
at most a private temporary file, which the next run removes and reports; two runs on one
config.json cannot interleave (a lock)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

from moodleload import __version__
from moodleload.console import silence_closed_stdout
from moodleload.database.accounts import (
    BLOCKING_PREFERENCES,  # noqa: F401  (tests and the README name them from here)
    Guards,
    SelectedUser,
    apply_changes,
    check_where,
    discover_parameters,
    holding,
    select_users,
)
from moodleload.database.connection import DEFAULT_PREFIX, DatabaseFlags, SiteDatabase, connection_settings
from moodleload.database.families import DBTYPE_NAMES, database_for
from moodleload.database.family import DatabaseError, DatabaseFamily
from moodleload.database.testconfig import (
    chosen_base_url,
    config_lock,
    config_target,
    leftovers_of,
    missing_base_url,
    read_config,
    updated_config,
)
from moodleload.database.testpassword import (
    DEFAULT_BCRYPT_COST,
    PASSWORD_ENV,
    hash_interruptibly,
    resolve_password,
)
from moodleload.exits import (
    SETUP_DATABASE_PROBLEM,
    SETUP_DONE,
    SETUP_NO_USERS,
    SETUP_USAGE,
    STOPPING_SIGNALS,
    Stopped,
    UsageError,
    exit_for_signal,
    raise_stopped,
)
from moodleload.files import check_writable, json_text, prepare_file
from moodleload.needs import require
from moodleload.siteurl import without_credentials

MAX_BCRYPT_COST = 14  # every login pays it until Moodle rehashes: ~1 s a login at 14 on a fast core
MAX_COUNT = 1_000_000
PREFIX_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,30}$")
AUTH_PATTERN = re.compile(r"^[a-z0-9_]{1,20}$")

@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP wait until the block is done: between the commit and the
    rename nothing may stop this process but SIGKILL."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING_SIGNALS)


@dataclass
class Progress:
    """How far a run got: a signal that arrives after the commit finds the work done."""

    committed: bool = False


# =========================================================================== command line

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="set_moodle_passwords.py", allow_abbrev=False,
                     description="Give Moodle test users a known password and write them into config.json.",
                     epilog="Exit status: 0 done, 1 database problem, 2 usage or input mistake, "
                            "3 no user matched, 130/143/129 interrupted (nothing changed unless it says so).")
    parser.add_argument("--moodle-config", metavar="PATH",
                        help="the site's config.php: database type, host, port, socket, name, user, password, "
                             "prefix and wwwroot (base_url) from it; the flags below override it")
    parser.add_argument("--db-type", help=f"{DBTYPE_NAMES} (Moodle's dbtype; default pgsql)")
    parser.add_argument("--db-name", help="database name")
    parser.add_argument("--db-user", help="database user (default: PGUSER or ~/.my.cnf, else the client's)")
    parser.add_argument("--db-pass-file", metavar="FILE",
                        help="read the database password from FILE's first line ('-': standard input)")
    parser.add_argument("--db-pass", help="database password: shows in ps, prefer --db-pass-file, "
                                          "--moodle-config, PGPASSWORD, ~/.pgpass or ~/.my.cnf")
    parser.add_argument("--db-host", help="host name or address (PostgreSQL: or a socket directory; "
                                          "MariaDB/MySQL: localhost means the unix socket)")
    parser.add_argument("--db-port", type=int, help="port (default 5432 or 3306, or PGPORT / ~/.my.cnf)")
    parser.add_argument("--db-socket", metavar="PATH",
                        help="unix socket: MariaDB/MySQL its file, PostgreSQL its directory")
    parser.add_argument("--prefix", help=f"Moodle table prefix (default: config.php's, else {DEFAULT_PREFIX})")
    parser.add_argument("--count", type=int, default=100, help="how many users to update (default 100)")
    parser.add_argument("--password-file", metavar="FILE",
                        help=f"read the new password from FILE's first line ('-': standard input); or set "
                             f"${PASSWORD_ENV}; else the password already in --config, else a prompt")
    parser.add_argument("--password", help="the new password: shows in ps, prefer --password-file")
    parser.add_argument("--config", default="config.json", help="config.json to update (default config.json)")
    parser.add_argument("--base-url", metavar="URL",
                        help="the site's address as the load reaches it, for config.json's base_url (default: "
                             "the config's own, else config.php's wwwroot; without any, none is written and a "
                             "[WARN] says what to add)")
    parser.add_argument("--where", help="pick these accounts instead of maketestsite's tool_generator_* "
                                        "users: one SQL condition on the user table u (no leading WHERE)")
    parser.add_argument("--allow-auth", metavar="NAME[,NAME]",
                        help="also pick accounts of these auth methods (default: manual only), e.g. email")
    parser.add_argument("--allow-unconfirmed", action="store_true",
                        help="also pick accounts that never confirmed their email")
    parser.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    parser.add_argument("--params-from-db", action="store_true",
                        help="fill the config's parameters with real ids: courseid, cmid (forums), pagecmid, "
                             "discussionid, postid (posts one may reply to) and userid")
    parser.add_argument("--bcrypt-cost", type=int, default=DEFAULT_BCRYPT_COST,
                        help=f"bcrypt cost factor, 4..{MAX_BCRYPT_COST} (default {DEFAULT_BCRYPT_COST})")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def guards_from(args: argparse.Namespace, prefix: str) -> Guards:
    auths = ["manual"]
    for name in (args.allow_auth or "").split(","):
        name = name.strip()
        if not name:
            continue
        if not AUTH_PATTERN.match(name):
            raise UsageError(f"--allow-auth {name!r} is not an auth plugin name (letters, digits, _)")
        if name not in auths:
            auths.append(name)
    return Guards(prefix, tuple(auths), args.allow_unconfirmed)


def check_arguments(args: argparse.Namespace) -> tuple[Guards, Any, SiteDatabase]:
    """(guards, database, site): everything checkable before the database is touched."""
    site = connection_settings(DatabaseFlags.from_options(args))
    settings = site.settings
    if not PREFIX_PATTERN.match(site.prefix):
        raise UsageError(f"prefix {site.prefix!r} ({site.prefix_origin}) is not a plain table prefix "
                         f"(letters, digits, _)")
    port = settings.port
    if port is not None:
        digits = str(port)
        if not (digits.isascii() and digits.isdigit()) or not 1 <= int(digits) <= 65535:
            raise UsageError(f"database port {port!r} ({settings.origin('port')}) is not a port number 1..65535")
        settings.replace("port", int(port))
    if not 1 <= args.count <= MAX_COUNT:
        raise UsageError(f"--count must be between 1 and {MAX_COUNT}, got {args.count}")
    if not 4 <= args.bcrypt_cost <= MAX_BCRYPT_COST:
        raise UsageError(f"--bcrypt-cost must be between 4 and {MAX_BCRYPT_COST} (every login pays it until "
                         f"Moodle rehashes), got {args.bcrypt_cost}")
    database = database_for(site.family, settings)
    if args.where is not None:
        check_where(args.where, database)
    if args.db_pass is not None and not args.db_pass_file:
        print("[WARN] --db-pass is visible to every user of this machine (ps): prefer --db-pass-file, "
              "--moodle-config, PGPASSWORD, ~/.pgpass or ~/.my.cnf")
    return guards_from(args, site.prefix), database, site


@dataclass(frozen=True)
class Request:
    """What a run of set_moodle_passwords.py was asked to do, read once from its command line
    (the database flags, the guards and the password are read at the edge too)."""

    config: str  # config.json's path, as given
    where: str | None
    count: int
    dry_run: bool
    bcrypt_cost: int
    params_from_db: bool
    base_url: str | None
    moodle_config: str | None

    @classmethod
    def read(cls, args: argparse.Namespace) -> Request:
        return cls(config=args.config, where=args.where, count=args.count, dry_run=args.dry_run,
                   bcrypt_cost=args.bcrypt_cost, params_from_db=args.params_from_db, base_url=args.base_url,
                   moodle_config=args.moodle_config)


@dataclass(frozen=True)
class Change:
    """What a run is to write: where, into which config, with which password and base_url."""

    target: str  # the config's real path (a symlink followed)
    config: dict[str, Any]  # the config as it was read
    existed: bool
    password: str
    password_hash: str | None  # None in a dry run
    base_url: str | None  # what config.json's base_url will be (chosen_base_url), None: none known


def run(request: Request, database: Any, site: SiteDatabase, guards: Guards, change: Change,
        progress: Progress) -> int:
    target, config, password, password_hash = change.target, change.config, change.password, change.password_hash
    conn = database.connect()
    temporary = None
    try:
        database.begin(conn, read_only=request.dry_run)
        with conn.cursor() as cur:
            users, parameters = pick_users(cur, database, guards, request, site.prefix)
            if not users:
                return SETUP_NO_USERS
            if request.dry_run:
                show_dry_run(request, database, site, users, config,
                             updated_config(config, users, password, parameters, change.base_url), change)
                conn.rollback()
                return SETUP_DONE
            assert password_hash is not None  # only a dry run has none, and it has ended above
            try:
                changed, preferences = apply_changes(cur, database, guards, users, password_hash)
                for notice in database.notices:
                    print(f"[WARN] {notice}", file=sys.stderr)
            except database.errors as error:
                raise DatabaseError(database.explain_query_error(error, site.prefix, request.where)) from None
            if len(changed) < len(users):
                print(f"[WARN] {len(users) - len(changed)} selected users changed meanwhile (suspended, made "
                      f"admin, ...) and were left alone")
            new_config = updated_config(config, changed, password, parameters, change.base_url)
            # The config goes to a private temp file first; then the commit and the rename, with
            # signals held back between them, so the two cannot disagree.
            try:
                temporary = prepare_file(target, json_text(new_config), mode=0o600)
            except OSError as error:
                raise UsageError(f"cannot write {request.config}: {error.strerror}") from None
            with signals_held():
                try:
                    conn.commit()
                except database.errors as error:
                    if not database.commit_in_doubt(error):
                        raise DatabaseError(f"commit failed, nothing changed: "
                                            f"{str(error).strip().splitlines()[0]}") from None
                    held = settle_commit_in_doubt(database, guards, changed, password_hash, request.config)
                    if len(held) != len(changed):  # some changed meanwhile: the config names those that hold it
                        changed, new_config = held, updated_config(config, held, password, parameters,
                                                                   change.base_url)
                        os.unlink(temporary)
                        temporary = prepare_file(target, json_text(new_config), mode=0o600)
                os.replace(temporary, target)
                temporary = None
                progress.committed = True  # a signal held back until here finds the work done
        report_done(request, site, change, new_config, len(changed), preferences, parameters)
        return SETUP_DONE
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
        conn.close()  # closing without a commit rolls back whatever was not committed


def pick_users(cur: Any, database: Any, guards: Guards, request: Request,
               prefix: str) -> tuple[list[SelectedUser], dict[str, Any] | None]:
    """The users to change (locked unless a dry run) and, with --params-from-db, the page
    parameters that exist on this site; no users is said here, once."""
    try:
        users = select_users(cur, database, guards, request.where, request.count, lock=not request.dry_run)
        parameters = discover_parameters(cur, database, prefix, users) if request.params_from_db and users else None
    except database.errors as error:
        raise DatabaseError(database.explain_query_error(error, prefix, request.where)) from None
    if not users:
        print("[ERROR] no user matches: nothing changed (without --where only maketestsite's "
              "tool_generator_* users are picked; active, confirmed, auth manual, not admin or guest)",
              file=sys.stderr)
        return [], None
    if len(users) < request.count:
        print(f"[WARN] only {len(users)} users match, fewer than --count {request.count}")
    ids = [user.id for user in users]
    print(f"[INFO] {len(users)} users selected (ids {min(ids)}..{max(ids)})")
    return users, parameters


def report_done(request: Request, site: SiteDatabase, change: Change, new_config: dict[str, Any], changed: int,
                preferences: int, parameters: dict[str, Any] | None) -> None:
    print(f"[INFO] updated {changed} users (bcrypt cost {request.bcrypt_cost}, auth=manual, confirmed=1), "
          f"cleared {preferences} lockout/password-change preferences, in one transaction")
    if parameters:
        print("[INFO] parameters from the database: "
              + ", ".join(f"{name} {len(spec['values'])} values" for name, spec in parameters.items()))
    report_base_url(change.config, new_config, request, site, change.base_url)
    print(f"[INFO] wrote {request.config} ({changed} users, mode 0600)")


RECHECK_ATTEMPTS, RECHECK_PAUSE_SECONDS = 3, 2.0  # a restarting database gets a few seconds


def settle_commit_in_doubt(database: DatabaseFamily, guards: Guards, changed: list[SelectedUser], password_hash: str,
                           config_path: str) -> list[SelectedUser]:
    """After a COMMIT whose answer was lost: reconnect and look.  Returns the users that
    hold the new hash (the commit was done: the config must be written); raises a
    DatabaseError that says what is known when nothing changed or nobody can tell."""
    ids = [user.id for user in changed]
    for attempt in range(RECHECK_ATTEMPTS):
        if attempt:
            time.sleep(RECHECK_PAUSE_SECONDS)
        try:
            conn = database.connect()
        except DatabaseError:
            continue
        try:
            database.begin(conn, read_only=True)
            with conn.cursor() as cur:
                held = holding(cur, database, guards, changed, password_hash)
        except database.errors:
            continue
        finally:
            conn.close()
        if not held:
            raise DatabaseError("the connection broke during COMMIT; reconnected to check: no selected user holds "
                                "the new password, the commit was not done, nothing changed")
        print(f"[WARN] the connection broke during COMMIT; reconnected to check: the commit was done ({len(held)} "
              f"users hold the new password), so {config_path} is written", file=sys.stderr)
        return held
    raise DatabaseError(f"the connection broke during COMMIT and the database could not be reached again to check "
                        f"whether it committed: the {len(ids)} selected users (ids {min(ids)}..{max(ids)}) may hold "
                        f"the new password and {config_path} was not changed; when the database is back, run this "
                        f"again with the same password: it sets those users again and writes {config_path}")


def report_base_url(old: dict[str, Any], new: dict[str, Any], request: Request, site: SiteDatabase,
                    base_url: str | None) -> None:
    """Where base_url came from; a base_url the user chose (another host, a load balancer)
    is kept, and said so.  Credentials in it (user:password@) are never printed."""
    wwwroot = site.wwwroot
    shown = without_credentials(new.get("base_url", ""))
    if base_url is None:
        print(missing_base_url(request.config))
        return
    if request.base_url is not None:
        if old.get("base_url") != new.get("base_url"):
            print(f"[INFO] base_url {shown} (--base-url)")
        return
    if wwwroot is None:
        return
    if old.get("base_url") != new.get("base_url"):
        print(f"[INFO] base_url {shown} (config.php's wwwroot)")
    elif new.get("base_url") != wwwroot.rstrip("/"):
        print(f"[WARN] base_url kept as {shown} although config.php's wwwroot is {without_credentials(wwwroot)}: "
              f"delete base_url from the config, or give --base-url, to take another")


def show_dry_run(request: Request, database: Any, site: SiteDatabase, users: list[SelectedUser],
                 old: dict[str, Any], new: dict[str, Any], change: Change) -> None:
    settings = database.settings
    print(f"[INFO] dry run: {database.name}, "
          + settings.describe()
          + f", prefix {site.prefix} ({site.prefix_origin})")
    if request.moodle_config:
        print(f"[INFO] {request.moodle_config}: {site.moodle_how}")
    report_base_url(old, new, request, site, change.base_url)
    print(f"[INFO] dry run: nothing is written; these {len(users)} users would get the new password:")
    for user in users:
        print(f"  {user.id:>8}  {user.username}")
    before = {u.get("username") for u in old.get("users", []) if isinstance(u, dict)}
    after = {u["username"] for u in new["users"]}
    print(f"[INFO] {request.config} would be {'updated' if change.existed else 'created'}: users "
          f"{len(before)} -> {len(after)} (+{len(after - before)} -{len(before - after)})")
    for name, spec in new.get("parameters", {}).items():
        if old.get("parameters", {}).get(name) != spec:
            print(f"[INFO]   parameters.{name} -> {json.dumps(spec)[:120]}")


def prepare(args: argparse.Namespace, progress: Progress) -> int:
    """Everything up to the database: checks, the lock, leftovers, the config, the hash."""
    guards, database, site = check_arguments(args)
    request = Request.read(args)  # what the rest reads; the password alone is read from args, below
    require([database.driver] + ([] if request.dry_run else ["bcrypt"]), "set_moodle_passwords.py",
            {database.driver: database.driver_package})
    if request.where is None:
        print("[INFO] picking maketestsite's test users (tool_generator_*); give --where to pick others")
    target = config_target(request.config)  # a symlinked config.json: where it is really written
    with config_lock(target):
        for leftover in leftovers_of(target):
            os.unlink(leftover)
            print(f"[WARN] removed {os.path.basename(leftover)}, left by an earlier run that was killed; if it "
                  f"was killed while committing, the database may hold that run's password: this run sets "
                  f"the database and {request.config} again, so they agree")
        config, existed = read_config(request.config)
        base_url = chosen_base_url(config, request.base_url, site.wwwroot)
        if not request.dry_run:
            check_writable(target, "--config")
        password = resolve_password(args, config)
        # Hashed before the transaction opens: a high cost never leaves the database idle in it.
        password_hash = None if request.dry_run else hash_interruptibly(password, request.bcrypt_cost)
        return run(request, database, site, guards,
                   Change(target, config, existed, password, password_hash, base_url), progress)


def main(argv: list[str] | None = None) -> int:
    previous = {signum: signal.signal(signum, raise_stopped) for signum in (signal.SIGTERM, signal.SIGHUP)}
    args = None
    progress = Progress()
    try:
        args = build_parser().parse_args(argv)
        status = prepare(args, progress)
        sys.stdout.flush()  # here, where a closed pipe is still caught below
        return status
    except UsageError as error:
        print(f"[ERROR] {error}", file=sys.stderr)
        return SETUP_USAGE
    except DatabaseError as error:
        print(f"[ERROR] {error}", file=sys.stderr)
        return SETUP_DATABASE_PROBLEM
    except (KeyboardInterrupt, Stopped) as interruption:
        signum = interruption.signum if isinstance(interruption, Stopped) else signal.SIGINT
        name = signal.Signals(signum).name
        if args is not None and progress.committed:
            print(f"[WARN] {name} arrived while committing: the change was completed first, the database "
                  f"and {args.config} both hold the new password", file=sys.stderr)
        else:
            print(f"[ERROR] interrupted ({name}): nothing was changed", file=sys.stderr)
        return exit_for_signal(signum)
    except BrokenPipeError:
        # The reader went away (| head): say so where it can still be read, and end quietly
        # (standard output pointed at /dev/null, so the flush at exit cannot fail again).
        silence_closed_stdout()
        config_path = args.config if args is not None and progress.committed else None
        print("[ERROR] standard output was closed before the end"
              + (f" (the change itself was completed: the database and {config_path} agree)"
                 if config_path else ""),
              file=sys.stderr)
        return SETUP_USAGE
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
