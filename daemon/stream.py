"""The live signal stream: one client's ``Subscription`` written out as Server-Sent Events.

Each committed signal is one event: ``id:`` its signal id (what a client sends back in
``Last-Event-ID`` to resume), ``event: signal``, ``data:`` the signal's JSON as on the signals topic.
A resumed client whose last id left the ring first gets an ``event: gap`` and then the whole ring.

The daemon never waits for a client: the store queues signals per client (bounded) and wakes the
writer here. A client whose queue overflows is cut off, even while a write to it is stuck behind a
full socket: the write is abandoned and the connection closed (``SlowStreamClientError``, which the
server closes the connection on; the server's error log of it is filtered out and a warning
logged instead). On shutdown every stream ends cleanly (``SignalStore.close_clients``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import msgspec
import structlog
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from daemon.signal_store import SignalStore, StoredSignal, Subscription

log = structlog.get_logger("candlecast.api")
_encoder = msgspec.json.Encoder()


class SlowStreamClientError(Exception):
    """A stream client fell more than its buffer behind: its connection is closed."""


class SlowClientLogFilter(logging.Filter):
    """Drops the ASGI server's error log of a ``SlowStreamClientError``: that disconnect is intended."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info is not None and isinstance(record.exc_info[1], SlowStreamClientError))


def encode_events(items: list[StoredSignal]) -> bytes:
    parts = []
    for stored in items:
        parts.append(b"id: " + stored.signal.signal_id.encode() + b"\nevent: signal\ndata: ")
        parts.append(_encoder.encode(stored.signal))
        parts.append(b"\n\n")
    return b"".join(parts)


GAP_EVENT = b'event: gap\ndata: {"reason": "the last event id is not among the recent signals kept"}\n\n'


class SignalStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        store: SignalStore,
        subscription: Subscription,
        wake: asyncio.Event,
        *,
        resumed: bool,
        keepalive_s: float,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(None, 200, headers, self.media_type, background)
        self.store = store
        self.subscription = subscription
        self.wake = wake
        self.resumed = resumed
        self.keepalive_s = keepalive_s

    def render(self, content: Any) -> bytes:
        return b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        headers += [(b"cache-control", b"no-store"), (b"x-accel-buffering", b"no")]
        disconnected = asyncio.ensure_future(_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if not self.resumed:
                await self._deliver(send, GAP_EVENT)
            await self._pump(send, disconnected)
        except OSError:
            return  # the client went away mid-write
        finally:
            disconnected.cancel()
            self.store.unsubscribe(self.subscription)

    async def _pump(self, send: Send, disconnected: asyncio.Future[Any]) -> None:
        subscription = self.subscription
        while not disconnected.done():
            items = subscription.take()
            if items:
                await self._deliver(send, encode_events(items))
            if subscription.overflowed:
                log.warning("stream client too slow; disconnected", buffer=subscription.limit)
                raise SlowStreamClientError(f"more than {subscription.limit} signals behind")
            if subscription.closed:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if len(subscription):
                continue
            self.wake.clear()
            woken: asyncio.Future[Any] = asyncio.ensure_future(self.wake.wait())
            done, _ = await asyncio.wait(
                {woken, disconnected}, timeout=self.keepalive_s, return_when=asyncio.FIRST_COMPLETED
            )
            woken.cancel()
            if not done:
                await self._deliver(send, b": keep-alive\n\n")

    async def _deliver(self, send: Send, body: bytes) -> None:
        """Write, unless the client overflows while the write waits for a full socket to drain."""
        write = asyncio.ensure_future(send({"type": "http.response.body", "body": body, "more_body": True}))
        while not write.done():
            self.wake.clear()
            woken = asyncio.ensure_future(self.wake.wait())
            await asyncio.wait({write, woken}, return_when=asyncio.FIRST_COMPLETED)
            woken.cancel()
            if not write.done() and self.subscription.overflowed:
                write.cancel()
                log.warning("stream client too slow; disconnected", buffer=self.subscription.limit)
                raise SlowStreamClientError(f"more than {self.subscription.limit} signals behind")
        write.result()


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
