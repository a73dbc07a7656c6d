"""Where a steady phase's tail goes, and what daemon settings change in it, in alternating rounds.

Each phase is a fresh daemon (``candlecast run``'s, in this process, on a throwaway local Kafka broker)
on fresh topics whose every symbol already holds a full window: it scores each symbol's first candle
(a streaming daemon rebuilds the symbol's state there), then, after a quiet second, a steady phase at
``--rate`` candles per second. Per phase: p50 and p99, each stage's median and each stage's mean over
the slowest 1% of candles (``candlecast.bench.stage_split``: consume, queue, forward, to publish,
publish), the event loop's full collections and longest stall (``candlecast.bench.pauses``), the
daemon's CPU seconds and its event loop's, and the candle generator's own produce round trips
(another process's view of the broker and the machine over the same seconds). Arms (``--arm
NAME:section.field=value,...``) are daemon settings beside the defaults; every round runs each
delivery mode's arms in an order that rotates from round to round, so the load of the moment falls
on all of them alike, and each arm's p50 and p99 are set against ``default`` round by round
(``candlecast.bench.ratios``).

``python -m candlecast.bench.tail --out FILE.json`` (``--help`` lists the options).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console

from candlecast.bench.command import report_run
from candlecast.bench.harness import Bench, ServedArtifact, local_bench, serving
from candlecast.bench.load import Generator, prefill
from candlecast.bench.machine import machine
from candlecast.bench.options import DELIVERY_CHOICES, SCORING_CHOICES, BenchOptions, Delivery, Scoring
from candlecast.bench.pauses import Pauses, PauseWatch
from candlecast.bench.phases import QUIET_S
from candlecast.bench.ratios import Latencies, RatioSummary, summarize
from candlecast.bench.report import Latency, StageSplit
from candlecast.bench.rounds import arm_order
from candlecast.bench.stage_split import median_split, tail_split
from candlecast.errors import ConfigError
from daemon.settings import Settings

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

DEFAULT_ARM = "default"


@dataclass(frozen=True)
class Arm:
    """A daemon's settings beside the defaults: ``{section: {field: value}}``."""

    name: str
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Arm:
        """``NAME:section.field=value,...`` (values read as JSON when they parse, else as text)."""
        name, _, assignments = text.partition(":")
        if not name or not assignments:
            raise ConfigError(f"arm {text!r}: expected NAME:section.field=value[,...]")
        overrides: dict[str, dict[str, Any]] = {}
        for assignment in assignments.split(","):
            path, equals, raw = assignment.partition("=")
            section, dot, name_ = path.partition(".")
            if not (equals and dot and section and name_):
                raise ConfigError(f"arm {text!r}: {assignment!r} is not section.field=value")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            overrides.setdefault(section, {})[name_] = value
        return cls(name, overrides)

    def apply(self, settings: Settings) -> Settings:
        """``settings`` with this arm's values, validated as the daemon validates its file."""
        document = settings.model_dump()
        for section, values in self.overrides.items():
            document.setdefault(section, {}).update(values)
        return Settings.model_validate(document)


def parsed_arms(parser: argparse.ArgumentParser, texts: Sequence[str]) -> tuple[Arm, ...]:
    """``default``, then the arms that ``--arm`` ``texts`` name; a usage error for one that does not parse."""
    try:
        return (Arm(DEFAULT_ARM), *(Arm.parse(text) for text in texts))
    except ConfigError as exc:
        parser.error(str(exc))


@dataclass(frozen=True)
class TailOptions:
    symbols: int = 2_000
    rate: float = 800.0
    """Candles per second of every steady phase (issue 14's latency goals name 800)."""
    steady_s: float = 10.0
    rounds: int = 2
    deliveries: tuple[Delivery, ...] = ("at_least_once", "exactly_once")
    arms: tuple[Arm, ...] = (Arm(DEFAULT_ARM),)
    scoring: Scoring = "stream"
    partitions: int = 6
    batch: int = 512
    threads: int = 0


@dataclass
class Phase:
    round: int
    delivery: Delivery
    arm: str
    latency: Latency
    in_daemon: Latency
    p50_split: StageSplit
    tail_split: StageSplit
    pauses: Pauses
    daemon_cpu_s: float
    loop_cpu_s: float
    """CPU seconds of the event loop's thread over the phase (the rest of ``daemon_cpu_s`` is mostly the
    inference thread's)."""
    generator_produce: Latency
    """The candle generator's produce round trips (send to ``acks=all`` acknowledgement) during the phase:
    the broker and the machine as a process other than the daemon meets them."""


@dataclass
class TailResult:
    machine: dict[str, str]
    options: dict[str, object]
    model: str
    load_before: float
    phases: list[Phase] = field(default_factory=list)
    summary: dict[str, dict[str, dict[str, RatioSummary]]] = field(default_factory=dict)
    """Per delivery, per arm other than ``default``: its p50 and p99 against ``default``."""


async def measure(options: TailOptions, console: Console) -> TailResult:
    load_before = os.getloadavg()[0]
    bench_options = BenchOptions(
        symbols=options.symbols, batch=options.batch, threads=options.threads, partitions=options.partitions
    )
    async with local_bench("candlecast-tail-", bench_options, console) as (bench, _):
        loaded = bench.model
        if options.scoring == "stream" and loaded.manifest.streaming is None:
            raise ConfigError(f"{bench.model_path}: not a streaming artifact; use --scoring window")
        name = f"{loaded.manifest.name}/{loaded.version}"
        result = TailResult(machine(), options_document(options, options.arms), name, load_before)
        artifact = ServedArtifact(options.scoring, bench.model_path, name, bench.ceiling.windows_per_s)
        latencies: dict[tuple[Delivery, str], list[Latencies]] = {}
        for number in range(options.rounds):
            for delivery in options.deliveries:
                for arm in arm_order(options.arms, number):
                    console.print(f"round {number + 1}: {delivery}, {arm.name}, {options.rate:g} candles/s")
                    phase, values = await _phase(bench, artifact, options, delivery, arm, number)
                    result.phases.append(phase)
                    latencies.setdefault((delivery, arm.name), []).append(values)
    for delivery in options.deliveries:
        result.summary[delivery] = {
            arm.name: {
                "p50": summarize(latencies[delivery, DEFAULT_ARM], latencies[delivery, arm.name], 50),
                "p99": summarize(latencies[delivery, DEFAULT_ARM], latencies[delivery, arm.name], 99),
            }
            for arm in options.arms
            if arm.name != DEFAULT_ARM
        }
    return result


def options_document(options: DataclassInstance, arms: tuple[Arm, ...]) -> dict[str, object]:
    """``options`` as JSON data, each arm as its name and its overrides."""
    return asdict(options) | {"arms": {arm.name: arm.overrides for arm in arms}}


async def _phase(
    bench: Bench, artifact: ServedArtifact, options: TailOptions, delivery: Delivery, arm: Arm, number: int
) -> tuple[Phase, Latencies]:
    """A fresh daemon of ``arm`` whose symbols hold full windows: their first signals, then the steady phase."""
    workload = bench.workload(f"T{number}{arm.name[:3]}", options.symbols)
    candles, signals = await bench.topics(f"tail-{delivery}-{number}", options.partitions)
    await prefill(bench.bootstrap, candles, workload.rounds(bench.model.manifest.window))
    settings = arm.apply(
        bench.settings(
            candles=candles, signals=signals, group=signals, delivery=delivery, max_batch=options.batch, served=artifact
        )
    )
    count = int(options.rate * options.steady_s)
    async with Generator(bench.bootstrap, candles) as gen, serving(settings) as served:
        recorder = served.recorder
        await recorder.wait_for(options.symbols, bench.timeout(options.symbols, 10.0))
        await asyncio.sleep(QUIET_S)
        start, cpu, loop_cpu = len(recorder), time.process_time(), time.thread_time()
        async with PauseWatch().watching() as watch:
            paced = await gen.paced(workload.stream(count), [i / options.rate for i in range(count)])
            await recorder.wait_for(start + count, bench.timeout(count))
            pauses = watch.since((0, 0))
        cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
        values = recorder.latencies(start)
        stamps = recorder.stamps(start)
        if stamps is None:
            raise RuntimeError("a signal of the phase went without its stage stamps")
        phase = Phase(
            round=number,
            delivery=delivery,
            arm=arm.name,
            latency=Latency.of(values),
            in_daemon=Latency.of(recorder.daemon_latencies(start)),
            p50_split=median_split(stamps),
            tail_split=tail_split(stamps),
            pauses=pauses,
            daemon_cpu_s=cpu,
            loop_cpu_s=loop_cpu,
            generator_produce=Latency.of(1000 * (np.asarray(paced.acked_s) - np.asarray(paced.sent_s))),
        )
    return phase, values


def render(result: TailResult) -> str:
    """A Markdown table of the phases, then each arm's ratios against ``default``."""
    options = result.options
    lines = [
        f"model {result.model}, {options['scoring']} scoring; {options['rate']:g} candles/s, "
        f"{options['steady_s']:g} s per phase, {options['symbols']} symbols; load average before "
        f"{result.load_before:.2f}",
        "",
        "| round | delivery | arm | p50 / p99 ms | in daemon p99 ms | slowest 1%: consume, queue, forward, "
        "to publish, publish ms | p50: same | longest stall ms | full collections | daemon CPU s (loop) "
        "| generator's produce p50 / p99 ms |",
        "|---:|---|---|---|---:|---|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {p.round + 1} | {p.delivery} | {p.arm} | {p.latency.p50_ms:.1f} / {p.latency.p99_ms:.1f} "
        f"| {p.in_daemon.p99_ms:.1f} | {_split(p.tail_split)} | {_split(p.p50_split)} "
        f"| {p.pauses.longest_stall_ms:.1f} | {p.pauses.full_collections} | {p.daemon_cpu_s:.2f} ({p.loop_cpu_s:.2f}) "
        f"| {p.generator_produce.p50_ms:.1f} / {p.generator_produce.p99_ms:.1f} |"
        for p in result.phases
    ]
    rows = [
        (delivery, arm, name, s)
        for delivery, arms in result.summary.items()
        for arm, by_percentile in arms.items()
        for name, s in by_percentile.items()
    ]
    if rows:
        lines += [
            "",
            "| delivery | arm | percentile | per round | median [95%] | pooled [95%] |",
            "|---|---|---|---|---|---|",
        ]
        for delivery, arm, name, s in rows:
            per_round = ", ".join(f"{r:.2f}" for r in s.per_round)
            median = f"{s.median:.2f} [{s.median_interval[0]:.2f}, {s.median_interval[1]:.2f}]"
            pooled = f"{s.pooled:.2f} [{s.pooled_interval[0]:.2f}, {s.pooled_interval[1]:.2f}]"
            lines.append(f"| {delivery} | {arm} | {name} | {per_round} | {median} | {pooled} |")
    return "\n".join(lines)


def _split(split: StageSplit) -> str:
    return (
        f"{split.consume_ms:.1f}, {split.queue_ms:.1f}, {split.forward_ms:.1f}, "
        f"{split.to_publish_ms:.1f}, {split.publish_ms:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    defaults = TailOptions()
    parser.add_argument("--symbols", type=int, default=defaults.symbols)
    parser.add_argument("--rate", type=float, default=defaults.rate, help="candles per second of each phase")
    parser.add_argument("--steady-s", type=float, default=defaults.steady_s, help="seconds of each phase")
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="rounds of one phase per arm and delivery")
    parser.add_argument("--delivery", choices=sorted(DELIVERY_CHOICES), default="both")
    parser.add_argument("--scoring", choices=sorted(SCORING_CHOICES), default=defaults.scoring)
    parser.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="NAME:section.field=value,...",
        help="daemon settings of an arm beside the defaults (repeatable), e.g. slim:model.threads=2",
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds needs at least 1")
    arms = parsed_arms(parser, args.arm)
    if len({arm.name for arm in arms}) != len(arms):
        parser.error(f"arm names must differ (and not be {DEFAULT_ARM!r})")
    options = TailOptions(
        symbols=args.symbols,
        rate=args.rate,
        steady_s=args.steady_s,
        rounds=args.rounds,
        deliveries=DELIVERY_CHOICES[args.delivery],
        arms=arms,
        scoring=SCORING_CHOICES[args.scoring],
    )
    report_run(lambda console: measure(options, console), render, asdict, args.out)


if __name__ == "__main__":
    main()
