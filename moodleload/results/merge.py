"""Merging the shards of one run (part of the results model: ``Results.merge`` is its one
caller): the checks that shards ran one load on one clock, and the machine they shared.
The sections add themselves up (``sections``: each one's ``added``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from moodleload.exits import UsageError
from moodleload.results.sections import Generator, Machine, Metadata
from moodleload.shards import MAX_START_SKEW_S, parse_shard

# Runs add up only when they ran the same load on the same clock: the same config, seed,
# duration, warm-up and blocks (so block k of each run covers the same seconds).
MERGE_CHECKED = (("config_sha256", "configs"), ("seed", "seeds"), ("duration_s", "durations"),
                 ("warmup_s", "warm-ups"), ("blocks", "--blocks"), ("start_at", "--start-at times"))


def check_mergeable(metadatas: Sequence[Metadata]) -> None:
    """Refuse shards of different loads, a shard given twice, or shards that opened their
    schedules too far apart, in one line that says what to give instead."""
    if not metadatas:
        raise UsageError("merge: no results to merge")
    for attribute, label in MERGE_CHECKED:
        values = {json.dumps(getattr(metadata, attribute)) for metadata in metadatas}
        if len(values) > 1:
            raise UsageError(f"merge: the results have different {label} ({', '.join(sorted(values))}); "
                             f"merge shards of one run only")
    seen = Counter(shard for metadata in metadatas for shard in metadata.shards)
    twice = sorted(shard for shard, times in seen.items() if times > 1)
    if twice:
        raise UsageError(f"merge: shard {', '.join(twice)} is given more than once; each shard counts once")
    sizes = {parse_shard(shard)[1] for shard in seen}
    if len(sizes) > 1:
        raise UsageError(f"merge: the results are shards of runs of different sizes ({', '.join(sorted(seen))}); "
                         f"merge shards of one run only")
    _check_start_skew(metadatas)


def _check_start_skew(metadatas: Sequence[Metadata]) -> None:
    """Shards given one --start-at must have opened their schedules together: one that woke
    late sent its part of the load shifted in time, which no sum can put back."""
    offsets = {shard: offset for metadata in metadatas for shard, offset in metadata.start_offsets_s}
    if not offsets:
        return
    earliest = min(offsets.values())
    for shard, offset in sorted(offsets.items(), key=lambda item: -item[1]):
        if offset - earliest > MAX_START_SKEW_S or abs(offset) > MAX_START_SKEW_S:
            raise UsageError(f"merge: shard {shard} opened its schedule {offset:+.2f} s from --start-at "
                             f"{metadatas[0].start_at} (the earliest shard {earliest:+.2f} s); "
                             f"shards more than {MAX_START_SKEW_S:g} s apart did not send one run's load: run "
                             f"them again")


def merged_machine(shards: Sequence[tuple[Metadata, Generator, Machine | None]]) -> Machine | None:
    """Shards on one host see the same machine; the other shards are not "other work".
    Shards on several hosts have no one machine to describe."""
    machines = [machine for _, _, machine in shards]
    if any(machine is None for machine in machines) or len({metadata.host for metadata, _, _ in shards}) > 1:
        return None
    own = sum(generator.cpu_seconds / generator.run_seconds for _, generator, _ in shards if generator.run_seconds)
    busiest = max((machine for machine in machines if machine is not None), key=lambda machine: machine.busy_cores)
    return Machine(busiest.busy_cores, round(max(0.0, busiest.busy_cores - own), 3), busiest.cpus,
                   busiest.steal_share, busiest.load_average)
