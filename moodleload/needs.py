"""The Python packages a command needs, checked before it does anything: a python without
them (the system python3 instead of the toolkit's venv, say) is a setup mistake with a
one-line fix, never a fault of the tool nor a verdict on a commit."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping

from moodleload.exits import UsageError

# module -> what pip installs it as (requirements.txt); a database family names its driver's itself
PIP_NAMES = {"aiohttp": "aiohttp", "httptools": "httptools", "bcrypt": "bcrypt"}
# Where the package is imported from: the repository (examples/, requirements.txt beside it), or
# the one-file build (a zip on sys.path).  The one place a path is worked out from __file__, so
# moving a module into another wing cannot move it.
IMPORT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(IMPORT_ROOT, "requirements.txt")


def have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(modules: Iterable[str], why: str, pip_names: Mapping[str, str] | None = None) -> None:
    """Refuse, with the install command, when any of ``modules`` is missing (``pip_names``:
    what pip installs modules not in PIP_NAMES as)."""
    missing = [module for module in modules if not have(module)]
    if missing:
        known = {**PIP_NAMES, **(pip_names or {})}
        names = " ".join(known.get(module, module) for module in missing)
        where = f"-r {REQUIREMENTS}" if os.path.exists(REQUIREMENTS) else names
        raise UsageError(f"{why} needs the Python package{'s' if len(missing) > 1 else ''} {names}, which "
                         f"{sys.executable} does not have: {sys.executable} -m pip install {where} (or use the "
                         f"toolkit's venv: make creates .venv; for bisect-step.sh, PYTHON=.venv/bin/python)")
