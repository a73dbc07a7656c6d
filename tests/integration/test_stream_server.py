"""``candlecast stream-server`` on a real broker: it streams exactly the committed signals of the topic with
the daemon's frames, never one of an aborted transaction, resumes clients across its restart, and cuts
off a client that stops reading."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from candlecast.candlefile import bundled_path, read_candles
from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from daemon.settings import ApiSettings, KafkaSettings, Settings, StreamServerSettings
from daemon.signal import Signal, encoder
from daemon.sse import GAP_FRAME, RESTARTED_FRAME, signal_frame
from daemon.stream_server import StreamServer
from models.torchscript import load_artifact
from tests.support.kafka import create_topics, daemon_settings, fresh_topics, read_records, running_daemon, wait_until
from tests.support.signal_builder import START_MS, hourly_signal

pytestmark = pytest.mark.kafka

GUARD_S = 60  # a hung test fails instead of blocking the suite; nothing is asserted on time
EVENT = b"event: signal\n"
SIGNALS_PER_SYMBOL = 10


def make_signal(n: int, symbol: str = "AAA", padding: str = "") -> Signal:
    return hourly_signal(f"sig-{n}", n, symbol, strategy=f"s{padding}")


async def one_partition_topic(bootstrap: str) -> str:
    topic = f"stream-server-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, {topic: 1})
    return topic


def server_settings(bootstrap: str, topic: str, **api: object) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap, signals_topic=topic),
        api=ApiSettings.model_validate(api),
        stream_server=StreamServerSettings(port=0),
    )


@contextlib.asynccontextmanager
async def running_server(settings: Settings, registry: CollectorRegistry | None = None) -> AsyncIterator[StreamServer]:
    server = StreamServer(settings, registry)
    task = asyncio.create_task(server.run())
    try:
        ready = asyncio.create_task(server.ready.wait())
        async with asyncio.timeout(GUARD_S):
            await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            await task
            raise AssertionError("the stream server stopped before it was ready")
        yield server
    finally:
        server.request_stop()
        await asyncio.wait_for(task, GUARD_S)


async def produce(bootstrap: str, topic: str, signals: Sequence[Signal]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for signal in signals:
            await producer.send(topic, encoder.encode(signal), key=signal.symbol.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def read_frames(response: httpx.Response, count: int) -> bytes:
    """The stream's bytes until ``count`` signal events arrived."""
    received = b""
    async with asyncio.timeout(GUARD_S):
        async for chunk in response.aiter_bytes():
            received += chunk
            if received.count(EVENT) >= count:
                break
    return received


def frames_of(received: bytes) -> list[bytes]:
    return [block + b"\n\n" for block in received.split(b"\n\n") if block.startswith(b"id: ")]


def url(server: StreamServer) -> str:
    return f"http://127.0.0.1:{server.port}/api/v1/stream"


async def test_the_stream_server_streams_exactly_what_the_daemon_committed(
    kafka: LocalKafka, test_artifact: Path
) -> None:
    """A daemon's committed signals reach a stream-server client once each, as the frames of the topic's records,
    byte for byte the frames the daemon's own stream sends, each symbol's in the topic's order."""
    window = load_artifact(test_artifact).manifest.window
    table = read_candles(bundled_path("us_stocks_1d.csv")).tail_per_symbol(window + SIGNALS_PER_SYMBOL - 1)
    candles = table.messages("1d")
    expected = len(table.symbol_slices()) * SIGNALS_PER_SYMBOL
    topics = await fresh_topics(kafka.bootstrap_servers)
    daemon = daemon_settings(kafka.bootstrap_servers, topics, test_artifact)
    async with (
        running_daemon(daemon) as running,
        running_server(server_settings(kafka.bootstrap_servers, topics.signals)) as server,
        httpx.AsyncClient(timeout=GUARD_S) as http,
        http.stream("GET", url(server)) as separate,
    ):
        await wait_until(running.became_ready.is_set, GUARD_S)
        in_daemon = f"http://127.0.0.1:{running.http.port}/api/v1/stream"
        async with http.stream("GET", in_daemon) as own:
            await publish_candles(candles, bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)
            records = await read_records(kafka.bootstrap_servers, topics.signals, expected=expected, settle_s=1.0)
            assert len(records) == expected
            from_daemon = frames_of(await read_frames(own, len(records)))
        streamed = frames_of(await read_frames(separate, len(records)))

    topic_frames = [signal_frame(msgspec.json.decode(r.value, type=Signal)) for r in records]
    assert len(streamed) == len(records) == len(set(streamed))
    assert sorted(streamed) == sorted(topic_frames) == sorted(from_daemon)
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for record, frame in zip(records, topic_frames, strict=True):
        by_partition[record.partition].append(frame)
    for frames in by_partition.values():
        assert [f for f in streamed if f in set(frames)] == frames


async def test_a_signal_of_an_aborted_transaction_never_reaches_a_client(kafka: LocalKafka) -> None:
    """Committed transactions stream; an aborted one in the log between them does not (a plain reader sees it)."""
    bootstrap = kafka.bootstrap_servers
    topic = await one_partition_topic(bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"stream-server-{uuid.uuid4().hex}")
    await producer.start()
    try:
        async with (
            running_server(server_settings(bootstrap, topic)) as server,
            httpx.AsyncClient(timeout=GUARD_S) as http,
            http.stream("GET", url(server)) as response,
        ):
            stream = response.aiter_bytes()
            async with producer.transaction():
                await producer.send(topic, encoder.encode(make_signal(1)))
            first = await anext(stream)  # something arrives: the committed signal
            await producer.begin_transaction()
            await producer.send(topic, encoder.encode(make_signal(2)))
            await producer.abort_transaction()
            async with producer.transaction():
                await producer.send(topic, encoder.encode(make_signal(3)))
            received = first
            async with asyncio.timeout(GUARD_S):
                while received.count(EVENT) < 2:
                    received += await anext(stream)
    finally:
        await producer.stop()
    uncommitted = await read_records(bootstrap, topic, expected=3, isolation_level="read_uncommitted")
    assert [msgspec.json.decode(r.value, type=Signal).signal_id for r in uncommitted] == ["sig-1", "sig-2", "sig-3"]
    assert frames_of(received) == [signal_frame(make_signal(1)), signal_frame(make_signal(3))]


async def test_a_client_resumes_from_its_last_event_id_after_the_stream_server_restarts(kafka: LocalKafka) -> None:
    """The restarted server refills its ring from the topic's tail: a client resumes after the last id it saw;
    an id older than the ring gets the gap event and the whole ring."""
    bootstrap = kafka.bootstrap_servers
    topic = await one_partition_topic(bootstrap)
    settings = server_settings(bootstrap, topic, ring=8)
    signals = [make_signal(n) for n in range(1, 11)]
    await produce(bootstrap, topic, signals[:6])
    async with (
        running_server(settings) as server,
        httpx.AsyncClient(timeout=GUARD_S) as http,
        http.stream("GET", url(server), headers={"Last-Event-ID": "sig-1"}) as response,
    ):
        seen = frames_of(await read_frames(response, 2))[:2]
    assert seen == [signal_frame(s) for s in signals[1:3]]
    await produce(bootstrap, topic, signals[6:])

    async with running_server(settings) as server, httpx.AsyncClient(timeout=GUARD_S) as http:
        async with http.stream("GET", url(server), headers={"Last-Event-ID": "sig-3"}) as response:
            resumed = await read_frames(response, 7)
        async with http.stream("GET", url(server), headers={"Last-Event-ID": "sig-1"}) as response:
            too_old = await read_frames(response, 8)
    assert resumed == b"".join(signal_frame(s) for s in signals[3:])
    assert too_old == GAP_FRAME + b"".join(signal_frame(s) for s in signals[2:])


async def test_a_signal_fetched_after_the_last_event_id_is_not_missed_across_a_restart(kafka: LocalKafka) -> None:
    """S, older by record time on another partition, reached the stream after X; after a restart the refilled
    ring orders S before X, and a client resuming after X gets the restart's gap event and S, not nothing."""
    bootstrap = kafka.bootstrap_servers
    topic = f"stream-server-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, {topic: 2})
    settings = server_settings(bootstrap, topic, ring=8)
    x, s = make_signal(1), make_signal(2, "BBB")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        async with (
            running_server(settings) as server,
            httpx.AsyncClient(timeout=GUARD_S) as http,
            http.stream("GET", url(server)) as response,
        ):
            await producer.send_and_wait(topic, encoder.encode(x), partition=0, timestamp_ms=START_MS + 200)
            seen = await read_frames(response, 1)
            await producer.send_and_wait(topic, encoder.encode(s), partition=1, timestamp_ms=START_MS + 100)
            async with http.stream("GET", url(server), headers={"Last-Event-ID": "sig-1"}) as follower:
                delivered_after = await read_frames(follower, 1)
    finally:
        await producer.stop()
    assert seen == signal_frame(x) and delivered_after == signal_frame(s)

    async with (
        running_server(settings) as server,
        httpx.AsyncClient(timeout=GUARD_S) as http,
        http.stream("GET", url(server), headers={"Last-Event-ID": "sig-1"}) as response,
    ):
        resumed = await read_frames(response, 1)
    assert resumed == RESTARTED_FRAME + signal_frame(s)


async def test_a_client_that_stops_reading_is_cut_off_and_the_others_keep_streaming(kafka: LocalKafka) -> None:
    """A client stuck on a full socket falls more than its buffer behind and is disconnected; another client
    goes on receiving; the cut-off shows in the server's metrics."""
    bootstrap = kafka.bootstrap_servers
    topic = await one_partition_topic(bootstrap)
    registry = CollectorRegistry()
    padding = "x" * 4000
    async with (
        running_server(server_settings(bootstrap, topic, client_buffer=10), registry) as server,
        httpx.AsyncClient(timeout=GUARD_S) as http,
        http.stream("GET", url(server), params={"symbol": "BBB"}) as other,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /api/v1/stream HTTP/1.1\r\nHost: candlecast\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # subscribed; from now on this client reads nothing
        rounds = 0
        async with asyncio.timeout(GUARD_S):
            while server.store.disconnected == 0:
                rounds += 1
                await produce(bootstrap, topic, [make_signal(rounds * 1000 + n, padding=padding) for n in range(200)])
                await asyncio.sleep(0.1)
        await produce(bootstrap, topic, [make_signal(1, "BBB")])
        kept = await read_frames(other, 1)
        writer.close()
    assert rounds >= 1
    assert kept == signal_frame(make_signal(1, "BBB"))
    assert registry.get_sample_value("candlecast_stream_clients_cut_off_total") == 1


async def test_the_stream_server_refuses_a_wrong_token_and_clients_beyond_the_limit(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    """With api.token_file a request without the token gets 401; the stream_clients+1-th client gets 503."""
    bootstrap = kafka.bootstrap_servers
    topic = await one_partition_topic(bootstrap)
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    await produce(bootstrap, topic, [make_signal(1)])
    settings = server_settings(bootstrap, topic, token_file=token, stream_clients=1)
    authorised = {"Authorization": "Bearer s3cret"}
    async with running_server(settings) as server, httpx.AsyncClient(timeout=GUARD_S) as http:
        refused = await http.get(url(server))
        latest = await http.get(f"http://127.0.0.1:{server.port}/api/v1/signals/latest", headers=authorised)
        async with http.stream("GET", url(server), headers=authorised) as first:
            assert first.status_code == 200
            second = await http.get(url(server), headers=authorised)
        missing = await http.get(f"http://127.0.0.1:{server.port}/api/v1/routes", headers=authorised)
        ready = await http.get(f"http://127.0.0.1:{server.port}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"broker_reachable": True}
    assert refused.status_code == 401
    assert [body["signal"]["signal_id"] for body in latest.json()] == ["sig-1"]
    assert second.status_code == 503 and second.json()["reason"] == "too_many_clients"
    assert missing.status_code == 404
