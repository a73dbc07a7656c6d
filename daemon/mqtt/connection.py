"""One MQTT client's connection: TLS, the first attempt reported to the caller, then reconnection with
backoff; a failed connection is mapped to a ``ConfigError`` naming the setting to fix or a
``TransportError`` that is retried."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
import structlog
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from candlecast.errors import CandlecastError, ConfigError, TransportError
from daemon.mqtt.bounded_client import BoundedClient
from daemon.mqtt.metrics import MqttMetrics
from daemon.settings import MqttSettings

log = structlog.get_logger("candlecast.mqtt")

MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
_REFUSED_CREDENTIALS = {4, 5, 134, 135}
"""CONNACK codes of MQTT 3.1.1 and 5 for bad credentials and not authorised."""
_REFUSED_CLIENT_ID = {2, 133}


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


def mqtt5_properties(packet: int) -> Properties:
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


class Connection:
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
        receive_maximum: int | None = None,
        read_limit: int | None = None,
    ) -> None:
        self.settings = settings
        self.receive_maximum = receive_maximum
        """When set, the broker should send at most this many QoS 1/2 messages not yet acknowledged (MQTT 5
        Receive Maximum), and the session acknowledges each itself once taken."""
        self.read_limit = read_limit
        """When set, the client reads nothing more from the broker while its session holds this many messages
        (``BoundedClient``)."""
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
        properties = mqtt5_properties(PacketTypes.CONNECT)
        if self.persistent:
            properties.SessionExpiryInterval = self.settings.session_expiry_s
        if self.receive_maximum is not None:
            properties.ReceiveMaximum = self.receive_maximum
        options: dict[str, Any] = {
            "username": self.settings.username,
            "password": self._password,
            "identifier": f"{self.settings.client_id}-{self.role}",
            "protocol": aiomqtt.ProtocolVersion.V5,
            "clean_start": not self.persistent,
            "properties": properties,
            "tls_context": self._tls,
            "keepalive": 30,
        }
        host, port = self.settings.host, self.settings.port
        if self.read_limit is None:
            client = aiomqtt.Client(host, port, **options)
        else:
            client = BoundedClient(host, port, limit=self.read_limit, **options)
        if self.receive_maximum is not None:
            client._client.manual_ack_set(True)  # aiomqtt has no option for it
        return client

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
