"""What the query API and the live stream know of published signals: pure, synchronous, bounded.

The daemon records each batch here only after its sink published and committed it, so nothing
the API shows or streams can later be rolled back. The store keeps:

- each (symbol, interval)'s latest signal and its signals counted by action (at most ``keys``
  pairs, the least recently updated forgotten first);
- a ring of the ``ring`` newest signals, each with a sequence number, from which a stream client
  resumes after the last signal id it saw;
- one bounded queue per stream client. Recording never waits for a client: a client whose queue
  already holds ``client_buffer`` signals when another arrives is cut off (``overflowed``), and
  reconnects with its last id.

The stream server (``daemon.signal_feed``) starts by refilling the ring from the signals topic
(``mark_refilled``): signals earlier processes delivered in an order this one cannot know, except
within each lane (a topic partition). A client resuming after a refilled id gets, after a gap
event, every signal that may have followed it in any such order (``RESTARTED_FRAME``).

The stream's cost must not grow with its clients times its signals: each signal's Server-Sent
Events frame is encoded once, when it is recorded, and a batch's frames are joined once for all the
clients of every symbol, so a client that keeps up costs one wake-up and one write per batch.

No asyncio here: the edge (``daemon.stream``) passes a ``wake`` callback per client.

Nothing the store keeps per signal is walked by the garbage collector's full collections: a stored
signal is its frame (bytes) and the scalars the API filters on, in structs the collector does not
track, and the ``Signal`` is decoded from the frame when asked for. Stored as objects, each key's
latest signal cost 8 tracked objects, and a full collection with 100,000 symbols stored a pause of
about 300 ms (docs/benchmarks.md, "Where the steady-state tail comes from").
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import msgspec

from daemon.signal import Signal
from daemon.sse import RESTARTED_FRAME, RESTARTED_UNKNOWN_FRAME, frame_signal, signal_frame

WindowKey = tuple[str, str]


class StoredSignal(msgspec.Struct, frozen=True, gc=False):
    """A committed signal, as the API serves it: bytes and scalars only, never tracked by the collector."""

    seq: int
    """Position in this process's stream of committed signals (starts at 1)."""
    route: str
    ts_ms: int
    """Open time of the scored candle, epoch milliseconds."""
    interval_ms: int
    committed_ms: int
    """When the store recorded it (the daemon's clock), epoch milliseconds."""
    frame: bytes
    """Its Server-Sent Events frame (``daemon.sse``), encoded once for every stream client."""
    signal_id: str
    symbol: str
    interval: str
    action: str
    confidence: float

    @property
    def signal(self) -> Signal:
        """The signal, decoded from its frame (what was published, field for field)."""
        return frame_signal(self.frame)


@dataclass(frozen=True, slots=True)
class RankedSignal:
    stored: StoredSignal
    age_ms: int
    """Time since the scored candle closed (open time plus one interval)."""


class _KeyRecord(msgspec.Struct, gc=False):
    latest: StoredSignal
    actions: dict[str, int] = msgspec.field(default_factory=dict)
    """Holding only strings and integers, CPython leaves the dict untracked too."""


class TooManyClientsError(Exception):
    """Every stream slot is taken."""


class Subscription:
    """One stream client; ``take`` hands over what it has not seen yet. Created by ``SignalStore.subscribe``.

    A client of every symbol is a cursor into the store's ring and its joined batches (recording
    costs it nothing per signal); a client of some symbols has its own queue of frames, fed through
    the store's index by symbol.
    """

    def __init__(
        self, store: SignalStore, symbols: frozenset[str] | None, limit: int, wake: Callable[[], None]
    ) -> None:
        self.symbols = symbols
        self.limit = limit
        self.overflowed = False
        """Set when a signal found the client ``limit`` signals behind: it is cut off, never waited for."""
        self.closed = False
        """Set when the daemon stops: the stream ends after what is queued."""
        self._store = store
        self._cursor = store.recorded
        """Clients of every symbol: the sequence number of the last signal handed over."""
        self._queue: deque[bytes] = deque()
        """Clients of some symbols: the frames not yet handed over."""
        self._preamble: list[bytes] = []
        """Handed over before the rest: a gap event and the signals resent after the stream server's restart."""
        self._wake = wake

    def wants(self, stored: StoredSignal) -> bool:
        return self.symbols is None or stored.symbol in self.symbols

    def take(self) -> bytes:
        """The frames of every signal not handed over yet, oldest first, as one write."""
        if self.overflowed:
            return b""
        if self.symbols is None:
            taken = self._store._frames_after(self._cursor)
            self._cursor = self._store.recorded
        else:
            taken = b"".join(self._queue)
            self._queue.clear()
        if self._preamble:
            taken = b"".join((*self._preamble, taken))
            self._preamble = []
        return taken

    def _close(self) -> None:
        self.closed = True
        self._wake()


class SignalStore:
    """Latest signals, a resumption ring and stream queues, fed with committed signals only."""

    def __init__(
        self, *, ring: int, client_buffer: int, max_clients: int, keys: int, clock_ms: Callable[[], int]
    ) -> None:
        if min(ring, client_buffer, keys) < 1 or max_clients < 0:
            raise ValueError("ring, client_buffer and keys must be at least 1, max_clients at least 0")
        self.max_clients = max_clients
        self.client_buffer = client_buffer
        self.clock_ms = clock_ms
        self._ring: deque[StoredSignal] = deque(maxlen=ring)
        self._seq_of: dict[str, int] = {}
        """signal_id -> sequence number, for the signals in the ring."""
        self._keys: OrderedDict[WindowKey, _KeyRecord] = OrderedDict()
        self._key_limit = keys
        self._clients: list[Subscription] = []
        self._every_symbol: list[Subscription] = []
        self._by_symbol: dict[str, list[Subscription]] = {}
        self._batches: deque[tuple[int, int, bytes]] = deque()
        """(first seq, last seq, joined frames) of the recorded batches some client of every symbol
        has not taken yet, oldest first."""
        self._refilled: dict[str, int] = {}
        """signal_id -> sequence number (the first, for an id refilled twice) of the refilled signals."""
        self._refill_lanes: list[int] = []
        """The lane of each refilled signal, by sequence number - 1."""
        self._lane_first: dict[int, int] = {}
        """lane -> sequence number of its first refilled signal."""
        self._cut_lanes: frozenset[int] = frozenset()
        """Lanes whose signals older than the refilled ones were left out."""
        self.recorded = 0
        self.disconnected = 0
        """Clients cut off because their queue was full."""

    @property
    def clients(self) -> int:
        return len(self._clients)

    def record(self, route: str, signals: Iterable[tuple[Signal, int, int]]) -> None:
        """Committed signals of one route: ``(signal, candle open ms, interval ms)`` in publish order."""
        now = self.clock_ms()
        by_symbol = self._by_symbol
        touched: set[Subscription] = set()
        first = self.recorded + 1
        frames: list[bytes] = []
        for signal, ts_ms, interval_ms in signals:
            self.recorded += 1
            frame = signal_frame(signal)
            frames.append(frame)
            stored = StoredSignal(
                self.recorded,
                route,
                ts_ms,
                interval_ms,
                now,
                frame,
                signal.signal_id,
                signal.symbol,
                signal.interval,
                signal.action,
                signal.confidence,
            )
            self._keep(stored)
            self._remember(stored)
            for client in by_symbol.get(signal.symbol, ()):
                if client.overflowed:
                    continue
                if len(client._queue) >= client.limit:
                    client.overflowed = True
                    client._queue.clear()
                else:
                    client._queue.append(frame)
                touched.add(client)
        if self._every_symbol and frames:
            self._batches.append((first, self.recorded, b"".join(frames)))
        for client in self._every_symbol:
            if self.recorded - client._cursor > client.limit:
                client.overflowed = True
        for client in (*self._every_symbol, *touched):
            client._wake()
        if any(c.overflowed for c in self._clients):
            for client in [c for c in self._clients if c.overflowed]:
                self.disconnected += 1
                self.unsubscribe(client)
        self._drop_taken_batches()

    def _keep(self, stored: StoredSignal) -> None:
        """Into the ring, and its id into the index of the ring's ids."""
        ring, seq_of = self._ring, self._seq_of
        if len(ring) == ring.maxlen:
            evicted = ring[0]
            if seq_of.get(evicted.signal_id) == evicted.seq:
                del seq_of[evicted.signal_id]
        ring.append(stored)
        seq_of[stored.signal_id] = stored.seq

    def _drop_taken_batches(self) -> None:
        """Forget the joined batches every client of every symbol has taken (all of them, without such clients)."""
        batches = self._batches
        oldest = min((c._cursor for c in self._every_symbol), default=self.recorded)
        while batches and batches[0][1] <= oldest:
            batches.popleft()

    def _frames_after(self, cursor: int) -> bytes:
        """The frames of the signals recorded after sequence number ``cursor``: the joined batches that
        are wholly newer, the ring's own frames for the rest (a resumed client's first take)."""
        parts: list[bytes] = []
        upto = self.recorded
        for first, last, joined in reversed(self._batches):
            if first <= cursor or last != upto:
                break
            parts.append(joined)
            upto = first - 1
        if upto > cursor:
            older = itertools.islice(reversed(self._ring), self.recorded - upto, self.recorded - cursor)
            parts.extend(stored.frame for stored in older)
        parts.reverse()
        return b"".join(parts)

    def _remember(self, stored: StoredSignal) -> None:
        key = (stored.symbol, stored.interval)
        record = self._keys.get(key)
        if record is None:
            record = self._keys[key] = _KeyRecord(stored)
            while len(self._keys) > self._key_limit:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
            record.latest = stored
        record.actions[stored.action] = record.actions.get(stored.action, 0) + 1

    def latest(self, symbol: str | None = None) -> list[StoredSignal]:
        """The latest signal of each (symbol, interval), of one symbol when given, sorted by key."""
        found = [r.latest for key, r in self._keys.items() if symbol is None or key[0] == symbol]
        return sorted(found, key=lambda s: (s.symbol, s.interval))

    def actions(self, symbol: str) -> dict[str, dict[str, int]]:
        """Signals recorded per interval and action for a symbol (while its key is remembered)."""
        return {key[1]: dict(r.actions) for key, r in self._keys.items() if key[0] == symbol}

    def top(
        self,
        *,
        limit: int,
        now_ms: int,
        max_age_intervals: float,
        actions: Sequence[str] = (),
        interval: str | None = None,
        route: str | None = None,
        min_confidence: float = 0.0,
    ) -> list[RankedSignal]:
        """Of each key's latest signal, the ``limit`` with the highest confidence that pass the filters;
        a signal whose candle closed more than ``max_age_intervals`` intervals ago is stale and left out."""
        ranked: list[RankedSignal] = []
        for record in self._keys.values():
            stored = record.latest
            if actions and stored.action not in actions:
                continue
            if interval is not None and stored.interval != interval:
                continue
            if route is not None and stored.route != route:
                continue
            if stored.confidence < min_confidence:
                continue
            age = now_ms - (stored.ts_ms + stored.interval_ms)
            if age > max_age_intervals * stored.interval_ms:
                continue
            ranked.append(RankedSignal(stored, age))
        ranked.sort(key=lambda r: (-r.stored.confidence, -r.stored.ts_ms, r.stored.symbol))
        return ranked[:limit]

    def after(self, signal_id: str) -> list[StoredSignal] | None:
        """The ring's signals recorded after ``signal_id``; ``None`` when that id is not in the ring."""
        seq = self._seq_of.get(signal_id)
        if seq is None:
            return None
        first = self._ring[0].seq
        return list(self._ring)[seq - first + 1 :]

    def mark_refilled(self, lanes: Sequence[int], cut: Iterable[int]) -> None:
        """Marks every signal recorded so far as refilled from history (the stream server's start), not
        delivered live by this process. ``lanes``: each one's lane (topic partition) in record order; every
        earlier delivery kept each lane in this order but interleaved the lanes in an order unknown here.
        ``cut``: the lanes whose older signals were left out."""
        if not len(lanes) == len(self._ring) == self.recorded:
            raise ValueError("mark the refilled signals before recording any other, and at most a ring of them")
        self._refill_lanes = list(lanes)
        for stored, lane in zip(self._ring, lanes, strict=True):
            self._refilled.setdefault(stored.signal_id, stored.seq)
            self._lane_first.setdefault(lane, stored.seq)
        self._cut_lanes = frozenset(cut)

    def _after_refilled(self, seq: int, subscription: Subscription) -> list[StoredSignal] | None:
        """For a last id refilled at ``seq``: the ring after it, with ``RESTARTED_FRAME`` and the other lanes'
        refilled signals before it going first (they may have followed it in an earlier delivery; without
        other lanes: exact resumption); the whole ring after ``RESTARTED_UNKNOWN_FRAME`` when another lane's
        older signals are not all in the ring; ``None`` when the id left the ring."""
        ring = list(self._ring)
        first = ring[0].seq
        if seq < first:
            return None
        lane = self._refill_lanes[seq - 1]
        lanes = self._lane_first.keys() | self._cut_lanes
        if any(other in self._cut_lanes or self._lane_first[other] < first for other in lanes - {lane}):
            subscription._preamble = [RESTARTED_UNKNOWN_FRAME]
            return ring
        refilled = ring[: len(self._refill_lanes) - first + 1]
        others = [s for s in refilled if self._refill_lanes[s.seq - 1] != lane and subscription.wants(s)]
        if others:  # after it in the ring or not, the client may have got them before it
            subscription._preamble = [RESTARTED_FRAME, *(s.frame for s in others if s.seq < seq)]
        return ring[seq - first + 1 :]

    def subscribe(
        self, symbols: frozenset[str] | None, last_id: str | None, wake: Callable[[], None]
    ) -> tuple[Subscription, bool]:
        """A new stream client, its queue holding what it missed after ``last_id``; also whether
        ``last_id`` was found (when it was not, the client gets the whole ring; a refilled one may put a gap
        event and resent signals first, ``_after_refilled``). Raises ``TooManyClientsError`` when every slot
        is taken."""
        if len(self._clients) >= self.max_clients:
            raise TooManyClientsError(f"{self.max_clients} stream clients already connected")
        # A client of every symbol reads the ring: it must not fall further behind than the ring holds.
        limit = self.client_buffer if symbols is not None else min(self.client_buffer, self._ring.maxlen or 1)
        subscription = Subscription(self, symbols, limit, wake)
        resumed = True
        if last_id is not None:
            refilled = self._refilled.get(last_id)
            missed = self.after(last_id) if refilled is None else self._after_refilled(refilled, subscription)
            if missed is None:
                resumed = False
                missed = list(self._ring)
            if symbols is None:
                subscription._cursor = self.recorded - len(missed)
            else:
                subscription._queue.extend(s.frame for s in missed if subscription.wants(s))
        self._clients.append(subscription)
        if symbols is None:
            self._every_symbol.append(subscription)
        else:
            for symbol in symbols:
                self._by_symbol.setdefault(symbol, []).append(subscription)
        return subscription, resumed

    def close_clients(self) -> None:
        """End every stream (the daemon is stopping); no client can subscribe afterwards."""
        for client in list(self._clients):
            client._close()
            self.unsubscribe(client)
        self.max_clients = 0

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription not in self._clients:
            return
        self._clients.remove(subscription)
        if subscription.symbols is None:
            self._every_symbol.remove(subscription)
            self._drop_taken_batches()
            return
        for symbol in subscription.symbols:
            listeners = self._by_symbol[symbol]
            listeners.remove(subscription)
            if not listeners:
                del self._by_symbol[symbol]
