"""``candlecast stream-server``: the live signal stream in a process of its own, fed by the signals topic.

In the daemon, every stream client costs the daemon's event loop one write per committed batch
(docs/benchmarks.md, "Stream clients"). This process takes that fan-out away from it: it reads the
signals topic with ``read_committed`` (a signal of an aborted exactly-once transaction never reaches a
client), every partition assigned (no consumer group: each stream server reads everything), and
serves ``/api/v1/stream`` and ``/api/v1/signals/latest`` with the daemon's own handlers, store and
Server-Sent Events frames (``daemon.api``, ``daemon.signal_store``, ``daemon.stream``): the same
bytes, symbol filter, per-client buffer and cut-off, bearer token and client limit. At start it
fills its resumption ring from the topic's tail (``daemon.signal_feed``), so ``Last-Event-ID`` works
across its restarts. ``/metrics``, ``/healthz`` and ``/readyz`` as in the daemon: ready while its
broker answers a probe (``daemon.kafka_topics.topic_answer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter

from candlecast.errors import TransportError
from daemon.api import PREFIX, ApiContext
from daemon.http import Health, HttpServer
from daemon.kafka_source import client_options
from daemon.kafka_topics import topic_answer
from daemon.settings import Settings
from daemon.signal_feed import RecordTime, TopicRecord, record_batch, refill, tail_offsets
from daemon.signal_store import SignalStore
from daemon.systemd import SystemdNotifier

log = structlog.get_logger("candlecast.stream_server")

SERVED_PATHS = frozenset({f"{PREFIX}/stream", f"{PREFIX}/signals/latest"})
"""The daemon's API paths the stream server answers; the others need the daemon's models."""
TOPIC_RETRY_S = 1.0
PROBE_EVERY_S = 2.0
"""How often the broker is probed for readiness (as in the daemon)."""
PROBE_TIMEOUT_S = 3.0


def topic_record(record: ConsumerRecord[bytes, bytes]) -> TopicRecord:
    return TopicRecord(record.partition, record.offset, record.timestamp, record.value)


class StreamServer:
    """The signals topic read into a ``SignalStore``, served over HTTP; ``run`` until ``request_stop``."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.notifier = notifier or SystemdNotifier()
        api = settings.api
        self.record_time = RecordTime()
        self.store = SignalStore(
            ring=api.ring,
            client_buffer=api.client_buffer,
            max_clients=api.stream_clients,
            keys=settings.windows.max_windows,
            clock_ms=self.record_time,
        )
        self.health = Health(self.registry)
        self.broker_reachable = False
        """As the broker last answered: at start, then every ``PROBE_EVERY_S``."""
        self.health.checks["broker_reachable"] = lambda: (self.broker_reachable, "the broker does not answer")
        self.http = HttpServer(
            self.registry,
            self.health,
            settings.stream_server.host,
            settings.stream_server.port,
            max_body_bytes=api.max_body_bytes,
        )
        # api.stream_enabled turns the daemon's stream off; this process is where it is then served.
        context = ApiContext((), self.store, api.model_copy(update={"stream_enabled": True}), _now_ms, api.token())
        self.http.serve_api(context, SERVED_PATHS)
        self.records = Counter(
            "candlecast_stream_server_records",
            "Records read from the signals topic: streamed, or skipped as not a signal.",
            ["outcome"],
            registry=self.registry,
        )
        self.ready = asyncio.Event()
        """Set once the ring is filled from the topic's tail and the HTTP port serves."""
        self.port: int | None = None
        self._stopping = asyncio.Event()

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Fill the ring from the topic's tail, serve, then follow the topic until ``request_stop``."""
        kafka = self.settings.kafka
        consumer = AIOKafkaConsumer(
            **client_options(kafka),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_poll_records=kafka.fetch_max_records,
        )
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise TransportError(f"kafka.bootstrap_servers: cannot reach {kafka.bootstrap_servers}: {exc}") from exc
        admin = AIOKafkaAdminClient(**client_options(kafka))
        tasks: list[asyncio.Task[None]] = []
        try:
            await admin.start()
            partitions = await self._partitions(admin)
            if not partitions:
                return
            consumer.assign(partitions)
            filled = await self._fill_ring(consumer, partitions)
            if self._stopping.is_set():
                return
            self.port = await self.http.start()
            tasks += [asyncio.create_task(self.health.heartbeat()), asyncio.create_task(self._probe_broker(admin))]
            self.ready.set()
            self.notifier.ready(f"streaming {kafka.signals_topic}")
            log.info(
                "serving the signal stream",
                host=self.settings.stream_server.host,
                port=self.port,
                topic=kafka.signals_topic,
                partitions=len(partitions),
                ring=filled,
            )
            await self._follow(consumer)
        finally:
            self.notifier.stopping()
            await self.http.stop()
            for task in tasks:
                task.cancel()
            await admin.close()
            await consumer.stop()

    async def _probe_broker(self, admin: AIOKafkaAdminClient) -> None:
        while True:
            await asyncio.sleep(PROBE_EVERY_S)
            topic = self.settings.kafka.signals_topic
            self.broker_reachable = await topic_answer(admin, topic, PROBE_TIMEOUT_S) is not None

    async def _partitions(self, admin: AIOKafkaAdminClient) -> list[TopicPartition]:
        """Every partition of the signals topic, waiting while the topic does not exist (the port is not open yet)."""
        topic = self.settings.kafka.signals_topic
        warned = False
        while not self._stopping.is_set():
            described: list[dict[str, Any]] = await admin.describe_topics([topic])
            entry = next((e for e in described if e["topic"] == topic), None)
            if entry is not None and not entry["error_code"] and entry["partitions"]:
                self.broker_reachable = True
                return [TopicPartition(topic, p["partition"]) for p in entry["partitions"]]
            if not warned:
                warned = True
                log.warning("waiting for the signals topic", topic=topic)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TOPIC_RETRY_S):
                    await self._stopping.wait()
        return []

    async def _fill_ring(self, consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]) -> int:
        """Read each partition's tail up to its last committed offset; the ring gets the newest, marked refilled."""
        ring = self.settings.api.ring
        beginning = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)  # read_committed: the last stable offsets
        by_partition = {tp.partition: tp for tp in partitions}
        first = {tp.partition: beginning[tp] for tp in partitions}
        starts = tail_offsets(first, {tp.partition: end[tp] for tp in partitions}, ring)
        for partition, offset in starts.items():
            consumer.seek(by_partition[partition], offset)
        tail: list[TopicRecord] = []
        behind = {tp for tp in partitions if starts[tp.partition] < end[tp]}
        while behind and not self._stopping.is_set():
            batch = await consumer.getmany(*behind, timeout_ms=self.settings.kafka.poll_timeout_ms)
            tail.extend(topic_record(r) for records in batch.values() for r in records)
            behind = {tp for tp in behind if await consumer.position(tp) < end[tp]}
        kept, skipped = refill(self.store, self.record_time, tail=tail, starts=starts, beginning=first, ring=ring)
        self._count(kept, skipped)
        return kept

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                polled = asyncio.ensure_future(consumer.getmany(timeout_ms=self.settings.kafka.poll_timeout_ms))
                await asyncio.wait({polled, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not polled.done():
                    polled.cancel()
                    break
                self._record([topic_record(r) for records in polled.result().values() for r in records])
        finally:
            stopping.cancel()

    def _record(self, records: Sequence[TopicRecord]) -> None:
        if not records:
            return
        self._count(len(records), record_batch(self.store, self.record_time, records))

    def _count(self, records: int, skipped: int) -> None:
        self.records.labels("streamed").inc(records - skipped)
        if skipped:
            self.records.labels("skipped").inc(skipped)
            log.warning("records of the signals topic that are not signals skipped", count=skipped)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def serve(settings: Settings) -> None:
    """Run a stream server until SIGTERM or SIGINT."""
    server = StreamServer(settings)
    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(stop_signal, server.request_stop)
    try:
        await server.run()
    finally:
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(stop_signal)
