"""The daemon: assembles the pipeline from settings and runs it until told to stop.

Signals: SIGTERM/SIGINT stop consumption, then everything in flight is scored, published and
committed before the process exits 0. SIGHUP, or a change of the registry version a route serves,
loads that route's artifact on a side thread, verifies and warms it up, and swaps it in between two
batches (never while a rebuild re-scores history); a bad artifact is refused and the running model
stays. Each route (``[[routes]]``; one ``default`` route without) has its own core, model and reload.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Info

from candlecast import __version__
from candlecast.errors import CandlecastError, ConfigError, ShutdownDeadlineError, TransportError
from daemon.api import ApiContext
from daemon.api_wiring import daemon_routes, record_published
from daemon.batching import BatchPolicy
from daemon.core import Core, build_core
from daemon.dispatch import RouteClaim
from daemon.heap import startup_heap_frozen
from daemon.http import Health, HttpServer
from daemon.kafka_sink import KafkaSignalSink
from daemon.kafka_source import KafkaCandleSource
from daemon.metrics import DaemonMetrics, StateCollector, StateUse
from daemon.monitoring import ModelMonitor, RouteMonitors
from daemon.mqtt.transport import MqttTransport
from daemon.pipeline import Lane, ModelHolder, Pipeline
from daemon.ports import RevokeHandler, ServedSink, ServedSource, TransportFactory
from daemon.serving import (
    ModelLoader,
    ServedModel,
    check_compatible,
    configure_threads,
    load_serving_model,
    served_ref,
    served_scoring,
    warm_up,
)
from daemon.settings import KafkaSettings, RouteSettings, Settings
from daemon.signal_store import SignalStore
from daemon.stepped_model import SteppedModel, StepTally
from daemon.systemd import SystemdNotifier
from daemon.timer import SystemTimer, Timer, done_within, wait_event
from models.device import resolve_device

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


@dataclass(slots=True)
class ServedRoute:
    """A route the daemon serves: its settings, the daemon's settings as it sees them, its pure core,
    its lane of the pipeline (model, batch policy) and its monitor."""

    settings: RouteSettings
    view: Settings
    core: Core
    lane: Lane[ServedModel]
    monitor: ModelMonitor
    reload_requested: asyncio.Event
    steps: StepTally
    """Steps of the route's step path, across reloads."""

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def model(self) -> ServedModel:
        return self.lane.models.model


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
            "candlecast_model_reloads",
            "Model reload attempts, by route and outcome.",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.reload_timestamp = Gauge(
            "candlecast_model_loaded_timestamp_seconds",
            "When the route's model in service was loaded.",
            ["route"],
            registry=self.registry,
        )
        self.monitors = RouteMonitors(self.registry)
        """Every route's drift and live-quality metrics, labelled by route."""
        self.route_info = Info(
            "candlecast_route", "Each route: what it claims and the model it serves.", ["route"], registry=self.registry
        )
        self.routes: list[ServedRoute] = []
        """The routes served, in match order (built by ``run``)."""
        self.registry.register(StateCollector(self._state_use))
        self._stopping = asyncio.Event()
        self.became_ready = asyncio.Event()
        """Set the first time every readiness check passes (when systemd is told READY=1)."""
        self.pipeline: Pipeline[ServedModel] | None = None
        self.pipeline_built = asyncio.Event()
        """Set once ``run`` has built ``pipeline`` (after loading the model, before connecting to Kafka)."""

    @property
    def model(self) -> ServedModel | None:
        """The first route's model in service, once loaded (the only one without routes)."""
        return self.routes[0].model if self.routes else None

    def request_stop(self) -> None:
        self._stopping.set()
        if self.pipeline is not None:
            self.pipeline.stop()

    def request_reload(self, route: str | None = None) -> None:
        """Reload a route's model (every route's by default: SIGHUP)."""
        for served in self.routes:
            if route is None or served.name == route:
                served.reload_requested.set()

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT (or ``request_stop``); raises ``CandlecastError`` on bad setup."""
        settings = self.settings
        threads = configure_threads(settings.model.threads)
        configured = settings.served_routes()
        for index, configured_route in enumerate(configured):
            self.routes.append(await self._serve_route(configured_route, index, len(configured) > 1))
        for served in self.routes:
            self._describe_model(served, threads)
        source, sink = self._transports(self._on_revoke)
        mqtt = MqttTransport(settings.mqtt, self.registry)
        self.pipeline = Pipeline(
            source=mqtt.candle_source(source),
            sink=sink,
            lanes=[route.lane for route in self.routes],
            describe_routes=self.describe_routes,
            max_message_bytes=settings.validation.max_message_bytes,
            metrics=self.metrics,
            clock=self.clock,
            queue_size=settings.batching.queue_chunks,
            queue_bytes=settings.batching.queue_bytes,
            on_published=mqtt.hooks,
        )
        self.pipeline.add_published_hook(record_published(self.signals, [route.name for route in self.routes]))
        if settings.api.enabled:
            routes = daemon_routes(self.pipeline, [(r.settings, r.view, r.monitor) for r in self.routes], self.clock)
            self.http.serve_api(
                ApiContext(routes, self.signals, settings.api, self.signals.clock_ms, settings.api.token())
            )
        self.pipeline_built.set()
        self._core = self.routes[0].core
        self.health.checks.update(
            model_loaded=lambda: True,
            candle_topic=lambda: (source.candle_topic_missing is None, source.candle_topic_missing),
            partitions_assigned=lambda: (source.warm, source.paused_reason),
            broker_reachable=lambda: source.reachable and sink.healthy,
            not_draining=lambda: not self._stopping.is_set(),
        )
        port = await self.http.start()
        log.info("serving metrics and health", host=settings.http.host, port=port)
        self._install_signal_handlers()
        try:
            await mqtt.start()
            for served in self.routes:
                await asyncio.to_thread(warm_up, served.model, served.view.batching.max_batch)
            with startup_heap_frozen():
                if not await self._connect(source, sink):
                    return
                await self._serve(source)
        finally:
            self.notifier.stopping()
            await mqtt.close()
            await sink.stop()
            await source.stop()
            await self.http.stop()
            self._remove_signal_handlers()

    async def _serve_route(self, route: RouteSettings, index: int, named: bool) -> ServedRoute:
        """Load a route's model and build its core; a route whose model cannot be loaded, or serves
        another interval than it claims, stops the start naming the route's field."""
        where = f"routes.{index} ({route.name})" if named else ""
        steps = StepTally()
        view = self.settings.for_route(route)
        try:
            loaded = await asyncio.to_thread(self._load_model, route.model, resolve_device(route.model.device))
            model = served_scoring(loaded, route.model.scoring, view.windows.max_windows, steps)
        except CandlecastError as exc:
            if not where:
                raise
            raise type(exc)(f"{where}.model: {exc}") from exc
        interval = model.manifest.interval
        if route.interval is not None and route.interval != interval:
            raise ConfigError(
                f"{where}.interval: the route claims {route.interval} candles, but its model "
                f"{model.manifest.name}/{model.version} serves {interval}"
            )
        core = build_core(view, model, self.clock, route=route.name)
        self.metrics.expect_strategy(core.builder.strategy.name, route.name)
        for outcome in ("loaded", "unchanged", "refused"):
            self.reloads.labels(route.name, outcome)
        monitor = ModelMonitor(
            self.monitors, self.settings.monitoring, capacity=view.windows.max_windows, route=route.name
        )
        monitor.use(model.manifest, core.intervals, core.gap_policies)
        lane = Lane(
            route.name,
            RouteClaim(route.symbols, interval),
            core.ingestor,
            core.builder,
            ModelHolder(model, stepped=isinstance(model, SteppedModel)),
            BatchPolicy(view.batching.max_batch, view.batching.max_wait_ms / 1000),
            [monitor.observe],
        )
        return ServedRoute(route, view, core, lane, monitor, asyncio.Event(), steps)

    def _state_use(self) -> list[StateUse]:
        return [
            StateUse(
                r.name,
                r.model.state_bytes if isinstance(r.model, SteppedModel) else 0,
                r.steps.carried,
                r.steps.rebuilt,
            )
            for r in self.routes
        ]

    def describe_routes(self) -> str:
        """Each route, what it claims and the model it serves now (``no_route`` dead letters name them)."""
        return ", ".join(
            f"{r.name} = {r.lane.claim.symbols} {r.lane.claim.interval} -> {r.model.manifest.name}/{r.model.version}"
            for r in self.routes
        )

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

    async def _serve(self, source: ServedSource) -> None:
        assert self.pipeline is not None
        pipeline = self.pipeline
        try:
            async with asyncio.TaskGroup() as group:
                helpers = [
                    group.create_task(self.health.heartbeat(), name="heartbeat"),
                    group.create_task(self._watchdog(), name="watchdog"),
                    group.create_task(self._announce_ready(), name="ready"),
                    group.create_task(self._probe_broker(source), name="probe"),
                    *(group.create_task(self._reload_loop(r), name=f"reload {r.name}") for r in self.routes),
                ]
                await self._run_pipeline(pipeline)
                for task in helpers:
                    task.cancel()
        except* CandlecastError as failed:
            # One error for the CLI to print and exit with, not the task group's nesting of it.
            error = first_error(failed)
            raise error from error.__cause__
        consumed = sum(r.core.ingestor.counters.consumed for r in self.routes)
        log.info("stopped after draining", consumed=consumed + self.pipeline.dispatcher.counters.consumed)

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
        for route in self.routes:
            store = route.core.store
            for _topic, partition in partitions:
                keys = [store.key_of(slot) for slot in store.slots_in(partition).tolist()]
                route.core.builder.forget(keys)
                store.drop_partition(partition)

    def _describe_model(self, route: ServedRoute, threads: int) -> None:
        model = route.model
        manifest = model.manifest
        described = {
            "name": manifest.name,
            "version": manifest.version,
            "device": str(model.device),
            "members": ",".join(m.name for m in manifest.members),
            "window": str(manifest.window),
            "interval": manifest.interval,
            "scoring": "stream" if isinstance(model, SteppedModel) else "window",
        }
        self.metrics.model_info.labels(route.name).info(
            {**described, "threads": str(threads), "candlecast": __version__}
        )
        claim = route.lane.claim
        self.route_info.labels(route.name).info({**described, "symbols": claim.symbols})
        self.reload_timestamp.labels(route.name).set(self.clock.time())
        log.info(
            "model in service", route=route.name, model=f"{manifest.name}/{manifest.version}", device=str(model.device)
        )

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

    def _route_settings(self, route: ServedRoute) -> RouteSettings:
        """The route's settings as the daemon's settings give them now (a test may replace those)."""
        return next((r for r in self.settings.served_routes() if r.name == route.name), route.settings)

    async def _reload_loop(self, route: ServedRoute) -> None:
        seen = served_ref(self._route_settings(route).model)
        while True:
            model = self._route_settings(route).model
            requested = await wait_event(self.clock, route.reload_requested, model.reload_poll_s)
            route.reload_requested.clear()
            ref = await asyncio.to_thread(served_ref, model)
            if not requested and ref == seen:
                continue
            seen = ref
            await self.reload(route)

    async def reload(self, route: ServedRoute) -> bool:
        """Load, verify and warm up the route's configured artifact, then swap it in between batches,
        once no rebuild is re-scoring history (``Pipeline.between_batches``)."""
        assert self.pipeline is not None
        running = route.model
        settings = self._route_settings(route)
        refusal: str | None = None
        try:
            loaded = await asyncio.to_thread(self._load_model, settings.model, running.device)
            check_compatible(loaded.manifest, running.manifest)
            # A new model starts with no states: they are the steps of this model's weights.
            candidate = served_scoring(loaded, settings.model.scoring, route.view.windows.max_windows, route.steps)
            await asyncio.to_thread(warm_up, candidate, route.view.batching.max_batch)
        except CandlecastError as exc:
            refusal = str(exc)
        if refusal is not None:
            self.reloads.labels(route.name, "refused").inc()
            log.error(
                "model reload refused; the running model stays",
                route=route.name,
                error=refusal,
                running=running.version,
            )
            return False
        if candidate.file_sha256 == running.file_sha256:
            self.reloads.labels(route.name, "unchanged").inc()
            return True
        async with self.pipeline.between_batches():
            route.lane.models.swap(candidate, stepped=isinstance(candidate, SteppedModel))
            route.monitor.use(candidate.manifest, route.core.intervals, route.core.gap_policies)
        self.reloads.labels(route.name, "loaded").inc()
        self._describe_model(route, configure_threads(self.settings.model.threads))
        log.info("model reloaded", route=route.name, previous=running.version, current=candidate.version)
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
