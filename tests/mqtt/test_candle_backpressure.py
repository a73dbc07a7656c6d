"""Candles from MQTT are bounded in memory: a daemon that stops polling stops the broker sending."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from candlecast.candlefile import bundled_path, read_candles
from daemon.candle import CandleMessage
from daemon.engine import SourceRecord
from daemon.mqtt.metrics import MqttMetrics
from daemon.mqtt.source import MqttCandleSource
from tests.mqtt.clients import mqtt_settings
from tests.mqtt.conftest import SharedBroker
from tests.mqtt.test_candles import publish_over_mqtt
from tests.support.kafka import wait_until

pytestmark = pytest.mark.mqtt

IN_FLIGHT = 20
CANDLES = "candlecast_mqtt_candles_received_total"


async def test_a_source_that_is_not_polled_holds_a_bounded_number_of_candles(mqtt_broker: SharedBroker) -> None:
    """With nobody polling, the source holds ``candles_in_flight`` candles and reads no more (the broker keeps the
    rest for the session); once polled, every candle arrives, in order."""
    messages = read_candles(bundled_path("btcusd_1h.csv")).tail_per_symbol(300).messages("1h")
    settings = mqtt_settings(mqtt_broker.plain, consume_candles=True, candles_in_flight=IN_FLIGHT)
    registry = CollectorRegistry()
    source = MqttCandleSource(settings, MqttMetrics(registry))
    await source.start()
    try:
        await publish_over_mqtt(mqtt_broker.plain, messages)
        await wait_until(lambda: source.held == IN_FLIGHT, timeout_s=30)
        await asyncio.sleep(0.5)  # room for more to arrive, were the source reading
        assert source.held == IN_FLIGHT
        assert registry.get_sample_value(CANDLES) == IN_FLIGHT
        records: list[SourceRecord] = []
        while len(records) < len(messages):
            for part in await source.poll():
                records.extend(part.live)
    finally:
        await source.stop()
    assert [msgspec.json.decode(r.value, type=CandleMessage) for r in records] == [m for _, m in messages]


BACKLOG = 3000
LIVE = 1000


async def test_a_backlog_drains_without_the_source_ever_holding_more_than_the_bound(
    mqtt_broker: SharedBroker,
) -> None:
    """While a slow pipeline catches up a backlog of thousands of QoS 1 candles (more arriving meanwhile), the
    source never holds more than ``candles_in_flight`` of them, and every candle arrives once, in order."""
    messages = read_candles(bundled_path("btcusd_1h.csv")).tail_per_symbol(BACKLOG + LIVE).messages("1h")
    backlog, live = messages[:BACKLOG], messages[BACKLOG:]
    settings = mqtt_settings(mqtt_broker.plain, consume_candles=True, candles_in_flight=IN_FLIGHT)
    source = MqttCandleSource(settings, MqttMetrics(CollectorRegistry()))
    await source.start()  # the persistent session subscribes
    await source.stop()
    await publish_over_mqtt(mqtt_broker.plain, backlog)
    peak = 0

    async def watch() -> None:
        # Each socket read hands over one packet, so sampling at every turn of the event loop sees every count.
        nonlocal peak
        while True:
            peak = max(peak, source.held)
            await asyncio.sleep(0)

    records: list[SourceRecord] = []
    watcher = asyncio.create_task(watch())
    await source.start()
    try:
        feed = asyncio.create_task(publish_over_mqtt(mqtt_broker.plain, live))
        while len(records) < len(messages):
            for part in await source.poll():
                records.extend(part.live)
            await asyncio.sleep(0.002)  # the pipeline scoring what it took
        await feed
    finally:
        watcher.cancel()
        await source.stop()
    assert [msgspec.json.decode(r.value, type=CandleMessage) for r in records] == [m for _, m in messages]
    assert 0 < peak <= IN_FLIGHT
