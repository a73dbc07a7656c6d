"""The pause watch: collections and event-loop stalls, cut into phases."""

from __future__ import annotations

import asyncio
import gc

from candlecast.bench.pauses import PauseWatch


class SteppedClock:
    """A clock that a sleep advances by its length, plus whatever stall is due next."""

    def __init__(self) -> None:
        self.now = 0.0
        self.stall = 0.0
        self.ticks = 0
        self.ticked = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)
        self.now += seconds + self.stall
        self.stall = 0.0
        self.ticks += 1
        self.ticked.set()


async def ticks(clock: SteppedClock, count: int) -> None:
    """Until the watch's timer has slept ``count`` more times."""
    for _ in range(count):
        clock.ticked.clear()
        await clock.ticked.wait()


async def test_a_full_collection_and_a_late_timer_are_counted_in_their_phase_only() -> None:
    """A full collection and a timer 80 ms late show in the phase they happened in; the next phase,
    which had neither, shows no full collection and no stall."""
    clock = SteppedClock()
    watch = PauseWatch(clock, clock.sleep)
    async with watch.watching():
        await ticks(clock, 2)
        first = watch.mark()
        gc.collect()
        clock.stall = 0.080
        await ticks(clock, 3)
        second = watch.mark()
        await ticks(clock, 3)
        during, after = watch.since(first), watch.since(second)
    assert during.full_collections == 1 and during.collection_cpu_ms >= 0
    assert round(during.longest_stall_ms, 6) == 80.0
    assert after.full_collections == 0
    assert round(after.longest_stall_ms, 6) == 0.0
