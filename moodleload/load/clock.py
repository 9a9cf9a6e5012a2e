"""The clocks a load run reads and sleeps on.  ``RealClock`` is wall time on the event loop;
``VirtualClock`` jumps straight to the next timer when nothing else can run, so the
scheduler's behaviour over minutes is tested in milliseconds, to the same arithmetic."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar

Result = TypeVar("Result")


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What a run reads and sleeps on: RealClock, or VirtualClock in tests."""

    def now(self) -> float: ...

    def cpu(self) -> float: ...

    def call_at(self, moment: float, callback: Callable[..., object], *args: Any) -> Cancellable: ...

    async def sleep(self, seconds: float) -> None: ...


def wake(waiter: asyncio.Future[None]) -> None:
    """End a wait (its timer fired, or the run is stopping)."""
    if not waiter.done():
        waiter.set_result(None)


class RealClock:
    """perf_counter: finer than uvloop's loop.time(), and the same under both loops."""

    now = staticmethod(time.perf_counter)
    cpu = staticmethod(time.process_time)

    def call_at(self, moment: float, callback: Callable[..., object], *args: Any) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, moment - self.now()), callback, *args)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class _Timer:
    __slots__ = ("callback", "args", "cancelled")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]):
        self.callback, self.args, self.cancelled = callback, args, False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """Time that passes only between steps: ``run(coroutine)`` lets every task run until
    all of them wait on this clock, then moves the clock to the earliest timer and fires it.
    ``pause(seconds)`` moves it on without firing anything, as a stopped process sees time."""

    def __init__(self, start: float = 1000.0, cpu_per_second: float = 0.0):
        self._now = start
        self._timers: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()
        self.cpu_per_second = cpu_per_second
        self._started = start

    def now(self) -> float:
        return self._now

    def cpu(self) -> float:
        return (self._now - self._started) * self.cpu_per_second

    def call_at(self, moment: float, callback: Callable[..., object], *args: Any) -> _Timer:
        timer = _Timer(callback, args)
        heapq.heappush(self._timers, (max(moment, self._now), next(self._order), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        timer = self.call_at(self._now + max(0.0, seconds), wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()

    def pause(self, seconds: float) -> None:
        self._now += seconds

    async def _settle(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(10_000):
            await asyncio.sleep(0)
            if not getattr(loop, "_ready", None):
                await asyncio.sleep(0)
                if not getattr(loop, "_ready", None):
                    return

    async def run(self, coroutine: Awaitable[Result]) -> Result:
        task = asyncio.ensure_future(coroutine)
        while True:
            await self._settle()
            if task.done():
                return task.result()
            while self._timers and self._timers[0][2].cancelled:
                heapq.heappop(self._timers)
            if not self._timers:
                task.cancel()
                raise RuntimeError("every task waits, and on nothing this clock will ever fire")
            moment, _, timer = heapq.heappop(self._timers)
            self._now = max(self._now, moment)
            timer.callback(*timer.args)


async def wait_all(clock: Clock, tasks: Iterable[asyncio.Future[Any]], timeout: float | None,
                   until: asyncio.Event | None = None) -> set[asyncio.Future[Any]]:
    """Wait for ``tasks`` until ``timeout`` on ``clock`` (None: no limit) or until the event
    ``until`` is set; returns those still pending."""
    pending = set(tasks)
    ends: set[asyncio.Future[Any]] = set()
    if timeout is not None:
        ends.add(asyncio.ensure_future(clock.sleep(timeout)))
    if until is not None:
        ends.add(asyncio.ensure_future(until.wait()))
    try:
        while pending and not any(end.done() for end in ends):
            _, pending = await asyncio.wait(pending | ends, return_when=asyncio.FIRST_COMPLETED)
            pending -= ends
    finally:
        for end in ends:
            end.cancel()
    return pending


class PauseDetector:
    """Notices when this process stopped running (SIGSTOP, a long GC, a blocked event loop):
    a 50 ms sleep that took far longer.  Like HdrHistogram's pause detector."""

    def __init__(self, clock: Clock, tick: float = 0.05, threshold: float = 0.5):
        self.clock = clock
        self.tick = tick
        self.threshold = threshold
        self.intervals: list[tuple[float, float]] = []  # (from, to) of each pause

    async def watch(self) -> None:
        while True:
            before = self.clock.now()
            await self.clock.sleep(self.tick)
            after = self.clock.now()
            if after - before - self.tick > self.threshold:
                self.intervals.append((before + self.tick, after))

    def seconds_within(self, start: float, end: float) -> float:
        """How long the process stood still between ``start`` and ``end``."""
        return sum(max(0.0, min(to, end) - max(since, start)) for since, to in self.intervals)

    def covers(self, moment: float) -> bool:
        return any(start <= moment < end for start, end in reversed(self.intervals[-16:]))
