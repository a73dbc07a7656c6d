"""The stream fan-out tool on a real socket: every client gets every signal, none is cut off."""

from __future__ import annotations

from candlecast.bench.fanout import measure


async def test_fanout_delivers_every_signal_to_every_client_and_measures_both_cases() -> None:
    """A few clients of every symbol receive each synthetic signal once; both CPU figures come out."""
    figures = await measure(clients=4, rate=400, batch=20, seconds=0.5, profile=False)
    counts = figures.counts
    assert counts.published == 200
    assert counts.received == [200] * 4 and counts.closed == 0
    assert figures.cut_off == 0
    assert figures.alone_us > 0 and figures.fanned_us > 0
