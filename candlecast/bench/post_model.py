"""The daemon's work after the forward pass for one candle close of many symbols, the current code
side by side with a base revision's (``git show BASE:PATH``), alternated in one process.

Stages, each fed the same close (the bundled model's horizons, quantiles and features, synthetic
outputs): ``build`` (``SignalBuilder.build``: strategy decisions and signals), ``monitor``
(``ModelMonitor.observe``: drift, outcomes, per-symbol quality), ``metrics``
(``DaemonMetrics.observe_publish``) and ``record`` (each signal's Kafka value and headers:
``encoder.encode``, ``signal_headers``), then ``collect``: one full garbage collection of what the
close made and left alive (requests, signals, records, remembered outputs; everything older frozen,
as the daemon freezes its start-up heap). The stages run with the collector off (a collection falls
in whichever stage allocates when one is due, which would blur them), so ``collect`` is where what a
close leaves for the collector shows. Old and new alternate, the order swapped every round; each
round first checks that both produced the same bytes (signals, records, metric expositions,
per-symbol reports). Figures: microseconds per signal, the median over the rounds, and new / old
(ratios are what a loaded machine still tells apart).

``python -m candlecast.bench.post_model [--base REV] [--symbols 10000] [--rounds 9] [--strategy default|memory]``
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import shutil
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from daemon import engine, metrics, monitoring, signal
from daemon.intervals import Interval
from daemon.ports import Chunk, PublishBatch, ScoredChunk
from daemon.settings import MonitoringSettings, bundled_registry
from daemon.window import GapMode, GapPolicy
from models.artifact import Manifest, ModelOutputs
from models.registry import Registry
from strategies.base import OutputSpec
from strategies.threshold import ThresholdStrategy

DAY_MS = 86_400_000
MONDAY = 1_699_833_600_000
"""2023-11-13: closes fall on weekdays, the bundled model's calendar."""
STRATEGIES: dict[str, dict[str, Any]] = {
    "default": {},
    "memory": {"buy_above": 0.55, "sell_below": 0.45, "hysteresis": 0.01, "cooldown": 2, "memory": 4},
}
"""The threshold strategy with its defaults (no memory: the daemon's default), and with hysteresis and a
cooldown (each key's recent outputs count)."""
STAGES = ("build", "monitor", "metrics", "record", "collect")
WARM_ROUNDS = 2
"""Rounds before timing: the strategies' and outcome trackers' memories fill."""


def base_module(base: str, path: str, name: str, **names: object) -> types.ModuleType:
    """Module ``path`` as it was at revision ``base``, loaded under ``name`` beside the current one, with
    ``names`` replacing what it imports (so a base module uses another base module)."""
    git = shutil.which("git")
    if git is None:
        raise SystemExit("git is needed to read the base revision's code")
    shown = subprocess.run([git, "show", f"{base}:{path}"], capture_output=True, text=True, check=True)  # noqa: S603
    source = shown.stdout
    module = types.ModuleType(name)
    module.__file__ = f"{base}:{path}"
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102  # the repository's own code
    module.__dict__.update(names)
    return module


def close_ts(day: int) -> int:
    return MONDAY + (day // 5 * 7 + day % 5) * DAY_MS


def model_outputs(manifest: Manifest, symbols: int, day: int) -> ModelOutputs:
    rng = np.random.default_rng(day)
    horizons = len(manifest.horizons)
    p = np.clip(rng.normal(0.5, 0.08, (symbols, horizons)), 0.01, 0.99).astype(np.float32)
    spread = rng.uniform(0.005, 0.05, (symbols, horizons, 1))
    levels = np.linspace(-1.0, 1.0, len(manifest.quantiles))
    quantiles = (rng.normal(0, 0.01, (symbols, horizons, 1)) + spread * levels).astype(np.float32)
    return ModelOutputs(
        probabilities=p,
        quantiles=quantiles,
        disagreement=rng.uniform(0.0, 0.1, (symbols, horizons)).astype(np.float32),
        member_probabilities=p[:, None, :],
        last_features=rng.normal(0.0, 1.0, (symbols, len(manifest.features))).astype(np.float32),
    )


def score_requests(symbols: int, day: int) -> list[engine.ScoreRequest]:
    """One request per symbol for the close of ``day``, each window ending at the symbol's close."""
    ts = close_ts(day)
    closes = 100.0 + np.random.default_rng(1000 + day).normal(0.0, 1.0, symbols)
    requests = []
    for i, price in enumerate(closes.tolist()):
        window = np.full((1, 5), price, dtype=np.float32)
        requests.append(
            engine.ScoreRequest(
                key=(f"S{i:05d}", "1d"),
                ts=ts,
                window=window,
                topic="candles",
                partition=i % 8,
                offset=day * symbols + i,
                timestamp_ms=ts + DAY_MS,
                history=16,
                sequence=day * symbols + i,
            )
        )
    return requests


@dataclass
class Side:
    """One code's objects (old or new), each kept across rounds as the daemon keeps them."""

    builder: Any
    monitor: Any
    monitor_registry: CollectorRegistry
    metrics: Any
    metrics_registry: CollectorRegistry
    record: Callable[[list[tuple[Any, Any]]], list[tuple[bytes, bytes, list[tuple[str, bytes]]]]]


def side(modules: dict[str, types.ModuleType], manifest: Manifest, strategy: ThresholdStrategy, capacity: int) -> Side:
    spec = OutputSpec(tuple(manifest.horizons), tuple(manifest.quantiles))
    builder = modules["engine"].SignalBuilder(
        strategy, spec, "threshold()", lambda: "2026-12-01T00:00:00.000Z", model=manifest.name, route="default"
    )
    monitor_registry = CollectorRegistry()
    monitor = modules["monitoring"].ModelMonitor(
        modules["monitoring"].RouteMonitors(monitor_registry), MonitoringSettings(), capacity=capacity
    )
    monitor.use(
        manifest,
        {manifest.interval: Interval.parse(manifest.interval, manifest.calendar)},
        {manifest.interval: GapPolicy(GapMode(manifest.gap_policy), manifest.max_missing)},
    )
    metrics_registry = CollectorRegistry()
    daemon_metrics = modules["metrics"].DaemonMetrics(metrics_registry)
    encode, headers = modules["signal"].encoder.encode, modules["signal"].signal_headers

    def record(signals: list[tuple[Any, Any]]) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
        """What the Kafka sink sends of each signal: value, key, headers."""
        return [
            (
                encode(s),
                s.symbol.encode(),
                headers(s, source_topic=r.topic, source_partition=r.partition, source_offset=r.offset),
            )
            for s, r in signals
        ]

    return Side(builder, monitor, monitor_registry, daemon_metrics, metrics_registry, record)


def exposition(registry: CollectorRegistry) -> list[bytes]:
    return [line for line in generate_latest(registry).splitlines() if b"_created" not in line]


def run_round(one: Side, manifest: Manifest, symbols: int, day: int) -> tuple[dict[str, float], list[object]]:
    """Every stage of one close on one side: seconds per stage, and what it produced."""
    requests = score_requests(symbols, day)
    outputs = model_outputs(manifest, symbols, day)
    seconds: dict[str, float] = {}
    # Everything older than this close is frozen (both sides' state and the start-up heap, as the daemon
    # freezes its own): the collection after the stages walks only what this side's close made.
    gc.collect()
    gc.freeze()
    try:
        gc.disable()
        try:
            began = time.perf_counter()
            built = one.builder.build(requests, outputs, manifest.version)
            seconds["build"] = time.perf_counter() - began
            began = time.perf_counter()
            one.monitor.observe(ScoredChunk(Chunk(requests, [], {}), outputs, manifest.version))
            seconds["monitor"] = time.perf_counter() - began
            batch = PublishBatch([(s, r) for s, r in zip(built, requests, strict=True) if s is not None], [], {})
            began = time.perf_counter()
            one.metrics.observe_publish(batch, 0.01, (close_ts(day) + 2 * DAY_MS) * 1.0)
            seconds["metrics"] = time.perf_counter() - began
            began = time.perf_counter()
            records = one.record(batch.signals)
            seconds["record"] = time.perf_counter() - began
        finally:
            gc.enable()
        began = time.perf_counter()
        gc.collect()
        seconds["collect"] = time.perf_counter() - began
    finally:
        gc.unfreeze()
    by_symbol = one.monitor.by_symbol
    produced: list[object] = [
        msgspec.json.encode(built),
        records,
        exposition(one.monitor_registry),
        exposition(one.metrics_registry),
        # As tuples: each side's reports are instances of its own module's class.
        [
            [dataclasses.astuple(report) for report in by_symbol.report(r.key)]
            for r in requests[:: max(1, symbols // 50)]
        ],
    ]
    return seconds, produced


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="Revision of the old code (default HEAD: the last commit).")
    parser.add_argument("--symbols", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), default="default")
    args = parser.parse_args(argv)

    entry = Registry(bundled_registry()).current()
    if entry is None:
        raise SystemExit("the bundled registry has no current model")
    manifest = entry.manifest()
    strategy = ThresholdStrategy.from_params(
        OutputSpec(tuple(manifest.horizons), tuple(manifest.quantiles)), {**STRATEGIES[args.strategy]}
    )
    old_quality = base_module(args.base, "daemon/symbol_quality.py", "_base_symbol_quality")
    # The base builder remembers outputs as the base's ``EnsembleOutput``s (the strategy reads either).
    old_outputs = base_module(args.base, "strategies/base.py", "_base_strategies").EnsembleOutput
    old = {
        "engine": base_module(args.base, "daemon/engine.py", "_base_engine", EnsembleOutput=old_outputs),
        "monitoring": base_module(
            args.base, "daemon/monitoring.py", "_base_monitoring", SymbolQuality=old_quality.SymbolQuality
        ),
        "metrics": base_module(args.base, "daemon/metrics.py", "_base_metrics"),
        "signal": base_module(args.base, "daemon/signal.py", "_base_signal"),
    }
    new = {"engine": engine, "monitoring": monitoring, "metrics": metrics, "signal": signal}
    sides = {"old": side(old, manifest, strategy, args.symbols), "new": side(new, manifest, strategy, args.symbols)}
    timings: dict[str, dict[str, list[float]]] = {name: {stage: [] for stage in STAGES} for name in sides}
    for day in range(WARM_ROUNDS + args.rounds):
        produced = {}
        for name in ("old", "new") if day % 2 == 0 else ("new", "old"):
            seconds, produced[name] = run_round(sides[name], manifest, args.symbols, day)
            if day >= WARM_ROUNDS:
                for stage in STAGES:
                    timings[name][stage].append(seconds[stage])
        for what, old_output, new_output in zip(
            ("signals", "records", "monitoring metrics", "daemon metrics", "per-symbol quality"),
            produced["old"],
            produced["new"],
            strict=True,
        ):
            if old_output != new_output:
                raise SystemExit(f"close {day}: the {what} differ between {args.base} and the working tree")
    lines = [
        f"{args.symbols} symbols, strategy {args.strategy}, {args.rounds} rounds (old = {args.base}); "
        "identical outputs in every round; us per signal, median of the rounds:"
    ]
    totals = dict.fromkeys(sides, 0.0)
    for stage in STAGES:
        figures = {name: statistics.median(timings[name][stage]) / args.symbols * 1e6 for name in sides}
        for name in sides:
            totals[name] += figures[name]
        lines.append(row(stage, figures))
    lines.append(row("total", totals))
    sys.stdout.write("\n".join(lines) + "\n")


def row(stage: str, figures: dict[str, float]) -> str:
    old, new = figures["old"], figures["new"]
    return f"  {stage:8} old {old:7.2f}  new {new:7.2f}  new/old {new / old:.2f}"


if __name__ == "__main__":
    main()
