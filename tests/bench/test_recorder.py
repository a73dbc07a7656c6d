"""The bench's recorder: sustained throughput once every symbol's first signal is out."""

from __future__ import annotations

import math

from candlecast.bench.harness import Recorder


def recorded(signals: list[tuple[int, float]]) -> Recorder:
    """A recorder holding (candle time, acknowledged at) per signal."""
    recorder = Recorder()
    recorder.candle_ms = [candle for candle, _ in signals]
    recorder.acked_ms = [acked for _, acked in signals]
    recorder.taken_ms = [acked for _, acked in signals]
    return recorder


def test_throughput_after_the_first_round_starts_at_its_last_acknowledgement() -> None:
    """Signals of later candles acknowledged before the first round's last one are left out, and the rate
    runs from that acknowledgement to the last: a slow first round (state rebuilds) does not count."""
    recorder = recorded([(0, 0.0), (1, 100.0), (0, 1000.0), (1, 1500.0), (2, 2000.0), (2, 3000.0)])
    assert recorder.throughput_after_first_round(0) == 3 / 2.0
    assert recorder.throughput(0) == 5 / 3.0


def test_throughput_after_the_first_round_is_undefined_without_a_later_signal() -> None:
    """A backlog of one round has no signal after its first round's last acknowledgement."""
    assert math.isnan(recorded([(0, 0.0), (0, 10.0)]).throughput_after_first_round(0))
