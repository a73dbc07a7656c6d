"""Reading candles back from a real Kafka topic by record time, as ``candlecast retrain --from-topic`` does."""

from __future__ import annotations

import uuid

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from candlecast.candle_topic import read_topic_candles
from candlecast.candlefile import bundled_path, read_candles
from candlecast.localkafka import LocalKafka
from daemon.candle import CandleMessage
from daemon.settings import KafkaSettings
from tests.support.kafka import create_topics

HOUR_MS = 3_600_000


async def test_the_records_published_in_the_range_are_read_and_nothing_is_committed(kafka: LocalKafka) -> None:
    """Candles whose records were published in ``[since, until)`` come back in order, those outside
    the range, of another interval or not candles at all do not, and no consumer group is added."""
    bootstrap = kafka.bootstrap_servers
    topic = f"candles-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, {topic: 3})
    table = read_candles(bundled_path("btcusd_1h.csv")).tail_per_symbol(30)
    messages = table.messages("1h")
    published = [int(table.ts[i]) + HOUR_MS for i in range(len(table))]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for index, ((symbol, message), when) in enumerate(zip(messages, published, strict=True)):
            await producer.send_and_wait(topic, msgspec.json.encode(message), key=symbol.encode(), timestamp_ms=when)
            if index == 12:
                daily = CandleMessage("AAPL", "1d", when, 1.0, 1.0, 1.0, 1.0, 1.0)
                await producer.send_and_wait(topic, msgspec.json.encode(daily), key=b"AAPL", timestamp_ms=when)
            if index == 14:
                await producer.send_and_wait(topic, b"not json", key=symbol.encode(), timestamp_ms=when)
    finally:
        await producer.stop()

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        groups = await admin.list_consumer_groups()
        read = await read_topic_candles(
            KafkaSettings(bootstrap_servers=bootstrap),
            topic,
            since_ms=published[10],
            until_ms=published[20],
            interval="1h",
        )
        assert await admin.list_consumer_groups() == groups
    finally:
        await admin.close()

    assert read.table.ts.tolist() == table.ts[10:20].tolist()
    assert read.table.ohlcv.tolist() == table.ohlcv[10:20].tolist()
    assert dict(read.skipped) == {"other_interval": 1, "not_a_candle": 1}
    assert read.records == 12
