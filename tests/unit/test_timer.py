"""The fake timer: a sleep ends when the test moves time past its deadline, never before."""

from __future__ import annotations

import asyncio

from daemon.timer import FakeTimer, settled, wait_event


async def test_a_sleep_ends_only_once_time_passes_its_deadline() -> None:
    """A 2 s sleep is still pending after 1.99 s of advances and done after 2 s; wall and monotonic time
    move together."""
    clock = FakeTimer(100.0)
    sleeping = asyncio.create_task(clock.sleep(2.0))
    await clock.sleeping()
    assert clock.deadlines == [2.0]
    clock.advance(1.99)
    await settled()
    assert not sleeping.done()
    clock.advance(0.01)
    await settled()
    assert sleeping.done()
    assert (clock.time(), clock.monotonic()) == (102.0, 2.0)


async def test_run_for_lets_a_repeating_loop_see_every_tick() -> None:
    """A loop sleeping 0.25 s at a time ticks 40 times in 10 s of ``run_for``, each at its own deadline."""
    clock = FakeTimer()
    ticks: list[float] = []

    async def loop() -> None:
        while True:
            await clock.sleep(0.25)
            ticks.append(clock.monotonic())

    task = asyncio.create_task(loop())
    await clock.sleeping()
    await clock.run_for(10.0)
    task.cancel()
    assert ticks == [0.25 * n for n in range(1, 41)]


async def test_wait_event_returns_at_the_event_or_at_the_timeout() -> None:
    """``wait_event`` is true as soon as the event is set, false once the timeout passes on the timer,
    and a cancelled sleep is no longer pending."""
    clock = FakeTimer()
    event = asyncio.Event()
    waiting = asyncio.create_task(wait_event(clock, event, 5.0))
    await clock.sleeping()
    event.set()
    assert await waiting is True
    await settled()
    assert clock.deadlines == []

    event.clear()
    timing_out = asyncio.create_task(wait_event(clock, event, 5.0))
    await clock.sleeping()
    await clock.run_for(5.0)
    assert await timing_out is False
