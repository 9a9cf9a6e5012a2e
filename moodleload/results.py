"""The results document: one owner defines it, builds it from a run, validates it when it
is read, saves it, merges it and summarises it.  The text and HTML reports, the comparison
and the verdict only read it (pyperf's lesson: the data model owns its JSON)."""

from __future__ import annotations

import hashlib
import json
import math
import platform
import socket
from collections import Counter
from typing import TYPE_CHECKING

from . import __version__
from .console import round_or_none
from .exits import UsageError
from .files import read_json, write_json_atomically
from .histogram import FineHistogram, Histogram, counter_median
from .metrics import metrics_problem
from .statements import statements_problem

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
    # Runs add up only when they ran the same load on the same clock: the same config, seed,
    # duration, warm-up and blocks (so block k of each run covers the same seconds).
    for key, label in (("config_sha256", "configs"), ("seed", "seeds"), ("duration_s", "durations"),
                       ("warmup_s", "warm-ups"), ("blocks", "--blocks")):
        values = {json.dumps(document["metadata"].get(key)) for document in documents}
        if len(values) > 1:
            raise UsageError(f"merge: the results have different {label} ({', '.join(sorted(values))}); "
                             f"merge shards of one run only")
    seen = Counter(shard for document in documents for shard in document["metadata"]["shards"])
    twice = sorted(shard for shard, times in seen.items() if times > 1)
    if twice:
        raise UsageError(f"merge: shard {', '.join(twice)} is given more than once; each shard counts once")
    first = documents[0]
    merged = json.loads(json.dumps(first))
    merged["machine"] = _merged_machine(documents)
    meta = merged["metadata"]
    for other in documents[1:]:
        om = other["metadata"]
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
        merged["work_done"] = merged.get("work_done", {})
        _merge_tallies(merged["work_done"], other.get("work_done", {}))
        generator, og = merged["generator"], other["generator"]
        generator["cpu_seconds"] = round(generator["cpu_seconds"] + og["cpu_seconds"], 3)
        generator["run_seconds"] = max(generator["run_seconds"], og["run_seconds"])
        for key in ("lateness_ms", "loop_lag_ms"):
            generator[key] = _added(generator[key], og[key])
        merged["timeline"]["points"] = merge_timelines(merged["timeline"]["points"], other["timeline"]["points"])
        for key in ("tokens_waited_for_worker", "tokens_dropped", "tokens_unsent", "sent_in_window",
                    "request_errors_suppressed"):
            generator[key] += og[key]
        if "due_in_window" in generator and "due_in_window" in og:
            generator["due_in_window"] += og["due_in_window"]
        else:  # an older shard: what was due is not known for the whole run
            generator.pop("due_in_window", None)
        generator["paused_s"] = max(generator.get("paused_s", 0.0), og.get("paused_s", 0.0))
        for name, raw in other["urls"].items():
            if name not in merged["urls"]:
                merged["urls"][name] = json.loads(json.dumps(raw))
                continue
            target = merged["urls"][name]
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
    problem = document_problem(merged)
    if problem:  # what no reader would take back (a sum beyond reason): never written
        raise UsageError(f"merge: the merged results would be damaged ({problem}): merge shards of one run only")
    merged["summary"] = summarize(merged)
    return merged


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


# ---- what a valid document holds

# No real run comes near these; a file beyond them is damaged, and sums of such values (a
# merge) could overflow to Infinity, which no JSON reader takes back.
MAX_MAGNITUDE = 1e15
MAX_FOOTER_VALUE = 1e9  # DB reads, included files, MB of memory of one page


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and abs(value) <= MAX_MAGNITUDE


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_MAGNITUDE


def _tally_problem(tally, where: str) -> str | None:
    if not isinstance(tally, dict):
        return f"{where} is not an object"
    for key, count in tally.items():
        if not _count(count):
            return f"{where}.{key} is not a count"
    return None


def _histogram_problem(raw, where: str, base: float = Histogram.BASE) -> str | None:
    if not isinstance(raw, dict):
        return f"{where} is not a histogram"
    if not raw:
        return None
    if raw.get("base") != base:
        return f"{where}.base is {raw.get('base')!r}, not {base}"
    if not _count(raw.get("count")) or not _number(raw.get("sum", 0)) or not _number(raw.get("max", 0)):
        return f"{where} has a bad count, sum or max"
    if raw.get("min") is not None and not _number(raw["min"]):
        return f"{where}.min is not a number"
    buckets = raw.get("buckets", {})
    if not isinstance(buckets, dict):
        return f"{where}.buckets is not an object"
    for key, count in buckets.items():
        digits = key.lstrip("-") if isinstance(key, str) else ""
        if not (digits.isascii() and digits.isdigit()) or not _count(count):
            return f"{where}.buckets has a bad entry {key!r}"
    if sum(buckets.values()) != raw["count"]:
        return f"{where}: its buckets do not add up to its count"
    return None


_META_NUMBERS = ("rpm", "duration_s", "warmup_s", "measured_seconds")
_GENERATOR_COUNTS = ("tokens_waited_for_worker", "tokens_dropped", "tokens_unsent", "sent_in_window",
                     "request_errors_suppressed")
_URL_COUNTS = ("requests", "success", "failure")


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


def document_problem(document: dict) -> str | None:
    """What is wrong with a results document, or None: the keys and types every reader relies on."""
    meta = document.get("metadata")
    if not isinstance(meta, dict):
        return "metadata is missing"
    for key in _META_NUMBERS:
        if not _number(meta.get(key)) or meta[key] < 0:
            return f"metadata.{key} is not a number of at least 0"
    if not _count(meta.get("blocks")) or meta["blocks"] < 1:
        return "metadata.blocks is not a positive count"
    if not _count(meta.get("concurrency")):
        return "metadata.concurrency is not a count"
    if not isinstance(meta.get("seed"), int) or isinstance(meta.get("seed"), bool):
        return "metadata.seed is not an integer"
    if not isinstance(meta.get("config_sha256"), str):
        return "metadata.config_sha256 is not a string"
    if not isinstance(meta.get("interrupted"), bool):
        return "metadata.interrupted is not true or false"
    shards = meta.get("shards")
    if not isinstance(shards, list) or not shards or not all(isinstance(s, str) for s in shards):
        return "metadata.shards is not a list of K/N strings"
    moodle = meta.get("moodle")
    if moodle is not None and (not isinstance(moodle, dict) or not all(
            value is None or isinstance(value, (str, bool)) for value in moodle.values())):
        return "metadata.moodle is not a table of release, version, layout and commit"
    machine = document.get("machine")
    if machine is not None and (not isinstance(machine, dict) or not all(
            value is None or _number(value) for value in machine.values())):
        return "machine is not a table of numbers"
    for key, check in (("statements", statements_problem), ("metrics", metrics_problem)):
        if key in document:
            problem = check(document[key])
            if problem:
                return problem
    logins = document.get("logins")
    if not isinstance(logins, dict) or not _count(logins.get("ok")) or not _count(logins.get("relogins")):
        return "logins is missing its ok and relogins counts"
    if not _count(logins.get("retried", 0)):
        return "logins.retried is not a count"
    problem = _tally_problem(logins.get("failed"), "logins.failed") \
        or _tally_problem(document.get("work_done", {}), "work_done")
    if problem:
        return problem
    generator = document.get("generator")
    if not isinstance(generator, dict):
        return "generator is missing"
    for key in _GENERATOR_COUNTS:
        if not _count(generator.get(key)):
            return f"generator.{key} is not a count"
    if "due_in_window" in generator and not _count(generator["due_in_window"]):
        return "generator.due_in_window is not a count"
    for key in ("cpu_seconds", "run_seconds", "paused_s"):
        if (key != "paused_s" or key in generator) and not _number(generator.get(key)):
            return f"generator.{key} is not a number"
    for key in ("lateness_ms", "loop_lag_ms"):
        problem = _histogram_problem(generator.get(key, {}), f"generator.{key}")
        if problem:
            return problem
    urls = document.get("urls")
    if not isinstance(urls, dict):
        return "urls is not an object"
    for name, raw in urls.items():
        problem = _url_problem(raw, f"urls[{name!r}]", meta["blocks"])
        if problem:
            return problem
    timeline = document.get("timeline", {"seconds": 1.0, "points": []})
    if not isinstance(timeline, dict) or not _number(timeline.get("seconds")) or timeline["seconds"] <= 0 \
            or not isinstance(timeline.get("points"), list):
        return "timeline needs seconds and points"
    for position, point in enumerate(timeline["points"]):
        where = f"timeline.points[{position}]"
        if not isinstance(point, dict) or not _number(point.get("t")) or not _count(point.get("sent")) \
                or not _count(point.get("ok")) or not _number(point.get("cpu_seconds", 0)):
            return f"{where} needs t, sent, ok and cpu_seconds"
        problem = _tally_problem(point.get("failures"), f"{where}.failures") \
            or _histogram_problem(point.get("response_ms"), f"{where}.response_ms") \
            or _histogram_problem(point.get("service_ms"), f"{where}.service_ms")
        if problem:
            return problem
    return None


def _url_problem(raw, where: str, blocks: int) -> str | None:
    if not isinstance(raw, dict):
        return f"{where} is not an object"
    for key in _URL_COUNTS:
        if not _count(raw.get(key)):
            return f"{where}.{key} is not a count"
    if raw["success"] + raw["failure"] != raw["requests"]:
        return f"{where}: success and failure do not add up to requests"
    for key in ("failures", "redirects"):
        problem = _tally_problem(raw.get(key), f"{where}.{key}")
        if problem:
            return problem
    for key in ("response_ms", "service_ms"):
        problem = _histogram_problem(raw.get(key), f"{where}.{key}")
        if problem:
            return problem
    block_list = raw.get("blocks_service_ms")
    if not isinstance(block_list, list) or len(block_list) != blocks:
        return f"{where}.blocks_service_ms does not hold metadata.blocks ({blocks}) histograms"
    for position, block in enumerate(block_list):
        problem = _histogram_problem(block, f"{where}.blocks_service_ms[{position}]")
        if problem:
            return problem
    fine = raw.get("blocks_service_fine_ms")
    if fine is not None:
        if not isinstance(fine, list) or len(fine) != blocks:
            return f"{where}.blocks_service_fine_ms does not hold metadata.blocks ({blocks}) histograms"
        for position, block in enumerate(fine):
            problem = _histogram_problem(block, f"{where}.blocks_service_fine_ms[{position}]", FineHistogram.BASE)
            if problem:
                return problem
    footer = raw.get("footer")
    if not isinstance(footer, dict):
        return f"{where}.footer is not an object"
    for key, value in footer.items():
        problem = _histogram_problem(value, f"{where}.footer.{key}") if key.endswith("_ms") \
            else _tally_problem(value, f"{where}.footer.{key}")
        if problem:
            return problem
        if not key.endswith("_ms") and not all(_is_footer_value(k) for k in value):
            return f"{where}.footer.{key} has a value that is not a number from 0 to {MAX_FOOTER_VALUE:g}"
    return None


def _is_footer_value(text: str) -> bool:
    try:
        return 0 <= float(text) <= MAX_FOOTER_VALUE
    except ValueError:
        return False


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
