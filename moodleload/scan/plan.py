"""The arithmetic of a range scan, pure: which commits it measures, how the steps found
group into bisects, which of its own runs serve as a bisect's baseline, the bisect's
tolerances, and what git bisect's and the confirmation's output say.  runner.py does the I/O."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from moodleload.exits import EXIT_BAD, EXIT_GOOD, UsageError
from moodleload.judging.compare import Thresholds
from moodleload.scan.changepoints import Direction, Found

REGRESSION, IMPROVEMENT = Direction.REGRESSION, Direction.IMPROVEMENT
TERMS = {REGRESSION: ("good", "bad"), IMPROVEMENT: ("slow", "fast")}  # git bisect's old and new terms
SCAN_FORMAT = 1


@dataclass(frozen=True)
class Interval:
    """Positions (in the list of measured commits) of the two commits a step lies between,
    what way it went, and the series that stepped there."""

    before: int
    after: int
    direction: Direction
    found: tuple[Found, ...]


def picked_positions(count: int, stride: int) -> list[int]:
    """The commits a scan measures: every ``stride``-th of ``count`` and always the last."""
    return [index for index in range(count) if index % stride == 0 or index == count - 1]


def intervals_of(found: list[Found]) -> list[Interval]:
    """One bisect per interval and direction: pages that stepped between the same two
    commits the same way are most likely one commit's doing; a slower and a faster page
    between the same two commits are two bisects."""
    groups: dict[tuple[int, int, Direction], list[Found]] = {}
    for item in found:
        groups.setdefault((item.step.before, item.step.after, item.direction), []).append(item)
    return [Interval(before, after, direction, tuple(items))
            for (before, after, direction), items in sorted(groups.items(), key=lambda pair: (pair[0][1], pair[0][2]))]


def baseline_positions(interval: Interval, intervals: list[Interval], count: int, wanted: int) -> list[int]:
    """The measured commits whose runs serve as the bisect's baseline: the level the bisect
    compares with (the old one for a regression, the new one for an improvement), the
    ``wanted`` nearest the step, never across another step of any series (a step elsewhere
    in the baseline would widen that page's spread or mix its DB reads)."""
    if interval.direction == REGRESSION:
        start = max((other.after for other in intervals if other.after <= interval.before), default=0)
        return list(range(start, interval.before + 1))[-wanted:]
    end = min((other.before for other in intervals if other.before >= interval.after), default=count - 1)
    return list(range(interval.after, end + 1))[:wanted]


def bisect_tolerances(interval: Interval, max_regression_pct: float, max_reads: float) -> tuple[float, float]:
    """(max regression %, max DB reads increase) for the bisect of ``interval``: half the step
    where that is smaller than the configured value, so that a commit on either level is as
    far from the line as the other (a tolerance above the step would call the new level good)."""
    times = [math.expm1(abs(item.step.change) / 2) * 100 for item in interval.found if not item.counter]
    reads = [abs(item.step.change) / 2 for item in interval.found if item.counter]
    return round(min([max_regression_pct, *times]), 2), round(min([max_reads, *reads]), 2)


def configured_tolerances(load_args: str) -> tuple[float, float]:
    """--max-regression and --max-db-reads-increase as LOAD_ARGS sets them (the last wins, as
    in moodle_load.py), else moodle_load.py's defaults."""
    defaults = Thresholds()
    values = {"--max-regression": defaults.max_regression_pct, "--max-db-reads-increase":
              defaults.max_db_reads_increase}
    words = load_args.split()
    for position, word in enumerate(words):
        flag, _, inline = word.partition("=")
        if flag in values:
            text = inline or (words[position + 1] if position + 1 < len(words) else "")
            try:
                values[flag] = float(text)
            except ValueError:
                raise UsageError(f"LOAD_ARGS: {flag} needs a number, not {text!r}") from None
    return values["--max-regression"], values["--max-db-reads-increase"]


FIRST_COMMIT = re.compile(r"^([0-9a-f]{40}) is the first (\w+) commit", re.MULTILINE)


def first_commit(bisect_output: str, direction: Direction) -> str | None:
    """The commit ``git bisect run`` named, or None when it ended among skipped commits."""
    for commit, term in FIRST_COMMIT.findall(bisect_output):
        if term == TERMS[direction][1]:
            return commit
    return None


CONFIRMATIONS = {0: "confirmed", 1: "not confirmed", 125: "cannot tell"}

# A step's outcome.json as bisect_interval writes it: key -> the types its value may have.
OUTCOME_FIELDS = {"interval": (list,), "direction": (str,), "steps": (list,), "max_regression_pct": (int, float),
                  "max_db_reads_increase": (int, float), "baseline": (list, type(None)),
                  "commit": (str, type(None)), "subject": (str, type(None)),
                  "confirmation": (str, type(None)), "reasons": (list,)}


@dataclass(frozen=True)
class StepOutcome:
    """What the bisect of one step found: the two measured commits around it, which way it
    went, the series that stepped, the tolerances the bisect ran with, its baseline, the
    commit it named and what the confirmation said.  Kept in the step's folder (outcome.json)
    and in scan.json; ``from_dict`` reads it after ``outcome_problem`` found nothing wrong."""

    interval: tuple[str, str]
    direction: Direction
    steps: tuple[str, ...]
    max_regression_pct: float
    max_db_reads_increase: float
    baseline: tuple[str, ...] | None = None
    commit: str | None = None
    subject: str | None = None
    confirmation: str | None = None
    reasons: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StepOutcome:
        return cls((raw["interval"][0], raw["interval"][1]), Direction(raw["direction"]), tuple(raw["steps"]),
                   raw["max_regression_pct"], raw["max_db_reads_increase"],
                   None if raw["baseline"] is None else tuple(raw["baseline"]), raw["commit"], raw["subject"],
                   raw["confirmation"], tuple(raw["reasons"]))

    def to_dict(self) -> dict[str, Any]:
        return {"interval": list(self.interval), "direction": str(self.direction), "steps": list(self.steps),
                "max_regression_pct": self.max_regression_pct, "max_db_reads_increase": self.max_db_reads_increase,
                "baseline": None if self.baseline is None else list(self.baseline), "commit": self.commit,
                "subject": self.subject, "confirmation": self.confirmation, "reasons": list(self.reasons)}

    @property
    def confirmed(self) -> bool:
        return self.confirmation == "confirmed"


def outcome_problem(outcome: Any) -> str | None:
    """What is wrong with a saved step outcome (a scan reads it instead of bisecting the step
    again), or None: what it reads must be what it wrote."""
    if not isinstance(outcome, dict):
        return "not an object"
    for key, types in OUTCOME_FIELDS.items():
        value = outcome.get(key)
        if key not in outcome or isinstance(value, bool) or not isinstance(value, types):
            return f"{key} is missing or of the wrong type"
    if outcome["direction"] not in TERMS:
        return "direction is neither regression nor improvement"
    texts = [*outcome["interval"], *outcome["steps"], *outcome["reasons"], *(outcome["baseline"] or [])]
    if len(outcome["interval"]) != 2 or not all(isinstance(text, str) for text in texts):
        return "interval, steps, baseline and reasons must be lists of text"
    if outcome["commit"] is not None and not re.fullmatch(r"[0-9a-f]{40}", outcome["commit"]):
        return "commit is not a commit id"
    return None


def verdict_lines(output: str) -> list[str]:
    return [line.removeprefix("[VERDICT]").strip() for line in output.splitlines() if line.startswith("[VERDICT]")]


def scan_exit(outcomes: list[StepOutcome]) -> int:
    """0 when every step's commit was named and confirmed (or there was no step), 1 when one
    was not: the report says which and why."""
    return EXIT_GOOD if all(outcome.confirmed for outcome in outcomes) else EXIT_BAD
