"""Backtest: candles from a file through the daemon's own objects, without Kafka or asyncio.

``build_core(settings, model)`` gives the validator, window store, strategy and signal builder
the daemon builds. Candles go in one at a time in the order ``candlecast replay`` publishes them,
each as the JSON message a producer sends; full windows are scored in batches of consecutive
requests through ``BatchPolicy.split`` and ``LoadedModel.score``. A window's score does not depend
on the other rows of its batch (``models.artifact.BATCH_MULTIPLE``) and the strategy sees each
symbol's outputs in candle order, so the signals equal the daemon's field for field, except
``produced_at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec
import numpy as np

from daemon.batching import BatchPolicy
from daemon.candle import CandleMessage, parse_ts
from daemon.engine import CandleIngestor, ScoreRequest, SignalBuilder, SourceRecord
from daemon.signal import Signal
from models.artifact import LoadedModel

SOURCE = "backtest"
"""Topic name of the records a backtest feeds in (it appears in no signal field)."""

_encoder = msgspec.json.Encoder()


def candle_records(messages: Iterable[tuple[str, CandleMessage]]) -> Iterator[SourceRecord]:
    """The records a Kafka consumer would get for these messages, published in this order.

    The record time is the candle's open time: a file's candles are history, never ahead of it.
    """
    for offset, (symbol, message) in enumerate(messages):
        opened = parse_ts(message.ts)
        yield SourceRecord(SOURCE, 0, offset, symbol.encode(), _encoder.encode(message), opened or 0)


def backtest_signals(
    records: Iterable[SourceRecord],
    ingestor: CandleIngestor,
    builder: SignalBuilder,
    model: LoadedModel,
    policy: BatchPolicy,
) -> Iterator[Signal]:
    """Signals for the records, in candle order; rejections are counted in ``ingestor.counters``."""
    pending: list[ScoreRequest] = []
    for record in records:
        result = ingestor.ingest(record)
        if isinstance(result, ScoreRequest):
            pending.append(result)
            if len(pending) >= policy.max_batch:
                yield from _score(pending, builder, model, policy)
                pending = []
    if pending:
        yield from _score(pending, builder, model, policy)


def _score(
    requests: list[ScoreRequest], builder: SignalBuilder, model: LoadedModel, policy: BatchPolicy
) -> Iterator[Signal]:
    for start, stop in policy.split(len(requests)):
        batch = requests[start:stop]
        outputs = model.score(np.stack([request.window for request in batch]))
        yield from (signal for signal in builder.build(batch, outputs, model.version) if signal is not None)
