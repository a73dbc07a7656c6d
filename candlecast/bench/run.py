"""One bench run: the ceilings, the end-to-end phases per delivery mode and window memory, in order,
against a given broker or a throwaway local one."""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from candlecast.bench.ceilings import io_ceiling, model_ceiling, naive_baseline
from candlecast.bench.fencing import commit_fencing_cost
from candlecast.bench.harness import Bench, ServedArtifact, counted_produce_retries
from candlecast.bench.load import Generator, prefill
from candlecast.bench.machine import machine
from candlecast.bench.memory import window_memory
from candlecast.bench.options import BenchOptions
from candlecast.bench.phases import delivery_run
from candlecast.bench.policy import batch_policy_run
from candlecast.bench.report import BenchResult, ModelCeiling
from candlecast.bench.streaming import export_untrained_streaming, streaming_ceiling
from candlecast.bench.two_routes import two_route_run
from candlecast.errors import ConfigError
from daemon.settings import bundled_registry

if TYPE_CHECKING:
    from models.torchscript import LoadedModel


async def run_bench(
    options: BenchOptions,
    *,
    console: Console,
    bootstrap_servers: str | None = None,
    model: Path | None = None,
    streaming_model: Path | None = None,
) -> BenchResult:
    """Every measurement, in one run; starts (and stops) a local broker unless one is given."""
    import torch

    options.check()

    from candlecast.localkafka import LocalKafka
    from daemon.serving import configure_threads, warm_up
    from models.device import resolve_device
    from models.torchscript import load_artifact

    previous_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="candlecast-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        host = machine()
        model_path, origin = resolve_model(model)
        threads = configure_threads(options.threads)
        loaded = load_artifact(model_path, resolve_device(options.device))
        warm_up(loaded, options.batch)
        console.print(f"model ceiling: {loaded.manifest.name}/{loaded.version} ({origin}), {threads} thread(s)")
        ceiling = model_ceiling(loaded, options.batch, options.ceiling_s, threads)
        other_threads = 2 if threads == 1 else 1
        other = model_ceiling(loaded, options.batch, options.ceiling_s, other_threads) if os.cpu_count() != 1 else None
        configure_threads(options.threads)
        kafka = None
        if bootstrap_servers is None:
            console.print("starting a local Kafka broker ...")
            kafka = await asyncio.to_thread(LocalKafka(scratch / "kafka", heap="1g").start)
            bootstrap_servers = kafka.bootstrap_servers
        streaming = None
        if streaming_model is not None:
            streaming = (load_artifact(streaming_model, resolve_device(options.device)), streaming_model)
            if streaming[0].manifest.streaming is None:
                raise ConfigError(
                    f"{streaming_model}: not a streaming artifact (its manifest has no streaming section)"
                )
        elif loaded.manifest.streaming is not None:
            streaming = (loaded, model_path)
        elif "stream" in options.scorings:
            untrained = scratch / "streaming.pt"
            streaming = (export_untrained_streaming(loaded, untrained), untrained)
        try:
            bench = Bench(bootstrap_servers, options, model_path, loaded, ceiling, console)
            with counted_produce_retries() as retries:
                result = await _measure(bench, host, origin, other, streaming)
            result.produce_retries = retries.count
        finally:
            if kafka is not None:
                await asyncio.to_thread(kafka.stop)
            torch.set_num_threads(previous_threads)
    return result


def resolve_model(path: Path | None) -> tuple[Path, str]:
    """The artifact to benchmark: ``path``, else the bundled registry's current one."""
    from models.registry import Registry

    if path is not None:
        return path, "given"
    entry = Registry(bundled_registry()).current()
    if entry is None:
        raise ConfigError("the bundled registry has no current model: give one with --model")
    return entry.artifact, "bundled"


async def _measure(
    bench: Bench,
    host: dict[str, str],
    origin: str,
    other: ModelCeiling | None,
    streaming: tuple[LoadedModel, Path] | None,
) -> BenchResult:
    options, console, manifest = bench.options, bench.console, bench.model.manifest
    workload = bench.workload("S", options.symbols)
    candles, io_sink = await bench.topics("main", options.partitions)
    rounds = manifest.window - 1 + options.scored_per_symbol
    console.print(f"writing the backlog: {options.symbols} symbols x {rounds} candles")
    await prefill(bench.bootstrap, candles, workload.rounds(rounds))
    console.print(f"I/O ceiling: passing {options.io_messages} candles through aiokafka")
    settings = bench.settings(candles=candles, signals=io_sink, group="io", delivery="at_least_once", max_batch=1)
    io = await io_ceiling(bench.bootstrap, candles, io_sink, options.io_messages, settings)
    console.print(f"naive baseline: {options.naive_signals} candles, one per forward pass")
    naive, naive_batch = await naive_baseline(bench)
    console.print(f"commit fencing: {options.fencing_transactions} transactions each with TxnOffsetCommit v0 and v3")
    fencing = await commit_fencing_cost(bench.bootstrap, options.fencing_transactions)
    result = BenchResult(
        machine=host,
        options=asdict(options),
        model={
            "name": manifest.name,
            "version": manifest.version,
            "origin": origin,
            "members": len(manifest.members),
            "parameters": sum(m.parameters for m in manifest.members),
            "window": manifest.window,
        },
        ceiling=bench.ceiling,
        ceiling_other_threads=other,
        io=io,
        naive_per_s=naive,
        naive_mean_batch=naive_batch,
        fencing=fencing,
    )
    console.print(f"memory: {options.memory_symbols} symbols")
    result.memory = window_memory(bench.model, options.memory_symbols)
    console.print("streaming scoring beside the windowed ensemble (model only)")
    result.streaming = streaming_ceiling(
        bench.model,
        result.memory,
        batch=options.batch,
        seconds=2 * options.ceiling_s,
        threads=bench.ceiling.threads,
        close_symbols=max(options.close_bursts, default=options.symbols),
        streaming=None if streaming is None else streaming[0],
    )
    artifacts = {"window": bench.windowed()}
    if streaming is not None:
        loaded, path = streaming
        name = f"{loaded.manifest.name}/{loaded.version}"
        artifacts["stream"] = ServedArtifact("stream", path, name, result.streaming.streaming_per_s)
    for index, scoring in enumerate(options.scorings):
        if index:
            # Each scoring catches up on the same backlog, on a topic of its own.
            workload = bench.workload("S", options.symbols)
            candles, _ = await bench.topics(scoring, options.partitions)
            console.print(f"writing the backlog again for {scoring} scoring")
            await prefill(bench.bootstrap, candles, workload.rounds(rounds))
        backlog = options.symbols * options.scored_per_symbol
        rate = options.steady_rate
        async with Generator(bench.bootstrap, candles) as gen:
            for delivery in options.deliveries:
                console.print(f"end to end, {scoring} scoring, {delivery}:")
                run, added = await delivery_run(
                    bench, artifacts[scoring], delivery, workload, candles, backlog, rate, gen
                )
                result.runs.append(run)
                rate = run.steady_rate_per_s
                backlog += added
    if options.two_routes and result.runs:
        console.print("end to end, two routes:")
        result.two_routes = await two_route_run(bench, options.deliveries[0], result.runs[0].throughput_per_s)
    if options.max_waits_ms and options.scorings:
        scoring = options.scorings[-1]
        # The last run is the last scoring's last delivery: its steady rate.
        rate = options.fixed_rates[0] if options.fixed_rates else result.runs[-1].steady_rate_per_s
        result.batch_policy = await batch_policy_run(bench, artifacts[scoring], rate)
    return result
