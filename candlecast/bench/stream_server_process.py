"""``candlecast stream-server`` as the bench runs it: a child process on the daemon's signals topic, at a
lower priority (as the systemd unit's ``Nice=`` puts it), optionally inside groups standing in for the
unit's other limits, with its CPU time read from ``/proc``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from candlecast.bench.children import stop_child
from candlecast.bench.machine import process_cpu_s
from daemon.settings import Settings

READY_EVENT = "serving the signal stream"
START_S = 120.0
"""Longest wait for the server to fill its ring and serve."""
STOP_S = 30.0
"""Longest wait for the server to stop once terminated, before it is killed."""


@dataclass(frozen=True)
class StreamServerProcess:
    pid: int
    port: int

    def cpu_s(self) -> float:
        """User and system CPU seconds the process used so far."""
        return process_cpu_s(self.pid)


def server_environment(settings: Settings) -> dict[str, str]:
    """The daemon's broker, signals topic and stream settings for the server; any free port; JSON logs."""
    kafka, api = settings.kafka, settings.api
    return {
        "CANDLECAST_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "CANDLECAST_KAFKA__SIGNALS_TOPIC": kafka.signals_topic,
        "CANDLECAST_API__RING": str(api.ring),
        "CANDLECAST_API__CLIENT_BUFFER": str(api.client_buffer),
        "CANDLECAST_API__STREAM_CLIENTS": str(api.stream_clients),
        "CANDLECAST_STREAM_SERVER__HOST": "127.0.0.1",
        "CANDLECAST_STREAM_SERVER__PORT": "0",
        "CANDLECAST_LOG__FORMAT": "json",
        "CANDLECAST_LOG__LEVEL": "INFO",
    }


@contextlib.asynccontextmanager
async def stream_server_process(
    settings: Settings, niceness: int, prefix: Sequence[str] = ()
) -> AsyncIterator[StreamServerProcess]:
    """A stream server on ``settings``' signals topic at ``niceness`` (its command line after ``prefix``, as a
    ``unit_limits.Limits`` gives it), serving once this enters, stopped on exit."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CANDLECAST_")}
    child = await asyncio.create_subprocess_exec(
        *prefix,
        "nice",
        "-n",
        str(niceness),
        sys.executable,
        "-m",
        "candlecast",
        "stream-server",
        env={**environment, **server_environment(settings)},
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stderr is not None
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(START_S):
            port = await _served_port(child.stderr)
        drain = asyncio.create_task(_discard(child.stderr))  # its later log lines must not fill the pipe
        yield StreamServerProcess(child.pid, port)
    finally:
        await stop_child(child, STOP_S)
        if drain is not None:
            drain.cancel()


async def _served_port(stderr: asyncio.StreamReader) -> int:
    while line := await stderr.readline():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == READY_EVENT:
                return int(entry["port"])
    raise RuntimeError("the stream server ended before serving")


async def _discard(stderr: asyncio.StreamReader) -> None:
    while await stderr.readline():
        pass
