"""Signals out to MQTT.

A pipeline ``on_published`` hook hands each batch over once Kafka has it; the hook only appends to
a bounded buffer, and the publisher's own task sends the buffer in order to
``{topic_prefix}/{symbol}``, so a slow or absent broker never holds up Kafka. A signal leaves the
buffer only when the broker acknowledges it (QoS 1 and 2); after a lost connection the publisher
reconnects with backoff and sends the unacknowledged ones again, so with QoS 1 every signal
reaches the broker at least once (a repeat, same ``signal_id``, when an acknowledgement was
lost). Beyond ``buffer_limit`` the oldest waiting signals are dropped and counted. The Kafka
headers travel as MQTT 5 properties: content type, and ``schema``, ``model-version``, ``model``,
``route`` and ``source`` as user properties.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from daemon.mqtt.connection import Connection, mqtt5_properties
from daemon.mqtt.metrics import MqttMetrics
from daemon.ports import PublishBatch
from daemon.settings import MqttSettings
from daemon.signal import encoder, signal_headers

log = structlog.get_logger("candlecast.mqtt")

SEND_BATCH = 100
"""Signals published concurrently before waiting for their acknowledgements (in order on the wire)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes
    properties: Properties


class MqttSignalPublisher:
    """Publishes signals to ``{topic_prefix}/{symbol}`` from its own task, fed by ``offer``."""

    def __init__(self, settings: MqttSettings, metrics: MqttMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._waiting: deque[Outgoing] = deque()
        self._in_flight: list[Outgoing] = []
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._connection = Connection(settings, metrics, "signals", persistent=False, session=self._send_all)

    @property
    def pending(self) -> int:
        """Signals not yet acknowledged by the broker."""
        return len(self._waiting) + len(self._in_flight)

    def offer(self, batch: PublishBatch) -> None:
        """The pipeline hook: queue the batch's signals; never blocks."""
        for signal, request in batch.signals:
            properties = mqtt5_properties(PacketTypes.PUBLISH)
            headers = signal_headers(
                signal,
                source_topic=request.topic,
                source_partition=request.partition,
                source_offset=request.offset,
            )
            properties.ContentType = dict(headers)["content-type"].decode()
            properties.UserProperty = [(name, value.decode()) for name, value in headers if name != "content-type"]
            topic = f"{self.settings.topic_prefix}/{signal.symbol}"
            self._waiting.append(Outgoing(topic, encoder.encode(signal), properties))
        self._changed()

    async def start(self) -> None:
        await self._connection.start()

    async def close(self, flush_timeout_s: float = 5.0) -> None:
        """Give the broker up to ``flush_timeout_s`` to take what is buffered, then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_timeout_s):
                await self._drained.wait()
        await self._connection.stop()
        if self.pending:
            log.warning("MQTT publisher stopped with signals unsent", unsent=self.pending)

    async def _send_all(self, client: aiomqtt.Client) -> None:
        """Send the buffer until the connection drops (``MqttError``)."""
        client.pending_calls_threshold = SEND_BATCH
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(_until_disconnected(client))
                group.create_task(self._send_loop(client))
        except* aiomqtt.MqttError as lost:
            raise lost.exceptions[0] from None

    async def _send_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wake.wait()
            if not self._waiting:
                self._wake.clear()
                continue
            sending = [self._waiting.popleft() for _ in range(min(SEND_BATCH, len(self._waiting)))]
            self._in_flight = sending
            try:
                await asyncio.gather(
                    *(
                        client.publish(
                            m.topic,
                            m.payload,
                            qos=self.settings.qos,
                            retain=self.settings.retain,
                            properties=m.properties,
                        )
                        for m in sending
                    )
                )
            except BaseException:
                # Unacknowledged: back to the front, in order, to be sent again after reconnecting.
                self._waiting.extendleft(reversed(sending))
                raise
            else:
                self.metrics.published.inc(len(sending))
            finally:
                self._in_flight = []
                self._changed()

    def _changed(self) -> None:
        """Keep the buffer within its limit (dropping the oldest waiting), update the gauge, wake the sender."""
        dropped = min(len(self._waiting), max(0, self.pending - self.settings.buffer_limit))
        for _ in range(dropped):
            self._waiting.popleft()
        if dropped:
            self.metrics.dropped.inc(dropped)
            log.warning("MQTT buffer full; dropped the oldest signals", dropped=dropped)
        self.metrics.buffered.set(self.pending)
        if self.pending:
            self._drained.clear()
            self._wake.set()
        else:
            self._drained.set()


async def _until_disconnected(client: aiomqtt.Client) -> None:
    """Returns never: raises ``MqttError`` once the connection is lost (aiomqtt reports it to its iterator)."""
    async for _ in client.messages:
        pass
