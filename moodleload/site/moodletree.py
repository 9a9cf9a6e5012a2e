"""The Moodle under test, read from its code tree (``--moodle-dir``): the layout (since 5.1,
MDL-83424, the code lives under public/ and config.php stays at the top), the release and
version from version.php, and the git commit with whether the tree had uncommitted changes.
Recorded in every result so a comparison can say when its two sides ran different code."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from moodleload.exits import UsageError


class Layout(StrEnum):
    """Where a Moodle tree keeps its web code (version.php with it); saved as its text."""

    PUBLIC = "5.1+: web code under public/"  # MDL-83424; config.php stays at the top
    TOP = "up to 5.0: code at the top"

    @property
    def code_folder(self) -> str:
        """The folder of the tree that holds the code, from its top."""
        return "public" if self is Layout.PUBLIC else "."


_ASSIGNMENT = re.compile(r"^\s*\$(version|release|branch)\s*=\s*(?:'([^']*)'|\"([^\"]*)\"|([0-9.]+))\s*;", re.M)


@dataclass(frozen=True)
class MoodleUnderTest:
    """What --moodle-dir recorded of the Moodle under test (moodletree.describe)."""

    release: str | None = None
    version: str | None = None
    branch: str | None = None
    layout: str | None = None  # a Layout's text, as the run saved it
    commit: str | None = None
    uncommitted_changes: bool | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> MoodleUnderTest | None:
        if not raw:
            return None
        return cls(raw.get("release"), raw.get("version"), raw.get("branch"), raw.get("layout"), raw.get("commit"),
                   raw.get("uncommitted_changes"))

    def to_dict(self) -> dict[str, Any]:
        return {"release": self.release, "version": self.version, "branch": self.branch, "layout": self.layout,
                "commit": self.commit, "uncommitted_changes": self.uncommitted_changes}

    @property
    def label(self) -> str:
        """One line naming it: release, version and commit."""
        parts = [self.release or "release unknown"]
        if self.version:
            parts.append(f"version {self.version}")
        if self.commit:
            parts.append(f"commit {self.commit[:12]}" + (" with uncommitted changes" if self.uncommitted_changes
                                                         else ""))
        return ", ".join(parts)


def code_root(moodle_dir: str) -> tuple[str, Layout] | None:
    """(folder holding Moodle's code, its layout), or None for a tree of neither layout."""
    for layout in Layout:  # the newer first: a 5.1+ tree keeps no version.php at the top
        if os.path.isfile(os.path.join(moodle_dir, layout.code_folder, "version.php")):
            return os.path.normpath(os.path.join(moodle_dir, layout.code_folder)), layout
    return None


def parse_version_php(text: str) -> dict[str, str]:
    """$version, $release and $branch as version.php assigns them (plain literals only:
    nothing is executed)."""
    found: dict[str, str] = {}
    for match in _ASSIGNMENT.finditer(text):
        found.setdefault(match.group(1), next(group for group in match.groups()[1:] if group is not None))
    return found


def _git(moodle_dir: str, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", moodle_dir, *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def bisect_in_progress(folder: str) -> bool:
    """Whether a git bisect is under way in the repository holding ``folder``."""
    path = _git(folder, "rev-parse", "--git-path", "BISECT_START")
    if not path:
        return False
    return os.path.isfile(path if os.path.isabs(path) else os.path.join(folder, path))


def describe(moodle_dir: str) -> MoodleUnderTest:
    """What the results record of the Moodle under test; a one-line UsageError when the
    folder is not a Moodle tree of either layout."""
    if not os.path.isdir(moodle_dir):
        raise UsageError(f"--moodle-dir {moodle_dir} is not a folder")
    found = code_root(moodle_dir)
    if found is None:
        raise UsageError(f"--moodle-dir {moodle_dir} holds neither public/version.php (Moodle 5.1+) nor version.php "
                         f"(up to 5.0): give the top of the Moodle checkout, where config.php is")
    root, layout = found
    try:
        with open(os.path.join(root, "version.php"), encoding="utf-8", errors="replace") as handle:
            values = parse_version_php(handle.read(200_000))
    except OSError as error:
        raise UsageError(f"cannot read {os.path.join(root, 'version.php')}: {error.strerror}") from None
    commit = _git(moodle_dir, "rev-parse", "HEAD")
    changes = _git(moodle_dir, "status", "--porcelain", "--untracked-files=no") if commit else None
    return MoodleUnderTest(values.get("release"), values.get("version"), values.get("branch"), layout, commit,
                           None if changes is None else bool(changes))
