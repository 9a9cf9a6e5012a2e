"""The plan: which request comes at which position of the timeline, and when that position falls due."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from moodleload.config import Config, User, fill_url


@dataclass(frozen=True)
class PlannedRequest:
    index: int  # position on the global timeline
    url_index: int
    path: str


_MASK64 = (1 << 64) - 1


def unit_interval(seed: int, index: int, draw: int) -> float:
    """A uniform number in [0, 1) for (seed, timeline position, draw number): splitmix64,
    so any position can be computed on its own (shards agree with a single process) and
    a draw costs a few integer operations."""
    z = (seed * 0x9E3779B97F4A7C15 + index * 0xD1B54A32D192ED03 + draw * 0xABC98388FB8FAC03) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return ((z ^ (z >> 31)) >> 11) * (1.0 / (1 << 53))


def plan_requests(config: Config, seed: int, count: int, start: int = 0,
                  step: int = 1) -> Iterator[PlannedRequest]:
    """The deterministic request sequence: for timeline positions start, start+step, ...
    below count, which URL and which filled-in path.  The same config and seed give the
    same sequence, whatever the shard, so shards of one run add up to the whole run."""
    cumulative: list[float] = []
    total = 0.0
    for spec in config.urls:
        total += spec.weight
        cumulative.append(total)
    for index in range(start, count, step):
        pick = unit_interval(seed, index, 0) * total
        url_index = next(i for i, edge in enumerate(cumulative) if pick < edge)
        spec = config.urls[url_index]
        units = (unit_interval(seed, index, draw) for draw in range(1, len(spec.placeholders) + 1))
        yield PlannedRequest(index, url_index, fill_url(spec, config.parameters, units))


def entry_weights(config: Config) -> tuple[list[float], float]:
    """Cumulative weights of the URLs, then the journeys, and their total."""
    cumulative: list[float] = []
    total = 0.0
    for weight in [spec.weight for spec in config.urls] + [journey.weight for journey in config.journeys]:
        total += weight
        cumulative.append(total)
    return cumulative, total


def pick_entry(config: Config, seed: int, index: int,
               weights: tuple[list[float], float]) -> tuple[str, int, str | dict[str, int | str]]:
    """What an idle user starts at timeline position ``index``: ("url", i, path) with the
    path filled as plan_requests() fills it, or ("journey", j, values) with the journey's
    parameters drawn once for all its steps.  Seeded by position, like the plan."""
    cumulative, total = weights
    pick = unit_interval(seed, index, 0) * total
    chosen = next((i for i, edge in enumerate(cumulative) if pick < edge), len(cumulative) - 1)
    if chosen < len(config.urls):
        spec = config.urls[chosen]
        units = (unit_interval(seed, index, draw) for draw in range(1, len(spec.placeholders) + 1))
        return "url", chosen, fill_url(spec, config.parameters, units)
    journey = config.journeys[chosen - len(config.urls)]
    values = {name: config.parameters[name].pick(unit_interval(seed, index, draw))
              for draw, name in enumerate(journey.draws, start=1)}
    return "journey", chosen - len(config.urls), values


def user_order(users: list[User], seed: int) -> list[User]:
    """Users in a seeded order: requests take them round-robin."""
    order = list(users)
    random.Random(seed).shuffle(order)
    return order


@dataclass(frozen=True)
class Timeline:
    """The schedule as arithmetic, wrk2's way: position ``i`` of the whole run (all shards
    together) falls due at ``start + i * interval``, whatever happened before it.  A shard
    K of N owns positions K-1, K-1+N, ...; the shards of one run interleave into the run."""

    start: float  # clock reading of position 0
    interval: float  # seconds between positions of the whole run
    count: int  # positions in the warm-up and the measured time
    shard: int = 1
    shards: int = 1

    @classmethod
    def of_run(cls, start: float, rpm: float, seconds: float, shard: tuple[int, int] = (1, 1)) -> Timeline:
        interval = 60.0 / rpm
        # The small epsilon keeps a position that falls exactly on the end (float error) in.
        count = int(math.floor(seconds / interval + 1e-9))
        return cls(start, interval, count, shard[0], shard[1])

    def due(self, index: int) -> float:
        return self.start + index * self.interval

    def positions(self) -> range:
        """This shard's positions, in order."""
        return range(self.shard - 1, self.count, self.shards)

    def due_by(self, moment: float) -> int:
        """How many of this shard's positions fall due at or before ``moment``."""
        if moment < self.start:
            return 0
        last = min(self.count - 1, math.floor((moment - self.start) / self.interval))
        return 0 if last < self.shard - 1 else (last - (self.shard - 1)) // self.shards + 1
