"""The exit statuses git bisect reads, and the one error that means "fix the input"."""

import signal

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


def exit_for_signal(signum: int) -> int:
    """The exit status of a run stopped by ``signum``, as a shell reports it."""
    return 128 + signum


class UsageError(Exception):
    """A mistake in the command line, config or input files: one line, exit 128."""
