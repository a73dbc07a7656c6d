"""The synchronous engine: ingest, score, decide; and exact recovery at the core level."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.candle import CandleMessage, CandleValidator
from daemon.engine import CandleIngestor, ScoreRequest, SignalBuilder, SourceRecord
from daemon.intervals import Interval
from daemon.signal import DeadLetter, Signal
from daemon.window import GapMode, GapPolicy, WindowStore
from strategies.base import OutputSpec
from strategies.threshold import ThresholdParams, ThresholdStrategy

HOUR = 3_600_000
BASE = 1_704_067_200_000  # 2024-01-01T00:00:00Z
SPEC = OutputSpec((1, 4), (0.1, 0.5, 0.9))
LENGTH = 4


@dataclass
class Outputs:
    probabilities: npt.NDArray[np.float32]
    quantiles: npt.NDArray[np.float32]
    disagreement: npt.NDArray[np.float32]


def score(requests: Sequence[ScoreRequest]) -> Outputs:
    """A deterministic stand-in for the model: the window's last return drives the probability."""
    windows = np.stack([r.window for r in requests]).astype(np.float64)
    drift = np.log(windows[:, -1, 3] / windows[:, 0, 3])
    p = 1 / (1 + np.exp(-60 * drift))
    probabilities = np.stack([p, 1 - p], axis=1).astype(np.float32)
    quantiles = np.repeat(drift[:, None, None], 3, axis=2).repeat(2, axis=1).astype(np.float32)
    return Outputs(probabilities, quantiles, np.zeros_like(probabilities))


def engine(memory_params: ThresholdParams) -> tuple[CandleIngestor, SignalBuilder]:
    strategy = ThresholdStrategy(SPEC, memory_params)
    intervals = {"1h": Interval.parse("1h")}
    windows = WindowStore(
        LENGTH,
        intervals=intervals,
        gap_policies={"1h": GapPolicy(GapMode.TOLERATE, 1)},
        history=strategy.memory - 1,
    )
    ingestor = CandleIngestor(CandleValidator(intervals), windows, strategy.memory)
    builder = SignalBuilder(
        strategy, SPEC, "threshold(test)", lambda: "2024-01-01T00:00:00Z", model="test", route="default"
    )
    return ingestor, builder


def record(offset: int, symbol: str, index: int, price: float) -> SourceRecord:
    message = CandleMessage(symbol, "1h", BASE + index * HOUR, price, price * 1.01, price * 0.99, price, 10.0)
    return SourceRecord("candles", 0, offset, symbol.encode(), msgspec.json.encode(message), BASE + (index + 1) * HOUR)


def run(ingestor: CandleIngestor, builder: SignalBuilder, records: Sequence[SourceRecord]) -> list[Signal]:
    signals: list[Signal] = []
    for rec in records:
        result = ingestor.ingest(rec)
        if isinstance(result, ScoreRequest):
            built = builder.build([result], score([result]), "m1")
            signals.extend(s for s in built if s is not None)
    return signals


@st.composite
def feeds(draw: st.DrawFn) -> list[SourceRecord]:
    count = draw(st.integers(min_value=10, max_value=120))
    symbols = draw(st.lists(st.sampled_from("ABC"), min_size=count, max_size=count))
    moves = draw(st.lists(st.floats(min_value=-0.03, max_value=0.03), min_size=count, max_size=count))
    skips = draw(st.lists(st.sampled_from([1, 1, 1, 1, 2, 0]), min_size=count, max_size=count))
    index: dict[str, int] = {}
    price: dict[str, float] = {}
    out = []
    for offset, (symbol, move, skip) in enumerate(zip(symbols, moves, skips, strict=True)):
        index[symbol] = index.get(symbol, 0) + skip
        price[symbol] = price.get(symbol, 100.0) * float(np.exp(move))
        out.append(record(offset, symbol, index[symbol], price[symbol]))
    return out


class TestIngest:
    def test_requests_once_full_and_dead_letters_for_bad_records(self) -> None:
        """Full windows become requests; rejected records become dead letters with their position."""
        ingestor, _ = engine(ThresholdParams())
        results = [ingestor.ingest(record(i, "A", i, 100.0 + i)) for i in range(LENGTH)]
        assert results[:-1] == [None] * (LENGTH - 1)
        assert isinstance(results[-1], ScoreRequest)
        bad = SourceRecord("candles", 0, 99, b"A", b"{", 0)
        letter = ingestor.ingest(bad)
        assert isinstance(letter, DeadLetter)
        assert (letter.reason, letter.offset, letter.value) == ("malformed_json", 99, b"{")
        duplicate = ingestor.ingest(record(100, "A", LENGTH - 1, 1.0))
        assert isinstance(duplicate, DeadLetter) and duplicate.reason == "duplicate"
        assert ingestor.counters.rejected == {"malformed_json": 1, "duplicate": 1}

    def test_replayed_records_are_neither_scored_nor_dead_lettered(self) -> None:
        """Replay only rebuilds windows."""
        ingestor, _ = engine(ThresholdParams())
        for i in range(LENGTH + 2):
            ingestor.replay(record(i, "A", i, 100.0))
        ingestor.replay(SourceRecord("candles", 0, 50, None, b"junk", 0))
        assert ingestor.counters.replayed == LENGTH + 3 and not ingestor.counters.rejected

    def test_a_record_without_a_key_is_dead_lettered(self) -> None:
        """A Kafka record with a null key is partitioned at random, not by symbol: it is rejected
        with its reason; records of keyless transports (MQTT) are not."""
        ingestor, _ = engine(ThresholdParams())
        keyless = msgspec.structs.replace(record(0, "A", 0, 100.0), key=None)
        letter = ingestor.ingest(keyless)
        assert isinstance(letter, DeadLetter) and letter.reason == "null_key"
        assert ingestor.ingest(msgspec.structs.replace(keyless, keyed=False)) is None
        assert ingestor.counters.rejected == {"null_key": 1}

    def test_a_symbol_stays_on_its_partition_until_that_partition_is_revoked(self) -> None:
        """A symbol read from a second partition is dead-lettered while its window is fed from the
        first; revoking the first partition releases the symbol."""
        ingestor, _ = engine(ThresholdParams())
        assert ingestor.ingest(record(0, "A", 0, 100.0)) is None
        moved = msgspec.structs.replace(record(1, "A", 1, 100.0), partition=1)
        letter = ingestor.ingest(moved)
        assert isinstance(letter, DeadLetter) and letter.reason == "partition_mismatch"
        assert ingestor.ingest(msgspec.structs.replace(record(2, "B", 0, 100.0), partition=1)) is None
        ingestor.store.drop_partition(0)
        assert ingestor.ingest(moved) is None
        assert ingestor.counters.rejected == {"partition_mismatch": 1}


class TestSignals:
    def test_signal_fields(self) -> None:
        """A signal carries the decision, every horizon, quantiles and a deterministic id."""
        ingestor, builder = engine(ThresholdParams())
        signals = run(ingestor, builder, [record(i, "A", i, 100.0 * 1.01**i) for i in range(LENGTH)])
        (signal,) = signals
        assert signal.action == "BUY" and signal.confidence == signal.probability
        assert set(signal.probabilities) == {"1", "4"}
        assert signal.quantile_levels == [0.1, 0.5, 0.9]
        again = run(*engine(ThresholdParams()), [record(i, "A", i, 100.0 * 1.01**i) for i in range(LENGTH)])
        assert again[0].signal_id == signal.signal_id


class TestExactRecovery:
    @settings(max_examples=40, deadline=None)
    @given(feeds(), st.integers(min_value=1, max_value=119), st.booleans())
    def test_restart_at_any_offset_publishes_what_an_uninterrupted_run_would(
        self, records: list[SourceRecord], crash_at: int, stateful: bool
    ) -> None:
        """Rebuild from the checkpoint's offset, re-score the strategy's history: identical signals after."""
        params = (
            ThresholdParams(buy_above=0.55, sell_below=0.45, hysteresis=0.04, cooldown=2, memory=5)
            if stateful
            else ThresholdParams()
        )
        crash_at = min(crash_at, len(records) - 1)
        reference = run(*engine(params), records)

        ingestor, builder = engine(params)
        before = run(ingestor, builder, records[:crash_at])
        rebuild_from = ingestor.store.rebuild_offset(0)
        start = crash_at if rebuild_from is None else rebuild_from

        revived, revived_builder = engine(params)
        for rec in records[start:crash_at]:
            revived.replay(rec)
        history = revived.history_requests(0, "candles")
        if history:
            revived_builder.build(history, score(history), "m1")
        after = run(revived, revived_builder, records[crash_at:])

        assert before + after == reference


class TestFuzz:
    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=300),
                st.builds(
                    lambda symbol, index, price, spread, volume: msgspec.json.encode(
                        {
                            "symbol": symbol,
                            "interval": "1h",
                            "ts": BASE + index * HOUR,
                            "open": price,
                            "high": price + spread,
                            "low": price - spread,
                            "close": price,
                            "volume": volume,
                        }
                    ),
                    st.sampled_from(["A", "B", "", "C/D"]),
                    st.integers(min_value=-3, max_value=40),
                    st.floats(min_value=-5, max_value=500, allow_nan=False),
                    st.floats(min_value=-1, max_value=5, allow_nan=False),
                    st.floats(min_value=-1, max_value=1e9, allow_nan=False),
                ),
            ),
            max_size=120,
        )
    )
    def test_any_input_through_parsing_and_windows(self, values: list[bytes]) -> None:
        """Whatever arrives, each record yields nothing, a request for a full valid window, or a dead letter."""
        ingestor, _ = engine(ThresholdParams())
        for offset, value in enumerate(values):
            result = ingestor.ingest(SourceRecord("candles", 0, offset, None, value, BASE + 100 * HOUR))
            if isinstance(result, ScoreRequest):
                assert result.window.shape == (LENGTH, 5)
                assert np.isfinite(result.window).all() and (result.window[:, :4] > 0).all()
                assert (result.window[:, 1] >= result.window[:, 2]).all()
            elif result is not None:
                assert result.reason and result.value == value
        consumed = ingestor.counters.consumed
        assert consumed == len(values) and sum(ingestor.counters.rejected.values()) <= consumed


class TestNotFinite:
    @pytest.mark.parametrize("field", ["probabilities", "quantiles", "disagreement"])
    @pytest.mark.parametrize("value", [np.nan, np.inf])
    def test_outputs_that_are_not_finite_are_counted_and_never_published(self, field: str, value: float) -> None:
        """A window whose model output holds a NaN or an infinity gives no signal and is counted;
        the finite ones beside it are published."""
        ingestor, builder = engine(ThresholdParams())
        results = [ingestor.ingest(record(i, "A", i, 100.0 * 1.01**i)) for i in range(LENGTH + 1)]
        requests = [r for r in results if isinstance(r, ScoreRequest)]
        outputs = score(requests)
        getattr(outputs, field)[0].flat[0] = value
        built = builder.build(requests, outputs, "m1")
        assert built[0] is None and isinstance(built[1], Signal)
        assert builder.not_finite == 1
