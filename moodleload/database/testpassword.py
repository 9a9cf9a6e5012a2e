"""The one known test password: where it comes from (file, environment, config, prompt),
what Moodle accepts of it, and its bcrypt hash in the form Moodle stores ($2y$)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import threading
from typing import Any

from moodleload.database.testconfig import stored_password
from moodleload.exits import UsageError

PASSWORD_ENV = "MOODLE_TEST_PASSWORD"
DEFAULT_BCRYPT_COST = 10  # Moodle's own (PHP's PASSWORD_DEFAULT cost)
MOODLE_MAX_PASSWORD_CHARS = 128  # longer passwords never validate in Moodle
BCRYPT_MAX_PASSWORD_BYTES = 72  # bcrypt ignores (or refuses) what lies beyond

def check_password(password: str) -> None:
    if not password:
        raise UsageError("the password is empty")
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("the password is not valid UTF-8: give it as UTF-8 text") from None
    if len(password) > MOODLE_MAX_PASSWORD_CHARS:
        raise UsageError(f"the password has {len(password)} characters; Moodle never accepts more "
                         f"than {MOODLE_MAX_PASSWORD_CHARS}")
    if len(encoded) > BCRYPT_MAX_PASSWORD_BYTES:
        raise UsageError(f"the password is {len(encoded)} bytes in UTF-8; bcrypt "
                         f"uses at most {BCRYPT_MAX_PASSWORD_BYTES}: choose a shorter one")


def moodle_bcrypt_hash(password: str, cost: int = DEFAULT_BCRYPT_COST) -> str:
    """A bcrypt hash in PHP's ``$2y$`` form: what Moodle's password_hash() writes and what
    every Moodle since 2.7 accepts.  Moodle 5.0 rewrites it to its own format at the first
    login, so later logins stay cheap (``$2b$``, Python's default, is never rewritten and
    is checked twice at every login)."""
    import bcrypt

    hashed = bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=cost)).decode("ascii")
    return "$2y$" + hashed[4:]  # $2b$ and $2y$ are the same algorithm


def hash_interruptibly(password: str, cost: int) -> str:
    """The hash, computed in a thread: the main thread stays free to take Ctrl-C at once,
    however high the cost (a signal handler runs only in the main thread, between calls)."""
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(moodle_bcrypt_hash(password, cost)), daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.05)
    if not result:
        raise UsageError("bcrypt could not hash the password")
    return result[0]


def read_secret_file(path: str, what: str) -> str:
    """The first line of a file ("-": standard input), without its line ending."""
    try:
        if path == "-":
            line = sys.stdin.readline()
        else:
            with open(path, encoding="utf-8") as handle:
                line = handle.readline()
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not UTF-8 text") from None
    except OSError as error:
        raise UsageError(f"cannot read {what} {path}: {error.strerror}") from None
    return line.rstrip("\r\n")


def resolve_password(args: argparse.Namespace, config: dict[str, Any]) -> str:
    """--password-file, then --password (seen by every user in ps: it warns), then
    $MOODLE_TEST_PASSWORD, then the password already in config.json, then a prompt on a
    terminal."""
    password = None
    if args.password_file:
        password = read_secret_file(args.password_file, "--password-file")
    elif args.password is not None:
        print(f"[WARN] --password is visible to every user of this machine (ps): prefer --password-file "
              f"or ${PASSWORD_ENV}")
        password = args.password
    elif os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    elif stored_password(config):
        password = stored_password(config)
    elif sys.stdin is not None and sys.stdin.isatty() and not args.dry_run:
        password = getpass.getpass("New password for the test users: ")
        if getpass.getpass("The same again: ") != password:
            raise UsageError("the two passwords differ: nothing was changed")
    if not password:
        raise UsageError(f"no password given: use --password-file FILE, set {PASSWORD_ENV}, or keep one in "
                         f"{args.config} (--password works too, but shows in ps)")
    check_password(password)
    return password
