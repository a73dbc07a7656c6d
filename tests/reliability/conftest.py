"""The uninterrupted reference run that the kill, rebalance, outage and failover tests compare with."""

from __future__ import annotations

from pathlib import Path

import pytest_asyncio

from candlecast.candlefile import CandleTable, bundled_path, read_candles
from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from tests.support.kafka import daemon_settings, fresh_topics, read_to_end, running_daemon, wait_all_committed
from tests.support.signals import CandleKey, by_candle

Reference = dict[CandleKey, list[bytes]]


def workload() -> CandleTable:
    """Real S&P 500 daily candles: 20 symbols, with the file's real gaps and bad rows."""
    table = read_candles(bundled_path("sp500_1d_2009.csv"))
    symbols = sorted(table.symbol_slices())[::25][:20]
    return table.only(symbols).tail_per_symbol(130)


@pytest_asyncio.fixture(scope="session")
async def reference(kafka: LocalKafka, test_artifact: Path) -> Reference:
    """Signals of one daemon that is never interrupted, by candle."""
    topics = await fresh_topics(kafka.bootstrap_servers)
    await publish_candles(workload().messages("1d"), bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)
    async with running_daemon(daemon_settings(kafka.bootstrap_servers, topics, test_artifact)):
        await wait_all_committed(kafka.bootstrap_servers, topics.candles, topics.group)
    return by_candle(await read_to_end(kafka.bootstrap_servers, topics.signals))
