"""Reading candles back from a real Kafka topic by record time, and ``candlecast retrain --from-topic`` on them."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from typer.testing import CliRunner

from candlecast.candle_topic import read_topic_candles
from candlecast.candlefile import bundled_path, read_candles
from candlecast.cli import app
from candlecast.localkafka import LocalKafka
from daemon.candle import CandleMessage, format_ts
from daemon.settings import KafkaSettings
from models.retrain import EXIT_REFUSED
from tests.lifecycle.models import HOLDOUT, NAME, champion_registry, recent_csv
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


async def test_retrain_reads_its_candles_back_from_the_topic(kafka: LocalKafka, tmp_path: Path) -> None:
    """``candlecast retrain --from-topic --since --until`` trains and judges on the candles published in
    that range, and records the topic, the range and the records read in the decision."""
    bootstrap = kafka.bootstrap_servers
    topic = f"candles-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, {topic: 3})
    table = read_candles(recent_csv(tmp_path))
    published = [int(ts) + HOUR_MS for ts in table.ts.tolist()]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for (symbol, message), when in zip(table.messages("1h"), published, strict=True):
            await producer.send(topic, msgspec.json.encode(message), key=symbol.encode(), timestamp_ms=when)
        await producer.flush()
    finally:
        await producer.stop()
    registry = await asyncio.to_thread(champion_registry, tmp_path)
    since, until = format_ts(published[100]), format_ts(published[-1] + 1)

    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        [
            "retrain",
            f"--registry={registry.root}",
            f"--model={NAME}",
            "--from-topic",
            f"--topic={topic}",
            f"--since={since}",
            f"--until={until}",
            f"--holdout-candles={HOLDOUT}",
            "--bootstrap=200",
            "--margin=1.0",
        ],
        env={"CANDLECAST_KAFKA__BOOTSTRAP_SERVERS": bootstrap},
    )

    assert result.exit_code == EXIT_REFUSED, result.output
    decision = registry.entry(f"{NAME}/1.0.1").decision()
    assert decision is not None
    source = decision.training
    assert (source["source"], source["topic"], source["records"]) == ("topic", topic, len(table) - 100)
    assert source["start"] == format_ts(int(table.ts[100]))
    assert decision.holdout["end"] == format_ts(int(table.ts[-1]))
