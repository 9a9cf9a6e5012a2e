"""Every exit status of every entry point, in one place, and the one error that means "fix
the input".  moodle_load.py and the helpers a bisect or a scan runs (the scan, the sizing,
the change points) end with the statuses git bisect reads; set_moodle_passwords.py and the
config.php reader end as set-up tools do, for a shell script or a person to read."""

import signal

# ---- moodle_load.py, the scan, the sizing and the change points: what git bisect reads
EXIT_GOOD = 0
EXIT_BAD = 1
EXIT_CANNOT_JUDGE = 125  # git bisect skips the commit
EXIT_USAGE = 128  # git bisect stops: the tool was used wrongly, the commit says nothing
EXIT_FAULT = 200  # git bisect stops: the tool itself failed (or could not save what it measured)
EXIT_UNREACHABLE = 201  # git bisect stops: the site could not be reached, or the generator could not open sockets
EXIT_SIGHUP = 129  # the shell's 128 + signal number, for the signals that stop a run
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# ---- set_moodle_passwords.py and ``python -m moodleload.database.moodleconfig``: set-up tools
SETUP_DONE = 0
SETUP_DATABASE_PROBLEM = 1  # unreachable, authentication, permissions, wrong prefix, bad --where
SETUP_USAGE = 2  # a usage or input mistake (a UsageError)
SETUP_NO_USERS = 3  # no account matched: nothing was changed
# ...and 128 + signal when interrupted, as moodle_load.py (exit_for_signal).


def exit_for_signal(signum: int) -> int:
    """The exit status of a run stopped by ``signum``, as a shell reports it."""
    return 128 + signum


class UsageError(Exception):
    """A mistake in the command line, config or input files: one line, exit EXIT_USAGE (128),
    or SETUP_USAGE (2) in the set-up tools."""


class Stopped(Exception):
    """A stopping signal (SIGTERM, SIGHUP) reached a command that ends it the way Ctrl-C
    ends it: what is not committed rolled back, the children stopped, the checkout put back."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_stopped(signum: int, frame: object) -> None:
    """A signal handler that turns the signal into Stopped where the command is."""
    raise Stopped(signum)
