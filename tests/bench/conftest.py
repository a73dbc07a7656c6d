"""One quick bench run shared by the tests that check its figures: every phase they check, with one model
warm-up and one set of common phases (ceilings, I/O, naive baseline, fencing, memory) instead of one per test."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio
import torch
from rich.console import Console

from candlecast.bench.options import BenchOptions
from candlecast.bench.report import BenchResult, render
from candlecast.bench.run import run_bench
from candlecast.localkafka import LocalKafka


@dataclass(frozen=True)
class QuickBench:
    """The run's options and figures, its rendered report, and torch's threads before and after it."""

    options: BenchOptions
    result: BenchResult
    text: str
    threads_before: int
    threads_after: int


@pytest_asyncio.fixture(scope="session")
async def quick_bench(kafka: LocalKafka, test_artifact: Path) -> QuickBench:
    """`candlecast bench --quick` with both scorings, a fixed rate, the batch policy and two routes. Only counts
    are checked, so the timed phases are as short as still gives every phase candles: 1 s steady phases and
    0.25 s model ceilings instead of 2 s and 1 s, the memory phase at 2,000 symbols instead of 10,000."""
    options = dataclasses.replace(
        BenchOptions.quick(),
        scorings=("window", "stream"),
        fixed_rates=(50.0,),
        max_waits_ms=(0.0, 5.0),
        lone_candles=5,
        two_routes=True,
        steady_s=1.0,
        ceiling_s=0.25,
        memory_symbols=2_000,
    )
    threads = torch.get_num_threads()
    console = Console(record=True, width=200)
    result = await run_bench(options, console=console, bootstrap_servers=kafka.bootstrap_servers, model=test_artifact)
    threads_after = torch.get_num_threads()
    console.print(render(result))
    return QuickBench(options, result, console.export_text(), threads, threads_after)
