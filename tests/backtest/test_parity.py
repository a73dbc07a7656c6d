"""Parity: the backtest's signals equal, field for field except produce times, the daemon's through real Kafka."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import msgspec
import pytest

from candlecast.candlefile import bundled_path, read_candles
from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from daemon.backtest import backtest, candle_records
from daemon.batching import BatchPolicy
from daemon.candle import CandleMessage, format_ts
from daemon.core import build_core
from daemon.settings import BatchingSettings, StrategySettings
from daemon.signal import Signal
from models.torchscript import load_artifact
from tests.support.kafka import daemon_settings, fresh_topics, read_records, running_daemon

pytestmark = pytest.mark.kafka

CANDLES_PER_SYMBOL = 90
# Thresholds inside the test model's output range (p between about 0.456 and 0.483), with hysteresis and
# a cooldown, so the decisions depend on each symbol's earlier outputs and SELL and HOLD both occur.
STRATEGY = StrategySettings(
    name="threshold", params={"buy_above": 0.501, "sell_below": 0.472, "hysteresis": 0.003, "cooldown": 2, "memory": 4}
)
SIGNAL_SCHEMA = Path(__file__).parents[2] / "docs" / "schemas" / "signal.v1.json"


async def test_backtest_signals_equal_the_daemons_through_kafka(kafka: LocalKafka, test_artifact: Path) -> None:
    table = read_candles(bundled_path("us_stocks_1d.csv")).tail_per_symbol(CANDLES_PER_SYMBOL)
    topics = await fresh_topics(kafka.bootstrap_servers)
    settings = daemon_settings(kafka.bootstrap_servers, topics, test_artifact).model_copy(
        update={"strategy": STRATEGY, "batching": BatchingSettings(max_batch=32)}
    )
    await publish_candles(table.messages("1d"), bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)
    model = load_artifact(test_artifact)
    expected_count = len(table.symbol_slices()) * (CANDLES_PER_SYMBOL - model.manifest.window + 1)

    async with running_daemon(settings):
        records = await read_records(kafka.bootstrap_servers, topics.signals, expected=expected_count, settle_s=2.0)

    core = build_core(settings, model)
    policy = BatchPolicy(settings.batching.max_batch)
    offline = await backtest(candle_records(table.messages("1d")), core.ingestor, core.builder, model, policy)

    live = [msgspec.json.decode(record.value, type=Signal) for record in records]
    assert len(live) == len(offline) == expected_count
    for symbol in table.symbol_slices():
        arrived = [s.ts for s in live if s.symbol == symbol]
        assert arrived == sorted(arrived), f"{symbol}: signals out of candle order"
    key = lambda s: (s.symbol, s.ts)  # noqa: E731
    for published, backtested in zip(sorted(live, key=key), sorted(offline, key=key), strict=True):
        mine, theirs = msgspec.structs.asdict(published), msgspec.structs.asdict(backtested)
        for field in mine.keys() - {"produced_at"}:
            assert mine[field] == theirs[field], (published.symbol, published.ts, field)
    assert {s.action for s in offline} == {"SELL", "HOLD"}

    candle_records_read = await read_records(kafka.bootstrap_servers, topics.candles, expected=len(table))
    candle_at = {
        f"{r.topic}/{r.partition}/{r.offset}": msgspec.json.decode(r.value, type=CandleMessage)
        for r in candle_records_read
    }
    validator = jsonschema.Draft202012Validator(json.loads(SIGNAL_SCHEMA.read_text()))
    for record in records:
        validator.validate(json.loads(record.value))
        headers = dict(record.headers)
        signal = msgspec.json.decode(record.value, type=Signal)
        assert record.key == signal.symbol.encode()
        assert headers["content-type"] == b"application/json"
        assert headers["schema"] == b"candlecast.signal/1"
        assert headers["model-version"] == signal.model_version.encode()
        assert (headers["model"], headers["route"]) == (b"test-ensemble", b"default")
        scored = candle_at[headers["source"].decode()]
        assert (scored.symbol, format_ts(int(scored.ts))) == (signal.symbol, signal.ts)
