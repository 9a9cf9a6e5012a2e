"""The results of a run, as a typed model that owns its saved form (pyperf's lesson: the
data model owns its JSON).  ``Results.from_dict`` checks a saved document whole
(``check``) and builds the typed sections; ``to_dict`` gives it back with its summary;
``Results.merge`` adds shards after checking they ran one load; ``summary`` is computed
once.  The reports, the comparison and the verdict read these fields, never the keys."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, TypeVar

from moodleload.config import PAGE_ROW
from moodleload.exits import UsageError
from moodleload.files import read_json, write_json_atomically
from moodleload.results.check import document_problem
from moodleload.results.comparison import Comparison
from moodleload.results.merge import check_mergeable, merged_machine
from moodleload.results.metrics import Metrics
from moodleload.results.sections import Generator, Logins, Machine, Metadata, Timeline, UrlRecord, added_tallies
from moodleload.results.statements import Statements
from moodleload.results.summary import Summary, summarize
from moodleload.site.moodletree import MoodleUnderTest

# Format history (a reader refuses formats it does not know):
#   1  moodle_load.py 0.2-0.4: metadata, logins, generator, per-URL counts, histograms of
#      response and service time, per-block service histograms, footer tallies, timeline.
#      0.3 added metadata.http_client; 0.4 dropped metadata.moodle_release (it was
#      always null), added logins.retried and the urls' blocks_service_fine_ms (each
#      block's service times again in 0.2 % buckets).  0.5 added work_done (what the
#      journeys' successful writes counted; absent or {} without journeys) and rows for
#      journey steps and web-service calls among the urls.  0.7 added generator.due_in_window
#      and generator.paused_s (what was asked, and how long the generator stood still).
#      0.7 also added statements (--query-stats: per-statement deltas of the window) and
#      metrics (--metrics: the servers' exporters as a timeline).
#      0.7 also added row_kinds (page, journey step or web-service call: the reports' headings),
#      the footer tallies cpu_ticks and cpu_unreadable and the urls' blocks_cpu_ticks (the
#      PHP worker's CPU time per answer, per block).
#      Readers take all of them.
RESULTS_FORMAT = 1

Section = TypeVar("Section")

@dataclass(eq=False)
class Results:
    """One run's results (or a merge of its shards): typed sections, and nothing else.  The
    saved form is what ``to_dict`` makes of them; ``from_dict`` checks a document before
    reading it."""

    metadata: Metadata
    logins: Logins
    generator: Generator
    urls: dict[str, UrlRecord]
    row_kinds: dict[str, str] = field(default_factory=dict)  # page, journey step or web-service call (0.7+)
    work_done: dict[str, int] = field(default_factory=dict)  # what the journeys' writes counted (0.5+)
    timeline: Timeline = field(default_factory=Timeline)
    machine: Machine | None = None  # the load machine beside the run (load.machine.summarise)
    metrics: Metrics | None = None  # the servers' exporters (--metrics)
    statements: Statements | None = None  # the database's statement statistics (--query-stats)
    comparison: Comparison | None = None  # compare's verdict against a baseline, where one was judged

    @classmethod
    def from_dict(cls, raw: object, where: str = "results") -> Results:
        if not isinstance(raw, dict) or raw.get("tool", "moodle_load.py") != "moodle_load.py" or "urls" not in raw:
            raise UsageError(f"{where} is not a moodle_load.py results file (format {RESULTS_FORMAT})")
        if raw.get("format") != RESULTS_FORMAT:
            raise UsageError(f"{where} has format {raw.get('format')!r}; this moodle_load.py "
                             f"reads format {RESULTS_FORMAT}")
        problem = document_problem(raw)
        if problem:
            raise UsageError(f"{where} is damaged: {problem}")
        comparison = raw.get("comparison")
        return cls.read_checked(raw, None if comparison is None
                                else Comparison.from_dict(comparison, f"{where}: its comparison"))

    @classmethod
    def read_checked(cls, raw: dict[str, Any], comparison: Comparison | None = None) -> Results:
        """The typed form of a document ``document_problem`` found nothing wrong with."""
        return cls(Metadata.from_dict(raw["metadata"]), Logins.from_dict(raw["logins"]),
                   Generator.from_dict(raw["generator"]),
                   {name: UrlRecord.from_dict(url) for name, url in raw["urls"].items()},
                   row_kinds=dict(raw.get("row_kinds") or {}), work_done=dict(raw.get("work_done") or {}),
                   timeline=Timeline.from_dict(raw.get("timeline", {"seconds": 1.0, "points": []})),
                   machine=_optional(Machine.from_dict, raw.get("machine")),
                   metrics=_optional(Metrics.from_dict, raw.get("metrics")),
                   statements=_optional(Statements.from_dict, raw.get("statements")), comparison=comparison)

    def measured(self) -> dict[str, Any]:
        """The saved form of what the run measured: everything but what readers derive."""
        saved: dict[str, Any] = {"format": RESULTS_FORMAT, "tool": "moodle_load.py",
                                 "metadata": self.metadata.to_dict(),
                                 "machine": None if self.machine is None else self.machine.to_dict(),
                                 "logins": self.logins.to_dict(), "generator": self.generator.to_dict(),
                                 "urls": {name: record.to_dict() for name, record in self.urls.items()},
                                 "row_kinds": dict(self.row_kinds)}
        if self.statements is not None:
            saved["statements"] = self.statements.to_dict()
        if self.metrics is not None:
            saved["metrics"] = self.metrics.to_dict()
        saved["work_done"] = dict(self.work_done)
        saved["timeline"] = self.timeline.to_dict()
        return saved

    def to_dict(self) -> dict[str, Any]:
        """The saved form: what was measured, its summary, and the comparison where there is one."""
        document = self.measured()
        document["summary"] = self.summary.to_dict()
        if self.comparison is not None:
            document["comparison"] = self.comparison.to_dict()
        return document

    @cached_property
    def summary(self) -> Summary:
        return summarize(self.metadata.rpm, self.metadata.measured_seconds, self.generator.sent_in_window,
                         self.urls, self.work_done)

    def row_kind(self, name: str) -> str:
        return self.row_kinds.get(name, PAGE_ROW)  # results before 0.7 know only pages

    def with_moodle(self, moodle: MoodleUnderTest) -> Results:
        """These results with the Moodle under test recorded (--moodle-dir)."""
        return replace(self, metadata=replace(self.metadata, moodle=moodle))

    @classmethod
    def merge(cls, shards: list[Results]) -> Results:
        """The shards of one run as one run (--shard K/N on several machines, --processes):
        counts and histograms add up, the rate targets add up, the measured time is the
        longest; refuses runs of different loads or a shard twice (merge.check_mergeable)."""
        check_mergeable([shard.metadata for shard in shards])
        merged, *others = shards
        for other in others:
            urls = dict(merged.urls)
            for name, record in other.urls.items():
                urls[name] = urls[name].added(record) if name in urls else record
            merged = replace(
                merged, metadata=merged.metadata.added(other.metadata), logins=merged.logins.added(other.logins),
                generator=merged.generator.added(other.generator), urls=urls,
                timeline=merged.timeline.added(other.timeline),
                # One shard scrapes the servers for all; each snapshot of the statistics saw the
                # whole database, every shard's queries: one of them is the run's.
                metrics=merged.metrics or other.metrics, statements=merged.statements or other.statements,
                row_kinds={**other.row_kinds, **merged.row_kinds},
                work_done=added_tallies(merged.work_done, other.work_done))
        merged = replace(merged, machine=merged_machine([(shard.metadata, shard.generator, shard.machine)
                                                        for shard in shards]), comparison=None)
        problem = document_problem(merged.measured())
        if problem:  # what no reader would take back (a sum beyond reason): never written
            raise UsageError(f"merge: the merged results would be damaged ({problem}): merge shards of one run only")
        return merged

    def identity(self) -> str:
        """What makes a run that run: a digest of all it measured.  Two files with one
        identity are one run (a copy, or one file named twice), and count once."""
        return hashlib.sha256(json.dumps(self.measured(), sort_keys=True).encode()).hexdigest()


def _optional(read: Callable[[dict[str, Any]], Section], raw: dict[str, Any] | None) -> Section | None:
    """An optional section read where the document has it."""
    return None if raw is None else read(raw)


def load_document(path: str) -> Results:
    """A saved results file, checked whole: every field a comparison, merge or report reads
    is there with its type, so a bad file is one line now, not a crash later."""
    try:
        document = read_json(path, "results")
    except FileNotFoundError:
        raise UsageError(f"results: {path} not found") from None
    return Results.from_dict(document, f"results: {path}")


def check_distinct(documents: dict[str, Results]) -> None:
    """Refuse runs given twice (``documents``: label -> Results): each run is one
    observation of the run-to-run spread, and a copy would shrink it to nothing."""
    seen: dict[str, str] = {}
    for label, results in documents.items():
        identity = results.identity()
        if identity in seen:
            started = results.metadata.started_at or "at an unknown time"
            raise UsageError(f"{seen[identity]} and {label} are the same run (started {started}): each run "
                             f"counts once; give each results file once, or record another run")
        seen[identity] = label


def save_document(path: str, results: Results) -> None:
    write_json_atomically(path, results.to_dict(), indent=1)
