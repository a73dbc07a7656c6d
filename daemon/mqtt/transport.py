"""What the daemon runs of MQTT, from its settings: nothing, a signal publisher, a candle source, or both."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry

from daemon.mqtt.metrics import MqttMetrics
from daemon.mqtt.publisher import MqttSignalPublisher
from daemon.mqtt.source import MergedCandleSource, MqttCandleSource
from daemon.ports import CandleSource, PublishBatch
from daemon.settings import MqttSettings


class MqttTransport:
    """What the daemon runs of MQTT, from its settings: nothing, a signal publisher, a candle source, or both."""

    def __init__(self, settings: MqttSettings, registry: CollectorRegistry) -> None:
        active = settings.enabled or settings.consume_candles
        metrics = MqttMetrics(registry) if active else None
        self.publisher = MqttSignalPublisher(settings, metrics) if settings.enabled and metrics else None
        self.candles = MqttCandleSource(settings, metrics) if settings.consume_candles and metrics else None

    @property
    def hooks(self) -> Sequence[Callable[[PublishBatch], None]]:
        """The pipeline's ``on_published`` hooks."""
        return [self.publisher.offer] if self.publisher else []

    def candle_source(self, kafka: CandleSource) -> CandleSource:
        """The pipeline's source: Kafka's, merged with MQTT's when candles come from MQTT too."""
        return MergedCandleSource(kafka, self.candles) if self.candles else kafka

    async def start(self) -> None:
        """Connect; ``ConfigError`` if the broker refuses the settings (an absent broker is retried)."""
        if self.publisher:
            await self.publisher.start()
        if self.candles:
            await self.candles.start()

    async def close(self) -> None:
        if self.candles:
            await self.candles.stop()
        if self.publisher:
            await self.publisher.close()
