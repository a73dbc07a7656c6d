"""The benchmark's load: synthetic candles for many symbols, written to Kafka in bulk or paced.

``Workload`` makes valid candles (each symbol's next candle opens one calendar slot after its
previous one, so windows fill without gaps). ``prefill`` writes a backlog in whole batches;
``Generator`` is a child process that produces candles on a schedule or in one transaction, so
that producing them does not take the event loop of the daemon under test.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from daemon.candle import CandleMessage
from daemon.intervals import Interval

Message = tuple[int, bytes, bytes]
"""(partition, key, value) of a candle record."""

_encoder = msgspec.json.Encoder()
SLOTS_BACK = 5_000
"""The workload's first candle opens this many interval slots before now (all candles are past)."""


class Workload:
    """Random-walk candles for ``symbols`` symbols; every candle of a symbol opens one calendar
    slot after its previous one, so windows fill without gaps and every candle is valid."""

    def __init__(
        self, prefix: str, symbols: int, interval: Interval, partitions: int, seed: int, suffix: str = ""
    ) -> None:
        self.interval = interval
        self.names = [f"{prefix}{i:05d}{suffix}" for i in range(symbols)]
        self.keys = [name.encode() for name in self.names]
        self.partitions = np.arange(symbols) % partitions
        start = interval.slot_index(int(time.time() * 1000)) - SLOTS_BACK
        self.next_slot = np.full(symbols, start, dtype=np.int64)
        self.close = np.full(symbols, 100.0)
        self._rng = np.random.default_rng(seed)
        self._cursor = 0

    def __len__(self) -> int:
        return len(self.names)

    def round(self, symbols: npt.NDArray[np.int64] | None = None) -> list[Message]:
        """One candle for each of the given (distinct) symbols, all symbols by default."""
        chosen = np.arange(len(self.names)) if symbols is None else symbols
        opens = self.close[chosen]
        closes = opens * np.exp(self._rng.normal(0.0, 0.01, len(chosen)))
        highs = np.maximum(opens, closes) * 1.002
        lows = np.minimum(opens, closes) * 0.998
        slots = self.next_slot[chosen]
        self.next_slot[chosen] += 1
        self.close[chosen] = closes
        interval = self.interval
        if interval.slot_time(int(slots.max())) > time.time() * 1000:
            raise RuntimeError("the workload ran out of past slots; lower the candle counts")
        return [
            (
                int(self.partitions[s]),
                self.keys[s],
                _encoder.encode(
                    CandleMessage(self.names[s], interval.name, interval.slot_time(slot), o, h, lo, c, 1000.0)
                ),
            )
            for s, slot, o, h, lo, c in zip(
                chosen.tolist(),
                slots.tolist(),
                opens.tolist(),
                highs.tolist(),
                lows.tolist(),
                closes.tolist(),
                strict=True,
            )
        ]

    def rounds(self, count: int) -> list[Message]:
        return [m for _ in range(count) for m in self.round()]

    def stream(self, count: int) -> list[Message]:
        """``count`` candles cycling through the symbols, continuing where the last stream ended."""
        messages: list[Message] = []
        while len(messages) < count:
            take = min(count - len(messages), len(self.names) - self._cursor)
            messages.extend(self.round(np.arange(self._cursor, self._cursor + take)))
            self._cursor = (self._cursor + take) % len(self.names)
        return messages

    def first(self, count: int) -> list[Message]:
        """One candle for each of the first ``count`` symbols (a candle close across symbols)."""
        return self.round(np.arange(count))


async def create_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, count, 1) for name, count in partitions.items()])
        # Producing before every partition has a leader only earns retries (and warnings).
        for _ in range(200):
            described = await admin.describe_topics(list(partitions))
            if all(p["leader"] >= 0 and p["isr"] for topic in described for p in topic["partitions"]):
                break
            await asyncio.sleep(0.05)
    finally:
        await admin.close()


async def prefill(bootstrap: str, topic: str, messages: Sequence[Message]) -> float:
    """Write records in bulk (whole batches per partition, in order); returns seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, max_batch_size=1 << 20
    )
    await producer.start()
    started = time.perf_counter()
    try:
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for partition, key, value in messages:
            by_partition.setdefault(partition, []).append((key, value))
        pending = []
        for partition, records in by_partition.items():
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


@dataclass(frozen=True)
class Paced:
    started: float
    """Wall-clock time of the schedule's start."""
    sent_s: list[float]
    """When each message was handed to the producer, in seconds after ``started``."""
    acked_s: list[float] = field(default_factory=list)
    """When the broker acknowledged each (``acks=all``), in seconds after ``started``: the generator's
    produce round trips, measured outside the daemon's process."""


class Generator:
    """A child process producing candles: paced by a schedule, or in one transaction."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_generator_main, args=(bootstrap, topic, child), daemon=True)

    async def __aenter__(self) -> Generator:
        self._process.start()
        await self._reply()
        return self

    async def __aexit__(self, *_: object) -> None:
        self._conn.send(("stop",))
        await asyncio.to_thread(self._process.join, 30)

    async def _reply(self) -> Any:
        reply = await asyncio.to_thread(self._conn.recv)
        if isinstance(reply, tuple) and reply and reply[0] == "error":
            raise RuntimeError(f"candle generator failed: {reply[1]}")
        return reply

    async def paced(self, messages: Sequence[Message], offsets_s: Sequence[float], topic: str | None = None) -> Paced:
        """Send message ``i`` at ``offsets_s[i]`` seconds after the start, to ``topic`` (default the generator's)."""
        self._conn.send(("paced", list(messages), list(offsets_s), topic))
        started, sent_s, acked_s = await self._reply()
        return Paced(started, sent_s, acked_s)

    async def transaction(self, messages: Sequence[Message]) -> float:
        """Send all in one transaction; returns the wall-clock time its commit returned."""
        self._conn.send(("transaction", list(messages)))
        committed: float = await self._reply()
        return committed


def _generator_main(bootstrap: str, topic: str, conn: Connection) -> None:
    try:
        asyncio.run(_generate(bootstrap, topic, conn))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", repr(exc)))


async def _generate(bootstrap: str, topic: str, conn: Connection) -> None:
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    transactional = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", transactional_id=f"candlecast-bench-{uuid.uuid4().hex[:8]}"
    )
    await plain.start()
    await transactional.start()
    conn.send(("ready",))
    try:
        while True:
            command = await asyncio.to_thread(conn.recv)
            if command[0] == "stop":
                return
            if command[0] == "paced":
                conn.send(await _send_paced(plain, command[3] or topic, command[1], command[2]))
            else:
                async with transactional.transaction():
                    for partition, key, value in command[1]:
                        await transactional.send(topic, value, key=key, partition=partition)
                conn.send(time.time())
    finally:
        await plain.stop()
        await transactional.stop()


async def _send_paced(
    producer: AIOKafkaProducer, topic: str, messages: list[Message], offsets: list[float]
) -> tuple[float, list[float], list[float]]:
    futures = []
    sent_s: list[float] = []
    acked_s = [float("nan")] * len(messages)
    wall = time.time()
    started = time.perf_counter()
    index = 0
    while index < len(messages):
        ahead = offsets[index] - (time.perf_counter() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)
        now = time.perf_counter() - started
        while index < len(messages) and offsets[index] <= now:
            partition, key, value = messages[index]
            sent_s.append(time.perf_counter() - started)
            future = await producer.send(topic, value, key=key, partition=partition)
            future.add_done_callback(functools.partial(_stamp, acked_s, index, started))
            futures.append(future)
            index += 1
    await asyncio.gather(*futures)
    return wall, sent_s, acked_s


def _stamp(acked_s: list[float], index: int, started: float, _: object) -> None:
    acked_s[index] = time.perf_counter() - started
