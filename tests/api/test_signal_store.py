"""The signal store: latest per key, top signals, resumption ring and bounded stream queues."""

from __future__ import annotations

import gc
from collections import OrderedDict
from collections.abc import Callable

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.signal import Signal
from daemon.signal_store import SignalStore, StoredSignal, TooManyClientsError

HOUR = 3_600_000


def make_signal(n: int, symbol: str = "AAA", action: str = "BUY", confidence: float = 0.6) -> Signal:
    return Signal(
        signal_id=f"id-{n}",
        symbol=symbol,
        interval="1h",
        ts=f"t{n}",
        action=action,  # type: ignore[arg-type]
        confidence=confidence,
        probability=confidence,
        horizon=1,
        probabilities={"1": confidence},
        quantiles={"1": [0.0]},
        quantile_levels=[0.5],
        disagreement=0.0,
        model_version="1",
        strategy="s",
        produced_at="p",
    )


def store(**kwargs: int) -> SignalStore:
    options = {"ring": 100, "client_buffer": 10, "max_clients": 4, "keys": 100} | kwargs
    return SignalStore(clock_ms=lambda: 100 * HOUR, **options)


def record(s: SignalStore, *signals: Signal, ts: int = 99 * HOUR) -> None:
    s.record("default", [(signal, ts, HOUR) for signal in signals])


def ids(items: list[StoredSignal]) -> list[str]:
    return [i.signal.signal_id for i in items]


def frame_ids(frames: bytes) -> list[str]:
    """The ids of the Server-Sent Events a client's take handed over, in order."""
    return [line.removeprefix(b"id: ").decode() for line in frames.split(b"\n") if line.startswith(b"id: ")]


def test_latest_is_each_keys_newest_signal_and_actions_are_counted() -> None:
    """The latest signal per (symbol, interval) replaces the previous one; every signal is counted by action."""
    s = store()
    record(s, make_signal(1, "AAA", "BUY"), make_signal(2, "BBB", "SELL"), make_signal(3, "AAA", "HOLD"))
    assert ids(s.latest()) == ["id-3", "id-2"]
    assert ids(s.latest("BBB")) == ["id-2"]
    assert s.actions("AAA") == {"1h": {"BUY": 1, "HOLD": 1}}


def test_the_least_recently_updated_key_is_forgotten_beyond_the_bound() -> None:
    """At most ``keys`` keys are remembered; the least recently updated goes first."""
    s = store(keys=2)
    record(s, make_signal(1, "AAA"), make_signal(2, "BBB"), make_signal(3, "AAA"), make_signal(4, "CCC"))
    assert [x.signal.symbol for x in s.latest()] == ["AAA", "CCC"]


def test_top_ranks_by_confidence_and_excludes_stale_and_filtered_signals() -> None:
    """Top is ordered by confidence; stale (older than the age bound) and filtered-out signals are left out."""
    s = store()
    record(s, make_signal(1, "FRESH", "BUY", 0.7), make_signal(2, "SELLER", "SELL", 0.9), ts=98 * HOUR)
    record(s, make_signal(3, "OLD", "BUY", 0.95), ts=90 * HOUR)

    def symbols(**filters: object) -> list[str]:
        options: dict[str, object] = {"limit": 10, "now_ms": 100 * HOUR, "max_age_intervals": 2} | filters
        return [r.stored.signal.symbol for r in s.top(**options)]  # type: ignore[arg-type]

    ranked = s.top(limit=10, now_ms=100 * HOUR, max_age_intervals=2)
    assert [r.stored.signal.symbol for r in ranked] == ["SELLER", "FRESH"]
    assert [r.age_ms for r in ranked] == [HOUR, HOUR]
    assert symbols(max_age_intervals=10) == ["OLD", "SELLER", "FRESH"]
    assert symbols(actions=["BUY"]) == ["FRESH"]
    assert s.top(limit=10, now_ms=100 * HOUR, max_age_intervals=2, min_confidence=0.95) == []
    assert s.top(limit=10, now_ms=100 * HOUR, max_age_intervals=2, route="other") == []
    assert len(s.top(limit=1, now_ms=100 * HOUR, max_age_intervals=2)) == 1


def tracked_after(fill: Callable[[], object]) -> list[object]:
    """The objects the collector tracks that ``fill`` made (everything alive before is frozen meanwhile)."""
    gc.collect()
    gc.freeze()
    try:
        fill()
        gc.collect()
        return gc.get_objects()
    finally:
        gc.unfreeze()


def test_stored_signals_add_nothing_per_key_for_the_collector_to_walk() -> None:
    """Recording a thousand keys' signals into a store made before the heap was frozen (as the daemon's is)
    leaves at most a few objects for the collector, none holding an entry per key: a full collection's pause
    does not grow with the symbols."""
    s = store(ring=1_000, keys=1_000)
    made = tracked_after(
        lambda: s.record("default", ((make_signal(n, f"S{n}"), 99 * HOUR, HOUR) for n in range(1_000)))
    )
    assert len(s.latest()) == 1_000
    assert len(made) <= 10
    assert sum(len(gc.get_referents(o)) for o in made) <= 200


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABCDE"), st.sampled_from(["1h", "1d"])), max_size=40), st.integers(1, 6))
def test_keys_are_forgotten_least_recently_updated_first(updates: list[tuple[str, str]], keys: int) -> None:
    """The remembered keys, and the order latest, actions and top meet them in, are an LRU cache's."""
    s = store(keys=keys)
    reference: OrderedDict[tuple[str, str], int] = OrderedDict()
    for n, (symbol, interval) in enumerate(updates):
        record(s, msgspec.structs.replace(make_signal(n, symbol), interval=interval))
        reference[(symbol, interval)] = reference.pop((symbol, interval), 0) + 1
        while len(reference) > keys:
            reference.popitem(last=False)
    assert [(x.signal.symbol, x.signal.interval) for x in s.latest()] == sorted(reference)
    ranked = s.top(limit=99, now_ms=100 * HOUR, max_age_intervals=1e9)
    # Equal confidence and candle: by symbol, then in update order (the sort is stable).
    assert [(r.stored.signal.symbol, r.stored.signal.interval) for r in ranked] == sorted(reference, key=lambda k: k[0])
    for symbol in "ABCDE":
        expected = {i: {"BUY": c} for (sym, i), c in reference.items() if sym == symbol}
        assert list(s.actions(symbol).items()) == list(expected.items())


@settings(max_examples=50, deadline=None)
@given(
    st.floats(0.0, 1.0),
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=5),
    st.text(min_size=1, max_size=8),
)
def test_a_stored_signal_is_the_recorded_one_field_for_field(
    confidence: float, quantiles: list[float], symbol: str
) -> None:
    """What the store hands back (decoded from the stored frame) equals the signal recorded, floats bit for bit."""
    s = store()
    signal = msgspec.structs.replace(
        make_signal(1, symbol, "SELL", confidence), quantiles={"1": quantiles, "24": quantiles[::-1]}
    )
    record(s, signal)
    (stored,) = s.latest()
    assert stored.signal == signal
    assert (stored.symbol, stored.action, stored.confidence) == (symbol, "SELL", confidence)


def test_a_subscriber_resumes_after_the_last_id_it_saw() -> None:
    """Subscribing with a last id queues exactly the later signals it wants; an unknown id gets the whole ring."""
    s = store(ring=3)
    record(s, *(make_signal(n, "AAA" if n % 2 else "BBB") for n in range(1, 6)))
    resumed, found = s.subscribe(None, "id-3", lambda: None)
    assert found and frame_ids(resumed.take()) == ["id-4", "id-5"]
    filtered, _ = s.subscribe(frozenset({"AAA"}), "id-3", lambda: None)
    assert frame_ids(filtered.take()) == ["id-5"]
    lost, found = s.subscribe(None, "id-1", lambda: None)
    assert not found and frame_ids(lost.take()) == ["id-3", "id-4", "id-5"]


def test_a_client_whose_queue_is_full_is_cut_off_and_the_others_are_not() -> None:
    """A client holding ``client_buffer`` undelivered signals is cut off by the next one; a reading client keeps up."""
    s = store(client_buffer=2)
    woken: list[str] = []
    slow, _ = s.subscribe(None, None, lambda: woken.append("slow"))
    fast, _ = s.subscribe(None, None, lambda: woken.append("fast"))
    delivered: list[str] = []
    for n in range(1, 4):
        record(s, make_signal(n))
        delivered += frame_ids(fast.take())
    assert slow.overflowed and not fast.overflowed
    assert delivered == ["id-1", "id-2", "id-3"]
    assert s.clients == 1 and s.disconnected == 1
    assert woken.count("slow") == 3


def test_clients_beyond_the_limit_are_refused_and_closing_ends_every_stream() -> None:
    """Subscribing past ``max_clients`` raises; close_clients marks every stream closed and refuses new ones."""
    s = store(max_clients=1)
    first, _ = s.subscribe(None, None, lambda: None)
    try:
        s.subscribe(None, None, lambda: None)
    except TooManyClientsError:
        pass
    else:
        raise AssertionError("a second client was accepted")
    s.close_clients()
    assert first.closed and s.clients == 0
    try:
        s.subscribe(None, None, lambda: None)
    except TooManyClientsError:
        pass
    else:
        raise AssertionError("a client was accepted after closing")


operations = st.lists(
    st.one_of(
        st.tuples(st.just("record"), st.lists(st.sampled_from(["AAA", "BBB", "CCC"]), min_size=1, max_size=5)),
        st.tuples(st.just("take"), st.integers(0, 2)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(operations, st.integers(1, 6), st.integers(1, 8))
def test_clients_get_their_signals_in_order_or_are_cut_off(
    ops: list[tuple[str, object]], buffer: int, ring: int
) -> None:
    """Each client either receives exactly the signals it wants, in order, or is cut off exactly when it had
    ``client_buffer`` undelivered signals (at most the ring for a client of every symbol); the ring holds the
    newest ``ring`` and resumes after any of them."""
    s = store(client_buffer=buffer, ring=ring)
    filters = [None, frozenset({"AAA"}), frozenset({"BBB", "CCC"})]
    clients = [s.subscribe(f, None, lambda: None)[0] for f in filters]
    received: list[list[str]] = [[] for _ in clients]
    expected: list[list[str]] = [[] for _ in clients]
    pending = [0 for _ in clients]
    cut = [False for _ in clients]
    everything: list[str] = []
    for op, arg in ops:
        if op == "record":
            assert isinstance(arg, list)
            batch = [make_signal(len(everything) + i, symbol) for i, symbol in enumerate(arg)]
            record(s, *batch)
            for signal in batch:
                everything.append(signal.signal_id)
                for c, wanted in enumerate(filters):
                    if cut[c] or (wanted is not None and signal.symbol not in wanted):
                        continue
                    # A client of every symbol reads the ring: it may lag by the ring at most.
                    limit = buffer if wanted is not None else min(buffer, ring)
                    if pending[c] >= limit:
                        cut[c] = True
                    else:
                        pending[c] += 1
                        expected[c].append(signal.signal_id)
        else:
            assert isinstance(arg, int)
            received[arg] += frame_ids(clients[arg].take())
            pending[arg] = 0
    for c, client in enumerate(clients):
        assert client.overflowed == cut[c]
        if not cut[c]:
            assert received[c] + frame_ids(client.take()) == expected[c]
    kept = everything[-ring:]
    for position, signal_id in enumerate(kept):
        after = s.after(signal_id)
        assert after is not None and ids(after) == kept[position + 1 :]
    assert all(s.after(i) is None for i in everything[: -ring or None] if i not in kept)
