"""Bench reports of chosen runs, for the tests of what the report shows and what its JSON holds."""

from __future__ import annotations

from rich.console import Console

from candlecast.bench.report import BenchResult, DeliveryRun, IoCeiling, ModelCeiling, render


def bench_result(symbols: int, runs: list[DeliveryRun]) -> BenchResult:
    """A result of ``runs`` on ``symbols`` symbols; every figure outside the runs is a placeholder."""
    return BenchResult(
        machine={},
        options={"symbols": symbols},
        model={},
        ceiling=ModelCeiling("cpu", 1, 8, 1.0, 8.0, 1.0, 1.0),
        ceiling_other_threads=None,
        io=IoCeiling(1, 1.0),
        naive_per_s=1.0,
        naive_mean_batch=1.0,
        runs=runs,
    )


def rendered_rows(result: BenchResult, containing: str) -> list[str]:
    """The lines of ``result``'s rendered report that contain ``containing``."""
    console = Console(record=True, width=300)
    console.print(render(result))
    return [line for line in console.export_text().splitlines() if containing in line]
