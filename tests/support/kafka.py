"""Talking to the real test broker: topics, producing candles, reading signals back."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from daemon.service import Daemon
from daemon.settings import HttpSettings, KafkaSettings, ModelSettings, Settings


@dataclass(frozen=True)
class Topics:
    candles: str
    signals: str
    dead_letters: str
    group: str


async def create_topics(bootstrap: str, partitions: dict[str, int], replication: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, count, replication) for name, count in partitions.items()])
    finally:
        await admin.close()


async def fresh_topics(bootstrap: str, candle_partitions: int = 3, replication: int = 1) -> Topics:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(f"candles-{suffix}", f"signals-{suffix}", f"dlq-{suffix}", f"group-{suffix}")
    await create_topics(
        bootstrap,
        {topics.candles: candle_partitions, topics.signals: candle_partitions, topics.dead_letters: 1},
        replication,
    )
    return topics


async def read_records(
    bootstrap: str,
    topic: str,
    *,
    expected: int,
    timeout_s: float = 60.0,
    settle_s: float = 0.0,
    quiet_s: float | None = None,
    isolation_level: str = "read_committed",
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic from the start until ``expected`` records arrived (then ``settle_s`` more, to
    catch extras), until nothing new arrived for ``quiet_s`` after the first record, or until the
    timeout passed."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level=isolation_level, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        partitions = await _partitions(bootstrap, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        settle_until: float | None = None
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                records.extend(messages)
                last_new = time.monotonic()
            if quiet_s is not None and records and time.monotonic() - last_new > quiet_s:
                break
            if len(records) >= expected and settle_until is None:
                settle_until = time.monotonic() + settle_s
            if settle_until is not None and time.monotonic() >= settle_until:
                break
    finally:
        await consumer.stop()
    return records


async def read_to_end(
    bootstrap: str, topic: str, *, timeout_s: float = 60.0, isolation_level: str = "read_committed"
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic from the start up to its end once no transaction is open on it (its last stable
    offset has reached its high watermark; callers' producers are idle by then): every record below
    that end, none at or past it."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level=isolation_level, enable_auto_commit=False, group_id=None
    )
    watermarks = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_uncommitted", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        await watermarks.start()
        partitions = await _partitions(bootstrap, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        # A group's committed offsets can be visible before its transaction's markers reach this topic.
        while (ends := await consumer.end_offsets(partitions)) != await watermarks.end_offsets(partitions):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic} still has an open transaction after {timeout_s} s")
            await asyncio.sleep(0.2)
        for partition in partitions:
            while await consumer.position(partition) < ends[partition]:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{topic} not read to its end in {timeout_s} s")
                batch = await consumer.getmany(partition, timeout_ms=200)
                records.extend(r for r in batch.get(partition, []) if r.offset < ends[partition])
    finally:
        await watermarks.stop()
        await consumer.stop()
    return records


async def uncommitted(bootstrap: str, topic: str, group: str) -> int:
    """Records of ``topic`` that ``group`` has not committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    try:
        await consumer.start()
        committed = await admin.list_consumer_group_offsets(group)
        ends = await consumer.end_offsets(await _partitions(bootstrap, topic))
    finally:
        await consumer.stop()
        await admin.close()
    return sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())


async def wait_all_committed(bootstrap: str, topic: str, group: str, timeout_s: float = 60.0) -> None:
    """Wait until ``group`` has committed every record of ``topic``: under exactly-once, every output of those
    records is committed too."""
    deadline = time.monotonic() + timeout_s
    left: int | str = "all"
    while True:
        try:
            left = await uncommitted(bootstrap, topic, group)
        except KafkaError:
            pass  # the group's coordinator is not there yet (a new broker creates its offsets topic first)
        else:
            if left == 0:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{group}: {left} records of {topic} still uncommitted after {timeout_s} s")
        await asyncio.sleep(0.2)


async def _partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = described[0]["partitions"]
    if not partitions:
        raise AssertionError(f"topic {topic} has no partitions")
    return [TopicPartition(topic, p["partition"]) for p in sorted(partitions, key=lambda p: p["partition"])]


def daemon_settings(bootstrap: str, topics: Topics, artifact: Any, **kafka: Any) -> Settings:
    return Settings(
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap,
            candles_topic=topics.candles,
            signals_topic=topics.signals,
            dead_letter_topic=topics.dead_letters,
            group_id=topics.group,
            instance_id=kafka.pop("instance_id", "test-0"),
            **kafka,
        ),
        model=ModelSettings(artifact=artifact),
        http=HttpSettings(port=0),
    )


@contextlib.asynccontextmanager
async def running_daemon(settings: Settings) -> AsyncIterator[Daemon]:
    """A daemon running in this event loop; stopped (drained) on exit."""
    daemon = Daemon(settings)
    task = asyncio.create_task(daemon.run())
    try:
        yield daemon
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 120)


async def wait_until(predicate: Any, timeout_s: float = 60.0, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval_s)
