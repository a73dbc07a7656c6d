"""Real candles through the real broker and the daemon: the signals that come back."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import msgspec
import numpy as np
import pytest

from candlecast.candlefile import bundled_path, read_candles
from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from daemon.candle import format_ts
from daemon.signal import Signal
from models.torchscript import load_artifact
from tests.support.kafka import daemon_settings, fresh_topics, read_records, running_daemon

pytestmark = pytest.mark.kafka

CANDLES_PER_SYMBOL = 90


async def test_every_full_window_gets_the_models_signal(kafka: LocalKafka, test_artifact: Path) -> None:
    """One signal per candle once its window is full, keyed by symbol, in order, with the model's exact output."""
    table = read_candles(bundled_path("us_stocks_1d.csv")).tail_per_symbol(CANDLES_PER_SYMBOL)
    model = load_artifact(test_artifact)
    window = model.manifest.window
    topics = await fresh_topics(kafka.bootstrap_servers)
    await publish_candles(table.messages("1d"), bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)
    symbols = table.symbol_slices()
    expected_count = len(symbols) * (CANDLES_PER_SYMBOL - window + 1)

    async with running_daemon(daemon_settings(kafka.bootstrap_servers, topics, test_artifact)):
        records = await read_records(kafka.bootstrap_servers, topics.signals, expected=expected_count, settle_s=2.0)

    assert len(records) == expected_count
    by_symbol: dict[str, list[Signal]] = defaultdict(list)
    for record in records:
        signal = msgspec.json.decode(record.value, type=Signal)
        assert record.key == signal.symbol.encode()
        assert dict(record.headers)["schema"] == b"candlecast.signal/1"
        by_symbol[signal.symbol].append(signal)
    assert set(by_symbol) == set(symbols)
    for symbol, span in symbols.items():
        signals = by_symbol[symbol]
        rows = table.ohlcv[span].astype(np.float32)
        windows = np.lib.stride_tricks.sliding_window_view(rows, (window, 5)).reshape(-1, window, 5)
        direct = model.score(np.ascontiguousarray(windows)).probabilities
        assert [s.ts for s in signals] == [format_ts(int(t)) for t in table.ts[span][window - 1 :]]
        assert [s.probability for s in signals] == direct[:, 0].tolist()
        assert all(s.model_version == model.version for s in signals)
        assert len({s.signal_id for s in signals}) == len(signals)
