"""The live stream: one client's ``Subscription`` written out as Server-Sent Events (``daemon.sse``).

A resumed client whose last id left the ring first gets an ``event: gap`` and then the whole ring.

The daemon never waits for a client: the store queues signals per client (bounded) and wakes the
client's writer here, one task per connection that writes everything pending as one chunk, so a
client that keeps up costs one wake-up and one write per committed batch. A client whose queue
overflows is cut off, even while a write to it is stuck behind a full socket: its wake-up cancels
the writer and the connection is closed (``SlowStreamClientError``, which the server closes the
connection on; the server's error log of it is filtered out and a warning logged instead). On
shutdown every stream ends cleanly (``SignalStore.close_clients``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import structlog
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from daemon.signal_store import SignalStore, Subscription
from daemon.sse import GAP_FRAME, KEEPALIVE_FRAME

log = structlog.get_logger("candlecast.api")


class SlowStreamClientError(Exception):
    """A stream client fell more than its buffer behind: its connection is closed."""


class SlowClientLogFilter(logging.Filter):
    """Drops the ASGI server's error log of a ``SlowStreamClientError``: that disconnect is intended."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info is not None and isinstance(record.exc_info[1], SlowStreamClientError))


class StreamWake:
    """The store's wake-up call for one client: wakes its writer, or cancels it once the client overflowed
    (a writer stuck on a full socket would never look)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.subscription: Subscription | None = None
        self.writer: asyncio.Future[None] | None = None

    def __call__(self) -> None:
        if self.writer is not None and self.subscription is not None and self.subscription.overflowed:
            self.writer.cancel()
        else:
            self.event.set()


class SignalStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        store: SignalStore,
        subscription: Subscription,
        wake: StreamWake,
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
        wake.subscription = subscription
        self.resumed = resumed
        self.keepalive_s = keepalive_s

    def render(self, content: Any) -> bytes:
        return b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        headers += [(b"cache-control", b"no-store"), (b"x-accel-buffering", b"no")]
        disconnected = asyncio.ensure_future(_disconnect(receive))
        writer = asyncio.ensure_future(self._write(send, headers))
        self.wake.writer = writer
        try:
            await asyncio.wait({writer, disconnected}, return_when=asyncio.FIRST_COMPLETED)
            if writer.done():
                failure = None if writer.cancelled() else writer.exception()
                if writer.cancelled() or isinstance(failure, SlowStreamClientError):
                    log.warning("stream client too slow; disconnected", buffer=self.subscription.limit)
                    raise SlowStreamClientError(f"more than {self.subscription.limit} signals behind")
                if failure is not None and not isinstance(failure, OSError):  # OSError: the client went away
                    raise failure
        finally:
            writer.cancel()
            disconnected.cancel()
            self.store.unsubscribe(self.subscription)

    async def _write(self, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if not self.resumed:
            await send({"type": "http.response.body", "body": GAP_FRAME, "more_body": True})
        subscription, event = self.subscription, self.wake.event
        while True:
            event.clear()  # before taking: a batch recorded after the take wakes the wait below
            frames = subscription.take()
            if subscription.overflowed:
                raise SlowStreamClientError
            if frames:
                await send({"type": "http.response.body", "body": frames, "more_body": True})
                continue
            if subscription.closed:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            try:
                async with asyncio.timeout(self.keepalive_s):
                    await event.wait()
            except TimeoutError:
                await send({"type": "http.response.body", "body": KEEPALIVE_FRAME, "more_body": True})


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
