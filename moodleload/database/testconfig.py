"""config.json as set_moodle_passwords.py writes it: read and checked before the database
is touched, updated with the chosen users (and parameters and base_url), and locked so two
runs on one folder cannot interleave."""

from __future__ import annotations

import contextlib
import copy
import fcntl
import glob
import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from moodleload.exits import UsageError
from moodleload.files import read_json
from moodleload.siteurl import EXAMPLE_BASE_URL, without_credentials

DEFAULT_CONFIG = {
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


def config_target(path: str) -> str:
    """The file to write: a symlinked config.json is written through to its target."""
    return os.path.realpath(path) if os.path.islink(path) else path


def read_config(path: str) -> tuple[dict[str, Any], bool]:
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
    for position, user in enumerate(raw.get("users", [])):
        if isinstance(user, dict) and "password" in user and not isinstance(user["password"], str):
            raise UsageError(f"{path}: users[{position}].password is not a string; fix or remove it")
    return raw, True


def stored_password(config: dict[str, Any]) -> str | None:
    """The password the config's users already share, if they share one."""
    passwords = {u["password"] for u in config.get("users", []) if isinstance(u, dict) and "password" in u}
    return passwords.pop() if len(passwords) == 1 else None


def chosen_base_url(config: dict[str, Any], given: str | None, wwwroot: str | None) -> str | None:
    """The site's address for config.json: --base-url, else the config's own (unless it is
    the example's placeholder), else config.php's wwwroot; None when nothing gave one.
    Never a value nobody gave: then none is written (missing_base_url says what to add),
    and moodle_load.py refuses the config in one line until it has one."""
    if given is not None:
        parts = urlsplit(given)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--base-url must be an http:// or https:// address of the site, got "
                             f"{without_credentials(given)!r}")
        return given.rstrip("/")
    current = config.get("base_url")
    if isinstance(current, str) and current and current != EXAMPLE_BASE_URL:
        return current
    if wwwroot:
        return wwwroot.rstrip("/")
    return None


def missing_base_url(path: str) -> str:
    """The one line that says a config was written without the site's address."""
    return (f"[WARN] {path} has no base_url: nothing gave the site's address, so none was written; add "
            f"\"base_url\": \"https://your.site\" (as the load reaches it) to it, or run this again with "
            f"--base-url or --moodle-config (its wwwroot), before moodle_load.py")


class Named(Protocol):
    """An account as the config keeps it: its username (its password is the run's)."""

    @property
    def username(self) -> str: ...


def updated_config(config: dict[str, Any], users: Sequence[Named], password: str,
                   parameters: dict[str, Any] | None = None, base_url: str | None = None) -> dict[str, Any]:
    """The config with ``users`` replaced (and ``parameters`` merged in, and ``base_url``
    set where given); every other key and the order of keys kept."""
    result = dict(config)
    if base_url is not None and "base_url" not in result:
        result = {"base_url": base_url, **result}  # first, where config.example.json has it
    elif base_url is not None:
        result["base_url"] = base_url
    result["users"] = [{"username": user.username, "password": password} for user in users]
    if parameters:
        merged = dict(result.get("parameters", {}))
        merged.update(parameters)
        result["parameters"] = merged
    return result


def leftovers_of(path: str) -> list[str]:
    """Temporary configs an earlier run left beside ``path`` when it was killed outright."""
    directory, name = os.path.split(os.path.abspath(path))
    return sorted(glob.glob(os.path.join(glob.escape(directory), f".{glob.escape(name)}-*.tmp")))


@contextlib.contextmanager
def config_lock(path: str) -> Iterator[None]:
    """One run at a time per folder of config.json (a lock on the folder itself, so no lock
    file is left behind): a second run refuses in one line instead of losing the first
    run's users or parameters."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror} ({directory})") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another set_moodle_passwords.py is writing a config in {directory} right now: "
                             f"wait for it to finish, then run again") from None
        yield
    finally:
        os.close(handle)  # closing releases the lock
