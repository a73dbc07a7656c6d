"""The query API of a daemon serving a streaming artifact through its step path: a window scored through
the API (each window stepped from a zero state) answers exactly the signal the daemon published for it
(stepped one candle at a time from carried state)."""

from __future__ import annotations

from pathlib import Path

import httpx

from daemon.memory_transport import MemoryBroker
from daemon.stepped_model import SteppedModel
from tests.flow.harness import all_committed, candle_table, feed, running_daemon
from tests.flow.test_streaming_daemon import stream_settings


def body_of(signal: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in signal.items() if k != "produced_at"}


async def test_scoring_a_window_answers_the_stream_daemons_signal_bit_for_bit(streaming_artifact: Path) -> None:
    """For windows ending at several candles of every symbol (several restarts of the state copies apart),
    the API's answer equals, field for field, the signal the stream daemon committed for that candle."""
    settings = stream_settings(streaming_artifact)
    table = candle_table(60)
    broker = MemoryBroker(partitions=2)
    feed(broker, table)
    async with running_daemon(settings, broker) as running:
        await all_committed(broker)
        model = running.daemon.model
        assert isinstance(model, SteppedModel)
        memory = running.daemon._core.builder.strategy.memory
        length = model.manifest.window + memory - 1
        windows = []
        for symbol in sorted(table.symbol_slices()):
            rows = [m for s, m in table.messages("1d") if s == symbol]
            for end in (len(rows), len(rows) - 5, len(rows) - 11):
                candles = [
                    {k: getattr(m, k) for k in ("ts", "open", "high", "low", "close", "volume")}
                    for m in rows[end - length : end]
                ]
                windows.append({"symbol": symbol, "interval": "1d", "candles": candles})
        base = f"http://127.0.0.1:{running.daemon.http.port}/api/v1"
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            answers = (await http.post("/score/batch", json={"windows": windows})).json()["answers"]
        await running.stopped()

    committed = {(s.symbol, s.ts): s for s in broker.signals}
    assert len(answers) == len(windows) == 18
    for answer in answers:
        signal = answer["signal"]
        published = committed[(signal["symbol"], signal["ts"])]
        assert body_of(signal) == body_of({n: getattr(published, n) for n in published.__struct_fields__})
