"""Candles in from MQTT, for edge deployments.

``MqttCandleSource`` subscribes to ``candles_topic`` with a persistent session, so the broker
queues candles while the daemon is away. MQTT has no offsets: its records stay out of Kafka
checkpoints (``PartitionRecords.committable``), and windows cannot be rebuilt from a log after a
restart; they warm up again from new candles (docs/mqtt.md).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

import aiomqtt
import structlog

from daemon.engine import SourceRecord
from daemon.mqtt.bounded_client import BoundedClient
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


@dataclass(frozen=True)
class _Received:
    """A candle message received and not yet acknowledged."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    arrived_ms: int


class MqttCandleSource:
    """Candle messages from an MQTT topic filter, as a pipeline ``CandleSource``.

    It holds at most ``candles_in_flight`` candles the pipeline has not taken: a full source reads
    no more from the broker's connection (``BoundedClient``), and each candle is acknowledged only
    when the pipeline takes it, so the broker keeps the rest in the persistent session. A lost
    connection drops what was held, unacknowledged, and the broker sends it again.
    """

    def __init__(self, settings: MqttSettings, metrics: MqttMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.topic = f"mqtt:{settings.candles_topic}"
        self._received: deque[_Received] = deque()
        self._arrived = asyncio.Event()
        self._sequence = 0
        self._client: BoundedClient | None = None
        self._connection = Connection(
            settings,
            metrics,
            "candles",
            persistent=True,
            session=self._receive,
            receive_maximum=settings.candles_in_flight,
            read_limit=settings.candles_in_flight,
        )

    @property
    def held(self) -> int:
        """Candles received from the broker that the pipeline has not taken (none of them acknowledged)."""
        return 0 if self._client is None else self._client.held

    async def start(self) -> None:
        await self._connection.start()

    async def stop(self) -> None:
        await self._connection.stop()

    async def poll(self) -> list[PartitionRecords]:
        """The candles received so far (waiting briefly for the first), none of them committable."""
        if not self._received:
            self._arrived.clear()
            try:
                async with asyncio.timeout(POLL_WAIT_S):
                    await self._arrived.wait()
            except TimeoutError:
                return []
        return self._take()

    def take_ready(self) -> list[PartitionRecords]:
        """The candles already received, without waiting."""
        return self._take()

    def _take(self) -> list[PartitionRecords]:
        """Hand the received candles to the pipeline, acknowledging each: from here on they are its."""
        records: list[SourceRecord] = []
        while self._received and len(records) < MAX_POLL_RECORDS:
            received = self._received.popleft()
            records.append(
                SourceRecord(
                    received.topic,
                    MQTT_PARTITION,
                    self._sequence,
                    None,
                    received.payload,
                    received.arrived_ms,
                    keyed=False,
                )
            )
            self._sequence += 1
            if received.qos and self._client is not None:
                self._client._client.ack(received.mid, received.qos)  # manual acknowledgement
        if self._client is not None:
            self._client.release(len(records))
        if not records:
            return []
        return [PartitionRecords(self.topic, MQTT_PARTITION, live=records, committable=False)]

    async def _receive(self, client: aiomqtt.Client) -> None:
        if not isinstance(client, BoundedClient):
            raise TypeError("the candle connection makes bounded clients")
        self._client = client
        # Take messages while subscribing: a resumed session's candles come before the SUBACK, and a full
        # source reads nothing more (the SUBACK included) until the pipeline takes some.
        taking = asyncio.create_task(self._take_messages(client))
        subscribing = asyncio.create_task(client.subscribe(self.settings.candles_topic, qos=self.settings.qos))
        try:
            done, _ = await asyncio.wait({taking, subscribing}, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
            log.info("subscribed to candles", topic=self.settings.candles_topic)
            await taking
        finally:
            for task in (taking, subscribing):
                task.cancel()
            await asyncio.gather(taking, subscribing, return_exceptions=True)
            # Not acknowledged: the broker sends them again on the next connection.
            self._client = None
            self._received.clear()

    async def _take_messages(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self._received.append(
                _Received(
                    f"mqtt:{message.topic.value}",
                    message.payload,
                    message.mid,
                    message.qos,
                    int(time.time() * 1000),
                )
            )
            self.metrics.candles.inc()
            self._arrived.set()


class MergedCandleSource:
    """Kafka's records, then whatever MQTT has ready: candles from both feed one pipeline."""

    def __init__(self, primary: CandleSource, mqtt: MqttCandleSource) -> None:
        self.primary = primary
        self.mqtt = mqtt

    async def poll(self) -> list[PartitionRecords]:
        polled = await self.primary.poll()
        return polled + self.mqtt.take_ready()
