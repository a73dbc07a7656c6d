"""The daemon: assembles the pipeline from settings and runs it until told to stop.

Signals: SIGTERM/SIGINT stop consumption, then everything in flight is scored, published and
committed before the process exits 0. SIGHUP, or a change of the registry's ``current``
pointer, loads the new artifact on a side thread, verifies and warms it up, and swaps it in
between two batches; a bad artifact is refused and the running model stays.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from candlecast import __version__
from candlecast.errors import CandlecastError, ShutdownDeadlineError, TransportError
from daemon.api import ApiContext
from daemon.api_wiring import daemon_routes, record_published
from daemon.batching import BatchPolicy
from daemon.core import build_core
from daemon.http import Health, HttpServer
from daemon.kafka_sink import KafkaSignalSink
from daemon.kafka_source import KafkaCandleSource
from daemon.metrics import DaemonMetrics
from daemon.monitoring import ModelMonitor
from daemon.mqtt.transport import MqttTransport
from daemon.pipeline import ModelHolder, Pipeline
from daemon.ports import RevokeHandler, ServedSink, ServedSource, TransportFactory
from daemon.route import DEFAULT_ROUTE
from daemon.serving import (
    ModelLoader,
    ServedModel,
    check_compatible,
    configure_threads,
    load_serving_model,
    warm_up,
)
from daemon.settings import KafkaSettings, Settings
from daemon.signal_store import SignalStore
from daemon.systemd import SystemdNotifier
from daemon.timer import SystemTimer, Timer, done_within, wait_event
from models.device import resolve_device
from models.registry import Registry

log = structlog.get_logger("candlecast.daemon")

PROBE_EVERY_S = 2.0
"""How often the broker (and the candle topic) is probed for readiness."""

ABORT_WAIT_S = 5.0
"""How long a drain cancelled at the shutdown deadline may take to abort its transaction."""

DEBUG_BLOCK_LOOP_VARIABLE = "CANDLECAST_DEBUG_BLOCK_LOOP_ON_SIGUSR1"
"""Tests only: when set to a number of seconds, SIGUSR1 blocks the event loop that long, to show
that a stalled loop stops the systemd watchdog keep-alives; ``STATUS=`` datagrams mark the block's
start and end, so a test can tell what was sent during it. Never set it in production."""


def kafka_transports(settings: KafkaSettings, registry: CollectorRegistry) -> TransportFactory:
    """The daemon's default wiring: a consumer-group source and a producer sink that commits through it."""

    def build(on_revoke: RevokeHandler) -> tuple[ServedSource, ServedSink]:
        source = KafkaCandleSource(settings, registry, on_revoke=on_revoke)
        return source, KafkaSignalSink(settings, source.committer, registry)

    return build


def first_error(group: BaseExceptionGroup[CandlecastError]) -> CandlecastError:
    """The first error of a (nested) exception group."""
    found = group.exceptions[0]
    return first_error(found) if isinstance(found, BaseExceptionGroup) else found


class Daemon:
    """The daemon: Kafka by default; ``transports``, ``clock`` and ``load_model`` replace the wiring,
    the time and the model."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        notifier: SystemdNotifier | None = None,
        transports: TransportFactory | None = None,
        clock: Timer | None = None,
        load_model: ModelLoader = load_serving_model,
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.notifier = notifier or SystemdNotifier()
        self.clock = clock or SystemTimer()
        """Every stamp, and every wait of the periodic loops and the batcher."""
        self._transports = transports or kafka_transports(settings.kafka, self.registry)
        self._load_model = load_model
        self.metrics = DaemonMetrics(self.registry)
        self.health = Health(self.registry, clock=self.clock)
        self.http = HttpServer(
            self.registry,
            self.health,
            settings.http.host,
            settings.http.port,
            max_body_bytes=settings.api.max_body_bytes,
        )
        self.signals = SignalStore(
            ring=settings.api.ring,
            client_buffer=settings.api.client_buffer,
            max_clients=settings.api.stream_clients,
            keys=settings.windows.max_windows,
            clock_ms=lambda: int(self.clock.time() * 1000),
        )
        """Committed signals, for the query API and the stream."""
        self.reloads = Counter(
            "candlecast_model_reloads", "Model reload attempts, by outcome.", ["outcome"], registry=self.registry
        )
        for outcome in ("loaded", "unchanged", "refused"):
            self.reloads.labels(outcome)
        self.monitor = ModelMonitor(self.registry, settings.monitoring, capacity=settings.windows.max_windows)
        self.reload_timestamp = Gauge(
            "candlecast_model_loaded_timestamp_seconds", "When the model in service was loaded.", registry=self.registry
        )
        self._stopping = asyncio.Event()
        self._reload_requested = asyncio.Event()
        self.became_ready = asyncio.Event()
        """Set the first time every readiness check passes (when systemd is told READY=1)."""
        self.pipeline: Pipeline[ServedModel] | None = None
        self.pipeline_built = asyncio.Event()
        """Set once ``run`` has built ``pipeline`` (after loading the model, before connecting to Kafka)."""

    @property
    def model(self) -> ServedModel | None:
        """The model in service, once loaded."""
        return self.pipeline.models.model if self.pipeline is not None else None

    def request_stop(self) -> None:
        self._stopping.set()
        if self.pipeline is not None:
            self.pipeline.stop()

    def request_reload(self) -> None:
        self._reload_requested.set()

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT (or ``request_stop``); raises ``CandlecastError`` on bad setup."""
        settings = self.settings
        device = resolve_device(settings.model.device)
        threads = configure_threads(settings.model.threads)
        model = await asyncio.to_thread(self._load_model, settings.model, device)
        core = build_core(settings, model, self.clock)
        self.metrics.expect_strategy(core.builder.strategy.name)
        self.monitor.use(model.manifest, core.intervals, core.gap_policies)
        self._describe_model(model, threads)
        holder = ModelHolder(model)
        source, sink = self._transports(self._on_revoke)
        mqtt = MqttTransport(settings.mqtt, self.registry)
        self.pipeline = Pipeline(
            source=mqtt.candle_source(source),
            sink=sink,
            ingestor=core.ingestor,
            builder=core.builder,
            models=holder,
            policy=BatchPolicy(settings.batching.max_batch, settings.batching.max_wait_ms / 1000),
            metrics=self.metrics,
            clock=self.clock,
            queue_size=settings.batching.queue_chunks,
            queue_bytes=settings.batching.queue_bytes,
            observers=[self.monitor.observe],
            on_published=mqtt.hooks,
        )
        self.pipeline.add_published_hook(record_published(self.signals, DEFAULT_ROUTE))
        if settings.api.enabled:
            routes = daemon_routes(settings, self.pipeline, self.monitor, self.clock)
            self.http.serve_api(
                ApiContext(routes, self.signals, settings.api, self.signals.clock_ms, settings.api.token())
            )
        self.pipeline_built.set()
        self._core = core
        self.health.checks.update(
            model_loaded=lambda: True,
            candle_topic=lambda: (source.candle_topic_missing is None, source.candle_topic_missing),
            partitions_assigned=lambda: source.warm,
            broker_reachable=lambda: source.reachable and sink.healthy,
            not_draining=lambda: not self._stopping.is_set(),
        )
        port = await self.http.start()
        log.info("serving metrics and health", host=settings.http.host, port=port)
        self._install_signal_handlers()
        try:
            await mqtt.start()
            await asyncio.to_thread(warm_up, model, settings.batching.max_batch)
            if not await self._connect(source, sink):
                return
            await self._serve(source, holder)
        finally:
            self.notifier.stopping()
            await mqtt.close()
            await sink.stop()
            await source.stop()
            await self.http.stop()
            self._remove_signal_handlers()

    async def _connect(self, source: ServedSource, sink: ServedSink) -> bool:
        """Connect the source and the sink, retrying until they answer or a stop is requested."""
        delay = 0.5
        while not self._stopping.is_set():
            try:
                await source.start()
                await sink.start()
            except (TransportError, OSError) as exc:
                log.warning("Kafka not reachable; retrying", error=str(exc), retry_in_s=delay)
                await source.stop()
                await sink.stop()
                await wait_event(self.clock, self._stopping, delay)
                delay = min(10.0, delay * 2)
            except Exception:
                await source.stop()
                await sink.stop()
                raise
            else:
                return True
        return False

    async def _serve(self, source: ServedSource, holder: ModelHolder[ServedModel]) -> None:
        assert self.pipeline is not None
        pipeline = self.pipeline
        try:
            async with asyncio.TaskGroup() as group:
                helpers = [
                    group.create_task(self.health.heartbeat(), name="heartbeat"),
                    group.create_task(self._watchdog(), name="watchdog"),
                    group.create_task(self._announce_ready(), name="ready"),
                    group.create_task(self._reload_loop(holder), name="reload"),
                    group.create_task(self._probe_broker(source), name="probe"),
                ]
                await self._run_pipeline(pipeline)
                for task in helpers:
                    task.cancel()
        except* CandlecastError as failed:
            # One error for the CLI to print and exit with, not the task group's nesting of it.
            error = first_error(failed)
            raise error from error.__cause__
        log.info("stopped after draining", consumed=self._core.ingestor.counters.consumed)

    async def _run_pipeline(self, pipeline: Pipeline[ServedModel]) -> None:
        """Run the pipeline until it has drained, but once a stop is requested for at most
        ``shutdown.deadline_s``: a sink that cannot finish is then cancelled, which aborts its open
        transaction and leaves its offsets uncommitted (the next owner takes those records again)."""
        run = asyncio.ensure_future(pipeline.run())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({run, stopping}, return_when=asyncio.FIRST_COMPLETED)
            deadline_s = self.settings.shutdown.deadline_s
            if not await done_within(self.clock, run, deadline_s):
                run.cancel()
                # The abort itself may hang on an unreachable broker; the broker's transaction
                # timeout, or the restarted instance fencing this one, aborts it then.
                await done_within(self.clock, run, ABORT_WAIT_S)
                raise ShutdownDeadlineError(
                    f"what was in flight did not drain within shutdown.deadline_s ({deadline_s:g} s); its "
                    "transaction was aborted and its offsets left uncommitted, for the next owner to take again"
                )
            run.result()
        finally:
            stopping.cancel()

    async def _on_revoke(self, partitions: list[tuple[str, int]]) -> None:
        assert self.pipeline is not None
        await self.pipeline.drain()
        store = self._core.store
        for _topic, partition in partitions:
            keys = [store.key_of(slot) for slot in store.slots_in(partition).tolist()]
            self._core.builder.forget(keys)
            store.drop_partition(partition)

    def _describe_model(self, model: ServedModel, threads: int) -> None:
        manifest = model.manifest
        self.metrics.model_info.info(
            {
                "name": manifest.name,
                "version": manifest.version,
                "device": str(model.device),
                "members": ",".join(m.name for m in manifest.members),
                "window": str(manifest.window),
                "interval": manifest.interval,
                "threads": str(threads),
                "candlecast": __version__,
            }
        )
        self.reload_timestamp.set(self.clock.time())
        log.info("model in service", model=f"{manifest.name}/{manifest.version}", device=str(model.device))

    async def _announce_ready(self) -> None:
        while not self.became_ready.is_set():
            ready = all(self.health.readiness().values())
            self.metrics.ready.set(1 if ready else 0)
            if ready:
                self.became_ready.set()
                self.notifier.ready(f"serving {self.model.version if self.model else ''}")
                log.info("ready")
            await self.clock.sleep(0.2)
        while True:
            self.metrics.ready.set(1 if all(self.health.readiness().values()) else 0)
            await self.clock.sleep(1.0)

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval_s
        if interval is None:
            return
        while True:
            if self.health.alive():
                self.notifier.watchdog()
            await self.clock.sleep(interval)

    async def _probe_broker(self, source: ServedSource) -> None:
        while True:
            await source.check_reachable()
            await self.clock.sleep(PROBE_EVERY_S)

    async def _reload_loop(self, holder: ModelHolder[ServedModel]) -> None:
        settings = self.settings.model
        registry = None if settings.artifact is not None else Registry(settings.registry)
        seen = registry.current_ref() if registry else None
        while True:
            requested = await wait_event(self.clock, self._reload_requested, settings.reload_poll_s)
            self._reload_requested.clear()
            pointer = registry.current_ref() if registry else None
            if not requested and pointer == seen:
                continue
            seen = pointer
            await self.reload(holder)

    async def reload(self, holder: ModelHolder[ServedModel]) -> bool:
        """Load, verify and warm up the configured artifact, then swap it in between batches."""
        assert self.pipeline is not None
        running = holder.model
        refusal: str | None = None
        try:
            candidate = await asyncio.to_thread(self._load_model, self.settings.model, running.device)
            check_compatible(candidate.manifest, running.manifest)
            await asyncio.to_thread(warm_up, candidate, self.settings.batching.max_batch)
        except CandlecastError as exc:
            refusal = str(exc)
        if refusal is not None:
            self.reloads.labels("refused").inc()
            log.error("model reload refused; the running model stays", error=refusal, running=running.version)
            return False
        if candidate.file_sha256 == running.file_sha256:
            self.reloads.labels("unchanged").inc()
            return True
        async with self.pipeline.model_lock:
            holder.model = candidate
            self.monitor.use(candidate.manifest, self._core.intervals, self._core.gap_policies)
        self.reloads.labels("loaded").inc()
        self._describe_model(candidate, configure_threads(self.settings.model.threads))
        log.info("model reloaded", previous=running.version, current=candidate.version)
        return True

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        block_s = os.environ.get(DEBUG_BLOCK_LOOP_VARIABLE)
        if block_s:
            log.warning(
                "debug: SIGUSR1 blocks the event loop", seconds=float(block_s), variable=DEBUG_BLOCK_LOOP_VARIABLE
            )
            loop.add_signal_handler(signal.SIGUSR1, self._block_loop, float(block_s))

    def _block_loop(self, seconds: float) -> None:
        self.notifier.notify("STATUS=debug: event loop blocked")
        time.sleep(seconds)
        self.notifier.notify("STATUS=debug: event loop free")

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            loop.remove_signal_handler(sig)
