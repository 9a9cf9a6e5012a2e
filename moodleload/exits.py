"""The exit statuses git bisect reads, and the one error that means "fix the input"."""

EXIT_GOOD = 0
EXIT_BAD = 1
EXIT_CANNOT_JUDGE = 125  # git bisect skips the commit
EXIT_USAGE = 128  # git bisect stops: the tool was used wrongly, the commit says nothing
EXIT_FAULT = 200  # git bisect stops: the tool itself failed (or could not save what it measured)
EXIT_SIGHUP = 129
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class UsageError(Exception):
    """A mistake in the command line, config or input files: one line, exit 128."""
