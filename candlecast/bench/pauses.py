"""What stalls the daemon's event loop during a phase: the collector's full collections and the longest
late wake-up of a short periodic timer (a GIL held, a collection, the process descheduled).

A steady phase's p99 is its 30 or so slowest candles out of 3,000: one pause of 100-200 ms delays
every candle in flight at once and sets it alone. These figures say whether a phase had one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

TICK_S = 0.005
OLDEST = 2


@dataclass(frozen=True)
class Pauses:
    """Over one phase."""

    full_collections: int
    """Collections of the oldest generation."""
    longest_collection_ms: float
    """Wall time of the longest collection of any generation."""
    collection_cpu_ms: float
    """CPU time of the phase's collections, all generations (this thread's: what the collector cost)."""
    longest_stall_ms: float
    """The longest a ``TICK_S`` timer woke up late."""


class PauseWatch:
    """Records collections and timer lateness from ``watching`` until it ends; ``mark`` and ``since``
    cut the records into phases."""

    def __init__(
        self,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._collections: list[tuple[int, float, float]] = []
        """(generation, wall seconds, CPU seconds) of each collection."""
        self._stalls: list[float] = []
        self._started = (0.0, 0.0)

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = (time.perf_counter(), time.thread_time())
            return
        wall, cpu = self._started
        self._collections.append((info["generation"], time.perf_counter() - wall, time.thread_time() - cpu))

    async def _tick(self) -> None:
        while True:
            before = self._clock()
            await self._sleep(TICK_S)
            self._stalls.append(self._clock() - before - TICK_S)

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[PauseWatch]:
        gc.callbacks.append(self._on_collection)
        ticker = asyncio.create_task(self._tick())
        try:
            yield self
        finally:
            ticker.cancel()
            gc.callbacks.remove(self._on_collection)

    def mark(self) -> tuple[int, int]:
        return len(self._collections), len(self._stalls)

    def since(self, mark: tuple[int, int]) -> Pauses:
        collections = self._collections[mark[0] :]
        stalls = self._stalls[mark[1] :]
        return Pauses(
            full_collections=sum(1 for generation, _, _ in collections if generation == OLDEST),
            longest_collection_ms=1000 * max((wall for _, wall, _ in collections), default=0.0),
            collection_cpu_ms=1000 * sum(cpu for _, _, cpu in collections),
            longest_stall_ms=1000 * max(stalls, default=0.0),
        )
