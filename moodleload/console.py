"""Where messages go, and the small number formats they use."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TextIO


class Printer:
    """Where messages go.  Quiet keeps only what needs a person: errors and warnings.  On a
    terminal a live status line rewrites itself under the messages; in logs (CI, git bisect)
    there is none, only the [PROGRESS] lines."""

    CLEAR = "\r\033[K"

    def __init__(self, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.live = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.shown = ""

    def __call__(self, line: str) -> None:
        if not self.quiet or line.startswith(("[ERROR]", "[WARN]")):
            if self.shown:
                self.stream.write(self.CLEAR)
            # page names, statements and releases are others' text: no escape sequence acts
            print("\n".join(map(printable, line.split("\n"))), file=self.stream, flush=not self.shown)
            if self.shown:
                self.stream.write(self.shown)
                self.stream.flush()

    def status(self, line: str) -> None:
        line = printable(line)
        self.shown = line
        self.stream.write(self.CLEAR + line)
        self.stream.flush()

    def end_status(self) -> None:
        if self.shown:
            self.stream.write(self.CLEAR)
            self.stream.flush()
            self.shown = ""


def clock_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def round_or_none(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def fmt(value: float | None, pattern: str = ".1f") -> str:
    return "-" if value is None else format(value, pattern)


def silence_closed_stdout() -> None:
    """After a BrokenPipeError (| head): point standard output at /dev/null, so the flush
    Python makes at exit cannot fail a second time with a traceback."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def ruled(pct: float | None) -> str:
    """A "rules out" cell: slowdowns above this many percent are ruled out."""
    return "-" if pct is None else f">{pct:.1f}%"


def printable(text: object) -> str:
    """Text from the site, the database or a results file, safe for a terminal and a log:
    control characters (an escape sequence would act on the terminal) become "?"."""
    return "".join(character if character.isprintable() else "?" for character in str(text))
