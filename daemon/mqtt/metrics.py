"""The MQTT transport's Prometheus metrics, shared by the signal publisher and the candle source."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class MqttMetrics:
    """The transport's metrics, shared by the signal publisher and the candle source."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected = Gauge(
            "candlecast_mqtt_connected", "1 while connected to the MQTT broker.", ["client"], registry=registry
        )
        self.connection_errors = Counter(
            "candlecast_mqtt_connection_errors",
            "Failed or lost MQTT connections, by client and reason.",
            ["client", "reason"],
            registry=registry,
        )
        self.published = Counter(
            "candlecast_mqtt_signals_published", "Signals the MQTT broker acknowledged.", registry=registry
        )
        self.buffered = Gauge(
            "candlecast_mqtt_signals_buffered",
            "Signals waiting for the MQTT broker (in flight included).",
            registry=registry,
        )
        self.dropped = Counter(
            "candlecast_mqtt_signals_dropped", "Signals dropped because the MQTT buffer was full.", registry=registry
        )
        self.candles = Counter(
            "candlecast_mqtt_candles_received", "Candle messages received from MQTT.", registry=registry
        )
