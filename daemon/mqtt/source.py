"""Candles in from MQTT, for edge deployments.

``MqttCandleSource`` subscribes to ``candles_topic`` with a persistent session, so the broker
queues candles while the daemon is away. MQTT has no offsets: its records stay out of Kafka
checkpoints (``PartitionRecords.committable``), and windows cannot be rebuilt from a log after a
restart; they warm up again from new candles (docs/mqtt.md).
"""

from __future__ import annotations

import asyncio
import time

import aiomqtt
import structlog

from daemon.engine import SourceRecord
from daemon.mqtt.connection import Connection
from daemon.mqtt.metrics import MqttMetrics
from daemon.ports import CandleSource, PartitionRecords
from daemon.settings import MqttSettings

log = structlog.get_logger("candlecast.mqtt")

MQTT_PARTITION = -2
"""Window-store partition of windows fed from MQTT: no Kafka partition (those count from 0) and not
the store's free-slot mark (-1), so a Kafka rebalance never drops them and they never set a
Kafka partition's rebuild offset."""
POLL_WAIT_S = 0.1
MAX_POLL_RECORDS = 2000


class MqttCandleSource:
    """Candle messages from an MQTT topic filter, as a pipeline ``CandleSource``."""

    def __init__(self, settings: MqttSettings, metrics: MqttMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.topic = f"mqtt:{settings.candles_topic}"
        self._received: asyncio.Queue[SourceRecord] = asyncio.Queue(settings.candles_in_flight)
        self._sequence = 0
        self._client: aiomqtt.Client | None = None
        # The broker sends at most candles_in_flight candles not yet acknowledged, and each is
        # acknowledged once it is in the bounded queue: a daemon that stops polling stops the broker,
        # which keeps the rest for the persistent session, instead of aiomqtt queueing without bound.
        self._connection = Connection(
            settings,
            metrics,
            "candles",
            persistent=True,
            session=self._receive,
            receive_maximum=settings.candles_in_flight,
        )

    @property
    def unacknowledged(self) -> int:
        """Candles received from the broker but not yet taken into the bounded queue (nor acknowledged)."""
        return 0 if self._client is None else self._client._queue.qsize()

    async def start(self) -> None:
        await self._connection.start()

    async def stop(self) -> None:
        await self._connection.stop()

    async def poll(self) -> list[PartitionRecords]:
        """The candles received so far (waiting briefly for the first), none of them committable."""
        records: list[SourceRecord] = []
        if self._received.empty():
            try:
                records.append(await asyncio.wait_for(self._received.get(), POLL_WAIT_S))
            except TimeoutError:
                return []
        return self._batch(records)

    def take_ready(self) -> list[PartitionRecords]:
        """The candles already received, without waiting."""
        return self._batch([])

    def _batch(self, records: list[SourceRecord]) -> list[PartitionRecords]:
        while not self._received.empty() and len(records) < MAX_POLL_RECORDS:
            records.append(self._received.get_nowait())
        if not records:
            return []
        return [PartitionRecords(self.topic, MQTT_PARTITION, live=records, committable=False)]

    async def _receive(self, client: aiomqtt.Client) -> None:
        self._client = client
        await client.subscribe(self.settings.candles_topic, qos=self.settings.qos)
        log.info("subscribed to candles", topic=self.settings.candles_topic)
        async for message in client.messages:
            record = SourceRecord(
                f"mqtt:{message.topic.value}",
                MQTT_PARTITION,
                self._sequence,
                None,
                message.payload,
                int(time.time() * 1000),
                keyed=False,
            )
            self._sequence += 1
            self.metrics.candles.inc()
            await self._received.put(record)
            if message.qos:
                client._client.ack(message.mid, message.qos)  # manual acknowledgement


class MergedCandleSource:
    """Kafka's records, then whatever MQTT has ready: candles from both feed one pipeline."""

    def __init__(self, primary: CandleSource, mqtt: MqttCandleSource) -> None:
        self.primary = primary
        self.mqtt = mqtt

    async def poll(self) -> list[PartitionRecords]:
        polled = await self.primary.poll()
        return polled + self.mqtt.take_ready()
