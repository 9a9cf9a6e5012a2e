"""The site brought to the checked-out commit before every run: the same database state (the
snapshot restored by its database family, or RESTORE_CMD) and the commit's code live (its
own upgrade and cache purge, in whichever layout the commit has, then RELOAD_CMD).

A fault of the machine (the snapshot, the database, PHP's reload) is no verdict on the
commit: it stops the bisect (128) instead of skipping every commit after it.  A commit
whose upgrade fails cannot be tested (125)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from moodleload.bisect.settings import StepEnd, StepSettings, stop
from moodleload.database.families import DBTYPE_NAMES, MOODLE_DBTYPES, database_for
from moodleload.database.family import Settings
from moodleload.database.moodleconfig import client_settings
from moodleload.exits import EXIT_CANNOT_JUDGE, UsageError

Say = Callable[[str], None]

def skip(message: str) -> StepEnd:
    """This commit cannot be tested (125): git bisect skips it."""
    return StepEnd(EXIT_CANNOT_JUDGE, f"cannot test this commit: {message}")


def machine_fault(message: str) -> StepEnd:
    return stop(f"{message}: a fault of the machine, not of this commit; fix it, then run git bisect run again")


def shell(command: str) -> bool:
    """A command the user set (RESTORE_CMD, PREPARE_CMD, ...), run by bash as they wrote it."""
    return subprocess.run(["bash", "-c", command]).returncode == 0


def restore_snapshot(settings: StepSettings, snapshot: str, say: Say) -> bool:
    """The snapshot back, with the settings set_moodle_passwords.py reads (config.php), or
    without MOODLE_CONFIG the client tools' own (PG* variables, ~/.pgpass, ~/.my.cnf)."""
    if settings.moodle_config is not None:
        try:
            family, database = client_settings(settings.moodle_config)
        except UsageError as error:
            print(f"[ERROR] {error}", file=sys.stderr)
            return False
    elif settings.db_type in MOODLE_DBTYPES:  # the database family that restores its snapshots
        family, database = MOODLE_DBTYPES[settings.db_type], Settings()
    else:
        say(f"DB_TYPE {settings.db_type} is not {DBTYPE_NAMES}")
        return False
    problem = database_for(family, database, "bisect-step").restore(snapshot)
    if problem is not None:
        say(problem)
    return problem is None


def php(arguments: list[str], cwd: str) -> bool:
    """A Moodle CLI script of the checked-out commit, its output hidden, its errors shown."""
    try:
        return subprocess.run(["php", *arguments], stdout=subprocess.DEVNULL, cwd=cwd).returncode == 0
    except OSError as error:
        print(f"php: {error.strerror}", file=sys.stderr)
        return False


def code_folder(cwd: str) -> str:
    """Where this commit keeps its CLI scripts: Moodle 5.1 moved its web code into public/
    (config.php stays at the top); 5.1.x kept the CLI scripts at the top (admin/cli/), later
    trees moved them to public/admin/cli/.  A bisect may cross both moves, so each
    checked-out commit's own files decide."""
    if os.path.isfile(os.path.join(cwd, "public", "admin", "cli", "upgrade.php")):
        return "public"
    if os.path.isfile(os.path.join(cwd, "admin", "cli", "upgrade.php")):
        return "."
    raise stop(f"neither public/admin/cli/upgrade.php (Moodle after 5.1.x) nor admin/cli/upgrade.php (up to 5.0, and "
               f"5.1.x) is in {cwd}: cannot prepare this commit; run from the Moodle checkout or set PREPARE_CMD")


def purge_command(cwd: str, code: str) -> list[str]:
    purge = os.path.join(code, "admin", "cli", "purge_caches.php")
    if os.path.isfile(os.path.join(cwd, purge)):
        return [purge]
    if os.path.isfile(os.path.join(cwd, "bin", "moodle")):
        return ["bin/moodle", "admin:purge-caches"]
    raise stop(f"no purge_caches.php in {code}/admin/cli and no bin/moodle: set PREPARE_CMD")


def prepare_site(settings: StepSettings, say: Say, cwd: str) -> None:
    """The same database state and the checked-out code live, before every run."""
    if settings.restore_cmd is not None:
        if not shell(settings.restore_cmd):
            raise machine_fault("RESTORE_CMD failed")
    elif settings.pretest_dump is not None and not restore_snapshot(settings, settings.pretest_dump, say):
        raise machine_fault(f"restoring {settings.pretest_dump} failed")
    if settings.prepare_cmd is not None:
        if not shell(settings.prepare_cmd):
            raise skip("PREPARE_CMD failed")
        return
    code = code_folder(cwd)
    purge = purge_command(cwd, code)
    if not php([os.path.join(code, "admin", "cli", "upgrade.php"), "--non-interactive"], cwd):
        raise skip("upgrade failed")
    if not php(purge, cwd):
        raise skip("purging the caches failed")
    if settings.reload_cmd is not None and not shell(settings.reload_cmd):
        raise machine_fault("RELOAD_CMD failed")
