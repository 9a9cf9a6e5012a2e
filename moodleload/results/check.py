"""What a valid results document holds: every key and type the readers rely on, with
bounds no real run comes near (a file beyond them is damaged).  results.load_document
refuses what this finds; merges check their result with it before writing."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from moodleload.config import ROW_KINDS
from moodleload.results.histogram import FineHistogram, Histogram
from moodleload.results.metrics import metrics_problem
from moodleload.results.statements import statements_problem

# No real run comes near these; a file beyond them is damaged, and sums of such values (a
# merge) could overflow to Infinity, which no JSON reader takes back.
MAX_MAGNITUDE = 1e15
MAX_FOOTER_VALUE = 1e9  # DB reads, included files, MB of memory of one page


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and abs(value) <= MAX_MAGNITUDE


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_MAGNITUDE


def _tally_problem(tally: Any, where: str) -> str | None:
    if not isinstance(tally, dict):
        return f"{where} is not an object"
    for key, count in tally.items():
        if not is_count(count):
            return f"{where}.{key} is not a count"
    return None


def _histogram_problem(raw: Any, where: str, base: float = Histogram.BASE) -> str | None:
    if not isinstance(raw, dict):
        return f"{where} is not a histogram"
    if not raw:
        return None
    if raw.get("base") != base:
        return f"{where}.base is {raw.get('base')!r}, not {base}"
    if not is_count(raw.get("count")) or not is_number(raw.get("sum", 0)) or not is_number(raw.get("max", 0)):
        return f"{where} has a bad count, sum or max"
    if raw.get("min") is not None and not is_number(raw["min"]):
        return f"{where}.min is not a number"
    buckets = raw.get("buckets", {})
    if not isinstance(buckets, dict):
        return f"{where}.buckets is not an object"
    for key, count in buckets.items():
        digits = key.lstrip("-") if isinstance(key, str) else ""
        if not (digits.isascii() and digits.isdigit()) or not is_count(count):
            return f"{where}.buckets has a bad entry {key!r}"
    if sum(buckets.values()) != raw["count"]:
        return f"{where}: its buckets do not add up to its count"
    return None


_META_NUMBERS = ("rpm", "duration_s", "warmup_s", "measured_seconds")
_GENERATOR_COUNTS = ("tokens_waited_for_worker", "tokens_dropped", "tokens_unsent", "sent_in_window",
                     "request_errors_suppressed")
_URL_COUNTS = ("requests", "success", "failure")


def document_problem(document: dict[str, Any]) -> str | None:
    """What is wrong with a results document, or None: the keys and types every reader relies on."""
    meta = document.get("metadata")
    if not isinstance(meta, dict):
        return "metadata is missing"
    problem = _metadata_problem(meta) or _sections_problem(document) or _generator_problem(document.get("generator"))
    if problem:
        return problem
    urls = document.get("urls")
    if not isinstance(urls, dict):
        return "urls is not an object"
    for name, raw in urls.items():
        problem = _url_problem(raw, f"urls[{name!r}]", meta["blocks"])
        if problem:
            return problem
    return _timeline_problem(document.get("timeline", {"seconds": 1.0, "points": []}))


def _is_shard(text: Any) -> bool:
    """"K/N" with 1 <= K <= N (a shard of a run of N)."""
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]{1,6}/[0-9]{1,6}", text):
        return False
    shard, shards = (int(part) for part in text.split("/"))
    return 1 <= shard <= shards


def _metadata_problem(meta: dict[str, Any]) -> str | None:
    for key in _META_NUMBERS:
        if not is_number(meta.get(key)) or meta[key] < 0:
            return f"metadata.{key} is not a number of at least 0"
    if not is_count(meta.get("blocks")) or meta["blocks"] < 1:
        return "metadata.blocks is not a positive count"
    if not is_count(meta.get("concurrency")):
        return "metadata.concurrency is not a count"
    if not isinstance(meta.get("seed"), int) or isinstance(meta.get("seed"), bool):
        return "metadata.seed is not an integer"
    if not isinstance(meta.get("config_sha256"), str):
        return "metadata.config_sha256 is not a string"
    if not isinstance(meta.get("interrupted"), bool):
        return "metadata.interrupted is not true or false"
    shards = meta.get("shards")
    if not isinstance(shards, list) or not shards or not all(_is_shard(s) for s in shards):
        return "metadata.shards is not a list of K/N strings"
    if meta.get("start_at") is not None and not isinstance(meta["start_at"], str):
        return "metadata.start_at is not a time"
    offsets = meta.get("start_offsets_s")
    if offsets is not None and (not isinstance(offsets, dict) or not all(
            shard in shards and is_number(offset) and abs(offset) < 1e6 for shard, offset in offsets.items())):
        return "metadata.start_offsets_s is not seconds per shard of the run"
    moodle = meta.get("moodle")
    if moodle is not None and (not isinstance(moodle, dict) or not all(
            value is None or isinstance(value, (str, bool)) for value in moodle.values())):
        return "metadata.moodle is not a table of release, version, layout and commit"
    return None


def _sections_problem(document: dict[str, Any]) -> str | None:
    """The machine, the optional statements and metrics, the logins and the work done."""
    machine = document.get("machine")
    if machine is not None and (not isinstance(machine, dict) or not all(
            value is None or is_number(value) for value in machine.values())
            or not all(is_number(machine.get(key)) for key in ("busy_cores", "other_busy_cores"))):
        return "machine is not a table of numbers with busy_cores and other_busy_cores"
    for key, check in (("statements", statements_problem), ("metrics", metrics_problem)):
        if key in document:
            problem = check(document[key])
            if problem:
                return problem
    logins = document.get("logins")
    if not isinstance(logins, dict) or not is_count(logins.get("ok")) or not is_count(logins.get("relogins")):
        return "logins is missing its ok and relogins counts"
    if not is_count(logins.get("retried", 0)):
        return "logins.retried is not a count"
    kinds = document.get("row_kinds", {})
    if not isinstance(kinds, dict) or not all(kind in ROW_KINDS for kind in kinds.values()):
        return f"row_kinds is not a table of URL name -> {', '.join(ROW_KINDS)}"
    return _tally_problem(logins.get("failed"), "logins.failed") \
        or _tally_problem(document.get("work_done", {}), "work_done")


def _generator_problem(generator: Any) -> str | None:
    if not isinstance(generator, dict):
        return "generator is missing"
    for key in _GENERATOR_COUNTS:
        if not is_count(generator.get(key)):
            return f"generator.{key} is not a count"
    if "due_in_window" in generator and not is_count(generator["due_in_window"]):
        return "generator.due_in_window is not a count"
    for key in ("cpu_seconds", "run_seconds", "paused_s"):
        if (key != "paused_s" or key in generator) and not is_number(generator.get(key)):
            return f"generator.{key} is not a number"
    for key in ("lateness_ms", "loop_lag_ms"):
        problem = _histogram_problem(generator.get(key, {}), f"generator.{key}")
        if problem:
            return problem
    return None


def _timeline_problem(timeline: Any) -> str | None:
    if not isinstance(timeline, dict) or not is_number(timeline.get("seconds")) or timeline["seconds"] <= 0 \
            or not isinstance(timeline.get("points"), list):
        return "timeline needs seconds and points"
    for position, point in enumerate(timeline["points"]):
        where = f"timeline.points[{position}]"
        if not isinstance(point, dict) or not is_number(point.get("t")) or not is_count(point.get("sent")) \
                or not is_count(point.get("ok")) or not is_number(point.get("cpu_seconds", 0)):
            return f"{where} needs t, sent, ok and cpu_seconds"
        problem = _tally_problem(point.get("failures"), f"{where}.failures") \
            or _histogram_problem(point.get("response_ms"), f"{where}.response_ms") \
            or _histogram_problem(point.get("service_ms"), f"{where}.service_ms")
        if problem:
            return problem
    return None


def _url_problem(raw: Any, where: str, blocks: int) -> str | None:
    if not isinstance(raw, dict):
        return f"{where} is not an object"
    for key in _URL_COUNTS:
        if not is_count(raw.get(key)):
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
    problem = _per_block_problem(raw.get("blocks_service_ms"), where, "blocks_service_ms", blocks, "histograms",
                                 _histogram_problem)
    if problem:
        return problem
    if raw.get("blocks_service_fine_ms") is not None:  # 0.4+
        problem = _per_block_problem(raw["blocks_service_fine_ms"], where, "blocks_service_fine_ms", blocks,
                                     "histograms", lambda block, place: _histogram_problem(block, place,
                                                                                           FineHistogram.BASE))
        if problem:
            return problem
    if raw.get("blocks_cpu_ticks") is not None:  # 0.7+, on rows whose footer showed the CPU line
        problem = _per_block_problem(raw["blocks_cpu_ticks"], where, "blocks_cpu_ticks", blocks, "tallies",
                                     _footer_tally_problem)
        if problem:
            return problem
    footer = raw.get("footer")
    if not isinstance(footer, dict):
        return f"{where}.footer is not an object"
    for key, value in footer.items():
        problem = _histogram_problem(value, f"{where}.footer.{key}") if key.endswith("_ms") \
            else _footer_tally_problem(value, f"{where}.footer.{key}")
        if problem:
            return problem
    return None


def _per_block_problem(items: Any, where: str, key: str, blocks: int, what: str,
                       check: Callable[[Any, str], str | None]) -> str | None:
    """A list with one item per time block, each item checked by ``check(item, place)``."""
    if not isinstance(items, list) or len(items) != blocks:
        return f"{where}.{key} does not hold metadata.blocks ({blocks}) {what}"
    for position, item in enumerate(items):
        problem = check(item, f"{where}.{key}[{position}]")
        if problem:
            return problem
    return None


def _footer_tally_problem(tally: Any, place: str) -> str | None:
    """A tally of footer values: counts, and values that are numbers a footer can show."""
    problem = _tally_problem(tally, place)
    if problem:
        return problem
    if not all(_is_footer_value(value) for value in tally):
        return f"{place} has a value that is not a number from 0 to {MAX_FOOTER_VALUE:g}"
    return None


def _is_footer_value(text: str) -> bool:
    try:
        return 0 <= float(text) <= MAX_FOOTER_VALUE
    except ValueError:
        return False
