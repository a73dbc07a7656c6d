"""Stream clients for the bench: ``count`` Server-Sent Events connections to the daemon's stream,
held by a separate process (as real dashboards are), reading and discarding what they get.

``python -m candlecast.bench.streams HOST PORT COUNT`` opens the connections, prints ``connected``
once the daemon has answered every one (so each is subscribed), and reads until the daemon closes
them or the process is terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator

REQUEST = b"GET /api/v1/stream HTTP/1.1\r\nHost: candlecast\r\nAccept: text/event-stream\r\n\r\n"


@contextlib.asynccontextmanager
async def stream_clients(host: str, port: int, count: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """``count`` stream clients in a child process, each subscribed once this enters, until it exits."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "candlecast.bench.streams", host, str(port), str(count), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        if await child.stdout.readline() != b"connected\n":
            raise RuntimeError(f"the {count} stream clients could not connect to {host}:{port}")
        yield child
    finally:
        if child.returncode is None:
            child.terminate()
        await child.wait()


async def _client(host: str, port: int, answered: asyncio.Queue[None]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(REQUEST)
    await writer.drain()
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")
        answered.put_nowait(None)
        while await reader.read(1 << 16):
            pass
    writer.close()


async def _hold(host: str, port: int, count: int) -> None:
    answered: asyncio.Queue[None] = asyncio.Queue()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    clients = [asyncio.create_task(_client(host, port, answered)) for _ in range(count)]
    for _ in range(count):
        await answered.get()
    sys.stdout.write("connected\n")
    sys.stdout.flush()
    await stop.wait()
    for task in clients:
        task.cancel()


def main() -> None:
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    asyncio.run(_hold(host, port, count))


if __name__ == "__main__":
    main()
