"""The results document: one owner defines it, builds it from a run, validates it when it
is read, saves it, merges it and summarises it.  The text and HTML reports, the comparison
and the verdict only read it (pyperf's lesson: the data model owns its JSON)."""

from __future__ import annotations

import hashlib
import json
import platform
import socket
from collections import Counter
from typing import TYPE_CHECKING

from . import __version__
from .config import CALL_ROW
from .console import round_or_none
from .exits import UsageError
from .files import read_json, write_json_atomically
from .histogram import FineHistogram, Histogram, counter_median
from .resultcheck import document_problem

if TYPE_CHECKING:
    from .scheduler import LoadRun

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
#      0.7 also added row_kinds (page, journey step or web-service call: the reports' headings).
#      Readers take all of them.
RESULTS_FORMAT = 1


def build_document(run: LoadRun, argv: list, config_sha256: str) -> dict:
    settings = run.settings
    recorder = run.recorder
    return {
        "format": RESULTS_FORMAT,
        "tool": "moodle_load.py",
        "metadata": {
            "version": __version__,
            "argv": argv,
            "started_at": run.started_at.isoformat(timespec="seconds") if run.started_at else None,
            "target": run.config.base_url,
            "config_sha256": config_sha256,
            "seed": settings.seed,
            "rpm": settings.rpm / settings.shard[1],
            "duration_s": settings.duration,
            "warmup_s": settings.warmup,
            "measured_seconds": round(run.measured_seconds, 3),
            "blocks": settings.blocks,
            "block_seconds": run.block_seconds,
            "concurrency": run.effective_concurrency,
            "http_client": settings.http_client,
            "shards": [f"{settings.shard[0]}/{settings.shard[1]}"],
            "interrupted": run.interrupted_by is not None,
            "host": socket.gethostname(),
            "python": platform.python_version(),
        },
        "machine": run.machine,
        "logins": {"ok": run.logins_ok, "failed": dict(run.login_failures),
                   "relogins": sum(s.relogins for s in run.sessions), "retried": run.login_retries},
        "generator": {
            "cpu_seconds": round(run.cpu_seconds, 3),
            "run_seconds": round(run.run_seconds, 3),
            "lateness_ms": recorder.lateness.to_dict(),
            "loop_lag_ms": recorder.loop_lag.to_dict(),
            "tokens_waited_for_worker": recorder.tokens_waited,
            "tokens_dropped": recorder.tokens_dropped,
            "tokens_unsent": recorder.tokens_unsent,
            "sent_in_window": recorder.sent_in_window,
            "due_in_window": recorder.due_in_window,
            "paused_s": round(recorder.paused_seconds, 3),
            "request_errors_suppressed": recorder.request_errors_suppressed,
        },
        "urls": {name: stats.to_dict() for name, stats in recorder.urls.items()},
        "row_kinds": row_kinds(run.config, recorder.urls),
        **({"statements": run.window_watch.result}
           if run.window_watch is not None and run.window_watch.result is not None else {}),
        **({"metrics": run.metrics_scraper.result()} if run.metrics_scraper is not None else {}),
        # What the journeys wrote (e.g. replies posted) in the measured window: two runs that
        # did different work are not the same load.
        "work_done": dict(sorted(recorder.work_done.items())),
        "timeline": {"seconds": run.timeline_seconds,
                     "points": [point.to_dict(index, run.timeline_seconds)
                                for index, point in sorted(recorder.timeline.items())]},
    }


def row_kinds(config, names) -> dict:
    """What each row is (page, journey step, web-service call); a row the config does not
    name was a page's browser call, first seen during the run."""
    kinds = config.row_kinds()
    return {name: kinds.get(name, CALL_ROW) for name in names}


def _added(histogram: dict, other: dict, kind: type[Histogram] = Histogram) -> dict:
    """Two saved histograms added together, saved again."""
    return kind.from_dict(histogram).merge(kind.from_dict(other)).to_dict()


def _merge_tallies(into: dict, other: dict) -> None:
    for key, count in other.items():
        into[key] = into.get(key, 0) + count


def merge_documents(documents: list) -> dict:
    """Add the shards of one run together (--shard K/N on several machines, --processes):
    counts and histograms add up, the rate targets add up, the measured time is the longest."""
    if not documents:
        raise UsageError("merge: no results to merge")
    _check_mergeable(documents)
    merged = json.loads(json.dumps(documents[0]))
    merged["machine"] = _merged_machine(documents)
    for other in documents[1:]:
        _merge_metadata(merged, other)
        _merge_generator(merged["generator"], other["generator"])
        merged["timeline"]["points"] = merge_timelines(merged["timeline"]["points"], other["timeline"]["points"])
        for name, raw in other["urls"].items():
            if name in merged["urls"]:
                _merge_url(merged["urls"][name], raw)
            else:
                merged["urls"][name] = json.loads(json.dumps(raw))
    problem = document_problem(merged)
    if problem:  # what no reader would take back (a sum beyond reason): never written
        raise UsageError(f"merge: the merged results would be damaged ({problem}): merge shards of one run only")
    merged["summary"] = summarize(merged)
    return merged


# Runs add up only when they ran the same load on the same clock: the same config, seed,
# duration, warm-up and blocks (so block k of each run covers the same seconds).
MERGE_CHECKED = (("config_sha256", "configs"), ("seed", "seeds"), ("duration_s", "durations"),
                 ("warmup_s", "warm-ups"), ("blocks", "--blocks"))


def _check_mergeable(documents: list) -> None:
    for key, label in MERGE_CHECKED:
        values = {json.dumps(document["metadata"].get(key)) for document in documents}
        if len(values) > 1:
            raise UsageError(f"merge: the results have different {label} ({', '.join(sorted(values))}); "
                             f"merge shards of one run only")
    seen = Counter(shard for document in documents for shard in document["metadata"]["shards"])
    twice = sorted(shard for shard, times in seen.items() if times > 1)
    if twice:
        raise UsageError(f"merge: shard {', '.join(twice)} is given more than once; each shard counts once")


def _merge_metadata(merged: dict, other: dict) -> None:
    """The metadata, logins, work done and the sections one shard records for all."""
    meta, om = merged["metadata"], other["metadata"]
    meta["rpm"] += om["rpm"]
    meta["measured_seconds"] = max(meta["measured_seconds"], om["measured_seconds"])
    meta["concurrency"] += om["concurrency"]
    meta["shards"] = meta["shards"] + om["shards"]
    meta["interrupted"] = meta["interrupted"] or om["interrupted"]
    merged["logins"]["ok"] += other["logins"]["ok"]
    merged["logins"]["relogins"] += other["logins"]["relogins"]
    merged["logins"]["retried"] = merged["logins"].get("retried", 0) + other["logins"].get("retried", 0)
    _merge_tallies(merged["logins"]["failed"], other["logins"]["failed"])
    if "metrics" in other and "metrics" not in merged:  # one shard scrapes the servers for all
        merged["metrics"] = json.loads(json.dumps(other["metrics"]))
    if "statements" in other and "statements" not in merged:
        # Each snapshot saw the whole database, every shard's queries: one of them is the run's.
        merged["statements"] = json.loads(json.dumps(other["statements"]))
    merged["row_kinds"] = {**other.get("row_kinds", {}), **merged.get("row_kinds", {})}
    merged["work_done"] = merged.get("work_done", {})
    _merge_tallies(merged["work_done"], other.get("work_done", {}))


def _merge_generator(generator: dict, og: dict) -> None:
    generator["cpu_seconds"] = round(generator["cpu_seconds"] + og["cpu_seconds"], 3)
    generator["run_seconds"] = max(generator["run_seconds"], og["run_seconds"])
    for key in ("lateness_ms", "loop_lag_ms"):
        generator[key] = _added(generator[key], og[key])
    for key in ("tokens_waited_for_worker", "tokens_dropped", "tokens_unsent", "sent_in_window",
                "request_errors_suppressed"):
        generator[key] += og[key]
    if "due_in_window" in generator and "due_in_window" in og:
        generator["due_in_window"] += og["due_in_window"]
    else:  # an older shard: what was due is not known for the whole run
        generator.pop("due_in_window", None)
    generator["paused_s"] = max(generator.get("paused_s", 0.0), og.get("paused_s", 0.0))


def _merge_url(target: dict, raw: dict) -> None:
    for key in ("requests", "success", "failure"):
        target[key] += raw[key]
    _merge_tallies(target["failures"], raw["failures"])
    _merge_tallies(target["redirects"], raw["redirects"])
    for key in ("response_ms", "service_ms"):
        target[key] = _added(target[key], raw[key])
    target["blocks_service_ms"] = [
        _added(a, b) for a, b in zip(target["blocks_service_ms"], raw["blocks_service_ms"], strict=True)]
    if "blocks_service_fine_ms" in target and "blocks_service_fine_ms" in raw:
        target["blocks_service_fine_ms"] = [
            _added(a, b, FineHistogram)
            for a, b in zip(target["blocks_service_fine_ms"], raw["blocks_service_fine_ms"], strict=True)]
    else:  # an older shard without them: the coarse blocks serve for all
        target.pop("blocks_service_fine_ms", None)
    for key, value in raw["footer"].items():
        if key not in target["footer"]:
            target["footer"][key] = value
        elif key.endswith("_ms"):
            target["footer"][key] = _added(target["footer"][key], value)
        else:
            _merge_tallies(target["footer"][key], value)


def merge_timelines(points: list, others: list) -> list:
    by_time = {point["t"]: point for point in points}
    for point in others:
        mine = by_time.get(point["t"])
        if mine is None:
            by_time[point["t"]] = point
            continue
        for key in ("sent", "ok", "cpu_seconds"):
            mine[key] += point[key]
        _merge_tallies(mine["failures"], point["failures"])
        for key in ("response_ms", "service_ms"):
            mine[key] = _added(mine[key], point[key])
    return [by_time[t] for t in sorted(by_time)]


def load_document(path: str) -> dict:
    """A saved results document, checked whole: every key a comparison, merge or report
    reads is there with its type, so a bad file is one line now, not a crash later."""
    try:
        document = read_json(path, "results")
    except FileNotFoundError:
        raise UsageError(f"results: {path} not found") from None
    if not isinstance(document, dict) or document.get("tool", "moodle_load.py") != "moodle_load.py" \
            or "urls" not in document:
        raise UsageError(f"results: {path} is not a moodle_load.py results file (format {RESULTS_FORMAT})")
    if document.get("format") != RESULTS_FORMAT:
        raise UsageError(f"results: {path} has format {document.get('format')!r}; this moodle_load.py "
                         f"reads format {RESULTS_FORMAT}")
    problem = document_problem(document)
    if problem:
        raise UsageError(f"results: {path} is damaged: {problem}")
    return document


DERIVED_KEYS = ("summary", "comparison")  # recomputed by readers: not part of what a run measured


def run_identity(document: dict) -> str:
    """What makes a run that run: a digest of all it measured.  Two files with one identity
    are one run (a copy, or one file named twice), and count once."""
    measured = {key: value for key, value in document.items() if key not in DERIVED_KEYS}
    return hashlib.sha256(json.dumps(measured, sort_keys=True).encode()).hexdigest()


def check_distinct(documents: dict) -> None:
    """Refuse runs given twice (``documents``: label -> document): each run is one
    observation of the run-to-run spread, and a copy would shrink it to nothing."""
    seen: dict = {}
    for label, document in documents.items():
        identity = run_identity(document)
        if identity in seen:
            started = document["metadata"].get("started_at") or "at an unknown time"
            raise UsageError(f"{seen[identity]} and {label} are the same run (started {started}): each run "
                             f"counts once; give each results file once, or record another run")
        seen[identity] = label


def save_document(path: str, document: dict) -> None:
    write_json_atomically(path, document, indent=1)


def _merged_machine(documents: list) -> dict | None:
    """Shards on one host see the same machine; the other shards are not "other work".
    Shards on several hosts have no one machine to describe."""
    machines = [document.get("machine") for document in documents]
    if any(machine is None for machine in machines) or len({d["metadata"].get("host") for d in documents}) > 1:
        return None
    own = sum(d["generator"]["cpu_seconds"] / d["generator"]["run_seconds"] for d in documents
              if d["generator"].get("run_seconds"))
    busiest = max(machines, key=lambda machine: machine["busy_cores"])
    return {**busiest, "other_busy_cores": round(max(0.0, busiest["busy_cores"] - own), 3)}


# ---- the summary: headline numbers recomputed from the histograms

PERCENTILES = (50, 90, 95, 99, 99.9)


def percentile_keys(prefix: str, histogram: Histogram) -> dict:
    keys = {}
    for q in PERCENTILES:
        label = str(q).replace(".", "_") if q != int(q) else str(int(q))
        keys[f"{prefix}_p{label}"] = round_or_none(histogram.percentile(q))
    keys[f"{prefix}_max"] = round_or_none(histogram.maximum if histogram.count else None)
    return keys


def url_summary(raw: dict) -> dict:
    """Headline numbers of one URL's recorded results."""
    response = Histogram.from_dict(raw.get("response_ms"))
    service = Histogram.from_dict(raw.get("service_ms"))
    summary = {"requests": raw["requests"], "success": raw["success"], "failure": raw["failure"]}
    summary.update(percentile_keys("latency_ms", response))
    summary.update(percentile_keys("service_ms", service))
    footer = raw.get("footer", {})
    for name in ("db_reads", "db_writes", "included_files", "memory_peak_mb", "session_size_kb"):
        if footer.get(name):
            summary[f"{name}_median"] = counter_median(footer[name])
            summary[f"{name}_max"] = max(float(k) for k in footer[name])
    for name in ("server_time_ms", "session_wait_ms", "db_time_ms"):
        if footer.get(name):
            histogram = Histogram.from_dict(footer[name])
            summary[f"{name}_median"] = round_or_none(histogram.percentile(50))
            summary[f"{name}_max"] = round_or_none(histogram.maximum)
    return summary


def summarize(document: dict) -> dict:
    """The run's summary: the product's keys first, then the rest.  Pure: recomputed from
    the recorded histograms, so merged documents summarise the same way."""
    meta = document["metadata"]
    response, service = Histogram(), Histogram()
    failures: Counter = Counter()
    requests = success = 0
    for raw in document["urls"].values():
        response.merge(Histogram.from_dict(raw["response_ms"]))
        service.merge(Histogram.from_dict(raw["service_ms"]))
        requests += raw["requests"]
        success += raw["success"]
        for kind, count in raw["failures"].items():
            failures[kind] += count
    # The observed rate counts requests actually sent inside the measured window: a generator
    # that fell behind and worked off its backlog later did not reach the target.
    seconds = meta.get("measured_seconds") or 0.0
    sent = document["generator"]["sent_in_window"]
    observed = sent / seconds * 60.0 if seconds > 0 else 0.0
    summary = {
        "req_per_min_target": meta["rpm"],
        "req_per_min_observed": round(observed, 1),
        "requests": requests,
        "success": success,
        "failure": requests - success,
        "latency_ms_p50": round_or_none(response.percentile(50)),
        "latency_ms_p95": round_or_none(response.percentile(95)),
        "latency_ms_p99": round_or_none(response.percentile(99)),
    }
    summary.update(percentile_keys("latency_ms", response))
    summary.update(percentile_keys("service_ms", service))
    summary["error_rate"] = round((requests - success) / requests, 4) if requests else None
    summary["failures"] = dict(sorted(failures.items()))
    summary["urls"] = {name: url_summary(raw) for name, raw in document["urls"].items()}
    if document.get("work_done"):
        summary["work_done"] = dict(document["work_done"])
    return summary
