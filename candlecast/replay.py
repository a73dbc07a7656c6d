"""Publish candles to a Kafka topic (key = symbol), at a chosen rate or as fast as possible."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import msgspec
from aiokafka import AIOKafkaProducer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from candlecast.daemon.candle import CANDLE_SCHEMA, CandleMessage

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
) -> float:
    """Publish messages in order; ``rate`` is candles per second (0: as fast as possible).

    Returns the seconds it took, until the last message was acknowledged.
    """
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
                    due = started + i / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                pending.append(
                    await producer.send(topic, _encoder.encode(message), key=symbol.encode(), headers=HEADERS)
                )
                if len(pending) >= 1000:
                    await asyncio.gather(*pending)
                    bar.update(task, advance=len(pending))
                    pending.clear()
            await asyncio.gather(*pending)
            bar.update(task, advance=len(pending))
    finally:
        await producer.stop()
    return time.monotonic() - started
