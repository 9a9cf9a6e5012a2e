"""Real CPU work for the simulated site's pages, reported the way Moodle reports it.

A page's ``cpu_ms`` is a fixed amount of work (SHA-256 over 64 KB blocks, which releases
the GIL, so pages on several worker threads use several cores as php-fpm's workers do),
converted to rounds once per site with ``units_per_ms``.  What the footer prints is then
measured, not copied from the setting: the worker thread's own user and sys time from
getrusage(RUSAGE_THREAD) at the start and the end of the request, each rounded down to a
10 ms tick, as Moodle subtracts two posix_times() readings.  So a busy machine stretches
the page's wall time while its CPU ticks stay what the work costs."""

from __future__ import annotations

import hashlib
import resource
import time

BLOCK = bytes(65536)
TICKS_PER_SECOND = 100  # posix_times() counts USER_HZ ticks


def calibrate(trials: int = 5, seconds: float = 0.02) -> float:
    """Rounds of work per ms of this thread's CPU time on this machine (the best of a few
    tries: another process can only make a try slower, never faster)."""
    best = 0.0
    for _ in range(trials):
        started = time.thread_time()
        rounds = 0
        while (spent := time.thread_time() - started) < seconds:
            hashlib.sha256(BLOCK).digest()
            rounds += 1
        best = max(best, rounds / (spent * 1000.0))
    return best


def _ticks(seconds: float) -> int:
    return int(seconds * TICKS_PER_SECOND)


def burn(rounds: int) -> tuple[int, int]:
    """Do ``rounds`` of work on this thread; its (user, sys) CPU ticks as the footer shows them."""
    before = resource.getrusage(resource.RUSAGE_THREAD)
    for _ in range(rounds):
        hashlib.sha256(BLOCK).digest()
    after = resource.getrusage(resource.RUSAGE_THREAD)
    return (_ticks(after.ru_utime) - _ticks(before.ru_utime), _ticks(after.ru_stime) - _ticks(before.ru_stime))
