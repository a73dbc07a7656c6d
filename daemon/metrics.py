"""Prometheus metrics of the daemon (prefix ``candlecast_``), on a registry passed in.

The hot path never touches a metric per candle: the ingestor and the window store count in
plain ints, and this module turns their increments into metric updates once per poll.
Labels stay bounded: rejection reasons, actions, partitions, outcomes, routes; never symbols.
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np
from prometheus_client import CollectorRegistry, Gauge, Histogram, Info
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from candlecast import __version__
from candlecast.client_logs import CLIENT_WARNINGS
from daemon.candle import RejectReason
from daemon.dispatch import DEFAULT_ROUTE
from daemon.engine import CandleIngestor, IngestCounters, SignalBuilder
from daemon.ports import PublishBatch
from strategies.base import Action

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class DaemonMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        registry.register(CLIENT_WARNINGS)  # candlecast_client_warnings_total{library,kind}, counted by logging
        self.candles_consumed = PromCounter(
            "candlecast_candles_consumed", "Candle records consumed (live, not replayed).", registry=registry
        )
        self.candles_replayed = PromCounter(
            "candlecast_candles_replayed",
            "Candle records read again to rebuild windows after an assignment.",
            registry=registry,
        )
        self.candles_rejected = PromCounter(
            "candlecast_candles_rejected",
            "Candle records that cannot be scored, by reason.",
            ["reason"],
            registry=registry,
        )
        self.outputs_not_finite = PromCounter(
            "candlecast_outputs_not_finite",
            "Scored windows whose model output held a NaN or an infinity; they get no signal.",
            registry=registry,
        )
        self.dead_letters = PromCounter(
            "candlecast_dead_letters_published", "Records published to the dead-letter topic.", registry=registry
        )
        self.signals = PromCounter(
            "candlecast_signals_published",
            "Signals published, by action, strategy and route.",
            ["action", "strategy", "route"],
            registry=registry,
        )
        self.end_to_end = Histogram(
            "candlecast_end_to_end_latency_seconds",
            "From the candle record's timestamp to the signal acknowledged by the broker, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "candlecast_queue_wait_seconds",
            "From taking a record off the source to the start of its forward pass, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.inference = Histogram(
            "candlecast_inference_seconds",
            "Duration of one forward pass (one batch of one route's model).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.publish = Histogram(
            "candlecast_publish_seconds",
            "Publishing one batch of signals and committing its offsets.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "candlecast_batch_size",
            "Windows per forward pass, by route.",
            ["route"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.windows_live = Gauge("candlecast_windows_live", "Windows held in memory.", registry=registry)
        self.window_bytes = Gauge("candlecast_window_bytes", "Bytes allocated for windows.", registry=registry)
        self.window_evictions = PromCounter(
            "candlecast_window_evictions", "Windows evicted because max_windows was reached.", registry=registry
        )
        self.window_expiries = PromCounter(
            "candlecast_window_expiries",
            "Windows dropped because their symbol fell idle_expiry_intervals behind its partition.",
            registry=registry,
        )
        self.gaps = PromCounter(
            "candlecast_window_gaps",
            "Gaps between candles of a window, by what the policy did.",
            ["outcome"],
            registry=registry,
        )
        self.ready = Gauge("candlecast_ready", "1 when the daemon is ready (see /readyz).", registry=registry)
        self.model_info = Info("candlecast_model", "Each route's model in service.", ["route"], registry=registry)
        self.build_info = Info("candlecast_build", "Versions of candlecast and what it runs on.", registry=registry)
        self.build_info.info(build_versions())
        # Series of known label values exist from the start at 0, so that rate() and increase()
        # count the first event too (they need a sample before it).
        for reason in RejectReason:
            self.candles_rejected.labels(reason.value)
        for outcome in ("reset", "tolerated", "filled"):
            self.gaps.labels(outcome)
        self.routes: list[str] = []
        """Route names by the pipeline's position (``use_routes``)."""
        self._route_histograms: list[_RouteHistograms] = []
        self.use_routes([DEFAULT_ROUTE])
        self._seen_rejected: Counter[str] = Counter()
        self._seen_not_finite = 0
        self._seen = {
            "consumed": 0,
            "replayed": 0,
            "evictions": 0,
            "expiries": 0,
            "reset": 0,
            "tolerated": 0,
            "filled": 0,
        }

    def use_routes(self, names: Sequence[str]) -> None:
        """Label what each route (by the pipeline's position) scores and publishes with its name; its
        latency and batch series exist from now on."""
        self.routes = list(names)
        # Each route's labelled children, looked up once: a ``labels`` call costs more than the observe.
        self._route_histograms = [
            _RouteHistograms(
                self.end_to_end.labels(name),
                self.queue_wait.labels(name),
                self.inference.labels(name),
                self.batch_size.labels(name),
            )
            for name in names
        ]

    def expect_strategy(self, strategy: str, route: str = DEFAULT_ROUTE) -> None:
        """Create the signal series of a route's strategy, one per action, at 0."""
        for action in Action:
            self.signals.labels(action.value, strategy, route)

    def observe_ingest(
        self,
        ingestor: CandleIngestor | Sequence[CandleIngestor],
        _dead_letters: int,
        unrouted: IngestCounters | None = None,
    ) -> None:
        """Count what the ingestors (one per route) and the records no route claimed added since the last call."""
        ingestors = [ingestor] if isinstance(ingestor, CandleIngestor) else list(ingestor)
        counted = [i.counters for i in ingestors] + ([unrouted] if unrouted is not None else [])
        rejected: Counter[str] = Counter()
        for c in counted:
            rejected.update(c.rejected)
        stats = [i.store.stats for i in ingestors]
        current = {
            "consumed": sum(c.consumed for c in counted),
            "replayed": sum(c.replayed for c in counted),
            "evictions": sum(s.evictions for s in stats),
            "expiries": sum(s.expired for s in stats),
            "reset": sum(s.gaps_reset for s in stats),
            "tolerated": sum(s.gaps_tolerated for s in stats),
            "filled": sum(s.gaps_filled for s in stats),
        }
        delta = {name: current[name] - self._seen[name] for name in current}
        self._seen = current
        self.candles_consumed.inc(delta["consumed"])
        self.candles_replayed.inc(delta["replayed"])
        self.window_evictions.inc(delta["evictions"])
        self.window_expiries.inc(delta["expiries"])
        for outcome in ("reset", "tolerated", "filled"):
            if delta[outcome]:
                self.gaps.labels(outcome).inc(delta[outcome])
        for reason, total in rejected.items():
            increment = total - self._seen_rejected[reason]
            if increment:
                self.candles_rejected.labels(reason).inc(increment)
                self._seen_rejected[reason] = total
        self.windows_live.set(sum(len(i.store) for i in ingestors))
        self.window_bytes.set(sum(i.store.nbytes for i in ingestors))

    def observe_outputs(self, builder: SignalBuilder | Sequence[SignalBuilder]) -> None:
        """Count the outputs the builders (one per route) found not finite since the last call."""
        builders = [builder] if isinstance(builder, SignalBuilder) else builder
        not_finite = sum(b.not_finite for b in builders)
        increment = not_finite - self._seen_not_finite
        if increment:
            self.outputs_not_finite.inc(increment)
            self._seen_not_finite = not_finite

    def observe_forward(self, rows: int, seconds: float, route: int = 0) -> None:
        histograms = self._route_histograms[route]
        histograms.batch_size.observe(rows)
        histograms.inference.observe(seconds)

    def observe_queue_wait(self, seconds: float, route: int = 0) -> None:
        self._route_histograms[route].queue_wait.observe(seconds)

    def observe_publish(self, batch: PublishBatch, seconds: float, acked_ms: float) -> None:
        self.publish.observe(seconds)
        if batch.dead_letters:
            self.dead_letters.inc(len(batch.dead_letters))
        actions: Counter[tuple[str, str, int]] = Counter()
        latencies: list[list[float]] = [[] for _ in self.routes]
        for signal, request in batch.signals:
            actions[(signal.action, signal.strategy, request.route)] += 1
            latencies[request.route].append(max(0.0, (acked_ms - request.timestamp_ms) / 1000.0))
        for (action, strategy, route), count in actions.items():
            self.signals.labels(action, strategy.partition("(")[0], self.routes[route]).inc(count)
        for histograms, amounts in zip(self._route_histograms, latencies, strict=True):
            observe_each(histograms.end_to_end, amounts)


def observe_each(histogram: Histogram, amounts: Sequence[float]) -> None:
    """``histogram.observe(amount)`` for every amount, in order, with one bucket update per bucket: a
    batch's end-to-end latencies cost a few numpy calls instead of a locked update per signal. The sum
    adds the amounts one by one as ``observe`` does, so every sample is the same float.

    Reads prometheus_client's ``Histogram`` internals (``_upper_bounds``, ``_buckets``, ``_sum``): the
    test beside it compares the exposition with ``observe``'s, so a client that changes them fails it.
    """
    if not amounts:
        return
    total = histogram._sum.get()
    for amount in amounts:
        total += amount
    histogram._sum.set(total)
    bounds = histogram._upper_bounds
    # ``observe`` counts an amount in the first bucket whose bound is >= it (none for NaN: dropped here too).
    which = np.searchsorted(np.asarray(bounds), np.asarray(amounts, dtype=np.float64), side="left")
    counts = np.bincount(which, minlength=len(bounds) + 1)[: len(bounds)]
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=True):
        if count:
            bucket.inc(count)


@dataclass(frozen=True, slots=True)
class _RouteHistograms:
    """One route's children of the per-route latency and batch histograms."""

    end_to_end: Histogram
    queue_wait: Histogram
    inference: Histogram
    batch_size: Histogram


@dataclass(frozen=True, slots=True)
class StateUse:
    """A route's per-symbol recurrent state (streaming members' step path), as read at scrape time."""

    route: str
    nbytes: int
    carried_steps: int
    rebuilt_steps: int


class StateCollector(Collector):
    """The step path's state memory and steps per route, read from the routes at scrape time (the
    inference thread counts in plain ints, as the ingestor does)."""

    def __init__(self, read: Callable[[], Iterable[StateUse]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        memory = GaugeMetricFamily(
            "candlecast_state_bytes",
            "Bytes allocated for the per-symbol states of a route's step path (0: windowed scoring).",
            labels=["route"],
        )
        steps = CounterMetricFamily(
            "candlecast_state_steps",
            "Candle steps of a route's step path, both state copies counted, by whether they went on from "
            "a cached state (carried) or from zero (rebuilt: restarts, rebalances, resets, re-scored history, "
            "the planned restarts).",
            labels=["route", "kind"],
        )
        for use in self._read():
            memory.add_metric([use.route], use.nbytes)
            steps.add_metric([use.route, "carried"], use.carried_steps)
            steps.add_metric([use.route, "rebuilt"], use.rebuilt_steps)
        return [memory, steps]


def build_versions() -> dict[str, str]:
    """Versions of candlecast, Python and the libraries that decide its numbers, without importing them."""
    versions = {"candlecast": __version__, "python": platform.python_version()}
    for package in ("torch", "numpy", "aiokafka"):
        versions[package] = _version(package)
    return versions


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
