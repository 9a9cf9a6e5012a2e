"""A bisect step's settings, from the environment (``examples/bisect-step.sh --help`` lists
them), read once and checked before anything runs: a mistake in them would otherwise make
every commit "cannot test" (125) and the bisect skip its way to nothing."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from moodleload.exits import EXIT_USAGE, UsageError


class StepEnd(Exception):
    """The step ends here with ``status``, after saying ``message`` (when there is one)."""

    def __init__(self, status: int, message: str | None = None):
        super().__init__(message or f"exit {status}")
        self.status = status
        self.message = message


def stop(message: str) -> StepEnd:
    """A mistake or a fault no commit can be blamed for: it stops the bisect (128)."""
    return StepEnd(EXIT_USAGE, message)


# The flags of moodle_load.py that the baseline's sizing must judge with, as the steps do.
SIZING_FLAGS = ("--max-regression", "--alpha", "--judge", "--max-failure-rise")


@dataclass(frozen=True)
class StepSettings:
    toolkit: str  # the toolkit's top folder (moodle_load.py)
    results_dir: str
    baseline: str  # a single older baseline file, used when results_dir has no baseline-N.json
    load_config: str
    baseline_runs: int
    max_baseline_runs: int
    max_runs: int
    max_step_seconds: int
    pairs: int
    bisect_for: str  # "regression" or "improvement"
    load: tuple[str, ...]  # the load's own flags: the same every run
    load_args: tuple[str, ...]  # LOAD_ARGS, split as a shell splits words
    pretest_dump: str | None
    moodle_config: str | None
    db_type: str
    restore_cmd: str | None
    prepare_cmd: str | None
    reload_cmd: str | None
    cleanup_cmd: str | None

    @property
    def new_term(self) -> str:
        """git bisect's term for the commits after the change (refs/bisect/<new_term>)."""
        return "fast" if self.bisect_for == "improvement" else "bad"

    @property
    def old_term(self) -> str:
        return "slow" if self.bisect_for == "improvement" else "good"

    @property
    def sizing_flags(self) -> dict[str, str]:
        """The tolerance, alpha, judge and failure margin LOAD_ARGS gives the load."""
        flags = {}
        for position, word in enumerate(self.load_args):
            if word in SIZING_FLAGS:
                flags[word] = self.load_args[position + 1] if position + 1 < len(self.load_args) else ""
        return flags


def whole_number(environment: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    """A setting that counts something (runs, pairs, minutes), or a UsageError naming it."""
    text = environment.get(name, "") or str(default)
    if not text.isdigit() or int(text) < minimum:
        raise UsageError(f"{name} must be a whole number of at least {minimum}, not {text!r}")
    return int(text)


def read_settings(environment: Mapping[str, str], toolkit: str, cwd: str) -> StepSettings:
    """The settings a step runs with, or StepEnd(128) naming the one to fix."""
    results_dir = environment.get("RESULTS_DIR") or os.path.join(toolkit, "bisect")
    bisect_for = environment.get("BISECT_FOR") or "regression"
    if bisect_for not in ("regression", "improvement"):
        raise stop("BISECT_FOR must be regression or improvement")
    for name in ("PRETEST_DUMP", "MOODLE_CONFIG"):
        path = environment.get(name)
        if path and not (os.path.isfile(os.path.join(cwd, path)) and os.access(os.path.join(cwd, path), os.R_OK)):
            raise stop(f"{name} {path} is not a readable file: fix the path (relative paths are read from {cwd})")
    load = ("--rpm", environment.get("LOAD_RPM") or "600", "--duration", environment.get("LOAD_DURATION") or "120",
            "--warmup", environment.get("LOAD_WARMUP") or "30",
            "--concurrency", environment.get("LOAD_CONCURRENCY") or "20", "--seed", environment.get("LOAD_SEED") or "1")
    try:
        load_args = tuple(shlex.split(environment.get("LOAD_ARGS") or ""))
    except ValueError as error:
        raise stop(f"LOAD_ARGS cannot be split into flags ({error}): check its quotes") from None
    try:  # MAX_STEP_MINUTES 0: no further run of a step
        counts = {name: whole_number(environment, name, default, minimum) for name, default, minimum in (
            ("BASELINE_RUNS", 3, 1), ("MAX_BASELINE_RUNS", 12, 1), ("MAX_RUNS", 6, 1), ("MAX_STEP_MINUTES", 90, 0),
            ("PAIRS", 4, 1))}
    except UsageError as error:
        raise stop(str(error)) from None
    return StepSettings(
        toolkit=toolkit, results_dir=results_dir,
        baseline=environment.get("BASELINE") or os.path.join(results_dir, "baseline.json"),
        load_config=environment.get("LOAD_CONFIG") or os.path.join(toolkit, "config.json"),
        baseline_runs=counts["BASELINE_RUNS"], max_baseline_runs=counts["MAX_BASELINE_RUNS"],
        max_runs=counts["MAX_RUNS"], max_step_seconds=counts["MAX_STEP_MINUTES"] * 60, pairs=counts["PAIRS"],
        bisect_for=bisect_for, load=load, load_args=load_args,
        pretest_dump=environment.get("PRETEST_DUMP") or None, moodle_config=environment.get("MOODLE_CONFIG") or None,
        db_type=environment.get("DB_TYPE") or "pgsql", restore_cmd=environment.get("RESTORE_CMD") or None,
        prepare_cmd=environment.get("PREPARE_CMD") or None, reload_cmd=environment.get("RELOAD_CMD") or None,
        cleanup_cmd=environment.get("CLEANUP_CMD") or None)
