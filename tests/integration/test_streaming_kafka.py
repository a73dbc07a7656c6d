"""A daemon serving a streaming artifact through its step path on a real broker: its signals, across a
restart that loses every state, equal the backtest's in the same scoring mode, each exactly once."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import torch

from candlecast.candlefile import bundled_path, read_candles
from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from daemon.backtest import backtest, candle_records
from daemon.batching import BatchPolicy
from daemon.candle import format_ts
from daemon.core import build_core
from daemon.serving import load_serving_model, served_scoring
from daemon.signal import Signal
from daemon.stepped_model import SteppedModel
from tests.flow.harness import without_produce_time
from tests.support.kafka import daemon_settings, fresh_topics, read_records, running_daemon

pytestmark = pytest.mark.kafka

CANDLES = 60


async def test_stream_signals_through_kafka_equal_the_stream_backtest_across_a_restart(
    kafka: LocalKafka, streaming_artifact: Path
) -> None:
    """Half the candles through one daemon (``model.scoring = "stream"``), the rest through a second one
    that rebuilds windows and states from the log: together exactly the backtest's signals."""
    messages = read_candles(bundled_path("us_stocks_1d.csv")).tail_per_symbol(CANDLES).messages("1d")
    topics = await fresh_topics(kafka.bootstrap_servers)
    base = daemon_settings(kafka.bootstrap_servers, topics, streaming_artifact)
    settings = base.model_copy(update={"model": base.model.model_copy(update={"scoring": "stream"})})
    model = served_scoring(
        load_serving_model(settings.model, torch.device("cpu")), "stream", settings.windows.max_windows
    )
    assert isinstance(model, SteppedModel)
    core = build_core(settings, model)
    expected = await backtest(candle_records(messages), core.ingestor, core.builder, model, BatchPolicy(64))
    half = len(messages) // 2
    last_of_half = format_ts(int(messages[half - 1][1].ts))
    first = sum(1 for s in expected if s.ts <= last_of_half)
    assert 0 < first < len(expected)

    await publish_candles(messages[:half], bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)
    async with running_daemon(settings) as daemon:
        await read_records(kafka.bootstrap_servers, topics.signals, expected=first)
        assert isinstance(daemon.model, SteppedModel)
    await publish_candles(messages[half:], bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)
    async with running_daemon(settings):
        records = await read_records(kafka.bootstrap_servers, topics.signals, expected=len(expected), settle_s=2.0)

    signals = [msgspec.json.decode(record.value, type=Signal) for record in records]
    assert len({s.signal_id for s in signals}) == len(signals)
    assert without_produce_time(signals) == without_produce_time(expected)
