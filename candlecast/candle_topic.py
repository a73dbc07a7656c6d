"""Reading candles back from the candle topic by time range, for ``candlecast retrain --from-topic``.

A plain consumer: partitions assigned by hand, no group, nothing committed, so reading never moves
the daemon's offsets. Each partition is read from the offset of its first record at or after
``since`` (Kafka's offsets-for-times, on record timestamps) to the offset of its first record at or
after ``until``, or its end; only committed records are read. Messages of another interval, and
those that are not candle JSON, are skipped and counted; everything else the daemon would reject is
left for the window building to count, as for a candle file.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndTimestamp

from candlecast.candlefile import CandleTable
from candlecast.errors import TransportError
from candlecast.topics import MissingTopicError
from daemon.candle import CandleMessage, parse_ts
from daemon.kafka_source import client_options
from daemon.kafka_topics import topic_exists
from daemon.settings import KafkaSettings

POLL_MS = 500
IDLE_POLLS = 20
"""Polls in a row without a record before a partition that has not reached its stop offset counts
as stuck (about 10 s): the read fails instead of waiting for ever."""


@dataclass
class TopicRead:
    """The candles read and what was skipped, by reason."""

    table: CandleTable
    records: int
    skipped: Counter[str] = field(default_factory=Counter)


def _decode(value: bytes | None, interval: str, skipped: Counter[str]) -> tuple[str, int, list[float]] | None:
    try:
        message = msgspec.json.decode(value or b"", type=CandleMessage)
    except msgspec.DecodeError:
        skipped["not_a_candle"] += 1
        return None
    ts = parse_ts(message.ts)
    if message.interval != interval:
        skipped["other_interval"] += 1
        return None
    if ts is None:
        skipped["bad_ts"] += 1
        return None
    return message.symbol, ts, [message.open, message.high, message.low, message.close, message.volume]


def _ranges(
    starts: dict[TopicPartition, OffsetAndTimestamp | None],
    stops: dict[TopicPartition, OffsetAndTimestamp | None],
    ends: dict[TopicPartition, int],
) -> dict[TopicPartition, tuple[int, int]]:
    """Per partition with records in the range, its first offset and the offset to stop before."""
    ranges = {}
    for tp, start in starts.items():
        stop = stops[tp]
        last = stop.offset if stop is not None else ends[tp]
        if start is not None and start.offset < last:
            ranges[tp] = (start.offset, last)
    return ranges


async def _partition_ids(settings: KafkaSettings, topic: str) -> list[int]:
    """The topic's partitions, from the broker's metadata (with the settings' security options)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        if not await topic_exists(admin, topic):
            raise MissingTopicError(f"topic {topic!r} does not exist on {settings.bootstrap_servers}")
        described: list[dict[str, Any]] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for e in described if e["topic"] == topic for p in e["partitions"])


async def read_topic_candles(
    settings: KafkaSettings, topic: str, *, since_ms: int, until_ms: int, interval: str
) -> TopicRead:
    """The ``interval`` candles published to ``topic`` with record timestamps in ``[since_ms, until_ms)``."""
    consumer = AIOKafkaConsumer(
        **client_options(settings), group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    rows: list[tuple[str, int, list[float]]] = []
    skipped: Counter[str] = Counter()
    records = 0
    try:
        assigned = [TopicPartition(topic, p) for p in await _partition_ids(settings, topic)]
        await consumer.start()
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        starts = await consumer.offsets_for_times(dict.fromkeys(assigned, since_ms))
        stops = await consumer.offsets_for_times(dict.fromkeys(assigned, until_ms))
        remaining = _ranges(starts, stops, ends)
        for tp, (first, _) in remaining.items():
            consumer.seek(tp, first)
        idle = 0
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=POLL_MS)
            idle = 0 if any(batches.values()) else idle + 1
            if idle >= IDLE_POLLS:
                raise TransportError(f"reading {topic}: partitions {sorted(tp.partition for tp in remaining)} stalled")
            for tp, batch in batches.items():
                for record in batch:
                    if tp in remaining and record.offset < remaining[tp][1]:
                        records += 1
                        if (row := _decode(record.value, interval, skipped)) is not None:
                            rows.append(row)
            for tp in list(remaining):
                if await consumer.position(tp) >= remaining[tp][1]:
                    del remaining[tp]
    except KafkaError as exc:
        raise TransportError(f"reading {topic} from {settings.bootstrap_servers}: {exc}") from exc
    finally:
        await consumer.stop()
    table = CandleTable(
        np.asarray([r[0] for r in rows]),
        np.asarray([r[1] for r in rows], dtype=np.int64),
        np.asarray([r[2] for r in rows], dtype=np.float64).reshape(-1, 5),
    )
    return TopicRead(table.select(np.lexsort((table.ts, table.symbols))), records, skipped)


def topic_candles(settings: KafkaSettings, topic: str, *, since_ms: int, until_ms: int, interval: str) -> TopicRead:
    """``read_topic_candles`` for synchronous callers (the ``retrain`` command)."""
    return asyncio.run(read_topic_candles(settings, topic, since_ms=since_ms, until_ms=until_ms, interval=interval))
