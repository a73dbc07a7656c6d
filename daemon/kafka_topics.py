"""Whether a topic exists on the broker, from one metadata request: the daemon is not ready while
its candle topic is missing, and ``candlecast replay`` refuses a topic that is not there."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code

UNKNOWN_TOPIC_OR_PARTITION = 3


async def topic_exists(admin: AIOKafkaAdminClient, topic: str) -> bool:
    """Whether the broker knows ``topic``; other metadata errors raise ``KafkaError``."""
    described: list[dict[str, Any]] = await admin.describe_topics([topic])
    entry = next((e for e in described if e["topic"] == topic), None)
    if entry is None or entry["error_code"] == UNKNOWN_TOPIC_OR_PARTITION:
        return False
    if entry["error_code"]:
        raise for_code(entry["error_code"])(f"describing topic {topic}")
    return True


async def topic_answer(admin: AIOKafkaAdminClient, topic: str, timeout_s: float) -> bool | None:
    """Whether ``topic`` exists, the cluster's metadata and the topic each asked within ``timeout_s``;
    ``None`` when the broker does not answer (readiness, in the daemon and the stream server)."""
    try:
        async with asyncio.timeout(timeout_s):
            await admin.describe_cluster()
        async with asyncio.timeout(timeout_s):
            return await topic_exists(admin, topic)
    except (KafkaError, TimeoutError, OSError):
        return None
