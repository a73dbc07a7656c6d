"""Signals to a real Mosquitto: topics, payloads, properties, retained messages, the bounded buffer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import jsonschema
import msgspec
import pytest

from candlecast.localkafka import free_port
from daemon.signal import Signal
from tests.mqtt.broker import Mosquitto
from tests.mqtt.clients import Subscriber, batch, make_signal, mqtt_settings, publisher, sample
from tests.mqtt.conftest import SharedBroker

pytestmark = pytest.mark.mqtt

SIGNAL_SCHEMA = Path(__file__).parents[2] / "docs" / "schemas" / "signal.v1.json"


async def test_signals_arrive_on_their_symbols_topic_with_the_kafka_headers(mqtt_broker: SharedBroker) -> None:
    """Each signal goes to candlecast/signals/{symbol} as the JSON Kafka carries, in per-symbol order, QoS 1,
    with content type and the schema, model-version, model, route and source headers as MQTT 5 properties."""
    signals = [make_signal(symbol, i) for i in range(5) for symbol in ("AAPL", "BRK.B", "EUR=X")]
    sender, registry = publisher(mqtt_settings(mqtt_broker.plain))
    async with Subscriber(mqtt_broker.plain, "candlecast/signals/#").running() as subscriber:
        await sender.start()
        sender.offer(batch(signals))
        received = await subscriber.wait_for(len(signals))
        await sender.close()

    validator = jsonschema.Draft202012Validator(json.loads(SIGNAL_SCHEMA.read_text()))
    for symbol in ("AAPL", "BRK.B", "EUR=X"):
        arrived = [m for m in received if m.topic.value == f"candlecast/signals/{symbol}"]
        decoded = [msgspec.json.decode(m.payload, type=Signal) for m in arrived]
        assert decoded == [s for s in signals if s.symbol == symbol]
        for message in arrived:
            validator.validate(json.loads(message.payload))
            assert message.qos == 1 and not message.retain
    assert received[0].properties is not None
    properties = received[0].properties.json()
    assert properties["ContentType"] == "application/json"
    assert dict(properties["UserProperty"]) == {
        "schema": "candlecast.signal/1",
        "model-version": "0.0.1",
        "model": "test-ensemble",
        "route": "default",
        "source": "candles/2/100",
    }
    assert sample(registry, "candlecast_mqtt_signals_published_total") == len(signals)
    assert sample(registry, "candlecast_mqtt_signals_buffered") == 0


async def test_the_prefix_is_configurable_and_the_last_signal_can_be_retained(mqtt_broker: SharedBroker) -> None:
    """With retain on, a subscriber that arrives later still gets each symbol's last signal."""
    prefix = "edge/site-7/signals"
    sender, _ = publisher(mqtt_settings(mqtt_broker.plain, topic_prefix=prefix, retain=True))
    await sender.start()
    sender.offer(batch([make_signal("NVDA", i) for i in range(3)]))
    await sender.close()
    async with Subscriber(mqtt_broker.plain, f"{prefix}/#").running() as latecomer:
        # A marker published after subscribing arrives after anything the broker had for us.
        async with aiomqtt.Client("127.0.0.1", mqtt_broker.plain) as client:
            await client.publish(f"{prefix}/marker", b"marker", qos=1)
        message, marker = await latecomer.wait_for(2)
    assert marker.topic.value == f"{prefix}/marker"
    assert message.topic.value == f"{prefix}/NVDA" and message.retain
    assert msgspec.json.decode(message.payload, type=Signal) == make_signal("NVDA", 2)
    assert len(latecomer.messages) == 2, "only the last signal was retained"


async def test_without_a_broker_signals_wait_in_a_bounded_buffer_and_go_out_once_it_is_up(
    fresh_broker: Callable[[int | None], Mosquitto],
) -> None:
    """Start with no broker: start() does not fail, the buffer keeps the newest ``buffer_limit`` signals
    (dropped ones counted), and they are delivered when a broker appears."""
    port = free_port()
    sender, registry = publisher(mqtt_settings(port, buffer_limit=5))
    await sender.start()
    signals = [make_signal("MSFT", i) for i in range(8)]
    sender.offer(batch(signals))
    assert sender.pending == 5
    assert sample(registry, "candlecast_mqtt_signals_dropped_total") == 3
    assert sample(registry, "candlecast_mqtt_signals_buffered") == 5
    assert sample(registry, "candlecast_mqtt_connection_errors_total", client="signals", reason="unreachable") >= 1

    fresh_broker(port).start()
    async with Subscriber(port, "candlecast/signals/#").running() as subscriber:
        received = await subscriber.wait_for(5)
        await sender.close()
    assert [msgspec.json.decode(m.payload, type=Signal) for m in received] == signals[3:]
    assert sample(registry, "candlecast_mqtt_connected", client="signals") == 0
