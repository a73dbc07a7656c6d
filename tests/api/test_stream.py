"""The live stream over a real socket: symbol filter, resumption, slow clients cut off, client limit, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from prometheus_client import CollectorRegistry

from daemon.http import Health, HttpServer
from tests.api.support import Harness, candles, harness, sse_events
from tests.api.test_signal_store import make_signal

GUARD_S = 30  # a hung test fails instead of blocking the suite; nothing is asserted on time


@asynccontextmanager
async def serving(h: Harness, registry: CollectorRegistry | None = None) -> AsyncIterator[str]:
    registry = registry or CollectorRegistry()
    server = HttpServer(registry, Health(registry), "127.0.0.1", 0)
    server.serve_api(h.context)
    port = await server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await server.stop()


async def read_events(response: httpx.Response, count: int) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    buffer = ""
    async with asyncio.timeout(GUARD_S):
        async for text in response.aiter_text():
            buffer += text
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                events += list(sse_events(block + "\n\n"))
            if len(events) >= count:
                return events
    return events


async def test_the_stream_sends_only_the_symbols_asked_for() -> None:
    """A client filtering by symbol gets exactly that symbol's committed signals, in order, with their ids."""
    h = harness()
    async with (
        serving(h) as base,
        httpx.AsyncClient() as http,
        http.stream("GET", f"{base}/api/v1/stream", params={"symbol": ["AAA", "CCC"]}) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        h.feed("BBB", candles(6))
        wanted = h.feed("AAA", candles(5)) + h.feed("CCC", candles(4))
        events = await read_events(response, len(wanted))
    assert [e["id"] for e in events] == [s.signal_id for s in wanted]
    assert {e["event"] for e in events} == {"signal"}
    assert '"symbol":"AAA"' in events[0]["data"]


async def test_a_client_resumes_after_the_last_event_id_it_saw() -> None:
    """Reconnecting with Last-Event-ID replays what was committed after it, then goes on live."""
    h = harness()
    earlier = h.feed("AAA", candles(7))
    async with serving(h) as base, httpx.AsyncClient() as http:
        headers = {"Last-Event-ID": earlier[0].signal_id}
        async with http.stream("GET", f"{base}/api/v1/stream", headers=headers) as response:
            later = h.feed("BBB", candles(4))
            events = await read_events(response, len(earlier) - 1 + len(later))
        async with http.stream("GET", f"{base}/api/v1/stream", headers={"Last-Event-ID": "gone"}) as response:
            lost = await read_events(response, 1 + len(earlier) + len(later))
    assert [e["id"] for e in events] == [s.signal_id for s in earlier[1:] + later]
    assert lost[0]["event"] == "gap"
    assert [e["id"] for e in lost[1:]] == [s.signal_id for s in earlier + later]


async def test_a_client_that_falls_behind_its_buffer_is_disconnected() -> None:
    """Signals committed faster than a client takes them overflow its buffer: it is cut off, the others stay."""
    h = harness()
    async with (
        serving(h) as base,
        httpx.AsyncClient() as http,
        http.stream("GET", f"{base}/api/v1/stream", params={"symbol": "AAA"}) as slow,
        http.stream("GET", f"{base}/api/v1/stream", params={"symbol": "BBB"}) as other,
    ):
        # One committed batch of 11 AAA signals: more than the buffer of 10 before the writer can run.
        h.store.record("default", [(make_signal(n, "AAA"), 0, 3_600_000) for n in range(11)])
        assert h.store.disconnected == 1
        with pytest.raises(httpx.RemoteProtocolError):
            await read_events(slow, 1)
        kept = h.feed("BBB", candles(4))
        events = await read_events(other, 1)
    assert [e["id"] for e in events] == [kept[0].signal_id]


async def test_a_client_stuck_on_a_full_socket_is_disconnected_without_slowing_the_daemon() -> None:
    """A client that stops reading is cut off once its buffer overflows, even while a write to it is blocked."""
    h = harness()
    padding = "x" * 4000
    registry = CollectorRegistry()
    async with serving(h, registry) as base:
        reader, writer = await asyncio.open_connection(*base.removeprefix("http://").split(":"))
        writer.write(b"GET /api/v1/stream HTTP/1.1\r\nHost: candlecast\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # subscribed; from now on the client reads nothing
        rounds = 0
        async with asyncio.timeout(GUARD_S):
            while h.store.disconnected == 0:
                rounds += 1
                signals = [(make_signal(rounds * 100 + n, padding), 0, 3_600_000) for n in range(5)]
                h.store.record("default", signals)  # never waits for the client
                await asyncio.sleep(0)
            assert h.store.clients == 0
            rest = await reader.read()  # the server closed the connection: what was buffered, then EOF
            assert registry.get_sample_value("candlecast_stream_clients_cut_off_total") == 1
            assert registry.get_sample_value("candlecast_stream_clients") == 0
        writer.close()
    assert rounds > 1 and rest is not None


async def test_clients_beyond_the_limit_get_503_and_stopping_ends_every_stream() -> None:
    """The stream_clients+1-th client is refused with 503; stopping the server ends open streams cleanly."""
    h = harness()
    registry = CollectorRegistry()
    server = HttpServer(registry, Health(registry), "127.0.0.1", 0)
    server.serve_api(h.context)
    port = await server.start()
    url = f"http://127.0.0.1:{port}/api/v1/stream"
    async with httpx.AsyncClient() as http:
        streams = [http.stream("GET", url) for _ in range(h.store.max_clients)]
        responses = [await s.__aenter__() for s in streams]
        refused = await http.get(url)
        stopping = asyncio.create_task(server.stop())
        async with asyncio.timeout(GUARD_S):
            ends = [await r.aread() for r in responses]
        await stopping
        for s in streams:
            await s.__aexit__(None, None, None)
    assert refused.status_code == 503 and refused.json()["reason"] == "too_many_clients"
    assert ends == [b""] * len(responses)
