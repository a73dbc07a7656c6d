"""The daemon serving the two bundled models as two routes, as ``candlecast demo`` does: hourly
``*USD`` candles to ``crypto-1h``, daily candles to ``equities-1d``. A backlog split evenly between
the routes measures sustained throughput with both, and every signal is checked to come from the
route that claims its candle and that route's model. A steady phase then runs both routes' candles,
alternated, at the single route's steady rate, for each route's latency beside the single route's."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from candlecast.bench.load import Generator, Workload, prefill

if TYPE_CHECKING:
    from candlecast.bench.harness import Bench, Served
    from candlecast.bench.options import Delivery
    from daemon.ports import PublishBatch
    from models.torchscript import LoadedModel

ROUTES = (
    {"name": "crypto-1h", "symbols": "*USD", "interval": "1h"},
    {"name": "equities-1d", "symbols": "*", "interval": "1d"},
)
"""The demo's routes, each serving the bundled registry's champion of the model of its name."""
SUFFIXES = {"crypto-1h": "USD", "equities-1d": ""}
"""What the workload appends to each route's symbols: ``*USD`` claims only the hourly ones."""


@dataclass
class TwoRoutes:
    symbols_per_route: int
    signals: int
    throughput_per_s: float
    """Signals per second over the backlog of both routes, first acknowledged batch to last."""
    single_route_per_s: float
    """The same run's sustained throughput with one route (the first delivery run)."""
    ceilings_per_s: dict[str, float]
    """Each route's model ceiling (windows/s at the bench's batch and threads)."""
    signals_by_route: dict[str, int]
    """Of the backlog's signals, those whose ``route`` and ``model`` are that route's and whose candle that
    route claims."""
    misrouted: int
    """Of the backlog's signals, those of any other route, model or interval (0 when every candle was scored
    by its own model)."""
    models: dict[str, str] = field(default_factory=dict)
    steady_rate_per_s: float = 0.0
    """Candles per second of the steady phase, both routes together: the single route's steady rate."""
    steady_p50_ms: dict[str, float] = field(default_factory=dict)
    steady_p99_ms: dict[str, float] = field(default_factory=dict)
    """Per route, candle to signal acknowledged in the steady phase."""
    steady_signals_by_route: dict[str, int] = field(default_factory=dict)
    """The steady phase's signals, by the route they name."""

    @property
    def bound_per_s(self) -> float:
        """Both models share the one inference thread, so their times add: the backlog's candles of each
        route at its model's ceiling, one route after the other."""
        per_route = self.signals / len(self.ceilings_per_s)
        return self.signals / sum(per_route / ceiling for ceiling in self.ceilings_per_s.values())


class RouteCounter:
    """A published-batch hook: signals per (route, model, interval), and each signal's route in the order
    the bench's recorder sees them."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str | None, str | None, str]] = Counter()
        self.routes: list[str | None] = []

    def __call__(self, batch: PublishBatch) -> None:
        self.counts.update((signal.route, signal.model, signal.interval) for signal, _ in batch.signals)
        self.routes.extend(signal.route for signal, _ in batch.signals)


async def two_route_run(bench: Bench, delivery: Delivery, single_route_per_s: float) -> TwoRoutes:
    """The backlog of ``options.symbols`` symbols, half hourly ``*USD`` and half daily, through one daemon
    with both routes."""
    # Imported here: the harness and the ceilings import the report, which imports these figures.
    from candlecast.bench.ceilings import model_ceiling
    from candlecast.bench.harness import serving
    from daemon.serving import warm_up
    from daemon.settings import bundled_registry
    from models.device import resolve_device
    from models.registry import Registry

    options, console = bench.options, bench.console
    registry = Registry(bundled_registry())
    models: dict[str, LoadedModel] = {}
    for route in ROUTES:
        entry = registry.champion(route["name"])
        if entry is None:
            raise RuntimeError(f"the bundled registry has no {route['name']} model")
        models[route["name"]] = registry.load(entry, resolve_device(options.device))
    ceilings = {}
    for name, model in models.items():
        warm_up(model, options.batch)
        ceilings[name] = model_ceiling(model, options.batch, options.ceiling_s, bench.ceiling.threads).windows_per_s
    per_route = options.symbols // 2
    candles, signals = await bench.topics("routes", options.partitions)
    workloads = [
        (bench.workload(f"R{index}", per_route, model, SUFFIXES[name]), model.manifest.window)
        for index, (name, model) in enumerate(models.items())
    ]
    # Round by round, both routes' candles side by side (as the single route's backlog), so that every
    # window fills before the first scored candle of either route.
    rounds = max(window for _, window in workloads) - 1 + options.scored_per_symbol
    messages = [
        message
        for round_ in range(rounds)
        for workload, window in workloads
        if round_ >= rounds - (window - 1 + options.scored_per_symbol)
        for message in workload.round()
    ]
    backlog = 2 * per_route * options.scored_per_symbol
    console.print(f"two routes: {backlog} scored candles, {per_route} symbols per route")
    await prefill(bench.bootstrap, candles, messages)
    routes: list[dict[str, Any]] = [{**route, "model": {"name": route["name"]}} for route in ROUTES]
    settings = bench.settings(
        candles=candles, signals=signals, group=signals, delivery=delivery, max_batch=options.batch, routes=routes
    )
    counter = RouteCounter()
    rate = options.steady_rate or single_route_per_s / 2
    async with serving(settings, counter) as served:
        await served.recorder.wait_for(backlog, bench.timeout(backlog, min(ceilings.values()) / 4))
        throughput = served.recorder.throughput(0)
        backlog_counts = Counter(counter.counts)
        console.print(f"two routes: steady {rate:.0f} candles/s for {options.steady_s:g} s, routes alternated")
        latencies = await steady_by_route(bench, served, counter, candles, [w for w, _ in workloads], rate)
    own = {name: backlog_counts[(name, model.manifest.name, model.manifest.interval)] for name, model in models.items()}
    return TwoRoutes(
        symbols_per_route=per_route,
        signals=backlog,
        throughput_per_s=throughput,
        single_route_per_s=single_route_per_s,
        ceilings_per_s=ceilings,
        signals_by_route=own,
        misrouted=sum(backlog_counts.values()) - sum(own.values()),
        models={name: f"{model.manifest.name}/{model.version}" for name, model in models.items()},
        steady_rate_per_s=rate,
        steady_p50_ms={name: float(np.percentile(values, 50)) for name, values in latencies.items()},
        steady_p99_ms={name: float(np.percentile(values, 99)) for name, values in latencies.items()},
        steady_signals_by_route={name: len(values) for name, values in latencies.items()},
    )


async def steady_by_route(
    bench: Bench, served: Served, counter: RouteCounter, candles: str, workloads: list[Workload], rate: float
) -> dict[str, npt.NDArray[np.float64]]:
    """``rate`` candles per second for ``options.steady_s``, the routes' candles alternated one by one;
    each route's latencies (candle record time to signal acknowledged), in milliseconds."""
    recorder = served.recorder
    each = max(1, int(rate * bench.options.steady_s) // len(workloads))
    streams = [workload.stream(each) for workload in workloads]
    messages = [message for side_by_side in zip(*streams, strict=True) for message in side_by_side]
    async with Generator(bench.bootstrap, candles) as gen:
        await asyncio.sleep(1.0)  # the generator's start is not in the phase
        start = len(recorder)
        await gen.paced(messages, [i / rate for i in range(len(messages))])
        await recorder.wait_for(start + len(messages), bench.timeout(len(messages)))
    values = recorder.latencies(start)
    routes = np.asarray(counter.routes[start:], dtype=object)
    return {str(name): values[routes == name] for name in dict.fromkeys(counter.routes[start:])}


def two_route_rows(figures: TwoRoutes) -> list[tuple[str, str, str]]:
    """The figures as (measurement, figure, detail) rows."""
    counts = ", ".join(f"{name} {count:,}" for name, count in figures.signals_by_route.items())
    ceilings = ", ".join(f"{name} {per_s:,.0f}/s" for name, per_s in figures.ceilings_per_s.items())
    return [
        (
            f"two routes, {figures.signals:,} signals",
            f"{figures.throughput_per_s:,.0f} /s",
            f"{figures.throughput_per_s / figures.single_route_per_s:.2f}x the single route's "
            f"{figures.single_route_per_s:,.0f}/s; {figures.throughput_per_s / figures.bound_per_s:.2f} of the bound "
            f"{figures.bound_per_s:,.0f}/s (ceilings {ceilings}, times added)",
        ),
        ("  signals by route", counts, f"{figures.misrouted} from another route or model"),
        (
            f"  steady {figures.steady_rate_per_s:,.0f}/s, routes alternated",
            ", ".join(f"{name} p99 {p99:,.0f} ms" for name, p99 in figures.steady_p99_ms.items()),
            "p50 "
            + ", ".join(f"{name} {p50:,.0f} ms" for name, p50 in figures.steady_p50_ms.items())
            + "; the single route's steady phase ran at the same rate",
        ),
    ]
