"""The daemon's Kafka topics on a broker: creating them (``kafka up``, the demo) and checking that
one exists (``replay``), so a missing topic is a message that names it, not a client traceback."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

from candlecast.errors import CandlecastError, TransportError
from daemon.kafka_topics import topic_exists
from daemon.settings import KafkaSettings

TOPIC_ALREADY_EXISTS = 36
CANDLE_PARTITIONS = 3
# About 5 s for a new topic to reach the metadata of the broker answering.
METADATA_ATTEMPTS = 10
METADATA_PAUSE_S = 0.5


class MissingTopicError(CandlecastError):
    """A topic a command needs does not exist on the broker."""


def default_topics(partitions: int = CANDLE_PARTITIONS) -> dict[str, int]:
    """The settings' default candle, signal and dead-letter topics, with their partition counts."""
    kafka = KafkaSettings()
    return {kafka.candles_topic: partitions, kafka.signals_topic: partitions, kafka.dead_letter_topic: 1}


async def create_topics(bootstrap_servers: str, partitions: Mapping[str, int], replication: int = 1) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(name, count, replication) for name, count in partitions.items()])
    finally:
        await admin.close()
    created = []
    for name, code, *detail in response.topic_errors:
        if code == 0:
            created.append(name)
        elif code != TOPIC_ALREADY_EXISTS:
            raise for_code(code)(f"creating topic {name}: {detail[-1] if detail else code}")
    return created


async def require_topic(
    bootstrap_servers: str, topic: str, *, attempts: int = METADATA_ATTEMPTS, pause_s: float = METADATA_PAUSE_S
) -> None:
    """Raise ``MissingTopicError`` naming ``topic`` when the broker does not have it.

    A topic created a moment ago may not be in every broker's metadata yet (a cluster propagates it
    asynchronously), so a missing topic is asked for again a few times before it counts as missing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        await admin.start()
        for attempt in range(attempts):
            if exists := await topic_exists(admin, topic):
                break
            if attempt + 1 < attempts:
                await asyncio.sleep(pause_s)
    except KafkaError as exc:
        raise TransportError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    finally:
        await admin.close()
    if not exists:
        raise MissingTopicError(
            f"topic {topic!r} does not exist on {bootstrap_servers}; create it (`make kafka-up` creates the "
            "default topics) or pass --topic"
        )
