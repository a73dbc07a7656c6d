"""The model ceiling of streaming scoring (one step per candle from per-symbol state) beside the
windowed ensemble's, measured side by side in one run, with a many-symbol candle close through the
step path and the memory a symbol costs (window plus states)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from rich.table import Table

if TYPE_CHECKING:
    import torch

    from candlecast.bench.report import Memory
    from models.stepping import StreamingScorer
    from models.streaming import StreamingEnsemble
    from models.torchscript import LoadedModel

DEFAULT_SHAPES = [(64, 1), (32, 2)]
"""Members (hidden, layers) of the untrained streaming ensemble measured when no streaming artifact
is given: a step's cost does not depend on the weights."""


@dataclass(frozen=True)
class StreamingCeiling:
    windowed_model: str
    streaming_model: str
    """The streaming artifact measured, or the untrained ensemble of ``DEFAULT_SHAPES``."""
    state_bytes_per_symbol: int
    batch: int
    threads: int
    windowed_per_s: float
    """Windows scored per second by the windowed forward, batch ``batch``."""
    streaming_per_s: float
    """Candles scored per second through the step path from cached states, batch ``batch``."""
    rebuild_per_s: float
    """Candles scored per second when every state is rebuilt from its window (a restart)."""
    single_windowed_ms: float
    single_streaming_ms: float
    """One candle alone (padded to 8 rows, as the daemon runs it)."""
    close_symbols: int
    close_ms: float
    """``close_symbols`` symbols closing a candle at once, in batches of ``batch``, from cached states."""
    close_windowed_bound_ms: float
    """The windowed ensemble's lower bound for the same close: ``close_symbols`` / its ceiling."""
    window_bytes_per_symbol: float
    memory_symbols: int

    @property
    def speedup(self) -> float:
        return self.streaming_per_s / self.windowed_per_s

    @property
    def bytes_per_symbol(self) -> float:
        return self.window_bytes_per_symbol + self.state_bytes_per_symbol


def default_streaming_module(horizons: int, quantiles: int, window: int) -> torch.jit.ScriptModule:
    """An untrained streaming ensemble of ``DEFAULT_SHAPES`` reading ``window``-candle windows, scripted."""
    import torch

    return torch.jit.script(_untrained_ensemble(horizons, quantiles, window).eval())


def _untrained_ensemble(horizons: int, quantiles: int, window: int) -> StreamingEnsemble:
    """A fresh streaming ensemble of ``DEFAULT_SHAPES`` reading ``window``-candle windows."""
    from models.streaming import LOOKBACK, streaming_ensemble

    return streaming_ensemble(horizons, quantiles, DEFAULT_SHAPES, span=window - LOOKBACK, lookback=LOOKBACK)


def export_untrained_streaming(windowed: LoadedModel, path: Path) -> LoadedModel:
    """An untrained streaming ensemble of ``DEFAULT_SHAPES`` exported as a verified artifact that the
    daemon can serve in place of ``windowed``: same window, interval, calendar, gap policy, horizons and
    quantiles; its features standardised on ``windowed``'s golden windows. A step costs the same
    whatever the weights, so the daemon's figures with it are those of a trained one."""
    import torch

    from models.artifact import TimeRange, Training
    from models.export import export_ensemble, reference_from
    from models.streaming import fit_standardisation

    manifest = windowed.manifest
    torch.manual_seed(0)
    ensemble = _untrained_ensemble(len(manifest.horizons), len(manifest.quantiles), manifest.window)
    golden = np.asarray(manifest.golden.input, dtype=np.float32)
    fit_standardisation(ensemble, torch.from_numpy(golden))
    ensemble.eval()
    with torch.inference_mode():
        p, _, _, _, last = ensemble(torch.from_numpy(golden))
    nothing = TimeRange(start="n/a", end="n/a", windows=0)
    names = [f"stream{hidden}x{layers}" for hidden, layers in DEFAULT_SHAPES]
    return export_ensemble(
        ensemble,
        path,
        name=f"{manifest.name}-untrained-streaming",
        version="0.0.0",
        window=manifest.window,
        interval=manifest.interval,
        calendar=manifest.calendar,
        gap_policy=manifest.gap_policy,
        max_missing=manifest.max_missing,
        horizons=manifest.horizons,
        quantiles=manifest.quantiles,
        member_names=names,
        member_kinds=["stream"] * len(names),
        training=Training([], [], nothing, nothing, None, 0, 0, {"purpose": "bench: untrained, a step's cost only"}),
        metrics={},
        reference=reference_from(last.numpy(), p[:, 0].double().numpy(), hit_rate=0.5, brier=0.25, ece=0.0),
        golden_windows=golden,
    )


class _SlidingCandles:
    """The scorer fed a window per symbol whose newest candle moves one slot per call, so every call
    after the first steps each state copy once from its cache."""

    def __init__(self, scorer: StreamingScorer, windows: npt.NDArray[np.float32], first_row: int = 0) -> None:
        self.scorer = scorer
        self.windows = windows
        count, length = windows.shape[0], windows.shape[1]
        self.keys = [f"B{first_row + i}" for i in range(count)]
        self.rows = list(range(first_row, first_row + count))
        self.slots = np.broadcast_to(np.arange(length, dtype=np.int64), (count, length))
        self.next_slot = 0

    def __call__(self) -> None:
        self.scorer.score(self.keys, self.rows, self.windows, self.slots + self.next_slot)
        self.next_slot += 1


def streaming_ceiling(
    windowed: LoadedModel,
    memory: Memory,
    *,
    batch: int,
    seconds: float,
    threads: int,
    close_symbols: int,
    streaming: LoadedModel | None = None,
    rounds: int = 3,
) -> StreamingCeiling:
    """Windowed and streaming scoring alternated in ``rounds`` slices of ``seconds / rounds`` each
    (so a load change on the machine hits both alike), then the close and one-candle latencies."""
    import torch

    from daemon.recurrent_state import RecurrentStates
    from models.stepping import StreamingScorer

    torch.set_num_threads(threads)
    manifest = windowed.manifest
    golden = np.asarray(manifest.golden.input, dtype=np.float32)
    windows = np.ascontiguousarray(np.resize(golden, (batch, *golden.shape[1:])))
    if streaming is not None and streaming.manifest.streaming is not None:
        module, spec = streaming.module, streaming.manifest.streaming
        span, lookback, size = spec.span, spec.lookback, spec.state_size
        name = f"{streaming.manifest.name}/{streaming.version}"
    else:
        module = default_streaming_module(len(manifest.horizons), len(manifest.quantiles), manifest.window)
        span, lookback, size = int(module.span), int(module.lookback), int(module.state_size)
        name = "untrained " + " + ".join(f"lstm {h}x{layers}" for h, layers in DEFAULT_SHAPES)
    device = windowed.device

    def scorer(rows: int) -> StreamingScorer:
        return StreamingScorer(module, RecurrentStates(size, span, lookback, rows=rows), device)

    sliding = _SlidingCandles(scorer(batch), windows)
    for _ in range(3):
        sliding()
        windowed.score(windows)
    windowed_s = streaming_s = 0.0
    windowed_n = streaming_n = 0
    for _ in range(rounds):
        elapsed, calls = _timed(lambda: windowed.score(windows), seconds / rounds)
        windowed_s, windowed_n = windowed_s + elapsed, windowed_n + calls
        elapsed, calls = _timed(sliding, seconds / rounds)
        streaming_s, streaming_n = streaming_s + elapsed, streaming_n + calls

    def rebuild() -> None:
        fresh = _SlidingCandles(scorer(batch), windows)
        fresh()

    rebuild_s, rebuild_n = _timed(rebuild, seconds / rounds)
    lone = _SlidingCandles(scorer(1), windows[:1])
    lone()
    single_streaming = _timed(lone, seconds / rounds)
    single_windowed = _timed(lambda: windowed.score(windows[:1]), seconds / rounds)
    close = _close(scorer(close_symbols), windows, close_symbols, batch)
    windowed_per_s = windowed_n * batch / windowed_s
    return StreamingCeiling(
        windowed_model=f"{manifest.name}/{manifest.version}",
        streaming_model=name,
        state_bytes_per_symbol=RecurrentStates(size, span, lookback, rows=1).bytes_per_row(),
        batch=batch,
        threads=threads,
        windowed_per_s=windowed_per_s,
        streaming_per_s=streaming_n * batch / streaming_s,
        rebuild_per_s=rebuild_n * batch / rebuild_s,
        single_windowed_ms=single_windowed[0] / single_windowed[1] * 1000,
        single_streaming_ms=single_streaming[0] / single_streaming[1] * 1000,
        close_symbols=close_symbols,
        close_ms=close * 1000,
        close_windowed_bound_ms=close_symbols / windowed_per_s * 1000,
        window_bytes_per_symbol=(memory.traced_bytes + memory.strategy_state_bytes) / memory.symbols,
        memory_symbols=memory.symbols,
    )


def _timed(work: object, seconds: float) -> tuple[float, int]:
    """Seconds taken and calls made running ``work`` back to back for about ``seconds``."""
    assert callable(work)
    calls = 0
    started = time.perf_counter()
    while True:
        work()
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return elapsed, calls


def _close(scorer: StreamingScorer, windows: npt.NDArray[np.float32], symbols: int, batch: int) -> float:
    """Seconds to score one candle for each of ``symbols`` symbols in batches of ``batch``, their
    states cached at the candle before (as at an interval boundary in steady operation)."""
    parts: list[_SlidingCandles] = []
    for first in range(0, symbols, batch):
        rows = min(batch, symbols - first)
        parts.append(_SlidingCandles(scorer, windows[:rows], first_row=first))
    for part in parts:
        part()
    started = time.perf_counter()
    for part in parts:
        part()
    return time.perf_counter() - started


def streaming_rows(figures: StreamingCeiling) -> list[tuple[str, str, str]]:
    """The figures as (measurement, figure, detail) rows."""
    total = figures.bytes_per_symbol * figures.memory_symbols / 2**20
    return [
        (
            f"windowed ceiling, batch {figures.batch}",
            f"{figures.windowed_per_s:,.0f} /s",
            f"{figures.windowed_model}, {figures.threads} thread(s)",
        ),
        (
            f"streaming ceiling, batch {figures.batch}",
            f"{figures.streaming_per_s:,.0f} /s",
            f"{figures.streaming_model}; {figures.speedup:.1f}x the windowed, alternated in one run",
        ),
        ("  every state rebuilt", f"{figures.rebuild_per_s:,.0f} /s", "a restart: up to a span of steps per copy"),
        (
            "  one candle alone",
            f"{figures.single_streaming_ms:.2f} ms",
            f"windowed {figures.single_windowed_ms:.2f} ms (both padded to 8 rows)",
        ),
        (
            f"  {figures.close_symbols:,} symbols close at once",
            f"{figures.close_ms:,.0f} ms",
            f"model only, batches of {figures.batch}; windowed lower bound {figures.close_windowed_bound_ms:,.0f} ms",
        ),
        (
            "  memory per symbol",
            f"{figures.bytes_per_symbol:,.0f} B",
            f"window and strategy {figures.window_bytes_per_symbol:,.0f} B + states "
            f"{figures.state_bytes_per_symbol:,} B; {figures.memory_symbols:,} symbols {total:,.0f} MiB",
        ),
    ]


def render_streaming(figures: StreamingCeiling) -> Table:
    table = Table(title="streaming scoring beside the windowed ensemble", show_lines=False)
    table.add_column("measurement")
    table.add_column("figure", justify="right")
    table.add_column("detail")
    for row in streaming_rows(figures):
        table.add_row(*row)
    return table


def run_streaming_bench(
    model: Path | None,
    *,
    streaming_model: Path | None,
    batch: int,
    seconds: float,
    threads: int,
    close_symbols: int,
    memory_symbols: int,
) -> StreamingCeiling:
    """This phase alone, without a broker: the windowed artifact (``model``, default the bundled
    current), the streaming one (default untrained), window memory for ``memory_symbols`` symbols."""
    from candlecast.bench.memory import window_memory
    from candlecast.bench.run import resolve_model
    from daemon.serving import configure_threads
    from models.torchscript import load_artifact

    count = configure_threads(threads)
    windowed = load_artifact(resolve_model(model)[0])
    streaming = None if streaming_model is None else load_artifact(streaming_model)
    memory = window_memory(windowed, memory_symbols)
    return streaming_ceiling(
        windowed,
        memory,
        batch=batch,
        seconds=seconds,
        threads=count,
        close_symbols=close_symbols,
        streaming=streaming,
    )
