"""The batcher's policy measured: a lone candle's latency, and what waiting for fuller batches
(``batching.max_wait_ms``) trades, one daemon per wait, side by side in one run.

Each daemon catches up on the same backlog (sustained throughput, mean batch), then scores lone
candles, each sent once the last one's signal is published after an idle moment (nothing else
queued: the light-load path), then a steady phase at a fixed rate (latency, mean batch, its CPU
seconds). At-least-once, so that a transaction's commit cadence does not hide the batcher's waits.
"""

from __future__ import annotations

import asyncio

from candlecast.bench.harness import Bench, ServedArtifact, serving
from candlecast.bench.load import Generator, prefill
from candlecast.bench.options import Delivery
from candlecast.bench.phases import QUIET_S, stage_marks, staged_steady, stages_since
from candlecast.bench.report import BatchPolicy, Latency, PolicyRun

LONE_GAP_S = 0.05
"""Idle time before each lone candle, so that the daemon is waiting for records when it comes."""
DELIVERY: Delivery = "at_least_once"


async def batch_policy_run(bench: Bench, artifact: ServedArtifact, rate: float) -> BatchPolicy:
    """A daemon per ``options.max_waits_ms`` on a backlog of ``options.policy_symbols`` symbols, its lone
    candles and a steady phase at ``rate``."""
    options, console = bench.options, bench.console
    symbols = min(options.policy_symbols, options.symbols)
    workload = bench.workload("P", symbols)
    candles, _ = await bench.topics("policy", options.partitions)
    scored = symbols * options.scored_per_symbol
    console.print(f"batch policy: {symbols} symbols, max_wait_ms {', '.join(f'{w:g}' for w in options.max_waits_ms)}")
    await prefill(
        bench.bootstrap, candles, workload.rounds(bench.model.manifest.window - 1 + options.scored_per_symbol)
    )
    backlog = scored
    runs = []
    async with Generator(bench.bootstrap, candles) as gen:
        for wait in options.max_waits_ms:
            _, signals = await bench.topics(f"policy-{wait:g}", options.partitions)
            settings = bench.settings(
                candles=candles,
                signals=signals,
                group=signals,
                delivery=DELIVERY,
                max_batch=options.batch,
                served=artifact,
                max_wait_ms=wait,
            )
            async with serving(settings) as served:
                recorder = served.recorder
                console.print(f"  max_wait_ms {wait:g}: catching up on {backlog} scored candles")
                mark = served.totals()
                await recorder.wait_for(backlog, bench.timeout(backlog))
                throughput, mean_batch = recorder.throughput(0), served.mean_since(mark)

                console.print(f"  max_wait_ms {wait:g}: {options.lone_candles} lone candles")
                await asyncio.sleep(QUIET_S)
                marks = stage_marks(served)
                for sent in range(1, options.lone_candles + 1):
                    await asyncio.sleep(LONE_GAP_S)
                    await gen.paced(workload.stream(1), [0.0])
                    await recorder.wait_for(marks.start + sent, bench.timeout(1, 1.0))
                lone_stages = stages_since(served, marks)
                lone = Latency.of(recorder.latencies(marks.start))

                console.print(f"  max_wait_ms {wait:g}: steady {rate:.0f} candles/s for {options.steady_s:g} s")
                steady, stages, cpu, count = await staged_steady(bench, served, workload, gen, rate)
            runs.append(PolicyRun(wait, throughput, mean_batch, lone, lone_stages, steady, stages, cpu))
            backlog += options.lone_candles + count
    return BatchPolicy(artifact.scoring, artifact.name, symbols, scored, rate, runs)
