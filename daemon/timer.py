"""Waiting on the daemon's clock: a ``Timer`` is a ``Clock`` that can also sleep.

Every periodic loop (heartbeat, readiness, watchdog keep-alives, broker probe, reload polling,
connection back-off) and the batcher's ``max_wait_ms`` wait sleep on the timer, never on the event
loop's own clock, so a test hands the daemon a ``FakeTimer`` and moves time by hand: a sleep ends
when the test advances past its deadline, not when real time passes. The clock itself stays in the
sans-IO core (``daemon.clock``); sleeping needs asyncio, so it lives here, at the edge.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any, Protocol

from daemon.clock import Clock, FakeClock, SystemClock


class Timer(Clock, Protocol):
    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock's monotonic time."""
        ...


class SystemTimer(SystemClock):
    """The machine's clocks; sleeps on the event loop."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeTimer(FakeClock):
    """A ``FakeClock`` whose sleeps end only when ``advance`` or ``run_for`` moves time past their deadline."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        super().__init__(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._slept = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.monotonic() + seconds, next(self._order), future))
        self._slept.set()
        await future

    @property
    def deadlines(self) -> list[float]:
        """Monotonic deadlines of the sleeps still pending, earliest first."""
        return sorted(deadline for deadline, _, future in self._sleepers if not future.done())

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleep whose deadline it reaches (they run at the next yield)."""
        super().advance(seconds)
        now = self.monotonic()
        while self._sleepers and self._sleepers[0][0] <= now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():  # a cancelled sleep leaves its cancelled future behind
                future.set_result(None)

    async def run_for(self, seconds: float, *, settle: int = 20) -> None:
        """Advance ``seconds`` deadline by deadline, letting the woken tasks run (``settle`` loop turns)
        at each, so a loop that sleeps again sees every one of its ticks within the span."""
        until = self.monotonic() + seconds
        while (due := next(iter(self.deadlines), None)) is not None and due <= until:
            self.advance(max(0.0, due - self.monotonic()))
            await settled(settle)
        self.advance(max(0.0, until - self.monotonic()))
        await settled(settle)

    async def sleeping(self, count: int = 1) -> None:
        """Wait until at least ``count`` sleeps are pending (the loops under test reached their wait)."""
        while len(self.deadlines) < count:
            self._slept.clear()
            await self._slept.wait()


async def settled(turns: int = 20) -> None:
    """Let ready tasks run for ``turns`` turns of the event loop; no time passes."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def done_within(timer: Timer, future: asyncio.Future[Any], timeout_s: float) -> bool:
    """Wait until ``future`` is done or ``timeout_s`` passes on ``timer``; whether it is done (it is
    left running otherwise)."""
    if future.done():
        return True
    sleeping = asyncio.ensure_future(timer.sleep(timeout_s))
    try:
        await asyncio.wait({future, sleeping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeping.cancel()
    return future.done()


async def wait_event(timer: Timer, event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` passes on ``timer``; whether it was set."""
    if event.is_set():
        return True
    waiting = asyncio.ensure_future(event.wait())
    try:
        return await done_within(timer, waiting, timeout_s)
    finally:
        waiting.cancel()
