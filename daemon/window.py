"""Rolling candle windows per (symbol, interval), kept in preallocated arrays.

Each window is a ring of ``span`` candles: the ``length`` most recent feed the model, and up to
``span - length`` older ones let a finite-memory strategy's history be re-scored after a restart.
Beside each candle the ring keeps the Kafka offset it came from, so that the smallest offset still
inside any window of a partition (``rebuild_offset``) tells recovery where to start replaying.

Pushing the same candles in the same order always yields the same windows: every decision here
(duplicate, order, gap policy, idle expiry) depends on candle data only, never on the wall clock.

Candles a ``forward_fill`` gap policy writes are marked as filled: the live path scores only windows
that end at a received candle, so strategy history counts and re-scores only those.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.candle import Candle
from daemon.intervals import Interval

WindowKey = tuple[str, str]
"""(symbol, interval)"""

FIELDS = ("open", "high", "low", "close", "volume")
_INITIAL_ROWS = 64


class GapMode(StrEnum):
    """What a window does when candles are missing between two it received."""

    RESET = "reset"
    """Start the window again from the new candle."""
    TOLERATE = "tolerate"
    """Up to ``max_missing`` missing candles are ignored: the window continues as if contiguous."""
    FORWARD_FILL = "forward_fill"
    """Up to ``max_missing`` missing candles are filled with flat candles at the last close, volume 0."""


@dataclass(frozen=True, slots=True)
class GapPolicy:
    """A gap policy; gaps longer than ``max_missing`` candles always reset the window."""

    mode: GapMode = GapMode.RESET
    max_missing: int = 0


class Push(IntEnum):
    """Outcome of pushing a candle into its window."""

    WARMING = 0
    """Accepted; the window is not full yet."""
    READY = 1
    """Accepted; the window is full and can be scored."""
    DUPLICATE = 2
    """A candle with this open time is already in the window."""
    OUT_OF_ORDER = 3
    """Older than the newest candle but inside the window's time span (arrived late)."""
    STALE = 4
    """Older than the window's oldest candle."""


@dataclass(slots=True)
class Appended:
    """What ``WindowStore.append`` did with a run of candles, each list in candle order."""

    verdicts: list[Push | None]
    """Each appended candle's outcome; ``None``: its key's window is fed from another partition
    (``bound``), so it was not pushed."""
    slots: list[int]
    """Each candle's window slot (``-1`` before one); for ``None`` verdicts the partition its key is bound to."""
    windows: npt.NDArray[np.float32]
    """``[ready, length, 5]``: the window each ``READY`` candle completed, as it was then."""
    indices: npt.NDArray[np.int64]
    """``[ready, length]``: slot indices of those windows' candles (``newest_slots``)."""
    histories: list[int]
    """For each ``READY`` candle, ``history_available`` of its window then."""
    released: list[tuple[WindowKey, int]]
    """Keys whose windows went, each with how many ``READY`` candles came before the one that let it go."""


@dataclass(slots=True)
class WindowStats:
    """Counters the metrics layer reads; plain ints keep the hot path free of metric calls."""

    gaps_reset: int = 0
    gaps_tolerated: int = 0
    gaps_filled: int = 0
    candles_filled: int = 0
    evictions: int = 0
    expired: int = 0


_RESET = GapPolicy()
"""The policy of an interval without one."""


class _Run:
    """One ``WindowStore.append`` call: its outcomes so far, and the candles queued to be written."""

    def __init__(self, store: WindowStore) -> None:
        self.store = store
        self.verdicts: list[Push | None] = []
        self.slots: list[int] = []
        self.released: list[tuple[WindowKey, int]] = []
        self.ready_count = 0
        self.touched: set[int] = set()
        """Slots written (or to be) in this run whose window is not read yet, or not yet written."""
        self.unread: list[int] = []
        """Slots of ``READY`` candles whose window is to be read after the next write."""
        self.windows: list[npt.NDArray[np.float32]] = []
        self.indices: list[npt.NDArray[np.int64]] = []
        self.histories: list[int] = []
        self.queued: list[int] = []
        self.positions: list[int] = []
        self.values: list[tuple[float, float, float, float, float]] = []
        self.ts: list[int] = []
        self.index: list[int] = []
        self.offsets: list[int] = []
        self.counts: list[int] = []

    def queue(self, slot: int, position: int, candle: Candle, *, offset: int, index: int, count: int) -> None:
        """A candle to write at ``position`` of ``slot``'s ring, leaving ``count`` candles there."""
        self.queued.append(slot)
        self.positions.append(position)
        self.values.append((candle.open, candle.high, candle.low, candle.close, candle.volume))
        self.ts.append(candle.ts)
        self.index.append(index)
        self.offsets.append(offset)
        self.counts.append(count)
        self.pushed(slot, Push.READY if count >= self.store.length else Push.WARMING)

    def pushed(self, slot: int, verdict: Push) -> None:
        self.verdicts.append(verdict)
        self.slots.append(slot)
        if verdict is Push.READY:
            self.ready_count += 1
            self.unread.append(slot)
            self.touched.add(slot)
        elif verdict is Push.WARMING:
            self.touched.add(slot)

    def write(self) -> None:
        """Write what is queued and read the windows it completed."""
        if self.queued:
            self.store._write_run(self)
            for pending in (self.queued, self.positions, self.values, self.ts, self.index, self.offsets, self.counts):
                pending.clear()
        if self.unread:
            windows, indices, histories = self.store._read_ready(self.unread)
            self.windows.append(windows)
            self.indices.append(indices)
            self.histories.extend(histories)
            self.unread.clear()
        self.touched.clear()

    def appended(self) -> Appended:
        empty = (0, self.store.length)
        return Appended(
            self.verdicts,
            self.slots,
            _joined(self.windows, np.zeros((*empty, len(FIELDS)), np.float32)),
            _joined(self.indices, np.zeros(empty, np.int64)),
            self.histories,
            self.released,
        )


def _joined(parts: list[npt.NDArray[Any]], empty: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The parts as one array (without a copy when there is one part)."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else empty


class WindowStore:
    """Fixed-length candle windows for many (symbol, interval) keys, least recently updated evicted."""

    def __init__(
        self,
        length: int,
        *,
        intervals: Mapping[str, Interval],
        gap_policies: Mapping[str, GapPolicy] | None = None,
        history: int = 0,
        capacity: int = 100_000,
        idle_expiry: int = 0,
    ) -> None:
        if length < 2:
            raise ValueError("a window needs at least 2 candles")
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if idle_expiry < 0:
            raise ValueError("idle_expiry must be 0 (off) or positive")
        self.length = length
        self.span = length + history
        self.capacity = capacity
        self.idle_expiry = idle_expiry
        """A window whose newest candle is more than this many interval slots older than the newest
        candle of its partition (candle time, not wall time) is dropped; 0: never."""
        self.stats = WindowStats()
        self.released: list[WindowKey] = []
        """Keys whose windows were evicted, expired or dropped since the owner last took them."""
        self._intervals = dict(intervals)
        self._codes = {name: code for code, name in enumerate(self._intervals)}
        self._clocks: dict[tuple[int, int], int] = {}
        """Per (partition, interval code), the newest candle's slot index: the partition's candle clock."""
        self._policies = dict(gap_policies or {})
        self._slots: OrderedDict[WindowKey, int] = OrderedDict()
        self._free: list[int] = []
        self._keys: list[WindowKey | None] = []
        rows = min(_INITIAL_ROWS, capacity)
        self._values = np.zeros((rows, self.span, len(FIELDS)), dtype=np.float32)
        self._ts = np.zeros((rows, self.span), dtype=np.int64)
        self._index = np.zeros((rows, self.span), dtype=np.int64)
        """Each candle's slot index (``Interval.slot_index``): what a streaming scorer's states step by."""
        self._offsets = np.zeros((rows, self.span), dtype=np.int64)
        self._received = np.zeros((rows, self.span), dtype=np.bool_)
        """False for candles a forward-fill gap policy wrote."""
        self._head = np.zeros(rows, dtype=np.int64)
        self._count = np.zeros(rows, dtype=np.int64)
        self._partition = np.full(rows, -1, dtype=np.int64)
        self._newest_index = np.zeros(rows, dtype=np.int64)
        """Slot index (``Interval.slot_index``) of each window's newest candle."""
        self._code = np.zeros(rows, dtype=np.int64)
        self._oldest = np.zeros(rows, dtype=np.int64)
        """Source offset of each window's oldest candle, set by every candle write (a new window and a
        reset one are written at once): a partition's rebuild offset is then one gather, asked for each
        partition of every poll."""
        self._members: dict[int, npt.NDArray[np.int64]] = {}
        """Live slots per partition (``slots_in``), until a slot is bound to a partition or released."""

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    @property
    def nbytes(self) -> int:
        """Bytes held by the window arrays (allocated rows, not only live ones)."""
        return sum(a.nbytes for a in self._arrays())

    def _arrays(self) -> tuple[npt.NDArray[np.generic], ...]:
        return (
            self._values,
            self._ts,
            self._index,
            self._offsets,
            self._received,
            self._head,
            self._count,
            self._partition,
            self._newest_index,
            self._code,
        )

    def slot_of(self, key: WindowKey) -> int | None:
        return self._slots.get(key)

    def key_of(self, slot: int) -> WindowKey:
        key = self._keys[slot]
        if key is None:
            raise KeyError(f"slot {slot} is free")
        return key

    def count(self, slot: int) -> int:
        """Candles held, up to ``span``."""
        return int(self._count[slot])

    def last_ts(self, slot: int) -> int:
        return int(self._ts[slot, (self._head[slot] - 1) % self.span])

    def full_windows(self, slot: int) -> int:
        """How many full windows the held candles make (one ending at each of the newest candles)."""
        return max(0, self._count.item(slot) - self.length + 1)

    def history_available(self, slot: int) -> int:
        """How many full windows ending at a received candle are held besides the newest one: the
        earlier outputs the live path scored that the strategy may still use (and a rebuild re-scores)."""
        full = self.full_windows(slot)
        if full <= 1:
            return 0
        # A handful of scalars per candle: reading them one by one beats building index arrays.
        newest = self._head.item(slot) - 1
        span = self.span
        received = self._received
        return sum(1 for back in range(1, full) if received.item(slot, (newest - back) % span))

    def scored_backs(self, slot: int, limit: int) -> list[int]:
        """Of the newest ``limit`` full windows, those ending at a received candle (the ones the live
        path scored), as how many candles before the newest each ends, oldest first."""
        count = min(limit, self.full_windows(slot))
        ends = (self._head[slot] - 1 - np.arange(count)) % self.span
        received = self._received[slot, ends].tolist()
        return [back for back in range(count - 1, -1, -1) if received[back]]

    def push(self, candle: Candle, partition: int, offset: int) -> tuple[Push, int]:
        """Add a candle; returns the outcome and the window's slot (-1 when rejected before one)."""
        key = (candle.symbol, candle.interval)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._allocate(key, partition)
        else:
            self._slots.move_to_end(key)
            verdict = self._order(slot, candle)
            if verdict is not None:
                return verdict, slot
        interval = self._intervals[candle.interval]
        index = interval.slot_index(candle.ts)
        self._write(slot, candle, offset, index)
        self._newest_index[slot] = index
        if self.idle_expiry:
            self._advance_clock(partition, self._codes[candle.interval], index)
        ready = self._count[slot] >= self.length
        return (Push.READY if ready else Push.WARMING), slot

    def append(self, candles: Sequence[Candle], partitions: Sequence[int], offsets: Sequence[int]) -> Appended:
        """``push`` each candle in order, its key bound to the partition its window is fed from.

        Verdicts, windows, counters and releases are those of pushing one at a time, for a few array
        writes per run instead of several per candle: a candle that only extends its window (in order,
        across a gap its policy tolerates or resets) is written together with the others, and its
        window read after. Any other (a new key, a late candle, a forward fill, a partition clock that
        moves) first writes what is pending and is pushed alone, and a window written twice in one run
        writes its first candle first."""
        run = _Run(self)
        for candle, partition, offset in zip(candles, partitions, offsets, strict=True):
            key = (candle.symbol, candle.interval)
            slot = self._slots.get(key)
            if slot is not None:
                bound = self._partition.item(slot)
                if bound != partition:
                    run.verdicts.append(None)
                    run.slots.append(bound)
                    continue
                if slot not in run.touched and self._extend(run, slot, candle, offset):
                    self._slots.move_to_end(key)
                    continue
            run.write()
            verdict, slot = self.push(candle, partition, offset)
            run.released.extend((gone, run.ready_count) for gone in self.take_released())
            run.pushed(slot, verdict)
        run.write()
        return run.appended()

    def _extend(self, run: _Run, slot: int, candle: Candle, offset: int) -> bool:
        """Queue ``candle`` on ``run`` if it only extends its window; ``False`` (nothing done) otherwise."""
        span = self.span
        head = self._head.item(slot)
        last = (head - 1) % span
        if candle.ts <= self._ts.item(slot, last):
            return False
        index = self._intervals[candle.interval].slot_index(candle.ts)
        missing = index - self._index.item(slot, last) - 1
        gap = self._gap_mode(candle.interval, missing) if missing > 0 else None
        if gap is GapMode.FORWARD_FILL:
            return False
        if self.idle_expiry:
            clock = self._clocks.get((self._partition.item(slot), self._codes[candle.interval]))
            if clock is None or index > clock:
                return False
        if gap is not None:
            self._note_gap(gap, missing)
        count = 1 if gap is GapMode.RESET else min(self._count.item(slot) + 1, span)
        run.queue(slot, head, candle, offset=offset, index=index, count=count)
        return True

    def _write_run(self, run: _Run) -> None:
        """Write a run's queued candles: one array write per field, each slot at most once."""
        rows = np.array(run.queued, dtype=np.int64)
        positions = np.array(run.positions, dtype=np.int64)
        index = np.array(run.index, dtype=np.int64)
        self._values[rows, positions] = run.values
        self._ts[rows, positions] = run.ts
        self._index[rows, positions] = index
        self._offsets[rows, positions] = run.offsets
        self._received[rows, positions] = True
        self._head[rows] = (positions + 1) % self.span
        self._count[rows] = run.counts
        self._newest_index[rows] = index
        self._note_oldest(rows)

    def _read_ready(self, slots: list[int]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], list[int]]:
        """Newest windows of ``slots`` (``newest_window``, ``newest_slots``) and their ``history_available``."""
        rows = np.array(slots, dtype=np.int64)
        heads = self._head[rows]
        span, length = self.span, self.length
        flat = ((heads[:, None] - length + np.arange(length)) % span + (rows * span)[:, None]).ravel()
        windows = np.take(self._values.reshape(-1, len(FIELDS)), flat, axis=0).reshape(len(rows), length, len(FIELDS))
        indices = np.take(self._index.reshape(-1), flat).reshape(len(rows), length)
        backs = np.arange(1, span - length + 1)
        received = self._received[rows[:, None], (heads[:, None] - 1 - backs) % span]
        earlier = backs < (self._count[rows] - length + 1)[:, None]
        histories: list[int] = np.count_nonzero(received & earlier, axis=1).tolist()
        return windows, indices, histories

    def _advance_clock(self, partition: int, code: int, index: int) -> None:
        """Move the partition's candle clock; windows left more than ``idle_expiry`` slots behind it
        expire. A dead or delisted symbol then stops pinning the partition's rebuild offset."""
        clock = (partition, code)
        if index <= self._clocks.get(clock, index - 1):
            return
        self._clocks[clock] = index
        live = len(self._keys)
        idle = np.flatnonzero(
            (self._partition[:live] == partition)
            & (self._code[:live] == code)
            & (self._newest_index[:live] < index - self.idle_expiry)
        )
        for slot in idle.tolist():
            self._release(slot)
            self.stats.expired += 1

    def _order(self, slot: int, candle: Candle) -> Push | None:
        """Checks a candle against the window's newest one and applies the gap policy."""
        last = self.last_ts(slot)
        if candle.ts <= last:
            return self._classify_late(slot, candle.ts)
        interval = self._intervals[candle.interval]
        missing = interval.missing_between(last, candle.ts)
        if missing <= 0:
            return None
        gap = self._gap_mode(candle.interval, missing)
        self._note_gap(gap, missing)
        if gap is GapMode.RESET:
            self._count[slot] = 0
        elif gap is GapMode.FORWARD_FILL:
            self._fill(slot, interval, last, missing)
        return None

    def _gap_mode(self, interval: str, missing: int) -> GapMode:
        """What the interval's gap policy does with ``missing`` (> 0) missing candles."""
        policy = self._policies.get(interval, _RESET)
        return GapMode.RESET if missing > policy.max_missing else policy.mode

    def _note_gap(self, gap: GapMode, missing: int) -> None:
        if gap is GapMode.RESET:
            self.stats.gaps_reset += 1
        elif gap is GapMode.TOLERATE:
            self.stats.gaps_tolerated += 1
        else:
            self.stats.gaps_filled += 1
            self.stats.candles_filled += missing

    def _classify_late(self, slot: int, ts: int) -> Push:
        count = int(self._count[slot])
        positions = (self._head[slot] - 1 - np.arange(count)) % self.span
        held = self._ts[slot, positions]
        if np.any(held == ts):
            return Push.DUPLICATE
        return Push.STALE if ts < held[-1] else Push.OUT_OF_ORDER

    def _fill(self, slot: int, interval: Interval, last_ts: int, missing: int) -> None:
        position = (self._head[slot] - 1) % self.span
        close = float(self._values[slot, position, 3])
        offset = int(self._offsets[slot, position])
        first = interval.slot_index(last_ts) + 1
        for index in range(first, first + missing):
            flat = Candle("", "", interval.slot_time(index), close, close, close, close, 0.0)
            self._write(slot, flat, offset, index, received=False)

    def _write(self, slot: int, candle: Candle, offset: int, index: int, *, received: bool = True) -> None:
        position = self._head[slot]
        self._values[slot, position] = (candle.open, candle.high, candle.low, candle.close, candle.volume)
        self._ts[slot, position] = candle.ts
        self._index[slot, position] = index
        self._offsets[slot, position] = offset
        self._received[slot, position] = received
        self._head[slot] = (position + 1) % self.span
        if self._count[slot] < self.span:
            self._count[slot] += 1
        self._note_oldest(slot)

    def _note_oldest(self, rows: int | npt.NDArray[np.int64]) -> None:
        """Keep ``rows``' oldest offset, once their head and count are written."""
        self._oldest[rows] = self._offsets[rows, (self._head[rows] - self._count[rows]) % self.span]

    def _allocate(self, key: WindowKey, partition: int) -> int:
        if len(self._slots) >= self.capacity:
            key_out, slot = self._slots.popitem(last=False)
            self._keys[slot] = None
            self.released.append(key_out)
            self.stats.evictions += 1
        elif self._free:
            slot = self._free.pop()
        else:
            slot = len(self._keys)
            self._keys.append(None)
            if slot >= len(self._head):
                self._grow(min(self.capacity, 2 * len(self._head)))
        self._slots[key] = slot
        self._keys[slot] = key
        self._head[slot] = 0
        self._count[slot] = 0
        self._partition[slot] = partition
        self._members.clear()
        self._code[slot] = self._codes[key[1]]
        return slot

    def _grow(self, rows: int) -> None:
        def grown(array: npt.NDArray[np.generic], fill: int = 0) -> npt.NDArray[np.generic]:
            bigger = np.full((rows, *array.shape[1:]), fill, dtype=array.dtype)
            bigger[: len(array)] = array
            return bigger

        self._values = grown(self._values)  # type: ignore[assignment]
        self._ts = grown(self._ts)  # type: ignore[assignment]
        self._index = grown(self._index)  # type: ignore[assignment]
        self._offsets = grown(self._offsets)  # type: ignore[assignment]
        self._received = grown(self._received)  # type: ignore[assignment]
        self._head = grown(self._head)  # type: ignore[assignment]
        self._count = grown(self._count)  # type: ignore[assignment]
        self._partition = grown(self._partition, -1)  # type: ignore[assignment]
        self._newest_index = grown(self._newest_index)  # type: ignore[assignment]
        self._code = grown(self._code)  # type: ignore[assignment]
        self._oldest = grown(self._oldest)  # type: ignore[assignment]

    def newest_window(self, slot: int) -> npt.NDArray[np.float32]:
        """A copy of one slot's newest window, ``[length, 5]``: ``gather([slot])[0]`` in one or two
        slice copies instead of fancy indexing (the live path takes one per scored candle)."""
        window: npt.NDArray[np.float32] = self._newest(self._values[slot], slot)
        return window

    def newest_slots(self, slot: int) -> npt.NDArray[np.int64]:
        """Slot indices of the candles of one slot's newest window, oldest first (not contiguous
        after a tolerated gap): as ``newest_window``, for the time axis."""
        slots: npt.NDArray[np.int64] = self._newest(self._index[slot], slot)
        return slots

    def _newest(self, ring: npt.NDArray[Any], slot: int) -> npt.NDArray[Any]:
        """The newest ``length`` entries of one slot's ring (its row of a per-candle array), oldest first."""
        end = int(self._head[slot])
        start = end - self.length
        return ring[start:end].copy() if start >= 0 else np.concatenate((ring[start:], ring[:end]))

    def gather(self, slots: Sequence[int], back: Sequence[int] | None = None) -> npt.NDArray[np.float32]:
        """Windows of ``length`` candles as one ``[n, length, 5]`` array, oldest candle first.

        ``back[i]`` selects the window that ended that many candles before the newest one.
        """
        windows: npt.NDArray[np.float32] = self._values[self._positions(slots, back)]
        return windows

    def gather_slots(self, slots: Sequence[int], back: Sequence[int] | None = None) -> npt.NDArray[np.int64]:
        """Slot indices of the candles of the windows ``gather`` selects, ``[n, length]``, oldest first."""
        indices: npt.NDArray[np.int64] = self._index[self._positions(slots, back)]
        return indices

    def _positions(
        self, slots: Sequence[int], back: Sequence[int] | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Index of the selected windows' candles into the per-candle ``[slot, span]`` arrays."""
        rows = np.asarray(slots, dtype=np.int64)
        ends = self._head[rows] - (0 if back is None else np.asarray(back, dtype=np.int64))
        positions = (ends[:, None] - self.length + np.arange(self.length)[None, :]) % self.span
        return rows[:, None], positions

    def gather_ts(self, slots: Sequence[int], back: Sequence[int] | None = None) -> npt.NDArray[np.int64]:
        """Open time of the newest candle of each selected window."""
        rows = np.asarray(slots, dtype=np.int64)
        ends = self._head[rows] - 1 - (0 if back is None else np.asarray(back, dtype=np.int64))
        times: npt.NDArray[np.int64] = self._ts[rows, ends % self.span]
        return times

    def gather_offsets(self, slots: Sequence[int], back: Sequence[int]) -> npt.NDArray[np.int64]:
        """Source offset of the newest candle of each selected window."""
        rows = np.asarray(slots, dtype=np.int64)
        ends = self._head[rows] - 1 - np.asarray(back, dtype=np.int64)
        offsets: npt.NDArray[np.int64] = self._offsets[rows, ends % self.span]
        return offsets

    def partition_of(self, slot: int) -> int:
        """The partition whose candles fill a live slot."""
        return int(self._partition[slot])

    def slots_in(self, partition: int) -> npt.NDArray[np.int64]:
        """Live slots whose candles came from a partition (free slots hold partition -1), read-only."""
        slots = self._members.get(partition)
        if slots is None:
            slots = np.flatnonzero(self._partition[: len(self._keys)] == partition)
            slots.flags.writeable = False
            self._members[partition] = slots
        return slots

    def rebuild_offset(self, partition: int) -> int | None:
        """Smallest offset still held by a window of the partition: where a replay must start."""
        slots = self.slots_in(partition)
        if slots.size == 0:
            return None
        return int(self._oldest[slots].min())

    def drop_partition(self, partition: int) -> int:
        """Forget every window fed by a partition (after it is revoked); returns how many."""
        slots = self.slots_in(partition).tolist()
        for slot in slots:
            self._release(slot)
        for clock in [c for c in self._clocks if c[0] == partition]:
            del self._clocks[clock]
        return len(slots)

    def _release(self, slot: int) -> None:
        key = self._keys[slot]
        assert key is not None
        del self._slots[key]
        self._keys[slot] = None
        self._partition[slot] = -1
        self._members.clear()
        self._free.append(slot)
        self.released.append(key)

    def take_released(self) -> list[WindowKey]:
        """Keys whose windows went since the last call (their strategy history can go too)."""
        released, self.released = self.released, []
        return released
