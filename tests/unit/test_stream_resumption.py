"""Resuming across a restart of the stream server: a client whose last id the restarted server only refilled
from the topic never misses a signal silently."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.signal import Signal
from daemon.signal_feed import RecordTime, TopicRecord, record_batch, refill
from daemon.signal_store import SignalStore
from daemon.sse import GAP_FRAME, RESTARTED_FRAME, RESTARTED_UNKNOWN_FRAME, signal_frame
from tests.support.signal_builder import START_MS, hourly_signal


def signal(name: str, symbol: str = "AAA") -> Signal:
    return hourly_signal(name, symbol=symbol)


def record(name: str, partition: int, offset: int, at_ms: int, symbol: str = "AAA") -> TopicRecord:
    return TopicRecord(partition, offset, at_ms, msgspec.json.encode(signal(name, symbol)))


def new_store(ring: int = 100) -> tuple[SignalStore, RecordTime]:
    clock = RecordTime()
    return SignalStore(ring=ring, client_buffer=100, max_clients=8, keys=100, clock_ms=clock), clock


def restarted(tail: list[TopicRecord], ring: int = 100, cut: frozenset[int] = frozenset()) -> SignalStore:
    """A stream server started on a topic whose partitions' tails are ``tail`` (those in ``cut`` read from after
    their beginning): its ring refilled from them."""
    s, clock = new_store(ring)
    partitions = {r.partition for r in tail} | cut
    starts = {p: int(p in cut) for p in partitions}
    refill(s, clock, tail=tail, starts=starts, beginning=dict.fromkeys(partitions, 0), ring=ring)
    return s


def frame_ids(frames: bytes) -> list[str]:
    return [block[4:].decode() for block in frames.split(b"\n") if block.startswith(b"id: ")]


def test_a_signal_fetched_after_the_last_id_but_older_is_not_missed_after_a_restart() -> None:
    """S (partition 2, older record time) reached the client's stream after X (partition 1) because partition 2
    was fetched later; after a restart the refilled ring orders S before X, and resuming after X still sends S."""
    x = record("X", partition=1, offset=0, at_ms=START_MS + 200)
    s = record("S", partition=2, offset=0, at_ms=START_MS + 100, symbol="BBB")
    before, clock = new_store()
    client, _ = before.subscribe(None, None, lambda: None)
    record_batch(before, clock, [x])
    assert frame_ids(client.take()) == ["X"]  # the client's last id is X; it disconnects
    follower, _ = before.subscribe(None, "X", lambda: None)
    record_batch(before, clock, [s])
    assert frame_ids(follower.take()) == ["S"]  # the old process delivered S after X

    after = restarted([x, s])
    resumed, found = after.subscribe(None, "X", lambda: None)
    assert found and resumed.take() == RESTARTED_FRAME + signal_frame(signal("S", "BBB"))


def test_a_refilled_id_resumes_with_its_own_partitions_later_signals_and_every_other_partitions() -> None:
    """After the gap event come the other partitions' refilled signals before the last id, then the ring after
    it, in ring order; the last id's own partition's earlier signals are not resent; a client of some symbols
    gets only its own."""
    tail = [
        record("A1", 1, 0, START_MS + 10),
        record("B1", 2, 0, START_MS + 20, "BBB"),
        record("A2", 1, 1, START_MS + 30),
        record("B2", 2, 1, START_MS + 40, "BBB"),
        record("A3", 1, 2, START_MS + 50),
    ]
    after = restarted(tail)
    every, _ = after.subscribe(None, "A2", lambda: None)
    only_a, _ = after.subscribe(frozenset({"AAA"}), "A2", lambda: None)
    only_b, _ = after.subscribe(frozenset({"BBB"}), "A2", lambda: None)
    taken = every.take()
    assert taken.startswith(RESTARTED_FRAME) and frame_ids(taken) == ["B1", "B2", "A3"]
    assert only_a.take() == signal_frame(signal("A3"))
    assert only_b.take() == RESTARTED_FRAME + signal_frame(signal("B1", "BBB")) + signal_frame(signal("B2", "BBB"))


def test_ids_delivered_live_and_a_single_partitions_ids_resume_exactly() -> None:
    """An id this process delivered live, or any id of a one-partition topic, resumes after it with no gap
    event and no signal twice."""
    after = restarted([record("A1", 1, 0, START_MS + 10), record("B1", 2, 0, START_MS + 20, "BBB")])
    clock = RecordTime()
    record_batch(after, clock, [record("A2", 1, 1, START_MS + 30), record("B2", 2, 1, START_MS + 40, "BBB")])
    record_batch(after, clock, [record("A3", 1, 2, START_MS + 50)])
    live, _ = after.subscribe(None, "B2", lambda: None)
    assert live.take() == signal_frame(signal("A3"))
    single = restarted([record(f"A{n}", 1, n, START_MS + n) for n in range(4)])
    resumed, found = single.subscribe(None, "A1", lambda: None)
    assert found and frame_ids(resumed.take()) == ["A2", "A3"]


def test_when_another_partitions_older_signals_are_not_in_the_ring_the_gap_says_they_may_be_missing() -> None:
    """A partition cut at the refill (older records not read, or not kept) or a refilled signal evicted since:
    the gap event says older signals may be missing and the whole ring follows; an evicted last id gets the
    ordinary gap."""
    tail = [record("A1", 1, 0, START_MS + 10), record("B1", 2, 5, START_MS + 20, "BBB")]
    cut = restarted(tail, cut=frozenset({2}))
    resumed, found = cut.subscribe(None, "A1", lambda: None)
    assert found and resumed.take() == RESTARTED_UNKNOWN_FRAME + b"".join(
        signal_frame(signal(n, sym)) for n, sym in (("A1", "AAA"), ("B1", "BBB"))
    )
    own_cut = restarted(tail, cut=frozenset({1}))
    complete, _ = own_cut.subscribe(None, "A1", lambda: None)  # its own partition's older signals came before it
    assert complete.take() == RESTARTED_FRAME + signal_frame(signal("B1", "BBB"))
    not_kept = restarted([record("B0", 2, 0, START_MS + 5, "BBB"), *tail], ring=2)
    assert not_kept.subscribe(None, "A1", lambda: None)[0].take().startswith(RESTARTED_UNKNOWN_FRAME)

    evicting = restarted([record("A1", 1, 0, START_MS + 10), record("B1", 2, 0, START_MS + 20, "BBB")], ring=2)
    record_batch(evicting, RecordTime(), [record("A2", 1, 1, START_MS + 30)])
    evicted_other, found = evicting.subscribe(None, "B1", lambda: None)  # A1 (partition 1) left the ring
    whole_ring = signal_frame(signal("B1", "BBB")) + signal_frame(signal("A2"))
    assert found and evicted_other.take() == RESTARTED_UNKNOWN_FRAME + whole_ring
    gone, found = evicting.subscribe(None, "A1", lambda: None)
    taken = gone.take()
    assert not found and frame_ids(taken) == ["B1", "A2"] and GAP_FRAME not in taken  # the response sends it


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_client_resuming_after_a_restart_misses_nothing_without_a_gap_event_saying_so(data: st.DataObject) -> None:
    """Whatever the partitions, their record times and the order an earlier process fetched them in: a client
    resuming after a restart gets every signal that process delivered after its last id, or first a gap event
    that says some may be missing; it gets a signal twice only after a gap event."""
    times = data.draw(st.lists(st.lists(st.integers(0, 40), max_size=6), min_size=1, max_size=3), label="times")
    topic = [[record(f"p{p}o{o}", p, o, START_MS + at) for o, at in enumerate(ts)] for p, ts in enumerate(times)]
    read = [data.draw(st.integers(0, len(lane)), label="refilled by the earlier process") for lane in topic]
    before, clock = new_store()
    zeros = dict.fromkeys(range(len(topic)), 0)
    refilled = [r for p, lane in enumerate(topic) for r in lane[: read[p]]]
    refill(before, clock, tail=refilled, starts=zeros, beginning=zeros, ring=100)
    client, _ = before.subscribe(None, None, lambda: None)
    seen: list[str] = []
    delivered_after: list[str] = []
    disconnect = data.draw(st.integers(1, 6), label="polls before the client disconnects")
    for poll in range(1, 100):
        if all(read[p] == len(lane) for p, lane in enumerate(topic)):
            break
        polled = []
        for p, lane in enumerate(topic):
            count = data.draw(st.integers(0, len(lane) - read[p]), label=f"poll {poll}, partition {p}")
            polled += lane[read[p] : read[p] + count]
            read[p] += count
        record_batch(before, clock, polled)
        (seen if poll <= disconnect else delivered_after).extend(frame_ids(client.take()))
    if not seen:
        return
    ring = data.draw(st.integers(1, 12), label="ring")
    after = restarted([r for lane in topic for r in lane], ring)
    resumed, found = after.subscribe(None, seen[-1], lambda: None)
    taken = resumed.take()
    gap = not found or taken.startswith((RESTARTED_FRAME, RESTARTED_UNKNOWN_FRAME))
    if found and not taken.startswith(RESTARTED_UNKNOWN_FRAME):
        assert set(delivered_after) <= set(frame_ids(taken))
    if set(frame_ids(taken)) & set(seen):
        assert gap
