"""Candles from MQTT through the daemon: scored like Kafka's, kept out of Kafka's offset commits."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import aiomqtt
import msgspec
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry

from candlecast.candlefile import bundled_path, read_candles
from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from daemon.backtest import backtest, candle_records
from daemon.batching import BatchPolicy
from daemon.candle import CandleMessage
from daemon.core import build_core
from daemon.engine import SourceRecord
from daemon.mqtt.metrics import MqttMetrics
from daemon.mqtt.source import MQTT_PARTITION, MqttCandleSource
from daemon.signal import Signal
from models.torchscript import load_artifact
from tests.mqtt.clients import Subscriber, mqtt_settings
from tests.mqtt.conftest import SharedBroker
from tests.support.kafka import daemon_settings, fresh_topics, read_records, running_daemon, wait_until

pytestmark = pytest.mark.mqtt

CANDLES_PER_SYMBOL = 70
FROM_KAFKA = ("AAPL", "AMZN")
FROM_MQTT = ("NVDA", "META")


async def publish_over_mqtt(port: int, messages: list[tuple[str, CandleMessage]]) -> None:
    """An edge feed: each candle to candlecast/candles/{symbol}, QoS 1, in time order."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for symbol, message in messages:
            await client.publish(f"candlecast/candles/{symbol}", msgspec.json.encode(message), qos=1)


async def test_the_source_yields_candles_in_order_and_never_as_committable(mqtt_broker: SharedBroker) -> None:
    """The CandleSource protocol on its own: what arrives, in arrival order, outside Kafka's checkpoints."""
    messages = read_candles(bundled_path("btcusd_1h.csv")).tail_per_symbol(30).messages("1h")
    source = MqttCandleSource(mqtt_settings(mqtt_broker.plain, consume_candles=True), MqttMetrics(CollectorRegistry()))
    await source.start()
    try:
        assert await source.poll() == []
        await publish_over_mqtt(mqtt_broker.plain, messages)
        records: list[SourceRecord] = []
        while len(records) < len(messages):
            for part in await source.poll():
                assert (part.partition, part.committable, part.replay) == (MQTT_PARTITION, False, [])
                records.extend(part.live)
    finally:
        await source.stop()
    assert [msgspec.json.decode(r.value, type=CandleMessage) for r in records] == [m for _, m in messages]
    assert [r.offset for r in records] == list(range(len(messages)))
    assert {r.topic for r in records} == {"mqtt:candlecast/candles/BTCUSD"}


@pytest.mark.kafka
async def test_candles_from_mqtt_are_scored_and_never_committed_to_kafka(
    kafka: LocalKafka, mqtt_broker: SharedBroker, test_artifact: Path
) -> None:
    table = read_candles(bundled_path("us_stocks_1d.csv")).tail_per_symbol(CANDLES_PER_SYMBOL)
    kafka_candles = table.only(list(FROM_KAFKA)).messages("1d")
    mqtt_candles = table.only(list(FROM_MQTT)).messages("1d")
    topics = await fresh_topics(kafka.bootstrap_servers)
    mqtt = mqtt_settings(mqtt_broker.plain, consume_candles=True)
    settings = daemon_settings(kafka.bootstrap_servers, topics, test_artifact).model_copy(update={"mqtt": mqtt})
    await publish_candles(kafka_candles, bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)
    per_symbol = CANDLES_PER_SYMBOL - load_artifact(test_artifact).manifest.window + 1
    expected = per_symbol * len(FROM_KAFKA + FROM_MQTT)

    async with (
        Subscriber(mqtt_broker.plain, "candlecast/signals/#").running() as watcher,
        running_daemon(settings) as daemon,
    ):
        await asyncio.wait_for(daemon.became_ready.wait(), 60)
        await wait_until(
            lambda: daemon.registry.get_sample_value("candlecast_mqtt_connected", {"client": "candles"}) == 1
        )
        await publish_over_mqtt(mqtt_broker.plain, mqtt_candles)
        records = await read_records(kafka.bootstrap_servers, topics.signals, expected=expected, settle_s=1.0)
        over_mqtt = await watcher.wait_for(expected)

    published = [msgspec.json.decode(r.value, type=Signal) for r in records]
    assert len(published) == expected
    sources: dict[str, set[str]] = defaultdict(set)
    for record, signal in zip(records, published, strict=True):
        sources[signal.symbol].add(dict(record.headers)["source"].decode().rsplit("/", 2)[0])
    assert {symbol: sources[symbol] for symbol in FROM_MQTT} == {s: {f"mqtt:candlecast/candles/{s}"} for s in FROM_MQTT}
    assert {symbol for symbol in FROM_KAFKA if sources[symbol] == {topics.candles}} == set(FROM_KAFKA)

    # The same signals as the backtest of the same candles, whichever transport brought them.
    model = load_artifact(test_artifact)
    core = build_core(settings, model)
    both = table.only([*FROM_KAFKA, *FROM_MQTT]).messages("1d")
    offline = await backtest(candle_records(both), core.ingestor, core.builder, model, BatchPolicy())
    key = lambda s: (s.symbol, s.ts)  # noqa: E731
    for mine, theirs in zip(sorted(published, key=key), sorted(offline, key=key), strict=True):
        for field, value in msgspec.structs.asdict(mine).items():
            if field != "produced_at":
                assert value == getattr(theirs, field), (mine.symbol, mine.ts, field)
    assert {m.topic.value for m in over_mqtt} == {f"candlecast/signals/{s}" for s in FROM_KAFKA + FROM_MQTT}

    # Committed offsets cover exactly the Kafka candles, with rebuild offsets inside the Kafka log.
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(topics.group)
    finally:
        await admin.close()
    assert {tp.topic for tp in committed} == {topics.candles}
    assert sum(meta.offset for meta in committed.values()) == len(kafka_candles)
    for meta in committed.values():
        rebuild_from = msgspec.json.decode(meta.metadata)["rebuild_from"]
        assert 0 <= rebuild_from <= meta.offset
