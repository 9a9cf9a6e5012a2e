"""Merging the saved shards of one run (part of the results model: ``Results.merge`` is its
one caller).  It works on the saved form, key by key, because that is what a shard wrote;
the merged form is checked as any file read back is, before anyone sees it."""

from __future__ import annotations

import json
from collections import Counter

from moodleload.exits import UsageError
from moodleload.results.check import document_problem
from moodleload.results.histogram import FineHistogram, Histogram
from moodleload.shards import MAX_START_SKEW_S, parse_shard


def _added(histogram: dict, other: dict, kind: type[Histogram] = Histogram) -> dict:
    """Two saved histograms added together, saved again."""
    return kind.from_dict(histogram).merge(kind.from_dict(other)).to_dict()


def _merge_tallies(into: dict, other: dict) -> None:
    for key, count in other.items():
        into[key] = into.get(key, 0) + count


def merge_raw(documents: list) -> dict:
    """Add the saved shards of one run together (--shard K/N on several machines,
    --processes): counts and histograms add up, the rate targets add up, the measured time
    is the longest."""
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
    return merged


# Runs add up only when they ran the same load on the same clock: the same config, seed,
# duration, warm-up and blocks (so block k of each run covers the same seconds).
MERGE_CHECKED = (("config_sha256", "configs"), ("seed", "seeds"), ("duration_s", "durations"),
                 ("warmup_s", "warm-ups"), ("blocks", "--blocks"), ("start_at", "--start-at times"))


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
    sizes = {parse_shard(shard)[1] for shard in seen}
    if len(sizes) > 1:
        raise UsageError(f"merge: the results are shards of runs of different sizes ({', '.join(sorted(seen))}); "
                         f"merge shards of one run only")
    _check_start_skew(documents)


def _check_start_skew(documents: list) -> None:
    """Shards given one --start-at must have opened their schedules together: one that woke
    late sent its part of the load shifted in time, which no sum can put back."""
    offsets = {shard: offset for document in documents
               for shard, offset in (document["metadata"].get("start_offsets_s") or {}).items()}
    if not offsets:
        return
    earliest = min(offsets.values())
    for shard, offset in sorted(offsets.items(), key=lambda item: -item[1]):
        if offset - earliest > MAX_START_SKEW_S or abs(offset) > MAX_START_SKEW_S:
            raise UsageError(f"merge: shard {shard} opened its schedule {offset:+.2f} s from --start-at "
                             f"{documents[0]['metadata'].get('start_at')} (the earliest shard {earliest:+.2f} s); "
                             f"shards more than {MAX_START_SKEW_S:g} s apart did not send one run's load: run "
                             f"them again")


def _merge_metadata(merged: dict, other: dict) -> None:
    """The metadata, logins, work done and the sections one shard records for all."""
    meta, om = merged["metadata"], other["metadata"]
    meta["rpm"] += om["rpm"]
    meta["measured_seconds"] = max(meta["measured_seconds"], om["measured_seconds"])
    meta["concurrency"] += om["concurrency"]
    meta["shards"] = meta["shards"] + om["shards"]
    if "start_offsets_s" in om:
        meta["start_offsets_s"] = {**meta.get("start_offsets_s", {}), **om["start_offsets_s"]}
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
    if "blocks_cpu_ticks" in raw:  # a shard whose pages showed no CPU line has none
        mine = target.setdefault("blocks_cpu_ticks", [{} for _ in raw["blocks_cpu_ticks"]])
        for tally, other in zip(mine, raw["blocks_cpu_ticks"], strict=True):
            _merge_tallies(tally, other)
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
