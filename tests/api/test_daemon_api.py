"""The API of the real daemon on in-memory transports: only committed signals are shown, and scoring a
window answers exactly the signal the daemon (and the backtest) produced for that window's last candle."""

from __future__ import annotations

from pathlib import Path

import httpx

from daemon.memory_transport import MemoryBroker
from daemon.signal import Signal
from tests.flow.harness import (
    all_committed,
    candle_table,
    expected_signals,
    feed,
    flow_settings,
    running_daemon,
    without_produce_time,
)


def body_of(signal: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in signal.items() if k != "produced_at"}


async def test_only_committed_signals_are_shown_and_scoring_matches_the_daemon(test_artifact: Path) -> None:
    """While a batch waits at the sink the API shows nothing; once committed, latest is each symbol's newest
    committed signal, and a window scored through the API (alone or in a batch) equals the daemon's signal."""
    settings = flow_settings(test_artifact)
    table = candle_table()
    broker = MemoryBroker(partitions=2)
    feed(broker, table)
    async with running_daemon(settings, broker, hold=True) as running:
        await running.sink.holding.wait()
        base = f"http://127.0.0.1:{running.daemon.http.port}/api/v1"
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            held = (await http.get("/signals/latest")).json()
            running.sink.release()
            await all_committed(broker)
            latest = (await http.get("/signals/latest")).json()

            committed: dict[str, Signal] = {}
            for signal in broker.signals:
                committed[signal.symbol] = signal
            slices = table.symbol_slices()
            memory = running.daemon._core.builder.strategy.memory
            length = running.daemon.model.manifest.window + memory - 1 if running.daemon.model else 0
            windows = []
            for symbol in sorted(slices)[:3]:
                rows = [m for s, m in table.messages("1d") if s == symbol][-length:]
                candles = [{k: getattr(m, k) for k in ("ts", "open", "high", "low", "close", "volume")} for m in rows]
                windows.append({"symbol": symbol, "interval": "1d", "candles": candles})
            single = (await http.post("/score", json=windows[0])).json()
            batch = (await http.post("/score/batch", json={"windows": windows})).json()
            stats = (await http.get(f"/symbols/{windows[0]['symbol']}/stats")).json()
        await running.stopped()

    assert held == []
    assert {e["signal"]["symbol"]: e["signal"]["signal_id"] for e in latest} == {
        s: committed[s].signal_id for s in committed
    }
    backtested = {(s.symbol, s.ts): s for s in await expected_signals(settings, table)}
    assert without_produce_time(broker.signals) == without_produce_time(list(backtested.values()))
    for window, answer in zip(windows, batch["answers"], strict=True):
        daemon_signal = committed[str(window["symbol"])]
        expected = body_of({n: getattr(daemon_signal, n) for n in daemon_signal.__struct_fields__})
        assert body_of(answer["signal"]) == expected
        assert backtested[(daemon_signal.symbol, daemon_signal.ts)].signal_id == daemon_signal.signal_id
    assert body_of(single["signal"]) == body_of(batch["answers"][0]["signal"])
    route = stats["routes"][0]
    assert route["model_version"] == committed[str(windows[0]["symbol"])].model_version
    assert sum(route["signals"].values()) == sum(1 for s in broker.signals if s.symbol == windows[0]["symbol"])
