"""Two routes in one daemon on in-memory transports: hourly ``*USD`` candles to one model, every daily
candle to another, both routes' candles in the same partitions. Dispatch, ``no_route`` dead letters,
exact recovery after a revocation, and a reload of one route, each checked against an uninterrupted run
of each route alone (the backtest of its candles)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import torch

from candlecast.candlefile import CandleTable, bundled_path, read_candles
from candlecast.errors import ArtifactError, ConfigError
from daemon.backtest import backtest, candle_records
from daemon.batching import BatchPolicy
from daemon.candle import CandleMessage
from daemon.core import build_core
from daemon.memory_transport import MemoryBroker, MemoryTransports
from daemon.service import Daemon
from daemon.serving import ServedModel, load_serving_model, served_entry
from daemon.settings import BatchingSettings, HttpSettings, ModelSettings, Settings
from daemon.signal import Signal
from models.registry import Registry
from tests.flow.harness import (
    STRATEGY,
    FakeServedModel,
    Running,
    all_committed,
    candle_table,
    running_daemon,
    without_produce_time,
)
from tests.support.scorer import FakeScorer, fake_manifest

HOURLY_V1 = Path("fake-hourly-1.0.0")
HOURLY_V2 = Path("fake-hourly-2.0.0")
DAILY = Path("fake-daily-0.0.1")
HOURLY_CANDLES = 150
PARTITIONS = 2
WARM = 0.85
"""Share of the candles produced before work is put in flight: past the daily route's 64-candle windows."""


class HourlyModel(FakeScorer):
    """The fake scorer on hourly candles of a continuous calendar, windows of 16."""

    def __init__(self, version: str, bias: float) -> None:
        manifest = fake_manifest(
            window=16, interval="1h", version=version, horizons=(1, 5, 20), gap_policy="tolerate", max_missing=3
        )
        super().__init__(msgspec.structs.replace(manifest, name="fake-hourly"), bias=bias)
        self.device = torch.device("cpu")
        self.file_sha256 = f"hourly {version}"


def load_fake(settings: ModelSettings, _device: torch.device) -> ServedModel:
    """The fake models by artifact name: two versions of the hourly one, and the daily one."""
    if settings.artifact == HOURLY_V1:
        return HourlyModel("1.0.0", 0.0)
    if settings.artifact == HOURLY_V2:
        return HourlyModel("2.0.0", 0.003)
    assert settings.artifact == DAILY
    return FakeServedModel("0.0.1", 0.0)


STOCKS: dict[str, object] = {"name": "stocks-1d", "symbols": "*", "interval": "1d", "model": {"artifact": DAILY}}


def two_routes(hourly: Path | dict[str, object] = HOURLY_V1, stocks: dict[str, object] = STOCKS) -> Settings:
    """``crypto-1h`` (``*USD`` hourly) first, then ``stocks-1d`` (every daily candle); small batches and
    one-poll queues, so that a few records of both routes are in flight at any time."""
    return Settings(
        model=ModelSettings(threads=1),
        http=HttpSettings(port=0),
        batching=BatchingSettings(max_batch=8, queue_chunks=1),
        strategy=STRATEGY,
        routes=[
            {
                "name": "crypto-1h",
                "symbols": "*USD",
                "interval": "1h",
                "model": hourly if isinstance(hourly, dict) else {"artifact": hourly},
            },
            stocks,
        ],
    )


@functools.cache
def _hourly_btc() -> CandleTable:
    return read_candles(bundled_path("btcusd_1h.csv")).tail_per_symbol(HOURLY_CANDLES)


def route_messages() -> dict[str, list[tuple[str, CandleMessage]]]:
    """Each route's candles, in time order per route."""
    return {"crypto-1h": _hourly_btc().messages("1h"), "stocks-1d": candle_table().messages("1d")}


def mixed_feed(broker: MemoryBroker, share: float = 1.0, start: float = 0.0) -> None:
    """Produce the share ``[start, share)`` of each route's candles, the two routes interleaved, each symbol
    always to the same partition (so every partition holds candles of both routes)."""
    messages = route_messages()
    symbols = sorted({symbol for route in messages.values() for symbol, _ in route})
    picked = [m[int(start * len(m)) : int(share * len(m))] for m in messages.values()]
    longest = max(len(m) for m in picked)
    for index in range(longest):
        for route in picked:
            if index < len(route):
                [record] = candle_records([route[index]])
                symbol = (record.key or b"").decode()
                broker.append(symbols.index(symbol) % PARTITIONS, record.key, record.value, record.timestamp_ms)


async def run_to_the_end(settings: Settings) -> tuple[MemoryBroker, Daemon]:
    """The whole mixed feed through a daemon until everything is committed; the broker and the stopped daemon."""
    broker = MemoryBroker(partitions=PARTITIONS)
    mixed_feed(broker)
    async with running_daemon(settings, broker, loader=load_fake) as running:
        await all_committed(broker)
        await running.stopped()
    return broker, running.daemon


async def hold_with_the_rest_in_flight(running: Running, broker: MemoryBroker) -> None:
    """Once the warm-up share is committed, hold the sink and feed the rest, returning with a batch held."""
    await all_committed(broker)
    running.sink.hold()
    mixed_feed(broker, start=WARM)
    await running.sink.holding.wait()


async def uninterrupted(settings: Settings) -> list[Signal]:
    """Each route's candles through a backtest of that route alone: what an uninterrupted run publishes."""
    signals: list[Signal] = []
    messages = route_messages()
    for route in settings.served_routes():
        model = load_fake(route.model, torch.device("cpu"))
        view = settings.for_route(route)
        core = build_core(view, model, route=route.name)
        records = candle_records(messages[route.name])
        signals += await backtest(records, core.ingestor, core.builder, model, BatchPolicy(view.batching.max_batch))
    return signals


async def test_each_candle_is_scored_by_the_route_that_claims_it() -> None:
    """Hourly BTCUSD candles are scored by the crypto route's model and daily stock candles by the stocks
    route's, in one daemon, and the signals equal each route's uninterrupted run."""
    settings = two_routes()
    broker, _ = await run_to_the_end(settings)
    published = broker.signals
    assert {(s.interval, s.model_version) for s in published} == {("1h", "1.0.0"), ("1d", "0.0.1")}
    assert without_produce_time(published) == without_produce_time(await uninterrupted(settings))


async def test_each_signal_names_its_route_and_model() -> None:
    """Every signal names the route that claimed its candle and that route's model, beside the model's
    version: hourly BTCUSD ones ``crypto-1h`` and ``fake-hourly``, daily ones ``stocks-1d`` and ``fake``."""
    broker, _ = await run_to_the_end(two_routes())
    named = {(s.symbol == "BTCUSD", s.interval, s.route, s.model, s.model_version) for s in broker.signals}
    assert named == {(True, "1h", "crypto-1h", "fake-hourly", "1.0.0"), (False, "1d", "stocks-1d", "fake", "0.0.1")}


async def test_each_routes_drift_and_quality_are_exported_under_its_name() -> None:
    """Each route's drift window counts that route's scored candles, and each route's model is in
    ``candlecast_model_info`` under its route (once only the first route's were exported)."""
    broker, daemon = await run_to_the_end(two_routes())
    registry = daemon.registry
    scored = {route: sum(s.route == route for s in broker.signals) for route in ("crypto-1h", "stocks-1d")}
    assert all(scored.values())
    for route, count in scored.items():
        assert registry.get_sample_value("candlecast_drift_window_samples", {"route": route}) == count
    models = {
        (sample.labels["route"], sample.labels["name"], sample.labels["version"])
        for family in registry.collect()
        if family.name == "candlecast_model"
        for sample in family.samples
    }
    assert models == {("crypto-1h", "fake-hourly", "1.0.0"), ("stocks-1d", "fake", "0.0.1")}


async def test_a_candle_no_route_claims_is_dead_lettered_naming_the_routes_and_their_models() -> None:
    """An hourly ETHEUR candle (not ``*USD``, not daily) goes to the dead-letter topic as ``no_route``, its
    detail naming each route with its model; the claimed candles beside it are scored."""
    settings = two_routes()
    broker = MemoryBroker(partitions=PARTITIONS)
    mixed_feed(broker)
    unclaimed = CandleMessage("ETHEUR", "1h", "2024-01-02T03:00:00Z", 1.0, 1.0, 1.0, 1.0, 1.0)
    [record] = candle_records([("ETHEUR", unclaimed)])
    broker.append(0, record.key, record.value, record.timestamp_ms)
    async with running_daemon(settings, broker, loader=load_fake) as running:
        await all_committed(broker)
        await running.stopped()
        counted = running.daemon.registry.get_sample_value("candlecast_candles_rejected_total", {"reason": "no_route"})
    [letter] = broker.dead_letters
    assert letter.reason == "no_route"
    assert "ETHEUR 1h" in letter.detail
    assert "crypto-1h = *USD 1h -> fake-hourly/1.0.0" in letter.detail
    assert "stocks-1d = * 1d -> fake/0.0.1" in letter.detail
    assert counted == 1
    assert broker.signals, "the claimed candles beside it are scored"


async def test_a_partition_of_both_routes_recovers_exactly_after_revoke_and_reassign() -> None:
    """A partition holding candles of both routes, revoked with batches in flight and assigned again, is
    committed only up to what both routes published, replays both routes' windows from its commit (whose
    metadata names both routes' model versions) and resumes exactly: signals equal an uninterrupted run's."""
    settings = two_routes()
    broker = MemoryBroker(partitions=PARTITIONS)
    mixed_feed(broker, share=WARM)
    async with running_daemon(settings, broker, loader=load_fake) as running:
        await hold_with_the_rest_in_flight(running, broker)
        revoking = asyncio.create_task(running.source.revoke([0]))
        running.sink.release()
        taken = await revoking
        assert 0 < taken[0] < len(broker.logs[0])
        assert broker.committed_offset(0) == taken[0]
        metadata = msgspec.json.decode(broker.committed[0][1])
        assert set(metadata["routes"]) == {"crypto-1h", "stocks-1d"}

        await running.source.assign([0])
        await all_committed(broker)
        await running.stopped()

    published = broker.signals
    assert len({s.signal_id for s in published}) == len(published)
    assert without_produce_time(published) == without_produce_time(await uninterrupted(settings))


async def test_a_reload_of_one_route_switches_its_signals_once_and_leaves_the_other_alone() -> None:
    """Reloading the crypto route swaps its model between batches: each hourly symbol goes from version
    1.0.0 to 2.0.0 once and never back, every signal carries its version's outputs; the stocks route
    keeps its model and its signals equal its uninterrupted run's."""
    settings = two_routes(HOURLY_V1)
    reloaded = two_routes(HOURLY_V2)
    broker = MemoryBroker(partitions=PARTITIONS)
    mixed_feed(broker, share=WARM)
    async with running_daemon(settings, broker, loader=load_fake) as running:
        await hold_with_the_rest_in_flight(running, broker)
        daemon = running.daemon
        daemon.settings = reloaded
        crypto, stocks = daemon.routes
        assert await daemon.reload(crypto)
        assert stocks.model.version == "0.0.1"
        running.sink.release()
        await all_committed(broker)
        await running.stopped()

    published = broker.signals
    hourly = sorted((s for s in published if s.interval == "1h"), key=lambda s: s.ts)
    versions = [s.model_version for s in hourly]
    assert versions == sorted(versions)
    assert set(versions) == {"1.0.0", "2.0.0"}
    old = {s.ts: s.probabilities for s in await uninterrupted(settings) if s.interval == "1h"}
    new = {s.ts: s.probabilities for s in await uninterrupted(reloaded) if s.interval == "1h"}
    for signal in hourly:
        assert signal.probabilities == (old if signal.model_version == "1.0.0" else new)[signal.ts]
    daily = [s for s in published if s.interval == "1d"]
    expected_daily = [s for s in await uninterrupted(settings) if s.interval == "1d"]
    assert without_produce_time(daily) == without_produce_time(expected_daily)


def load_fake_or_named(settings: ModelSettings, device: torch.device) -> ServedModel:
    """Fakes by artifact name; a model named in the registry as the daemon loads it."""
    return load_serving_model(settings, device) if settings.name is not None else load_fake(settings, device)


@pytest.mark.parametrize(
    ("route", "error", "message"),
    [
        (
            {"name": "stocks-1d", "model": {"name": "nope"}},
            ArtifactError,
            r"routes\.1 \(stocks-1d\)\.model: model\.name: no model 'nope' in the registry",
        ),
        (
            {"name": "stocks-1d", "interval": "1h", "model": {"artifact": DAILY}},
            ConfigError,
            r"routes\.1 \(stocks-1d\)\.interval: the route claims 1h candles, but its model fake/0.0.1 serves 1d",
        ),
    ],
)
async def test_a_route_whose_model_cannot_serve_it_stops_start_up_naming_the_route(
    route: dict[str, object], error: type[Exception], message: str
) -> None:
    """A route naming a model the registry does not hold, or claiming another interval than its model
    serves, stops the daemon before it connects, the message naming the route's field."""
    transports = MemoryTransports(MemoryBroker())
    daemon = Daemon(two_routes(stocks=route), transports=transports, load_model=load_fake_or_named)
    with pytest.raises(error, match=message):
        await daemon.run()
    assert not daemon.pipeline_built.is_set()


async def test_a_new_registry_version_of_one_routes_model_reloads_that_route_alone(tmp_path: Path) -> None:
    """Two routes served from one registry by model name: a new version of the crypto model appearing in
    the registry is served by the crypto route after one ``reload_poll_s`` look, and the stocks route
    keeps its model (one reload counted)."""
    for ref in ("crypto/1.0.0", "stocks/0.0.1"):
        (tmp_path / ref).mkdir(parents=True)
        (tmp_path / ref / "model.pt").write_bytes(b"")
    (tmp_path / "current").write_text("stocks/0.0.1\n")
    fakes: dict[str, Callable[[], ServedModel]] = {
        "crypto/1.0.0": lambda: HourlyModel("1.0.0", 0.0),
        "crypto/2.0.0": lambda: HourlyModel("2.0.0", 0.003),
        "stocks/0.0.1": lambda: FakeServedModel("0.0.1", 0.0),
    }

    def load_from_registry(settings: ModelSettings, _device: torch.device) -> ServedModel:
        return fakes[served_entry(Registry(settings.registry), settings).ref]()

    crypto = {"registry": tmp_path, "name": "crypto", "reload_poll_s": 5.0}
    stocks = {"registry": tmp_path, "name": "stocks", "reload_poll_s": 5.0}
    settings = two_routes(crypto, stocks={**STOCKS, "model": stocks})
    async with running_daemon(settings, MemoryBroker(partitions=PARTITIONS), loader=load_from_registry) as running:
        daemon = running.daemon
        await running.clock.sleeping(5)  # heartbeat, readiness, broker probe and both routes' reload loops
        (tmp_path / "crypto/2.0.0").mkdir()
        (tmp_path / "crypto/2.0.0/model.pt").write_bytes(b"")
        await running.clock.run_for(5.0)
        await running.clock.sleeping(5)  # both reload loops wait again: the look and the load are done
        assert [r.model.version for r in daemon.routes] == ["2.0.0", "0.0.1"]
        reloads = {
            route: daemon.registry.get_sample_value(
                "candlecast_model_reloads_total", {"route": route, "outcome": "loaded"}
            )
            for route in ("crypto-1h", "stocks-1d")
        }
        assert reloads == {"crypto-1h": 1, "stocks-1d": 0}
        await running.stopped()
