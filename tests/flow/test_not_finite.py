"""A model output that is not finite never becomes a signal: the real pipeline, in-memory transports, a fake clock."""

from __future__ import annotations

import asyncio

import msgspec
import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry

from daemon.batching import BatchPolicy
from daemon.candle import CandleMessage
from daemon.memory_transport import MemoryBroker
from models.artifact import ModelOutputs
from tests.flow.test_pipeline import BASE, HOUR, pipeline_on
from tests.support.scorer import FakeScorer

HOURS = 30
WINDOW = 4


class NaNAboveAThousand(FakeScorer):
    """The fake model, returning NaN for every window that closes above 1000."""

    def score(self, windows: npt.NDArray[np.float32], origins: object = None) -> ModelOutputs:
        outputs = super().score(windows)
        outputs.probabilities[windows[:, -1, 3] > 1000.0] = np.nan
        return outputs


def feed(broker: MemoryBroker) -> None:
    """Hourly candles of ``LOW`` around 100 and of ``HIGH`` around 2000."""
    for hour in range(HOURS):
        for symbol, price in (("LOW", 100.0 + hour), ("HIGH", 2000.0 + hour)):
            message = CandleMessage(symbol, "1h", BASE + hour * HOUR, price, price * 1.01, price * 0.99, price, 10.0)
            broker.append(0, symbol.encode(), msgspec.json.encode(message), BASE + (hour + 1) * HOUR)


async def test_a_model_returning_nan_publishes_nothing_for_those_windows_and_counts_them() -> None:
    """Windows the model scores NaN get no signal and are counted in candlecast_outputs_not_finite_total;
    the other symbol's signals and every offset are still committed."""
    broker = MemoryBroker()
    feed(broker)
    registry = CollectorRegistry()
    pipeline, source, _sink = pipeline_on(broker, NaNAboveAThousand(), BatchPolicy(max_batch=2), registry=registry)
    await source.start()
    run = asyncio.create_task(pipeline.run())
    await broker.wait_committed(0, len(broker.logs[0]))
    pipeline.stop()
    await run

    windows_per_symbol = HOURS - WINDOW + 1
    assert {signal.symbol for signal in broker.signals} == {"LOW"}
    assert len(broker.signals) == windows_per_symbol
    assert all(np.isfinite(signal.probability) for signal in broker.signals)
    assert registry.get_sample_value("candlecast_outputs_not_finite_total") == windows_per_symbol
