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
    """With nobody polling, the source holds ``candles_in_flight`` queued candles and the broker sends no more
    than that many unacknowledged (it keeps the rest for the session); once polled, every candle arrives, in order."""
    messages = read_candles(bundled_path("btcusd_1h.csv")).tail_per_symbol(300).messages("1h")
    settings = mqtt_settings(mqtt_broker.plain, consume_candles=True, candles_in_flight=IN_FLIGHT)
    registry = CollectorRegistry()
    source = MqttCandleSource(settings, MqttMetrics(registry))
    await source.start()
    try:
        await publish_over_mqtt(mqtt_broker.plain, messages)
        # Queued: IN_FLIGHT acknowledged, and one taken from aiomqtt that waits for room; the broker sends no
        # more than IN_FLIGHT unacknowledged, so aiomqtt holds the others.
        await wait_until(lambda: registry.get_sample_value(CANDLES) == IN_FLIGHT + 1, timeout_s=30)
        await wait_until(lambda: source.unacknowledged == IN_FLIGHT - 1, timeout_s=30)
        await asyncio.sleep(0.5)  # room for the broker to send more, were it allowed to
        assert source.unacknowledged == IN_FLIGHT - 1
        assert registry.get_sample_value(CANDLES) == IN_FLIGHT + 1
        records: list[SourceRecord] = []
        while len(records) < len(messages):
            for part in await source.poll():
                records.extend(part.live)
    finally:
        await source.stop()
    assert [msgspec.json.decode(r.value, type=CandleMessage) for r in records] == [m for _, m in messages]
