"""An API context on the real pure parts (validation, windows, strategy, signal builder, monitor,
signal store) with a torch-free scorer that runs inline, and helpers to feed it candles."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import numpy as np
import numpy.typing as npt
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from daemon.api import ApiContext
from daemon.api_wiring import record_published
from daemon.candle import CandleMessage
from daemon.clock import FakeClock
from daemon.core import Core, build_core
from daemon.dispatch import DEFAULT_ROUTE
from daemon.engine import ScoreRequest, SourceRecord
from daemon.http import BodyLimit, Health, build_app
from daemon.monitoring import ModelMonitor, RouteMonitors
from daemon.ports import Chunk, PublishBatch, ScoredChunk, Scorer, WindowOrigins
from daemon.route import Route
from daemon.settings import ApiSettings, MonitoringSettings, Settings, StrategySettings, WindowSettings
from daemon.signal import DeadLetter, Signal
from daemon.signal_store import SignalStore
from models.artifact import ModelOutputs
from tests.support.scorer import FakeScorer, fake_manifest

HOUR_MS = 3_600_000
START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
WINDOW = 4


@dataclass
class InlineModel:
    """A route's model that scores on the caller's thread, recording each forward pass's rows."""

    scorer: Scorer
    passes: list[int] = field(default_factory=list)

    @property
    def current(self) -> Scorer:
        return self.scorer

    async def score(
        self, windows: npt.NDArray[np.float32], origins: WindowOrigins | None = None
    ) -> tuple[Scorer, ModelOutputs]:
        self.passes.append(len(windows))
        return self.scorer, self.scorer.score(windows, origins)


def settings(**strategy: Any) -> Settings:
    return Settings(
        strategy=StrategySettings(
            name="threshold",
            params=strategy or {"buy_above": 0.5005, "sell_below": 0.4995, "hysteresis": 0.0002, "memory": 3},
        ),
        windows=WindowSettings(max_windows=1),
    )


@dataclass
class Harness:
    context: ApiContext
    model: InlineModel
    clock: FakeClock
    monitor: ModelMonitor
    store: SignalStore
    settings: Settings
    core: Core
    offset: int = 0

    @property
    def route(self) -> Route:
        return self.context.routes[0]

    def feed(self, symbol: str, rows: Sequence[dict[str, Any]]) -> list[Signal]:
        """Candles through the daemon's own steps (ingest, score, monitor, build, record once committed)."""
        requests: list[ScoreRequest] = []
        for row in rows:
            message = CandleMessage(symbol, "1h", **row)
            record = SourceRecord("candles", 0, self.offset, symbol.encode(), msgspec.json.encode(message), row["ts"])
            self.offset += 1
            result = self.core.ingestor.ingest(record)
            assert not isinstance(result, DeadLetter), result
            if result is not None:
                requests.append(result)
        if not requests:
            return []
        scorer = self.model.scorer
        outputs = scorer.score(np.stack([r.window for r in requests]))
        self.monitor.observe(ScoredChunk(Chunk(requests, [], {}), outputs, scorer.version))
        built = self.core.builder.build(requests, outputs, scorer.version)
        batch = PublishBatch([(s, r) for s, r in zip(built, requests, strict=True) if s is not None], [], {})
        record_published(self.store, [DEFAULT_ROUTE])(batch)
        return [s for s, _ in batch.signals]


def harness(*, token: str | None = None, api: ApiSettings | None = None, **strategy: Any) -> Harness:
    config = settings(**strategy)
    clock = FakeClock(START_MS / 1000 + 30 * HOUR_MS / 1000)
    scorer = FakeScorer(fake_manifest(window=WINDOW, interval="1h", horizons=(1, 2)))
    model = InlineModel(scorer)
    monitor = ModelMonitor(
        RouteMonitors(CollectorRegistry()),
        MonitoringSettings(drift_window=10, drift_min_samples=1, quality_window=10, quality_min_outcomes=1),
        capacity=100,
    )
    core = build_core(config.model_copy(update={"windows": WindowSettings()}), scorer, clock)
    monitor.use(scorer.manifest, core.intervals, core.gap_policies)
    route = Route(DEFAULT_ROUTE, "*", "1h", model, lambda s: build_core(config, s, clock), monitor)
    store = SignalStore(ring=100, client_buffer=10, max_clients=4, keys=100, clock_ms=lambda: int(clock.time() * 1000))
    context = ApiContext([route], store, api or ApiSettings(), store.clock_ms, token)
    return Harness(context, model, clock, monitor, store, config, core)


def candles(count: int, *, start: int = 0, drift: float = 0.01, base: float = 100.0) -> list[dict[str, Any]]:
    """``count`` consecutive hourly candles from hour ``start``, the close moving by ``drift`` each hour."""
    out = []
    for i in range(start, start + count):
        close = base * float(np.exp(drift * (i + 1)))
        open_ = base * float(np.exp(drift * i))
        out.append(
            {
                "ts": START_MS + i * HOUR_MS,
                "open": open_,
                "high": max(open_, close) * 1.001,
                "low": min(open_, close) * 0.999,
                "close": close,
                "volume": 100.0 + i,
            }
        )
    return out


def window(symbol: str, count: int = WINDOW, **kwargs: Any) -> dict[str, Any]:
    return {"symbol": symbol, "interval": "1h", "candles": candles(count, **kwargs)}


def sse_events(text: str) -> Iterator[dict[str, str]]:
    """Parse Server-Sent Events (comments skipped)."""
    for block in text.split("\n\n"):
        event: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ": " not in line:
                continue
            name, value = line.split(": ", 1)
            event[name] = value
        if event:
            yield event


def app_for(h: Harness) -> FastAPI:
    registry = CollectorRegistry()
    app = build_app(registry, Health(registry))
    app.state.api = h.context
    return app


def client(h: Harness) -> httpx.AsyncClient:
    """An in-process client of the API, with the daemon's body limit in front of it."""
    transport = httpx.ASGITransport(app=BodyLimit(app_for(h), h.context.settings.max_body_bytes))
    return httpx.AsyncClient(transport=transport, base_url="http://candlecast")
