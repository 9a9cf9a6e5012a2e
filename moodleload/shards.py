"""How the processes of one run are named and started together: ``--shard K/N`` and
``--start-at T0``, read from the command line and from results alike (pure)."""

from __future__ import annotations

import math
import re

from moodleload.exits import UsageError


def parse_shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text or "")
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise UsageError(f"--shard must be K/N with 1 <= K <= N, got {text!r}")
    return int(match.group(1)), int(match.group(2))


# How far apart the processes of one run may open their schedules (each measured against
# --start-at by its own clock): beyond it, the shards' load is shifted in time, not one run's.
MAX_START_SKEW_S = 1.0
LATEST_START_S = 24 * 3600.0  # a --start-at further ahead is a typo, not a plan


def parse_start_at(text: str, now: float) -> float:
    """--start-at as seconds since the epoch: ``+S`` seconds after ``now``, or an absolute
    time with its zone (``2026-12-05T09:00:00Z``).  Refused when it is past or more than a
    day ahead: shards on several machines meet there only by their clocks, never by a guess."""
    from datetime import datetime

    if text.startswith("+"):
        try:
            seconds = float(text[1:])
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            raise UsageError(f"--start-at {text!r}: give +S with S seconds from now above 0, or a UTC time such "
                             f"as 2026-12-05T09:00:00Z")
        moment = now + seconds
    else:
        try:
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise UsageError(f"--start-at {text!r} is not a time: give a UTC time such as 2026-12-05T09:00:00Z, "
                             f"or +S seconds from now") from None
        if parsed.tzinfo is None:
            raise UsageError(f"--start-at {text!r} has no zone: machines in other zones would read it "
                             f"differently; add Z for UTC (or +01:00)")
        moment = parsed.timestamp()
    if moment <= now:
        raise UsageError(f"--start-at {text!r} is {now - moment:.1f} s past: give a time the logins can still "
                         f"make")
    if moment - now > LATEST_START_S:
        raise UsageError(f"--start-at {text!r} is {(moment - now) / 3600:.1f} hours ahead: give one within a day")
    return moment


def start_at_text(moment: float) -> str:
    """The absolute form every shard and the results record (UTC, milliseconds)."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
