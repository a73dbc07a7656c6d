"""Where a many-symbol candle close's time goes, per delivery mode, in alternating rounds.

One daemon per arm (a delivery mode, with settings beside the defaults: ``--arm``), all running at once
on one throwaway local Kafka broker, each on its own topics whose every symbol already holds a full
window and has had its first signal. Each round closes every symbol's next candle on each arm in turn
(in an order that rotates from round to round, so the load of the moment falls on every arm alike):
one transaction of the generator, then the time from its commit to the last signal acknowledged. Per
close it also reports how the publish task spent that time, from the pipeline's stage hooks: the
publishes (transactions, in exactly-once) and their mean and total time, the time between them (signal
building, or waiting for scores), the last forward pass's end to the last acknowledgement, and the
produce requests the broker refused with NOT_ENOUGH_REPLICAS (a transaction's produce meeting the last
one's markers) during the close. With ``--requests`` each Kafka request of the daemons is timed too
(``AIOKafkaClient.send`` wrapped: a measuring aid, never in the daemon), summed per request type.

``python -m candlecast.bench.close_split --out FILE.json`` (``--help`` lists the options).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka.client import AIOKafkaClient
from rich.console import Console

from candlecast.bench.command import report_run
from candlecast.bench.harness import Bench, Served, ServedArtifact, counted_produce_retries, local_bench, serving
from candlecast.bench.load import Generator, Workload, prefill
from candlecast.bench.machine import machine
from candlecast.bench.options import DELIVERY_CHOICES, BenchOptions, Delivery
from candlecast.bench.rounds import arm_order
from candlecast.bench.tail import DEFAULT_ARM, Arm, options_document, parsed_arms
from candlecast.errors import ConfigError
from daemon.engine import ScoreRequest
from daemon.pipeline import Stage

GAP_S = 1.0
"""Idle time before each close, so that none starts in the last one's wake."""


@dataclass(frozen=True)
class CloseOptions:
    symbols: int = 10_000
    rounds: int = 6
    deliveries: tuple[Delivery, ...] = ("exactly_once", "at_least_once")
    arms: tuple[Arm, ...] = (Arm(DEFAULT_ARM),)
    partitions: int = 6
    batch: int = 512
    threads: int = 0
    requests: bool = False


@dataclass
class Close:
    round: int
    delivery: Delivery
    arm: str
    last_signal_ms: float
    """From the generator's commit to the last signal acknowledged."""
    publishes: int
    publish_mean_ms: float
    publish_total_ms: float
    between_publishes_ms: float
    """The publish task's time outside publishes, from the first publish's start to the last one's end."""
    first_publish_ms: float
    """From the generator's commit to the first publish's start."""
    after_last_forward_ms: float
    """From the last forward pass's end to the last signal acknowledged."""
    forwards: int
    forward_total_ms: float
    produce_retries: int
    requests_ms: dict[str, float] = field(default_factory=dict)
    """Per Kafka request type, summed round trip times of this daemon's requests (``--requests``)."""


@dataclass
class CloseResult:
    machine: dict[str, str]
    options: dict[str, object]
    model: str
    load_before: float
    closes: list[Close] = field(default_factory=list)


class StageLog:
    """A stage hook keeping each forward pass's and publish's span (monotonic seconds) and request count."""

    def __init__(self) -> None:
        self.spans: list[tuple[Stage, int, float, float]] = []

    def __call__(self, stage: Stage, requests: Sequence[ScoreRequest], began: float, ended: float) -> None:
        self.spans.append((stage, len(requests), began, ended))


class RequestLog:
    """Round trip times of Kafka requests, per client (``id``) and request type."""

    def __init__(self) -> None:
        self.times: dict[int, list[tuple[str, float]]] = defaultdict(list)

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        original = AIOKafkaClient.send

        @functools.wraps(original)
        async def timed(client: AIOKafkaClient, *args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return await original(client, *args, **kwargs)
            finally:
                name = type(args[1]).__name__ if len(args) > 1 else "?"
                self.times[id(client)].append((name, time.perf_counter() - began))

        AIOKafkaClient.send = timed
        try:
            yield
        finally:
            AIOKafkaClient.send = original


@dataclass
class Primed:
    delivery: Delivery
    arm: Arm
    workload: Workload
    gen: Generator
    served: Served
    stages: StageLog


async def measure(options: CloseOptions, console: Console) -> CloseResult:
    load_before = os.getloadavg()[0]
    bench_options = BenchOptions(
        symbols=options.symbols, batch=options.batch, threads=options.threads, partitions=options.partitions
    )
    requests = RequestLog()
    async with local_bench("candlecast-close-", bench_options, console) as (bench, _):
        loaded = bench.model
        if loaded.manifest.streaming is None:
            raise ConfigError(f"{bench.model_path}: not a streaming artifact")
        name = f"{loaded.manifest.name}/{loaded.version}"
        result = CloseResult(machine(), options_document(options, options.arms), name, load_before)
        artifact = ServedArtifact("stream", bench.model_path, name, bench.ceiling.windows_per_s)
        arms = [(delivery, arm) for delivery in options.deliveries for arm in options.arms]
        with requests.watching() if options.requests else contextlib.nullcontext():
            async with contextlib.AsyncExitStack() as stack:
                primed = [
                    await stack.enter_async_context(_primed(bench, artifact, options, delivery, arm))
                    for delivery, arm in arms
                ]
                for number in range(options.rounds):
                    for daemon in arm_order(primed, number):
                        close = await _close(bench, daemon, number, requests)
                        console.print(
                            f"round {number + 1}: {daemon.delivery}, {daemon.arm.name}: last signal "
                            f"{close.last_signal_ms:.0f} ms, {close.publishes} publishes"
                        )
                        result.closes.append(close)
    return result


@contextlib.asynccontextmanager
async def _primed(
    bench: Bench, artifact: ServedArtifact, options: CloseOptions, delivery: Delivery, arm: Arm
) -> AsyncIterator[Primed]:
    """A daemon of ``arm`` whose every symbol holds a full window and has had its first signal."""
    workload = bench.workload(f"C{delivery[0]}{arm.name[:3]}", options.symbols)
    candles, signals = await bench.topics(f"close-{delivery}-{arm.name}", options.partitions)
    await prefill(bench.bootstrap, candles, workload.rounds(bench.model.manifest.window))
    settings = arm.apply(
        bench.settings(
            candles=candles, signals=signals, group=signals, delivery=delivery, max_batch=options.batch, served=artifact
        )
    )
    async with Generator(bench.bootstrap, candles) as gen, serving(settings) as served:
        await served.recorder.wait_for(options.symbols, bench.timeout(options.symbols, 10.0))
        stages = StageLog()
        if served.daemon.pipeline is None:
            raise RuntimeError("the daemon built no pipeline")
        served.daemon.pipeline.add_stage_hook(stages)
        primed = Primed(delivery, arm, workload, gen, served, stages)
        await _close(bench, primed, -1, RequestLog())  # the first close after the rebuild warms the step path
        yield primed


async def _close(bench: Bench, daemon: Primed, number: int, requests: RequestLog) -> Close:
    recorder = daemon.served.recorder
    size = len(daemon.workload)
    await asyncio.sleep(GAP_S)
    start, spans = len(recorder), len(daemon.stages.spans)
    before = {client: len(times) for client, times in requests.times.items()}
    shift_s = time.time() - time.monotonic()
    with counted_produce_retries() as retries:
        committed = await daemon.gen.transaction(daemon.workload.first(size))
        await recorder.wait_for(start + size, bench.timeout(size))
    acked = np.asarray(recorder.acked_ms[start:], dtype=np.float64)
    last_ack_s = float(acked.max()) / 1000
    logged = daemon.stages.spans[spans:]
    publishes = [(b + shift_s, e + shift_s) for stage, _, b, e in logged if stage == "publish"]
    forwards = [(b + shift_s, e + shift_s) for stage, _, b, e in logged if stage == "forward"]
    durations = [e - b for b, e in publishes]
    return Close(
        round=number,
        delivery=daemon.delivery,
        arm=daemon.arm.name,
        last_signal_ms=1000 * (last_ack_s - committed),
        publishes=len(publishes),
        publish_mean_ms=1000 * float(np.mean(durations)),
        publish_total_ms=1000 * sum(durations),
        between_publishes_ms=1000 * (publishes[-1][1] - publishes[0][0] - sum(durations)),
        first_publish_ms=1000 * (publishes[0][0] - committed),
        after_last_forward_ms=1000 * (last_ack_s - forwards[-1][1]),
        forwards=len(forwards),
        forward_total_ms=1000 * sum(e - b for b, e in forwards),
        produce_retries=retries.count,
        requests_ms=_requests_since(requests, before),
    )


def _requests_since(requests: RequestLog, before: dict[int, int]) -> dict[str, float]:
    summed: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for client, times in requests.times.items():
        for name, seconds in times[before.get(client, 0) :]:
            summed[name] += 1000 * seconds
            counts[name] += 1
    return {f"{name} x{counts[name]}": ms for name, ms in summed.items()}


COLUMNS: list[tuple[str, Callable[[Close], float]]] = [
    ("last signal ms", lambda c: c.last_signal_ms),
    ("publishes", lambda c: c.publishes),
    ("mean publish ms", lambda c: c.publish_mean_ms),
    ("publish total ms", lambda c: c.publish_total_ms),
    ("between publishes ms", lambda c: c.between_publishes_ms),
    ("commit to first publish ms", lambda c: c.first_publish_ms),
    ("last forward to last signal ms", lambda c: c.after_last_forward_ms),
    ("forward total ms", lambda c: c.forward_total_ms),
    ("produce retries", lambda c: c.produce_retries),
]


def render(result: CloseResult) -> str:
    """Per arm, each column's median over the rounds (and its range); then every close."""
    options = result.options
    lines = [
        f"model {result.model}; {options['symbols']} symbols close at once, {options['rounds']} rounds; load "
        f"average before {result.load_before:.2f}",
        "",
        "| delivery | arm | " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|---|---|" + "---:|" * len(COLUMNS),
    ]
    groups: dict[tuple[str, str], list[Close]] = defaultdict(list)
    for close in result.closes:
        groups[close.delivery, close.arm].append(close)
    for (delivery, arm), closes in groups.items():
        cells = []
        for _, value in COLUMNS:
            values = [value(c) for c in closes]
            cells.append(f"{np.median(values):.0f} ({min(values):.0f}-{max(values):.0f})")
        lines.append(f"| {delivery} | {arm} | " + " | ".join(cells) + " |")
    # Each arm against its delivery's default arm; each delivery's default against the first delivery's.
    first = next(iter(groups), None)
    pairs = [(key, (key[0], DEFAULT_ARM)) for key in groups if key[1] != DEFAULT_ARM]
    pairs += [(key, first) for key in groups if key[1] == DEFAULT_ARM and first is not None and key != first]
    for key, base in pairs:
        if base not in groups:
            continue
        ratios = [
            mine.last_signal_ms / theirs.last_signal_ms for mine, theirs in zip(groups[key], groups[base], strict=True)
        ]
        lines.append(
            f"\nlast signal, {key[0]} {key[1]} over {base[0]} {base[1]}, round by round: "
            + ", ".join(f"{r:.2f}" for r in ratios)
            + f"; median {np.median(ratios):.2f}"
        )
    requested = [c for c in result.closes if c.requests_ms]
    if requested:
        lines += ["", "Kafka requests per close (summed round trip ms):"]
        lines += [f"- round {c.round + 1} {c.delivery} {c.arm}: {c.requests_ms}" for c in requested]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    defaults = CloseOptions()
    parser.add_argument("--symbols", type=int, default=defaults.symbols)
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="closes per arm, alternated")
    parser.add_argument("--delivery", choices=sorted(DELIVERY_CHOICES), default="both")
    parser.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="NAME:section.field=value,...",
        help="daemon settings of an arm beside the defaults (repeatable)",
    )
    parser.add_argument("--requests", action="store_true", help="also time each Kafka request of the daemons")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds needs at least 1")
    arms = parsed_arms(parser, args.arm)
    options = CloseOptions(
        symbols=args.symbols,
        rounds=args.rounds,
        deliveries=DELIVERY_CHOICES[args.delivery],
        arms=arms,
        requests=args.requests,
    )
    report_run(lambda console: measure(options, console), render, asdict, args.out)


if __name__ == "__main__":
    main()
