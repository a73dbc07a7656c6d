"""Where each candle's latency went, stage by stage, and which stages the slowest candles spent it in.

A steady phase's p99 is set by its slowest 1% of candles; their stages say whether they waited to be
consumed (the broker, the event loop not polling), queued for the model (the batcher, a forward pass
before theirs, a long ingest), ran long in the model, waited to be published (signal building, the
publish before theirs) or in the publish itself. The stamps are the bench's recorder's
(``candlecast.bench.harness.Recorder``); the stages add up to each candle's latency.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from candlecast.bench.report import StageSplit

Stamps = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CandleStamps:
    """Per candle, wall-clock milliseconds: its record time, taken off the source, its forward pass's start
    and end, its batch's publish start, and the acknowledgement seen."""

    candle: Stamps
    taken: Stamps
    forward_began: Stamps
    forward_ended: Stamps
    publish_began: Stamps
    acked: Stamps

    def stages(self) -> list[Stamps]:
        """Each stage's milliseconds per candle, in ``StageSplit``'s order."""
        order = [self.candle, self.taken, self.forward_began, self.forward_ended, self.publish_began, self.acked]
        return [later - earlier for earlier, later in itertools.pairwise(order)]


def median_split(stamps: CandleStamps) -> StageSplit:
    """Each stage's median over every candle."""
    consume, queue, forward, to_publish, publish = (float(np.median(stage)) for stage in stamps.stages())
    return StageSplit(consume, queue, forward, to_publish, publish, len(stamps.candle))


def tail_split(stamps: CandleStamps, percentile: float = 99.0) -> StageSplit:
    """Each stage's mean over the candles whose latency is at or above its ``percentile``."""
    latency = stamps.acked - stamps.candle
    slow = latency >= np.percentile(latency, percentile)
    consume, queue, forward, to_publish, publish = (float(stage[slow].mean()) for stage in stamps.stages())
    return StageSplit(consume, queue, forward, to_publish, publish, int(slow.sum()))
