"""Publish candles to a Kafka topic (key = symbol), at a chosen rate or as fast as possible."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import msgspec
from aiokafka import AIOKafkaProducer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from candlecast.topics import require_topic
from daemon.candle import CANDLE_SCHEMA, CandleMessage

_encoder = msgspec.json.Encoder()
HEADERS = [("content-type", b"application/json"), ("schema", CANDLE_SCHEMA.encode())]


async def publish_candles(
    messages: Sequence[tuple[str, CandleMessage]],
    *,
    bootstrap_servers: str,
    topic: str,
    rate: float = 0.0,
    progress: bool = False,
    producer_options: dict[str, object] | None = None,
    on_sent: Callable[[str, int], None] | None = None,
) -> float:
    """Publish messages in order; ``rate`` is candles per second (0: as fast as possible).

    ``on_sent(symbol, ts_ms)`` is called as each message is handed to the producer. Returns the
    seconds it took, until the last message was acknowledged. A missing ``topic`` raises
    ``MissingTopicError`` naming it, before anything is sent.
    """
    await require_topic(bootstrap_servers, topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        linger_ms=5,
        acks="all",
        enable_idempotence=True,
        **(producer_options or {}),
    )
    await producer.start()
    started = time.monotonic()
    bar = Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not progress)
    try:
        with bar:
            task = bar.add_task("replay", total=len(messages))
            pending: list[asyncio.Future[object]] = []
            for i, (symbol, message) in enumerate(messages):
                if rate > 0:
                    delay = started + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                value = _encoder.encode(message)
                pending.append(await producer.send(topic, value, key=symbol.encode(), headers=HEADERS))
                if on_sent is not None:
                    on_sent(symbol, message.ts if isinstance(message.ts, int) else -1)
                if rate > 0:
                    bar.update(task, advance=1)
                if len(pending) >= 1000:
                    await asyncio.gather(*pending)
                    pending.clear()
                    if rate <= 0:
                        bar.update(task, completed=i + 1)
            await asyncio.gather(*pending)
            bar.update(task, completed=len(messages))
    finally:
        await producer.stop()
    return time.monotonic() - started
