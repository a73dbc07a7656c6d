"""Stream clients for the bench: ``count`` Server-Sent Events connections to the daemon's stream,
held by a separate process, as a dashboard or an execution engine holds them.

A client here does what a cheap real one does: it reads the bytes off its socket and counts the
events (``event: signal`` lines, counted in C by ``bytes.count``) without parsing each one in Python;
one asyncio process holds every connection (a ``Protocol`` each, no task per read), so the clients'
own CPU is as small as a reader of that many bytes can make it, and it is measured.

``python -m candlecast.bench.streams HOST PORT COUNT`` opens the connections, prints ``connected``
once the daemon has answered every one (so each is subscribed), then reads a count from its
standard input: the signals the daemon published meanwhile. It waits until every client received
that many or was closed (or ``SETTLE_S`` passed) and prints one JSON line: the events each client
received, how many were closed, and the process's CPU seconds since ``connected``. ``settle`` also
times that answer (clients that kept up during the phase answer within a fetch or two; clients that
fell behind, or a process held back by its CPU limit, read their backlog first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence

from candlecast.bench.children import stop_child
from candlecast.bench.report import ClientCounts

REQUEST = b"GET /api/v1/stream HTTP/1.1\r\nHost: candlecast\r\nAccept: text/event-stream\r\n\r\n"
EVENT = b"event: signal\n"
SETTLE_S = 60.0
"""Longest wait, after the phase, for the clients to read what was published."""
STOP_S = 30.0
"""Longest wait for the clients' process to stop once terminated, before it is killed."""


class StreamClients:
    """The child process holding the clients; ``settle`` collects their counts once."""

    def __init__(self, child: asyncio.subprocess.Process) -> None:
        self._child = child

    async def settle(self, published: int) -> ClientCounts:
        """Tell the clients how many signals were published; their counts once they read them all."""
        child = self._child
        assert child.stdin is not None and child.stdout is not None
        told = time.monotonic()
        child.stdin.write(b"%d\n" % published)
        await child.stdin.drain()
        async with asyncio.timeout(SETTLE_S + 30):
            line = await child.stdout.readline()
        if not line:
            raise RuntimeError("the stream clients' process ended without counts")
        answer = json.loads(line)
        caught_up_s = time.monotonic() - told
        return ClientCounts(published, answer["received"], answer["closed"], answer["cpu_s"], caught_up_s)


@contextlib.asynccontextmanager
async def stream_clients(
    host: str, port: int, count: int, niceness: int = 0, prefix: Sequence[str] = ()
) -> AsyncIterator[StreamClients]:
    """``count`` stream clients in a child process (``niceness`` added to its nice value, its command line after
    ``prefix``, as a ``unit_limits.Limits`` gives it), each subscribed once this enters, until it exits."""
    child = await asyncio.create_subprocess_exec(
        *prefix,
        "nice",
        "-n",
        str(niceness),
        sys.executable,
        "-m",
        "candlecast.bench.streams",
        host,
        str(port),
        str(count),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        if await child.stdout.readline() != b"connected\n":
            raise RuntimeError(f"the {count} stream clients could not connect to {host}:{port}")
        yield StreamClients(child)
    finally:
        await stop_child(child, STOP_S)


class _Client(asyncio.Protocol):
    """One connection: the request, the response head, then events counted as the bytes arrive."""

    def __init__(self, answered: asyncio.Future[None], progress: asyncio.Event) -> None:
        self.answered = answered
        self.progress = progress
        self.events = 0
        self.closed = False
        self._head = b""
        self._tail = b""
        """The last bytes of the previous read: an event line may straddle two reads."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        if not self.answered.done():
            self._head += data
            head, found, data = self._head.partition(b"\r\n\r\n")
            if not found:
                return
            if not head.startswith(b"HTTP/1.1 200"):
                self.answered.set_exception(RuntimeError(head.split(b"\r\n", 1)[0].decode()))
                return
            self.answered.set_result(None)
        window = self._tail + data
        self.events += window.count(EVENT)
        self._tail = window[-(len(EVENT) - 1) :]
        self.progress.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.answered.done():
            self.answered.set_exception(ConnectionError("closed before answering"))
        self.progress.set()


async def _connect(host: str, port: int, progress: asyncio.Event) -> _Client:
    client = _Client(asyncio.get_running_loop().create_future(), progress)
    await asyncio.get_running_loop().create_connection(lambda: client, host, port)
    return client


async def _hold(host: str, port: int, count: int) -> None:
    loop = asyncio.get_running_loop()
    progress = asyncio.Event()
    clients = [await _connect(host, port, progress) for _ in range(count)]
    await asyncio.gather(*(c.answered for c in clients))
    start = time.process_time()
    sys.stdout.write("connected\n")
    sys.stdout.flush()
    line = await asyncio.to_thread(sys.stdin.readline)
    published = int(line)
    deadline = loop.time() + SETTLE_S
    while any(c.events < published and not c.closed for c in clients) and loop.time() < deadline:
        progress.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await progress.wait()
    answer = {
        "received": [c.events for c in clients],
        "closed": sum(c.closed for c in clients),
        "cpu_s": time.process_time() - start,
    }
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def main() -> None:
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    asyncio.run(_hold(host, port, count))


if __name__ == "__main__":
    main()
