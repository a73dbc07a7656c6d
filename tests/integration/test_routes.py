"""Two routes through the real broker: hourly ``*USD`` candles to one model and daily stock candles to
another, in the same partitions of one candle topic, served by one daemon."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from candlecast.candlefile import bundled_path, read_candles
from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from daemon.backtest import backtest, candle_records
from daemon.batching import BatchPolicy
from daemon.candle import CandleMessage
from daemon.core import build_core
from daemon.settings import Settings
from daemon.signal import Signal
from models.torchscript import load_artifact
from tests.flow.harness import without_produce_time
from tests.support.kafka import daemon_settings, fresh_topics, read_records, running_daemon
from tests.support.model import build_test_model

pytestmark = pytest.mark.kafka

DAILY_CANDLES = 80
HOURLY_CANDLES = 120


@pytest.fixture(scope="module")
def hourly_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test model's architecture on hourly candles (continuous calendar), as version 0.1.0."""
    path = tmp_path_factory.mktemp("hourly") / "test-ensemble-1h.pt"
    build_test_model(path, version="0.1.0", seed=5, interval="1h")
    return path


async def test_two_routes_score_their_candles_end_to_end(
    kafka: LocalKafka, test_artifact: Path, hourly_artifact: Path
) -> None:
    """Every candle is scored by the route that claims it, each signal carrying its route's model version
    and the exact signal of that route's uninterrupted run; a candle no route claims reaches the
    dead-letter topic as ``no_route``, naming the routes."""
    daily = read_candles(bundled_path("us_stocks_1d.csv")).tail_per_symbol(DAILY_CANDLES).messages("1d")
    hourly = read_candles(bundled_path("btcusd_1h.csv")).tail_per_symbol(HOURLY_CANDLES).messages("1h")
    unclaimed = ("ETHEUR", CandleMessage("ETHEUR", "1h", "2019-07-01T00:00:00Z", 1.0, 1.0, 1.0, 1.0, 1.0))
    topics = await fresh_topics(kafka.bootstrap_servers)
    base = daemon_settings(kafka.bootstrap_servers, topics, test_artifact)
    settings = Settings(
        kafka=base.kafka,
        model=base.model,
        http=base.http,
        routes=[
            {"name": "crypto-1h", "symbols": "*USD", "interval": "1h", "model": {"artifact": hourly_artifact}},
            {"name": "stocks-1d", "interval": "1d"},
        ],
    )
    expected: list[Signal] = []
    for route, messages in zip(settings.served_routes(), (hourly, daily), strict=True):
        assert route.model.artifact is not None
        model = load_artifact(route.model.artifact)
        core = build_core(settings.for_route(route), model, route=route.name)
        expected += await backtest(candle_records(messages), core.ingestor, core.builder, model, BatchPolicy(64))
    interleaved = [m for pair in zip(daily, hourly, strict=False) for m in pair] + daily[len(hourly) :]
    await publish_candles([*interleaved, unclaimed], bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)

    async with running_daemon(settings):
        records = await read_records(kafka.bootstrap_servers, topics.signals, expected=len(expected), settle_s=2.0)
        [letter] = await read_records(kafka.bootstrap_servers, topics.dead_letters, expected=1)

    signals = [msgspec.json.decode(record.value, type=Signal) for record in records]
    assert {(s.interval, s.model_version) for s in signals} == {("1h", "0.1.0"), ("1d", "0.0.1")}
    assert without_produce_time(signals) == without_produce_time(expected)
    headers = dict(letter.headers)
    assert headers["dlq-reason"] == b"no_route"
    assert b"crypto-1h = *USD 1h -> test-ensemble/0.1.0" in headers["dlq-detail"]
