"""Moodle's performance footer ($CFG->perfdebug 15): what it says of one answer (``Footer``)
and the names its counters and times go by, on the answer and in the results
(``FooterCounter``, ``FooterTime``).  The names are closed sets, so a misspelt one is a type
error wherever the site reads a footer (``site.moodle.parse_footer``), the load tallies it,
the results keep it or the judging reads it back."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, get_args

# Discrete counters are tallied value by value; times (ms) go into histograms.
FooterCounter = Literal["db_reads", "db_writes", "included_files", "memory_peak_mb", "session_size_kb",
                        "cpu_ticks", "cpu_unreadable"]
FooterTime = Literal["server_time_ms", "session_wait_ms", "db_time_ms"]
FooterName = FooterCounter | FooterTime
FOOTER_COUNTERS: tuple[FooterCounter, ...] = get_args(FooterCounter)
FOOTER_TIMES: tuple[FooterTime, ...] = get_args(FooterTime)


@dataclass(frozen=True)
class Footer:
    """What the footer says of one answer; None where it does not say."""

    db_reads: int | None = None
    db_writes: int | None = None
    included_files: int | None = None
    memory_peak_mb: float | None = None
    session_size_kb: float | None = None
    cpu_ticks: int | None = None  # the PHP worker's own user + sys ticks (site.moodle.cpu_ticks)
    cpu_unreadable: int | None = None  # 1 where the CPU line could not be true
    server_time_ms: float | None = None
    session_wait_ms: float | None = None
    db_time_ms: float | None = None

    def counters(self) -> Iterator[tuple[FooterCounter, float]]:
        """(name, value) of the counters it shows."""
        for name in FOOTER_COUNTERS:
            value = getattr(self, name)
            if value is not None:
                yield name, value

    def times(self) -> Iterator[tuple[FooterTime, float]]:
        """(name, milliseconds) of the times it shows."""
        for name in FOOTER_TIMES:
            value = getattr(self, name)
            if value is not None:
                yield name, value
