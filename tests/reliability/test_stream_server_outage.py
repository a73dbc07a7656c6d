"""The stream server's readiness follows its broker: not ready while the broker is down, ready again after it
restarts, without help."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from candlecast.localkafka import LocalKafka
from daemon.settings import KafkaSettings, Settings, StreamServerSettings
from daemon.stream_server import StreamServer
from tests.support.kafka import create_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

GUARD_S = 60  # a hung step fails instead of blocking the suite; nothing is asserted on time
TOPIC = "signals"


async def readyz(http: httpx.AsyncClient, server: StreamServer) -> httpx.Response:
    return await http.get(f"http://127.0.0.1:{server.port}/readyz")


async def readyz_until(http: httpx.AsyncClient, server: StreamServer, status: int) -> httpx.Response:
    """``/readyz`` polled until it answers ``status``."""
    async with asyncio.timeout(GUARD_S):
        while True:
            response = await readyz(http, server)
            if response.status_code == status:
                return response
            await asyncio.sleep(0.2)


async def test_readiness_fails_while_the_broker_is_down(tmp_path: Path) -> None:
    """``/readyz`` answers 200 with the broker up, 503 naming the broker check once it stops, 200 after it
    restarts."""
    broker = LocalKafka(tmp_path / "broker").start()
    node = broker.members[0]
    try:
        await create_topics(broker.bootstrap_servers, {TOPIC: 1})
        settings = Settings(
            kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers, signals_topic=TOPIC),
            stream_server=StreamServerSettings(port=0),
        )
        server = StreamServer(settings)
        running = asyncio.create_task(server.run())
        try:
            async with asyncio.timeout(GUARD_S):
                await server.ready.wait()
            async with httpx.AsyncClient(timeout=GUARD_S) as http:
                up = await readyz(http, server)
                assert up.status_code == 200, up.text
                assert up.json()["checks"]["broker_reachable"] is True

                await asyncio.to_thread(broker.kill_node, node, signal.SIGTERM)
                down = (await readyz_until(http, server, 503)).json()
                assert down["checks"] == {"broker_reachable": False}
                assert down["reasons"] == {"broker_reachable": "the broker does not answer"}

                await asyncio.to_thread(broker.start_node, node)
                back = (await readyz_until(http, server, 200)).json()
                assert back["checks"] == {"broker_reachable": True}
        finally:
            server.request_stop()
            async with asyncio.timeout(GUARD_S):
                await running
    finally:
        broker.stop()
