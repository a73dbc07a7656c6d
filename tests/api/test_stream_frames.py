"""The stream's fan-out: each signal's frame is encoded once, a committed batch is handed over as one
write, and filtering and resumption stay exact across batch boundaries."""

from __future__ import annotations

import asyncio

import pytest

from daemon import signal_store
from daemon.signal import Signal
from daemon.sse import signal_frame
from tests.api.support import harness
from tests.api.test_signal_store import make_signal, record, store
from tests.api.test_stream import GUARD_S, serving


def frames(*signals: Signal) -> bytes:
    return b"".join(signal_frame(s) for s in signals)


def test_each_signal_is_encoded_once_whatever_the_number_of_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recording a batch encodes each signal's frame once, however many clients of every or some symbols take it."""
    encoded: list[str] = []

    def counting(signal: Signal) -> bytes:
        encoded.append(signal.signal_id)
        return signal_frame(signal)

    monkeypatch.setattr(signal_store, "signal_frame", counting)
    s = store(max_clients=10)
    everyone = [s.subscribe(None, None, lambda: None)[0] for _ in range(5)]
    some = [s.subscribe(frozenset({"AAA"}), None, lambda: None)[0] for _ in range(3)]
    batch = [make_signal(n, "AAA" if n % 2 else "BBB") for n in range(6)]
    record(s, *batch)
    assert all(c.take() == frames(*batch) for c in everyone)
    assert all(c.take() == frames(*batch[1::2]) for c in some)
    assert encoded == [x.signal_id for x in batch]


def test_a_client_that_keeps_up_gets_each_batch_as_one_write_and_only_its_symbols() -> None:
    """Every batch recorded since the last take comes out as one block of frames, in order; a filtered client's
    block holds exactly its symbols' frames."""
    s = store()
    everyone, _ = s.subscribe(None, None, lambda: None)
    filtered, _ = s.subscribe(frozenset({"AAA", "CCC"}), None, lambda: None)
    first = [make_signal(1, "AAA"), make_signal(2, "BBB")]
    second = [make_signal(3, "CCC"), make_signal(4, "BBB"), make_signal(5, "AAA")]
    record(s, *first)
    record(s, *second)
    assert everyone.take() == frames(*first, *second)
    assert filtered.take() == frames(first[0], second[0], second[2])
    assert everyone.take() == filtered.take() == b""
    third = [make_signal(6, "BBB")]
    record(s, *third)
    assert everyone.take() == frames(*third)
    assert filtered.take() == b""


def test_resumption_is_exact_from_inside_a_batch_and_across_batch_boundaries() -> None:
    """A client resuming after an id in the middle of a batch gets the rest of that batch, every later batch, then
    live batches, each signal once; so does one resuming after a batch's last id."""
    s = store(max_clients=10, client_buffer=100)
    watcher, _ = s.subscribe(None, None, lambda: None)  # keeps joined batches alive, as a live client does
    batches = [[make_signal(10 * b + n, "AAA" if n % 2 else "BBB") for n in range(3)] for b in range(3)]
    for batch in batches:
        record(s, *batch)
    flat = [x for batch in batches for x in batch]
    for position, last in enumerate(list(flat)):
        client, found = s.subscribe(None, last.signal_id, lambda: None)
        filtered, _ = s.subscribe(frozenset({"AAA"}), last.signal_id, lambda: None)
        missed = flat[flat.index(last) + 1 :]
        assert found
        assert client.take() == frames(*missed)
        assert filtered.take() == frames(*(x for x in missed if x.symbol == "AAA"))
        live = [make_signal(100 + position, "AAA")]
        record(s, *live)
        assert client.take() == filtered.take() == frames(*live)
        flat += live
        s.unsubscribe(client)
        s.unsubscribe(filtered)
    assert watcher.take() == frames(*flat)


def test_joined_batches_are_kept_only_until_every_client_took_them() -> None:
    """The store's joined batches are forgotten once every client of every symbol has taken them."""
    s = store()
    reader, _ = s.subscribe(None, None, lambda: None)
    lagging, _ = s.subscribe(None, None, lambda: None)
    for n in range(3):
        record(s, make_signal(n))
        reader.take()
    assert lagging.take() == frames(*(make_signal(n) for n in range(3)))
    record(s, make_signal(3))
    reader.take()
    lagging.take()
    s.unsubscribe(lagging)
    assert len(s._batches) == 0


async def test_a_committed_batch_is_written_to_the_socket_as_one_chunk() -> None:
    """Over a real socket, a batch committed at once reaches the client as one HTTP chunk holding all its events."""
    h = harness()
    async with serving(h) as base:
        reader, writer = await asyncio.open_connection(*base.removeprefix("http://").split(":"))
        writer.write(b"GET /api/v1/stream HTTP/1.1\r\nHost: candlecast\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(GUARD_S):
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"transfer-encoding: chunked" in head.lower()
            batch = [make_signal(n, f"S{n}") for n in range(8)]  # within the harness's buffer of 10
            h.store.record("default", [(x, 0, 3_600_000) for x in batch])
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size)
        writer.close()
    assert chunk == frames(*batch)


def test_store_frames_follow_the_documented_event_format() -> None:
    """A frame is ``id:``, ``event: signal`` and one ``data:`` line of the signal's JSON, then a blank line."""
    x = make_signal(7, "AAA")
    lines = signal_frame(x).decode().split("\n")
    assert lines[:2] == ["id: id-7", "event: signal"]
    assert lines[2].startswith('data: {"signal_id":"id-7","symbol":"AAA"')
    assert lines[3:] == ["", ""]
