"""Files written whole or not at all: both scripts, results and reports share these."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from typing import Any, BinaryIO

from moodleload.exits import UsageError


def json_text(document: object, indent: int = 2) -> str:
    return json.dumps(document, indent=indent, ensure_ascii=False) + "\n"


def prepare_file(path: str, text: str, mode: int | None = None) -> str:
    """Write ``text`` to a temp file beside ``path`` (flushed to disk, ``mode`` set before
    anything is written) and return its name.  The caller renames it into place with
    ``os.replace`` (so readers never see half a file) or removes it."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}-", suffix=".tmp", dir=directory)
    try:
        if mode is not None:
            os.fchmod(handle, mode)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary


def write_atomically(path: str, text: str, mode: int | None = None) -> None:
    """``path`` holds ``text`` afterwards, or is as it was: never half-written."""
    temporary = prepare_file(path, text, mode)
    try:
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_json_atomically(path: str, document: object, mode: int | None = None, indent: int = 2) -> None:
    write_atomically(path, json_text(document, indent), mode)


MAX_JSON_BYTES = 64 * 1024 * 1024  # a day-long run's results are a few MB; a config with 100,000 users ~10 MB


def read_json(path: str, what: str, limit: int = MAX_JSON_BYTES) -> Any:
    """The parsed JSON of ``path``; a file that is not UTF-8 JSON, is over ``limit`` bytes
    (checked before it is read), or is nested beyond reason, is a UsageError naming ``what``
    it should have been.  FileNotFoundError is left to the caller, which knows what a missing
    file means."""
    try:
        with open_regular(path, what) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                raise UsageError(f"{what}: {path} is {size / 1048576:.0f} MB, over the {limit // 1048576} MB a "
                                 f"{what} file can be: is it the right file?")
            data = handle.read(limit + 1)
            if len(data) > limit:  # a file that grew, or a pipe: never more than the limit in memory
                raise UsageError(f"{what}: {path} is over the {limit // 1048576} MB a {what} file can be")
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise UsageError(f"{what}: {path} is a folder, not a file") from None
    except OSError as error:
        raise UsageError(f"{what}: cannot read {path}: {error.strerror}") from None
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise UsageError(f"{what}: {path} is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{what}: {path} is not valid JSON: {error.msg} at line {error.lineno} "
                         f"column {error.colno}") from None
    except RecursionError:
        raise UsageError(f"{what}: {path} is nested too deeply to be a {what} file") from None


def open_regular(path: str, what: str) -> BinaryIO:
    """``path`` opened for reading in binary, when it is a regular file.  A named pipe with no
    writer would block the opening for ever, and a device never ends: both are refused, and
    the opening itself never waits (O_NONBLOCK, which a regular file ignores)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(mode):
            raise UsageError(f"{what}: {path} is not a regular file (a pipe or a device): give a saved file")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def check_writable(path: str, option: str) -> None:
    """Refuse now, before any load or database change, a file that could not be written at
    the end: a missing or unwritable folder, a folder in its place, a read-only file (also
    for root, whom the permission bits do not stop: read-only was meant)."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{option} {path} is a folder: give a file name")
    if os.path.exists(path) and not os.path.isfile(path):
        # Written by renaming a new file over it: a pipe or a device (/dev/null) would be replaced.
        raise UsageError(f"{option} {path} is not a regular file (a pipe or a device): give a file name")
    if not os.path.isdir(directory):
        raise UsageError(f"cannot write {option} {path}: the folder {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {option} {path}: the folder {directory} is not writable")
    if os.path.exists(path) and (not os.access(path, os.W_OK) or not os.stat(path).st_mode & 0o200):
        raise UsageError(f"{option} {path} is read-only: make it writable (chmod u+w) or give another file")


def check_output_path(path: str, option: str, others: dict[str, str]) -> None:
    """``check_writable``, and not the same file as an input (``others``: option -> path)
    that writing it would destroy."""
    check_writable(path, option)
    for other_option, other in others.items():
        if other and (os.path.abspath(other) == os.path.abspath(path)
                      or (os.path.exists(other) and os.path.exists(path) and os.path.samefile(path, other))):
            raise UsageError(f"{option} {path} is the same file as {other_option}: writing it would destroy it")
