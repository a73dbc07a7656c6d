"""An aiomqtt client that stops reading its socket while its consumer holds as many messages as it may.

MQTT 5's Receive Maximum asks the broker to stop sending once that many QoS 1/2 messages are
unacknowledged, but a broker may not keep to it: Mosquitto 2.0.11 sent more than ten times its
client's Receive Maximum while the client acknowledged messages as it took them (its inflight quota
accounting, fixed in 2.0.13). aiomqtt queues whatever paho parses, without bound. Not reading
the socket is a bound no broker can overstep: the kernel's buffers fill, TCP's window closes, and
the broker keeps the rest in its session.
"""

from __future__ import annotations

from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.types import PahoSocket


class BoundedClient(aiomqtt.Client):
    """An ``aiomqtt.Client`` that reads no further packet while ``limit`` messages it received are held, that is
    not yet released by its consumer."""

    def __init__(self, *args: Any, limit: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit = limit
        self.held = 0
        """Messages received and not yet released: in aiomqtt's queue, on their way, or kept by the consumer."""
        self._socket: PahoSocket | None = None
        self._reading = False

    def release(self, count: int) -> None:
        """The consumer is done holding ``count`` messages: read again if there is room."""
        self.held -= count
        if self._socket is not None and not self._reading and self.held < self.limit:
            self._start_reading()

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: PahoSocket) -> None:
        super()._on_socket_open(client, userdata, sock)
        self._socket = sock
        # aiomqtt's reader is registered by a callback it just queued on the loop; ours replaces it right after.
        self._loop.call_soon_threadsafe(self._start_reading)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: PahoSocket) -> None:
        super()._on_socket_close(client, userdata, sock)
        self._socket = None
        self._reading = False

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        super()._on_message(client, userdata, message)
        self.held += 1
        if self.held >= self.limit:
            self._stop_reading()

    def _start_reading(self) -> None:
        if self._socket is None or self._socket.fileno() < 0:
            return
        self._loop.remove_reader(self._socket.fileno())
        self._loop.add_reader(self._socket.fileno(), self._read)
        self._reading = True
        # Bytes TLS has already decrypted do not make the socket readable again.
        self._loop.call_soon(self._read)

    def _stop_reading(self) -> None:
        if self._socket is not None and self._socket.fileno() >= 0:
            self._loop.remove_reader(self._socket.fileno())
        self._reading = False

    def _read(self) -> None:
        """aiomqtt's reader, one packet at a time, stopping as soon as the consumer is full."""
        try:
            while self._reading:
                self._client.loop_read()
                pending = getattr(self._client._sock, "pending", None)  # an SSLSocket's decrypted bytes
                if pending is None or pending() == 0:
                    break
        except Exception as exc:  # noqa: BLE001 (a broken connection, as aiomqtt's reader treats it)
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)
