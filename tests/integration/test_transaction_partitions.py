"""A transaction whose partitions each take several record batches adds all its partitions in one request."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import TopicPartition

from candlecast.bench.publish_cost import new_sink, signal_batch, sink_settings
from candlecast.localkafka import LocalKafka
from tests.support.kafka import create_topics, read_records

pytestmark = pytest.mark.kafka

PARTITIONS = 5


def recording(added: list[set[TopicPartition]], send: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Any]:
    async def add_partitions(partitions: Any) -> Any:
        added.append(set(partitions))
        return await send(partitions)

    return add_partitions


async def test_every_partition_joins_the_transaction_in_one_request(kafka: LocalKafka) -> None:
    """With 1 KiB producer batches every partition's signals take several batches; the first batch of each
    is queued before any second one, so one AddPartitionsToTxn names every partition (queued partition by
    partition, a partition's second batch waited for its first to be sent, and each later partition was
    added in a round trip of its own), and every signal is published."""
    bootstrap = kafka.bootstrap_servers
    topic = f"txn-partitions-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, {topic: PARTITIONS, f"{topic}.dlq": 1})
    settings = sink_settings(bootstrap, "exactly_once", topic, topic).model_copy(update={"producer_batch_bytes": 1024})
    sink = new_sink(settings, per_record=False)
    await sink.start()
    added: list[set[TopicPartition]] = []
    try:
        producer = await sink._ready_producer()
        sender = producer._sender
        sender._do_add_partitions_to_txn = recording(added, sender._do_add_partitions_to_txn)
        batch = signal_batch(200)
        await sink.publish(batch)
    finally:
        await sink.stop()
    published = await read_records(bootstrap, topic, expected=len(batch.signals), settle_s=0.5)
    assert len(published) == len(batch.signals)
    assert {r.partition for r in published} == set(range(PARTITIONS)), "the signals span every partition"
    assert added, "the transaction added its partitions"
    assert added[0] == {TopicPartition(topic, p) for p in range(PARTITIONS)}
    assert len(added) == 1
