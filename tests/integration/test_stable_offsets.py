"""Committed offsets during a transaction's commit: stale with OffsetFetch v3, settled with v7."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from candlecast.localkafka import LocalKafka
from daemon.kafka_offsets import StableOffsets
from tests.support.kafka import create_topics

pytestmark = pytest.mark.kafka


async def test_pending_transactional_offsets_are_awaited(kafka: LocalKafka) -> None:
    """While a transaction holding offsets is open, v3 reads the old offset; the stable fetch waits for the commit."""
    bootstrap = kafka.bootstrap_servers
    topic, group = f"stable-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, {topic: 1})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tx-{group}")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    stable = StableOffsets({"bootstrap_servers": bootstrap}, group)
    await producer.start()
    await admin.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"signal", partition=0)
        await producer.send_offsets_to_transaction({TopicPartition(topic, 0): (42, "meta")}, group)

        legacy = await admin.list_consumer_group_offsets(group, partitions=[TopicPartition(topic, 0)])
        assert legacy[TopicPartition(topic, 0)].offset == -1, "v3 does not see the pending commit"

        started = time.monotonic()
        fetching = asyncio.create_task(stable.fetch({topic: [0]}))
        await asyncio.sleep(1.0)
        assert not fetching.done(), "the stable fetch must wait while the commit is pending"
        await producer.commit_transaction()
        committed = await asyncio.wait_for(fetching, 30)
        assert committed[(topic, 0)].offset == 42
        assert committed[(topic, 0)].metadata == "meta"
        assert time.monotonic() - started >= 1.0
    finally:
        await stable.close()
        await admin.close()
        await producer.stop()
