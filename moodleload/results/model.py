"""The results of a run, as a typed model that owns its saved form (pyperf's lesson: the
data model owns its JSON).  ``Results.from_dict`` checks a saved document whole
(``check``) and builds the typed sections; ``to_dict`` gives it back with its summary;
``Results.merge`` adds shards after checking they ran one load; ``summary`` is computed
once.  The reports, the comparison and the verdict read these fields, never the keys."""

from __future__ import annotations

import copy
import hashlib
import json
from functools import cached_property

from moodleload.config import PAGE_ROW
from moodleload.exits import UsageError
from moodleload.files import read_json, write_json_atomically
from moodleload.results.check import document_problem
from moodleload.results.comparison import Comparison
from moodleload.results.merge import merge_raw
from moodleload.results.sections import Generator, Logins, Metadata, Timeline, UrlRecord
from moodleload.results.summary import Summary, summarize

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

DERIVED_KEYS = ("summary", "comparison")  # recomputed by readers: not part of what a run measured


class Results:
    """One run's results (or a merge of its shards), checked when built."""

    def __init__(self, raw: dict, comparison: Comparison | None = None):
        """``raw``: a document ``document_problem`` found nothing wrong with; use from_dict."""
        self._raw = {key: value for key, value in raw.items() if key not in DERIVED_KEYS}
        self.metadata = Metadata.from_dict(raw["metadata"])
        self.logins = Logins.from_dict(raw["logins"])
        self.generator = Generator.from_dict(raw["generator"])
        self.urls = {name: UrlRecord.from_dict(url) for name, url in raw["urls"].items()}
        self.row_kinds: dict[str, str] = dict(raw.get("row_kinds", {}))
        self.work_done: dict[str, int] = dict(raw.get("work_done") or {})
        self.timeline = Timeline.from_dict(raw.get("timeline", {"seconds": 1.0, "points": []}))
        self.machine: dict | None = raw.get("machine")  # machine.summarise's table (the load machine beside the run)
        self.metrics: dict | None = raw.get("metrics")  # results.metrics checks it (--metrics)
        self.statements: dict | None = raw.get("statements")  # results.statements checks it (--query-stats)
        self.comparison = comparison  # compare's verdict against a baseline, where one was judged

    @classmethod
    def from_dict(cls, raw, where: str = "results") -> Results:
        if not isinstance(raw, dict) or raw.get("tool", "moodle_load.py") != "moodle_load.py" or "urls" not in raw:
            raise UsageError(f"{where} is not a moodle_load.py results file (format {RESULTS_FORMAT})")
        if raw.get("format") != RESULTS_FORMAT:
            raise UsageError(f"{where} has format {raw.get('format')!r}; this moodle_load.py "
                             f"reads format {RESULTS_FORMAT}")
        problem = document_problem(raw)
        if problem:
            raise UsageError(f"{where} is damaged: {problem}")
        comparison = raw.get("comparison")
        return cls(raw, None if comparison is None else Comparison.from_dict(comparison, f"{where}: its comparison"))

    def to_dict(self) -> dict:
        """The saved form: what was measured, its summary, and the comparison where there is one."""
        document = copy.deepcopy(self._raw)
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

    def with_moodle(self, moodle: dict) -> Results:
        """These results with the Moodle under test recorded (--moodle-dir)."""
        raw = copy.deepcopy(self._raw)
        raw["metadata"]["moodle"] = moodle
        return Results(raw, self.comparison)

    @classmethod
    def merge(cls, shards: list[Results]) -> Results:
        """The shards of one run as one run; refuses runs of different loads or a shard twice."""
        return cls(merge_raw([shard._raw for shard in shards]))

    def identity(self) -> str:
        """What makes a run that run: a digest of all it measured.  Two files with one
        identity are one run (a copy, or one file named twice), and count once."""
        return hashlib.sha256(json.dumps(self._raw, sort_keys=True).encode()).hexdigest()


def load_document(path: str) -> Results:
    """A saved results file, checked whole: every field a comparison, merge or report reads
    is there with its type, so a bad file is one line now, not a crash later."""
    try:
        document = read_json(path, "results")
    except FileNotFoundError:
        raise UsageError(f"results: {path} not found") from None
    return Results.from_dict(document, f"results: {path}")


def check_distinct(documents: dict) -> None:
    """Refuse runs given twice (``documents``: label -> Results): each run is one
    observation of the run-to-run spread, and a copy would shrink it to nothing."""
    seen: dict = {}
    for label, results in documents.items():
        identity = results.identity()
        if identity in seen:
            started = results.metadata.started_at or "at an unknown time"
            raise UsageError(f"{seen[identity]} and {label} are the same run (started {started}): each run "
                             f"counts once; give each results file once, or record another run")
        seen[identity] = label


def save_document(path: str, results: Results) -> None:
    write_json_atomically(path, results.to_dict(), indent=1)
