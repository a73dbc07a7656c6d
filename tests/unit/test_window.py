"""The window store: ring buffers, order checks, gap policies, eviction, rebuild offsets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from daemon.candle import Candle, CandleValidator
from daemon.checkpoint import Checkpoint, plan_start
from daemon.engine import CandleIngestor
from daemon.intervals import Interval
from daemon.metrics import DaemonMetrics
from daemon.window import GapMode, GapPolicy, Push, WindowStore

HOUR = 3_600_000
DAY = 86_400_000
HOURLY = {"1h": Interval.parse("1h")}


def candle(symbol: str, index: int, interval: str = "1h", step: int = HOUR, close: float | None = None) -> Candle:
    price = float(100 + index) if close is None else close
    return Candle(symbol, interval, index * step, price, price + 1, price - 1, price, float(index))


def store(length: int = 4, **kwargs: object) -> WindowStore:
    return WindowStore(length, intervals=HOURLY, **kwargs)  # type: ignore[arg-type]


class TestFilling:
    def test_ready_once_full(self) -> None:
        """A window scores only once it holds ``length`` candles."""
        windows = store(3)
        outcomes = [windows.push(candle("A", i), 0, i)[0] for i in range(4)]
        assert outcomes == [Push.WARMING, Push.WARMING, Push.READY, Push.READY]

    def test_gather_returns_the_newest_candles_oldest_first(self) -> None:
        """Wrap-around keeps chronological order."""
        windows = store(3)
        for i in range(10):
            _, slot = windows.push(candle("A", i), 0, i)
        window = windows.gather([slot])[0]
        assert window[:, 3].tolist() == [107.0, 108.0, 109.0]
        assert window.dtype == np.float32

    def test_symbols_are_isolated(self) -> None:
        """Candles of one symbol never enter another's window."""
        windows = store(2)
        for i in range(5):
            windows.push(candle("A", i), 0, i)
            windows.push(candle("B", i, close=1000.0 + i), 0, 100 + i)
        a, b = windows.slot_of(("A", "1h")), windows.slot_of(("B", "1h"))
        assert a is not None and b is not None
        assert windows.gather([a])[0][:, 3].tolist() == [103.0, 104.0]
        assert windows.gather([b])[0][:, 3].tolist() == [1003.0, 1004.0]

    def test_history_windows(self) -> None:
        """With history, earlier full windows can be gathered too."""
        windows = store(3, history=2)
        for i in range(6):
            _, slot = windows.push(candle("A", i), 0, i)
        assert windows.history_available(slot) == 2
        earlier = windows.gather([slot, slot], [2, 1])
        assert earlier[0][:, 3].tolist() == [101.0, 102.0, 103.0]
        assert earlier[1][:, 3].tolist() == [102.0, 103.0, 104.0]
        assert windows.gather_ts([slot], [2]).tolist() == [3 * HOUR]


class TestOrder:
    def test_duplicate(self) -> None:
        """A candle already in the window is a duplicate, and changes nothing."""
        windows = store(3)
        for i in range(3):
            windows.push(candle("A", i), 0, i)
        assert windows.push(candle("A", 1, close=5.0), 0, 9)[0] is Push.DUPLICATE
        slot = windows.slot_of(("A", "1h"))
        assert slot is not None
        assert windows.gather([slot])[0][:, 3].tolist() == [100.0, 101.0, 102.0]

    def test_out_of_order_and_stale(self) -> None:
        """A late candle inside the window span is out of order; one older than the window is stale."""
        windows = store(3)
        for i in (0, 1, 3, 4, 5):
            windows.push(candle("A", i), 0, i)
        assert windows.push(candle("A", 2), 0, 9)[0] in (Push.OUT_OF_ORDER, Push.STALE)
        assert windows.push(candle("A", 4), 0, 9)[0] is Push.DUPLICATE
        assert windows.push(candle("A", 0), 0, 9)[0] is Push.STALE


class TestGaps:
    def test_reset(self) -> None:
        """Under the reset policy a gap starts the window again."""
        windows = store(3, gap_policies={"1h": GapPolicy(GapMode.RESET)})
        for i in range(3):
            windows.push(candle("A", i), 0, i)
        assert windows.push(candle("A", 5), 0, 5)[0] is Push.WARMING
        assert windows.stats.gaps_reset == 1

    def test_tolerate(self) -> None:
        """Tolerated gaps keep the window going as if contiguous."""
        windows = store(3, gap_policies={"1h": GapPolicy(GapMode.TOLERATE, 2)})
        for i in (0, 1, 2, 5):
            outcome, slot = windows.push(candle("A", i), 0, i)
        assert outcome is Push.READY
        assert windows.gather([slot])[0][:, 3].tolist() == [101.0, 102.0, 105.0]
        assert windows.stats.gaps_tolerated == 1

    def test_forward_fill(self) -> None:
        """Filled candles are flat at the last close with zero volume."""
        windows = store(4, gap_policies={"1h": GapPolicy(GapMode.FORWARD_FILL, 2)})
        for i in (0, 1, 4):
            _, slot = windows.push(candle("A", i), 0, i)
        window = windows.gather([slot])[0]
        assert window[:, 3].tolist() == [101.0, 101.0, 101.0, 104.0]
        assert window[1:3, 4].tolist() == [0.0, 0.0]
        assert windows.stats.candles_filled == 2

    def test_long_gaps_reset_under_any_policy(self) -> None:
        """Gaps longer than max_missing reset, whatever the policy."""
        windows = store(3, gap_policies={"1h": GapPolicy(GapMode.TOLERATE, 1)})
        for i in (0, 1, 2, 9):
            outcome, _ = windows.push(candle("A", i), 0, i)
        assert outcome is Push.WARMING

    def test_weekends_are_not_gaps_for_stocks(self) -> None:
        """The weekdays calendar treats Friday -> Monday as consecutive."""
        daily = Interval.parse("1d", "weekdays")
        windows = WindowStore(2, intervals={"1d": daily}, gap_policies={"1d": GapPolicy(GapMode.RESET)})
        friday, monday = 19_727 * DAY, 19_730 * DAY  # 2024-01-05 and 2024-01-08
        windows.push(Candle("X", "1d", friday, 1, 1, 1, 1, 1), 0, 0)
        assert windows.push(Candle("X", "1d", monday, 1, 1, 1, 1, 1), 0, 1)[0] is Push.READY


class TestCapacity:
    def test_least_recently_updated_is_evicted(self) -> None:
        """A flood of new symbols evicts the stalest window, never grows past capacity."""
        windows = store(2, capacity=3)
        for symbol in "ABC":
            windows.push(candle(symbol, 0), 0, 0)
        windows.push(candle("A", 1), 0, 1)
        windows.push(candle("D", 0), 0, 2)
        assert len(windows) == 3
        assert ("B", "1h") not in windows
        assert ("A", "1h") in windows
        assert windows.stats.evictions == 1

    def test_memory_per_symbol(self) -> None:
        """100,000 windows of 64 candles fit well under 1 GiB."""
        windows = WindowStore(64, intervals=HOURLY, capacity=100_000)
        for i in range(100_000):
            windows.push(candle(f"S{i}", 0), 0, i)
        assert windows.nbytes < 512 * 2**20
        assert len(windows) == 100_000


class TestRebuildOffset:
    def test_oldest_offset_held_in_the_partition(self) -> None:
        """The rebuild offset is the oldest offset still inside any window of the partition."""
        windows = store(2)
        windows.push(candle("A", 0), 0, 10)
        windows.push(candle("B", 0), 0, 11)
        windows.push(candle("A", 1), 0, 12)
        windows.push(candle("A", 2), 0, 13)
        windows.push(candle("C", 0), 1, 14)
        assert windows.rebuild_offset(0) == 11
        assert windows.rebuild_offset(1) == 14
        assert windows.rebuild_offset(2) is None

    def test_dropping_a_partition_frees_its_windows(self) -> None:
        """After revocation a partition's windows are gone and their slots reused."""
        windows = store(2)
        windows.push(candle("A", 0), 0, 0)
        windows.push(candle("B", 0), 1, 1)
        assert windows.drop_partition(0) == 1
        assert ("A", "1h") not in windows and ("B", "1h") in windows
        windows.push(candle("C", 0), 0, 2)
        assert len(windows) == 2


class TestIdleExpiry:
    def test_a_dead_symbol_no_longer_pins_the_rebuild_start(self) -> None:
        """A symbol that stops trading pins its partition's rebuild start at its last candles while its window
        lives; once the partition's candles are ``idle_expiry`` intervals past it, the window expires and the
        planned restart skips its records."""
        seeks = {}
        for expiry in (0, 5):
            windows = store(2, idle_expiry=expiry)
            offset = 0
            for hour in range(20):
                if hour < 2:
                    windows.push(candle("DEAD", hour), 0, offset)
                    offset += 1
                windows.push(candle("LIVE", hour), 0, offset)
                offset += 1
            rebuild = windows.rebuild_offset(0)
            assert rebuild is not None
            plan = plan_start(offset, Checkpoint(offset, rebuild).metadata(), 0)
            assert plan is not None
            seeks[expiry] = plan.seek
            assert (("DEAD", "1h") in windows) is (expiry == 0)
        assert seeks[0] == 0, "the dead symbol's window pins the start without expiry"
        assert seeks[5] == 20 and windows.stats.expired == 1

    def test_idle_is_counted_in_candle_intervals_of_the_partition(self) -> None:
        """A window expires when its partition's newest candle is more than ``idle_expiry`` intervals after its
        own newest one; candles of other partitions do not count, and the expired key is reported released."""
        windows = store(2, idle_expiry=3)
        windows.push(candle("A", 0), 0, 0)
        windows.push(candle("OTHER", 10), 1, 1)
        windows.push(candle("B", 3), 0, 2)
        assert ("A", "1h") in windows, "3 intervals behind: not yet idle"
        assert windows.take_released() == []
        windows.push(candle("B", 4), 0, 3)
        assert ("A", "1h") not in windows and ("OTHER", "1h") in windows
        assert windows.take_released() == [("A", "1h")]
        windows.push(candle("A", 5), 0, 4)
        slot = windows.slot_of(("A", "1h"))
        assert slot is not None and windows.count(slot) == 1, "a new candle starts a new window"


@st.composite
def candle_streams(draw: st.DrawFn) -> list[tuple[str, int]]:
    symbols = draw(st.lists(st.sampled_from("ABCDE"), min_size=1, max_size=200))
    steps = draw(st.lists(st.sampled_from([1, 1, 1, 2, 3, 0, -1]), min_size=len(symbols), max_size=len(symbols)))
    last: dict[str, int] = {}
    stream = []
    for symbol, step in zip(symbols, steps, strict=True):
        last[symbol] = last.get(symbol, 0) + step
        stream.append((symbol, max(0, last[symbol])))
    return stream


class TestReplay:
    @settings(max_examples=60, deadline=None)
    @given(candle_streams(), st.sampled_from(list(GapMode)), st.sampled_from([0, 3, 6]))
    def test_replaying_from_the_rebuild_offset_recreates_every_window(
        self, stream: list[tuple[str, int]], mode: GapMode, idle_expiry: int
    ) -> None:
        """Exact recovery: replaying from rebuild_offset() gives the same windows as the uninterrupted store,
        idle expiry included."""
        policies = {"1h": GapPolicy(mode, 2)}
        live = store(3, history=2, gap_policies=policies, idle_expiry=idle_expiry)
        for offset, (symbol, index) in enumerate(stream):
            live.push(candle(symbol, index), 0, offset)
        start = live.rebuild_offset(0)
        if start is None:
            assert idle_expiry and len(live) == 0
            return
        rebuilt = store(3, history=2, gap_policies=policies, idle_expiry=idle_expiry)
        for offset, (symbol, index) in enumerate(stream[start:], start=start):
            rebuilt.push(candle(symbol, index), 0, offset)
        assert len(live) == len(rebuilt)
        for symbol in {s for s, _ in stream}:
            a, b = live.slot_of((symbol, "1h")), rebuilt.slot_of((symbol, "1h"))
            assert (a is None) == (b is None)
            if a is None or b is None:
                continue
            assert live.count(a) == rebuilt.count(b)
            if live.count(a) >= 3:
                assert np.array_equal(live.gather([a]), rebuilt.gather([b]))
            assert live.history_available(a) == rebuilt.history_available(b)
            assert live.last_ts(a) == rebuilt.last_ts(b)


def test_length_must_be_at_least_two() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        WindowStore(1, intervals=HOURLY)


class TestExpiryMetric:
    def test_expired_windows_are_counted_in_prometheus(self) -> None:
        """``candlecast_window_expiries_total`` follows the store's expiries, once each, apart from evictions."""
        windows = store(2, idle_expiry=3)
        ingestor = CandleIngestor(CandleValidator(HOURLY), windows, 1)
        registry = CollectorRegistry()
        metrics = DaemonMetrics(registry)
        windows.push(candle("DEAD", 0), 0, 0)
        metrics.observe_ingest(ingestor, 0)
        assert registry.get_sample_value("candlecast_window_expiries_total") == 0
        for hour in range(1, 6):
            windows.push(candle("LIVE", hour), 0, hour)
        metrics.observe_ingest(ingestor, 0)
        metrics.observe_ingest(ingestor, 0)
        assert windows.stats.expired == 1
        assert registry.get_sample_value("candlecast_window_expiries_total") == 1
        assert registry.get_sample_value("candlecast_window_evictions_total") == 0
