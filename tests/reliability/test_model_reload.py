"""Hot reload in a real daemon process: a new version swaps in between batches; a bad one is refused."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import msgspec
import numpy as np
import pytest

from candlecast.candlefile import bundled_path, read_candles
from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from daemon.candle import format_ts
from daemon.signal import Signal
from models.registry import Registry
from models.torchscript import LoadedModel
from tests.support.kafka import fresh_topics, read_records, wait_all_committed, wait_until
from tests.support.model import build_test_model
from tests.support.process import DaemonProcess, write_config

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def reloads(daemon: DaemonProcess, outcome: str) -> float:
    body = daemon.get("/metrics")[1].decode()
    found = re.search(
        rf'^candlecast_model_reloads_total{{outcome="{outcome}",route="default"}} (\S+)$', body, re.MULTILINE
    )
    return float(found.group(1)) if found else 0.0


async def test_reload_swaps_models_between_batches_and_refuses_bad_ones(kafka: LocalKafka, tmp_path: Path) -> None:
    """Pointer change loads v2; a corrupted v3 (pointer or SIGHUP) is refused and v2 keeps serving;
    every signal equals its stated model's output for its window."""
    registry = Registry(tmp_path / "registry")
    models: dict[str, LoadedModel] = {}
    for version, seed in (("1.0.0", 7), ("2.0.0", 8), ("3.0.0", 9)):
        models[version] = build_test_model(tmp_path / f"{version}.pt", version=version, seed=seed)
        registry.add(tmp_path / f"{version}.pt")
    registry.promote("test-ensemble/1.0.0")

    table = read_candles(bundled_path("us_stocks_1d.csv")).tail_per_symbol(100)
    messages = table.messages("1d")
    thirds = len(messages) // 3
    topics = await fresh_topics(kafka.bootstrap_servers)
    config = write_config(tmp_path / "d.toml", bootstrap=kafka.bootstrap_servers, topics=topics, registry=registry.root)
    daemon = DaemonProcess(config, tmp_path / "d.log").start()
    try:
        await asyncio.to_thread(daemon.wait_ready, 90)
        await publish_candles(messages[: thirds * 2], bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)
        # 1.0.0 has scored the first two thirds (most of them fill windows: a few signals per symbol).
        await wait_all_committed(kafka.bootstrap_servers, topics.candles, topics.group)

        registry.promote("test-ensemble/2.0.0")
        await wait_until(lambda: reloads(daemon, "loaded") == 1, timeout_s=30)

        corrupt = registry.entry("test-ensemble/3.0.0").artifact
        data = bytearray(corrupt.read_bytes())
        data[len(data) // 2] ^= 0xFF
        corrupt.write_bytes(bytes(data))
        registry.pointer.write_text("test-ensemble/3.0.0\n")
        await wait_until(lambda: reloads(daemon, "refused") == 1, timeout_s=30)
        daemon.send(signal.SIGHUP)
        await wait_until(lambda: reloads(daemon, "refused") == 2, timeout_s=30)
        assert daemon.ready()

        await publish_candles(messages[thirds * 2 :], bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)
        expected = len(table.symbol_slices()) * (100 - 64 + 1)
        records = await read_records(kafka.bootstrap_servers, topics.signals, expected=expected, settle_s=2)
    finally:
        assert daemon.stop() == 0
    log = daemon.log_path.read_text()
    assert "model reload refused" in log and "sha256" in log

    signals = [msgspec.json.decode(r.value, type=Signal) for r in records]
    assert len(signals) == expected
    versions = [s.model_version for s in signals]
    assert set(versions) == {"1.0.0", "2.0.0"}
    assert versions[-1] == "2.0.0"
    for symbol, span in table.symbol_slices().items():
        rows = table.ohlcv[span].astype(np.float32)
        windows = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(rows, (64, 5)).reshape(-1, 64, 5))
        by_ts = {format_ts(int(t)): i for i, t in enumerate(table.ts[span][63:])}
        direct = {v: models[v].score(windows).probabilities[:, 0] for v in ("1.0.0", "2.0.0")}
        for s in (s for s in signals if s.symbol == symbol):
            assert s.probability == float(direct[s.model_version][by_ts[s.ts]])
        per_symbol = [s.model_version for s in signals if s.symbol == symbol]
        assert per_symbol == sorted(per_symbol), "a symbol never goes back to the old model"
