"""The optional MQTT transport (aiomqtt, MQTT 5): signals out, and candles in for edge deployments.

Signals: a pipeline ``on_published`` hook hands each batch over once Kafka has it; the hook only
appends to a bounded buffer, and the publisher's own task sends the buffer in order to
``{topic_prefix}/{symbol}``, so a slow or absent broker never holds up Kafka. A signal leaves
the buffer only when the broker acknowledges it (QoS 1 and 2); after a lost connection the
publisher reconnects with backoff and sends the unacknowledged ones again, so with QoS 1 every
signal reaches the broker at least once (a repeat, same ``signal_id``, when an acknowledgement
was lost). Beyond ``buffer_limit`` the oldest waiting signals are dropped and counted. The Kafka
headers travel as MQTT 5 properties: content type, and ``schema``, ``model-version`` and
``source`` as user properties.

Candles: ``MqttCandleSource`` subscribes to ``candles_topic`` with a persistent session, so the
broker queues candles while the daemon is away. MQTT has no offsets: its records stay out of
Kafka checkpoints (``PartitionRecords.committable``), and windows cannot be rebuilt from a log
after a restart; they warm up again from new candles (docs/mqtt.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiomqtt
import structlog
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import CollectorRegistry, Counter, Gauge

from candlecast.errors import CandlecastError, ConfigError, TransportError
from daemon.engine import SourceRecord
from daemon.pipeline import CandleSource, PartitionRecords, PublishBatch
from daemon.settings import MqttSettings
from daemon.signal import encoder, signal_headers

log = structlog.get_logger("candlecast.mqtt")

MQTT_PARTITION = -2
"""Window-store partition of windows fed from MQTT: no Kafka partition (those count from 0) and not
the store's free-slot mark (-1), so a Kafka rebalance never drops them and they never set a
Kafka partition's rebuild offset."""
SEND_BATCH = 100
"""Signals published concurrently before waiting for their acknowledgements (in order on the wire)."""
MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
POLL_WAIT_S = 0.1
MAX_POLL_RECORDS = 2000
_REFUSED_CREDENTIALS = {4, 5, 134, 135}
"""CONNACK codes of MQTT 3.1.1 and 5 for bad credentials and not authorised."""
_REFUSED_CLIENT_ID = {2, 133}


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


def connection_error(exc: aiomqtt.MqttError, settings: MqttSettings) -> tuple[CandlecastError, str]:
    """A failed connection as a ``ConfigError`` naming the setting to fix or a retriable ``TransportError``,
    and the reason label of ``candlecast_mqtt_connection_errors``."""
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, MqttConnectError):
        code = exc.rc.value if isinstance(exc.rc, ReasonCode) else exc.rc
        if code in _REFUSED_CREDENTIALS:
            return ConfigError(f"mqtt.username/mqtt.password: the broker at {where} refused them ({exc})"), "refused"
        if code in _REFUSED_CLIENT_ID:
            refused = f"mqtt.client_id: the broker at {where} refused {settings.client_id!r} ({exc})"
            return ConfigError(refused), "refused"
        return TransportError(f"the MQTT broker at {where} refused the connection ({exc})"), "refused"
    # aiomqtt keeps only the text of the OSError paho raised (ssl.SSLError included).
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return ConfigError(f"mqtt.tls_ca: the certificate of the broker at {where} is not trusted ({text})"), "tls"
    if "[SSL" in text:
        return ConfigError(f"mqtt.tls: the TLS handshake with {where} failed ({text})"), "tls"
    return TransportError(f"cannot reach the MQTT broker at {where} ({text or type(exc).__name__})"), "unreachable"


def _properties(packet: int) -> Properties:
    """MQTT 5 properties of a packet type (paho's constructor is untyped)."""
    properties: Properties = Properties(packet)  # type: ignore[no-untyped-call]
    return properties


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """The TLS context the settings ask for; ``ConfigError`` names a certificate file that cannot be used."""
    if not settings.uses_tls:
        return None
    field = "mqtt.tls_ca"
    try:
        context = ssl.create_default_context(cafile=str(settings.tls_ca) if settings.tls_ca else None)
        if settings.tls_cert is not None:
            field = "mqtt.tls_cert"
            context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{field}: {exc}") from exc
    context.sslsocket_class = _ClosingSSLSocket
    return context


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when its handshake fails: paho leaves such a socket open for the garbage collector."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


class _Connection:
    """One client's connection: the first attempt reported to ``start``, then reconnection with backoff,
    running ``session`` on each connection until it ends with ``MqttError`` (a lost connection)."""

    def __init__(
        self,
        settings: MqttSettings,
        metrics: MqttMetrics,
        role: str,
        *,
        persistent: bool,
        session: Callable[[aiomqtt.Client], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.role = role
        self.persistent = persistent
        self._session = session
        self._tls = tls_context(settings)
        try:
            self._password = settings.password_value()
        except OSError as exc:
            raise ConfigError(f"mqtt.password_file: {exc}") from exc
        self._task: asyncio.Task[None] | None = None
        self._first_attempt: asyncio.Future[None] | None = None

    def client(self) -> aiomqtt.Client:
        properties = _properties(PacketTypes.CONNECT)
        if self.persistent:
            properties.SessionExpiryInterval = self.settings.session_expiry_s
        return aiomqtt.Client(
            self.settings.host,
            self.settings.port,
            username=self.settings.username,
            password=self._password,
            identifier=f"{self.settings.client_id}-{self.role}",
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=not self.persistent,
            properties=properties,
            tls_context=self._tls,
            keepalive=30,
        )

    async def start(self) -> None:
        """Connect in the background; raises ``ConfigError`` if the first attempt is refused for a
        reason in the settings. An unreachable broker is retried."""
        self._first_attempt = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name=f"mqtt-{self.role}")
        try:
            await self._first_attempt
        except ConfigError:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = MIN_BACKOFF_S
        while True:
            connected = False
            try:
                async with self.client() as client:
                    connected = True
                    delay = MIN_BACKOFF_S
                    self._settle_first_attempt(None)
                    self.metrics.connected.labels(self.role).set(1)
                    log.info("connected to the MQTT broker", client=self.role, host=self.settings.host)
                    await self._session(client)
            except aiomqtt.MqttError as exc:
                error, reason = connection_error(exc, self.settings)
                self.metrics.connection_errors.labels(self.role, "lost" if connected else reason).inc()
                if not connected and self._settle_first_attempt(error):
                    return
                report = log.error if isinstance(error, ConfigError) else log.warning
                report("MQTT connection failed; retrying", client=self.role, error=str(error), retry_in_s=delay)
            finally:
                self.metrics.connected.labels(self.role).set(0)
            await asyncio.sleep(delay)
            delay = min(MAX_BACKOFF_S, delay * 2)

    def _settle_first_attempt(self, error: CandlecastError | None) -> bool:
        """Tell ``start`` how the first attempt went; True when it must give up (a refused setting)."""
        first = self._first_attempt
        if first is None or first.done():
            return False
        if isinstance(error, ConfigError):
            first.set_exception(error)
            return True
        first.set_result(None)
        return False


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
        self._connection = _Connection(settings, metrics, "signals", persistent=False, session=self._send_all)

    @property
    def pending(self) -> int:
        """Signals not yet acknowledged by the broker."""
        return len(self._waiting) + len(self._in_flight)

    def offer(self, batch: PublishBatch) -> None:
        """The pipeline hook: queue the batch's signals; never blocks."""
        for signal, request in batch.signals:
            properties = _properties(PacketTypes.PUBLISH)
            headers = signal_headers(
                model_version=signal.model_version,
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
            await asyncio.wait_for(self._drained.wait(), flush_timeout_s)
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


class MqttCandleSource:
    """Candle messages from an MQTT topic filter, as a pipeline ``CandleSource``."""

    def __init__(self, settings: MqttSettings, metrics: MqttMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.topic = f"mqtt:{settings.candles_topic}"
        self._received: asyncio.Queue[SourceRecord] = asyncio.Queue(settings.buffer_limit)
        self._sequence = 0
        self._connection = _Connection(settings, metrics, "candles", persistent=True, session=self._receive)

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


class MergedCandleSource:
    """Kafka's records, then whatever MQTT has ready: candles from both feed one pipeline."""

    def __init__(self, primary: CandleSource, mqtt: MqttCandleSource) -> None:
        self.primary = primary
        self.mqtt = mqtt

    async def poll(self) -> list[PartitionRecords]:
        polled = await self.primary.poll()
        return polled + self.mqtt.take_ready()


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
