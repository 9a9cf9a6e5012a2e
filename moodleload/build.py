"""One file to copy: ``python -m moodleload.build`` writes dist/moodle_load.pyz and
dist/set_moodle_passwords.pyz, zipapps of this package that run as the two scripts do
(``python moodle_load.pyz --config ...``).  The runtime requirements (aiohttp, httptools,
psycopg2-binary, bcrypt, uvloop) hold C extensions a zip cannot carry: install them on the
box as requirements.txt says."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import zipapp

PACKAGE = os.path.dirname(os.path.abspath(__file__))
ENTRIES = {"moodle_load.pyz": "moodleload.cli:main", "set_moodle_passwords.pyz": "moodleload.database.passwords:main"}


def build(target: str, entry: str) -> str:
    """Write the zipapp ``target`` whose __main__ calls ``entry`` (module:function)."""
    module, function = entry.split(":")
    with tempfile.TemporaryDirectory(prefix="moodleload-build-") as staging:
        shutil.copytree(PACKAGE, os.path.join(staging, "moodleload"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        with open(os.path.join(staging, "__main__.py"), "w", encoding="utf-8") as handle:
            handle.write(f"import sys\n\nfrom {module} import {function}\n\nsys.exit({function}())\n")
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        zipapp.create_archive(staging, target, interpreter="/usr/bin/env python3", compressed=True)
    return target


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = argv[0] if argv else "dist"
    for name, entry in ENTRIES.items():
        print(f"[INFO] wrote {build(os.path.join(folder, name), entry)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
