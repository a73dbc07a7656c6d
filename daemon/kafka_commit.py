"""The consumer group's offset commits, each with its rebuild metadata (``daemon.checkpoint``).

One object owns them: the sink hands it the checkpoint of every published batch, and it commits
through the consumer (at-least-once) or inside the producer's open transaction (exactly-once).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry, Gauge

from daemon.checkpoint import Checkpoint
from daemon.checkpoint import TopicPartition as PartitionKey


class KafkaCommitter:
    def __init__(self, group_id: str, consumer: Callable[[], AIOKafkaConsumer], registry: CollectorRegistry) -> None:
        self.group_id = group_id
        self._consumer = consumer
        """The group member's consumer, once it is started."""
        self.commit_age = Gauge(
            "candlecast_last_commit_timestamp_seconds", "Unix time of the last offset commit.", registry=registry
        )

    @staticmethod
    def offsets(checkpoint: dict[PartitionKey, Checkpoint]) -> dict[TopicPartition, tuple[int, str]]:
        """Kafka's form of a checkpoint: the next offset and the rebuild metadata, per partition."""
        return {TopicPartition(t, p): (c.offset, c.metadata()) for (t, p), c in checkpoint.items()}

    async def commit(self, checkpoint: dict[PartitionKey, Checkpoint]) -> None:
        """Commit through the consumer (at-least-once: after the batch's records are acknowledged)."""
        await self._consumer().commit(self.offsets(checkpoint))
        self.commit_age.set(time.time())

    async def add_to_transaction(self, producer: AIOKafkaProducer, checkpoint: dict[PartitionKey, Checkpoint]) -> None:
        """Add the offsets to the producer's open transaction (exactly-once); they count once it commits."""
        await producer.send_offsets_to_transaction(self.offsets(checkpoint), self.group_id)

    def committed(self) -> None:
        """The transaction holding the offsets committed."""
        self.commit_age.set(time.time())
