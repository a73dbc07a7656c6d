"""The daemon end to end, per delivery mode: sustained throughput over a backlog, latency at a
steady rate, under a 10x burst, and when many symbols close a candle at once."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, replace

import numpy as np

from candlecast.bench.harness import Bench, Served, ServedArtifact, serving
from candlecast.bench.io_floor import io_floors
from candlecast.bench.load import Generator, Workload
from candlecast.bench.options import Delivery
from candlecast.bench.pauses import PauseWatch
from candlecast.bench.report import (
    CloseBurst,
    DeliveryRun,
    Latency,
    RatedSteady,
    SteadyStages,
    StreamLoad,
    StreamPair,
)
from candlecast.bench.stage_split import median_split, tail_split
from candlecast.bench.streams import stream_clients

FORWARD_SECONDS = "candlecast_inference_seconds"
PUBLISH_SECONDS = "candlecast_publish_seconds"
QUIET_S = 1.0
"""Idle time before each steady phase, so that none starts while the last one's clients still connect or close."""
CLOSE_GAP_S = 0.5
"""Idle time between two repeats of a close, so that one does not start in the last one's wake."""


async def delivery_run(  # noqa: PLR0915 - the phases share one daemon, in order
    bench: Bench,
    artifact: ServedArtifact,
    delivery: Delivery,
    workload: Workload,
    candles: str,
    backlog: int,
    rate: float | None,
    gen: Generator,
) -> tuple[DeliveryRun, int]:
    """Every end-to-end phase against one daemon serving ``artifact``; returns the figures and the candles it added."""
    options = bench.options
    _, signals = await bench.topics(f"{artifact.scoring}-{delivery}", options.partitions)
    settings = bench.settings(
        candles=candles, signals=signals, group=signals, delivery=delivery, max_batch=options.batch, served=artifact
    )
    ceiling = artifact.ceiling_per_s
    label = f"{artifact.scoring}, {delivery}"
    added = 0
    async with serving(settings) as served:
        recorder = served.recorder
        bench.console.print(f"  {label}: catching up on {backlog} scored candles")
        mark = served.totals()
        await recorder.wait_for(backlog, bench.timeout(backlog))
        throughput = recorder.throughput(0)
        cached = recorder.throughput_after_first_round(0)
        throughput_batch = served.mean_since(mark)
        # A streaming daemon rebuilds each symbol's state at its first signal; after that it steps. (A backlog
        # published in a few batches may leave no acknowledgement after the first round's: the whole one, then.)
        sustained = cached if artifact.scoring == "stream" and not math.isnan(cached) else throughput
        steady_rate = rate if rate is not None else sustained / 2

        bench.console.print(f"  {label}: steady {steady_rate:.0f} candles/s for {options.steady_s:g} s")
        steady, steady_stages, steady_cpu, count = await staged_steady(bench, served, workload, gen, steady_rate)
        added += count
        fixed = []
        for fixed_rate in options.fixed_rates:
            bench.console.print(f"  {label}: steady {fixed_rate:.0f} candles/s for {options.steady_s:g} s")
            latency, stages, cpu, fixed_count = await staged_steady(bench, served, workload, gen, fixed_rate)
            fixed.append(RatedSteady(fixed_rate, latency, stages, cpu))
            added += fixed_count

        pairs = []
        if options.stream_clients:
            without, without_cpu = steady, steady_cpu
            for round_ in range(options.stream_rounds):
                if round_:
                    bench.console.print(f"  {label}: steady again without stream clients")
                    without, without_cpu = await paced_steady(bench, served, workload, gen, steady_rate, count)
                    added += count
                with_clients = await steady_with_streams(bench, served, delivery, workload, gen, steady_rate, count)
                pairs.append(StreamPair(without, without_cpu, with_clients))
                added += count

        bench.console.print(f"  {label}: a burst of 10x the steady rate for {options.burst_s * 1000:.0f} ms")
        before = int(steady_rate)
        burst = max(1, int(10 * steady_rate * options.burst_s))
        offsets = [i / steady_rate for i in range(before)]
        offsets += [1.0 + i / (10 * steady_rate) for i in range(burst)]
        offsets += [1.0 + options.burst_s + i / steady_rate for i in range(before)]
        start = len(recorder)
        paced = await gen.paced(workload.stream(len(offsets)), offsets)
        await recorder.wait_for(start + len(offsets), bench.timeout(len(offsets)))
        added += len(offsets)
        burst_sent = paced.sent_s[before : before + burst]
        first_ms = int((paced.started + burst_sent[0]) * 1000)
        last_ms = (paced.started + burst_sent[-1]) * 1000
        candle_ms = np.asarray(recorder.candle_ms[start:], dtype=np.float64)
        phase = recorder.latencies(start)
        in_burst = (candle_ms >= first_ms) & (candle_ms <= last_ms)
        burst_rate = burst / max(burst_sent[-1] - burst_sent[0], 1e-3)

        closes = []
        for wanted in options.close_bursts:
            size = min(wanted, len(workload))
            repeats = options.close_repeats
            bench.console.print(f"  {label}: {size} symbols close a candle at once, {repeats} times")
            mark = served.totals()
            lasts: list[float] = []
            since_commit = []
            for repeat in range(repeats):
                if repeat:
                    await asyncio.sleep(CLOSE_GAP_S)
                start = len(recorder)
                # Each repeat is the next candle of the same symbols: a close the daemon has not seen.
                committed_ms = await gen.transaction(workload.first(size)) * 1000
                await recorder.wait_for(start + size, bench.timeout(size))
                added += size
                waited = np.asarray(recorder.acked_ms[start:], dtype=np.float64) - committed_ms
                lasts.append(float(waited.max()))
                since_commit.append(waited)
            closes.append(
                CloseBurst(
                    symbols=size,
                    last_signal_each_ms=lasts,
                    lower_bound_ms=1000 * size / ceiling,
                    latency=Latency.of(np.concatenate(since_commit)),
                    mean_batch=served.mean_since(mark),
                )
            )
        memory = served.memory()
    if options.io_floor and fixed:
        rates = ", ".join(f"{rated.rate_per_s:g}" for rated in fixed)
        bench.console.print(f"  {label}: the I/O floor, a pass-through without model at {rates} candles/s")
        floors = await io_floors(bench, gen, delivery, options.fixed_rates, QUIET_S)
        fixed = [replace(rated, io_floor=floor) for rated, floor in zip(fixed, floors, strict=True)]
    figures = DeliveryRun(
        delivery=delivery,
        scoring=artifact.scoring,
        model=artifact.name,
        throughput_per_s=throughput,
        throughput_after_first_per_s=cached,
        throughput_signals=backlog,
        throughput_mean_batch=throughput_batch,
        steady_rate_per_s=steady_rate,
        steady=steady,
        steady_stages=steady_stages,
        burst_rate_per_s=burst_rate,
        burst=Latency.of(phase[in_burst]),
        burst_phase=Latency.of(phase),
        close_bursts=closes,
        stream_pairs=pairs,
        fixed_rates=fixed,
        memory=memory,
    )
    return figures, added


async def staged_steady(
    bench: Bench, served: Served, workload: Workload, gen: Generator, rate: float
) -> tuple[Latency, SteadyStages, float, int]:
    """A steady phase at ``rate`` for ``options.steady_s``: latencies, where they go, the daemon's CPU
    seconds, and the candles it sent."""
    marks = stage_marks(served)
    count = int(rate * bench.options.steady_s)
    async with PauseWatch().watching() as watch:
        latency, cpu = await paced_steady(bench, served, workload, gen, rate, count)
        pauses = watch.since((0, 0))
    return latency, replace(stages_since(served, marks), pauses=pauses), cpu, count


@dataclass(frozen=True)
class StageMarks:
    """Where the recorder and the daemon's batch, forward and publish histograms stood at a phase's start."""

    start: int
    batch: tuple[float, float]
    forward: tuple[float, float]
    publish: tuple[float, float]


def stage_marks(served: Served) -> StageMarks:
    return StageMarks(
        len(served.recorder), served.totals(), served.totals(FORWARD_SECONDS), served.totals(PUBLISH_SECONDS)
    )


def stages_since(served: Served, marks: StageMarks) -> SteadyStages:
    """Where the latency of the signals since ``marks`` went."""
    recorder = served.recorder
    stamps = recorder.stamps(marks.start)
    return SteadyStages(
        consume=Latency.of(recorder.consume_latencies(marks.start)),
        forward_ms=1000 * served.mean_since(marks.forward, FORWARD_SECONDS),
        publish_ms=1000 * served.mean_since(marks.publish, PUBLISH_SECONDS),
        mean_batch=served.mean_since(marks.batch),
        in_daemon=Latency.of(recorder.daemon_latencies(marks.start)),
        p50_split=None if stamps is None else median_split(stamps),
        tail_split=None if stamps is None else tail_split(stamps),
    )


async def paced_steady(
    bench: Bench, served: Served, workload: Workload, gen: Generator, rate: float, count: int
) -> tuple[Latency, float]:
    """``count`` candles at ``rate``: their latencies, and the CPU seconds of this (the daemon's) process meanwhile."""
    recorder = served.recorder
    await asyncio.sleep(QUIET_S)
    start, cpu = len(recorder), time.process_time()
    await gen.paced(workload.stream(count), [i / rate for i in range(count)])
    await recorder.wait_for(start + count, bench.timeout(count))
    return Latency.of(recorder.latencies(start)), time.process_time() - cpu


async def steady_with_streams(
    bench: Bench, served: Served, delivery: Delivery, workload: Workload, gen: Generator, rate: float, count: int
) -> StreamLoad:
    """The steady phase again, at the same rate, while stream clients of another process read every signal;
    then what each client received against what the daemon published."""
    clients = bench.options.stream_clients
    bench.console.print(f"  {delivery}: steady again with {clients} stream clients connected")
    store = served.daemon.signals
    cut_off = store.disconnected
    niceness = bench.options.stream_clients_nice
    async with stream_clients("127.0.0.1", served.daemon.http.port, clients, niceness) as connected:
        published = store.recorded
        steady, cpu = await paced_steady(bench, served, workload, gen, rate, count)
        counts = await connected.settle(store.recorded - published)
    return StreamLoad(clients, steady, store.disconnected - cut_off, counts, cpu)
