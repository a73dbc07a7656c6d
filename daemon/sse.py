"""Server-Sent Events frames of the live stream: pure bytes, built once per committed signal.

Each committed signal is one event: ``id:`` its signal id (what a client sends back in
``Last-Event-ID`` to resume), ``event: signal``, ``data:`` the signal's JSON as on the signals topic.
"""

from __future__ import annotations

import msgspec

from daemon.signal import Signal

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Signal)
_DATA = b"\nevent: signal\ndata: "

GAP_FRAME = b'event: gap\ndata: {"reason": "the last event id is not among the recent signals kept"}\n\n'
"""Sent first to a resumed client whose last id left the ring: the whole ring follows."""
RESTARTED_FRAME = (
    b'event: gap\ndata: {"reason": "the stream server restarted: signals after the last event id follow, '
    b'some you saw may come again (deduplicate by signal_id)"}\n\n'
)
"""Sent first to a client of the stream server resuming after an id it refilled from the topic, when the
order the client got signals in is unknown: every signal that may have followed that id follows."""
RESTARTED_UNKNOWN_FRAME = (
    b'event: gap\ndata: {"reason": "the stream server restarted and cannot tell which signals you missed: '
    b'the recent signals kept follow (deduplicate by signal_id); older ones may be missing"}\n\n'
)
"""Sent first instead when the refilled ring no longer holds every signal that may have followed that id:
the whole ring follows, as after ``GAP_FRAME``."""
KEEPALIVE_FRAME = b": keep-alive\n\n"


def signal_frame(signal: Signal) -> bytes:
    """One signal's event (JSON has no raw newline, so ``data:`` is one line)."""
    return b"".join((b"id: ", signal.signal_id.encode(), _DATA, _encoder.encode(signal), b"\n\n"))


def frame_signal(frame: bytes) -> Signal:
    """The signal of a ``signal_frame``, decoded from its ``data:`` line."""
    return _decoder.decode(frame[frame.index(_DATA) + len(_DATA) : -2])
