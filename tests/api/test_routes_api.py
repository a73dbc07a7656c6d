"""The query API of a daemon serving two routes: every route is listed with its model, committed
signals are filed under the route that made them, and scoring picks the route that claims the window."""

from __future__ import annotations

import httpx

from daemon.memory_transport import MemoryBroker
from tests.flow.harness import STRATEGY, all_committed, running_daemon
from tests.flow.test_routes import PARTITIONS, load_fake, mixed_feed, route_messages, two_routes

MEMORY = int(STRATEGY.params["memory"])


def window_of(route: str, symbol: str, length: int) -> dict[str, object]:
    """The last ``length`` candles of a symbol of a route's feed, as a scoring request's window."""
    rows = [m for s, m in route_messages()[route] if s == symbol][-length:]
    candles = [{k: getattr(m, k) for k in ("ts", "open", "high", "low", "close", "volume")} for m in rows]
    return {"symbol": symbol, "interval": rows[0].interval, "candles": candles}


async def test_routes_are_listed_and_windows_scored_by_the_route_that_claims_them() -> None:
    """``/routes`` lists both routes in match order with their models; the latest signals name their route;
    a window scored through the API goes to the route claiming it and equals the daemon's committed signal."""
    broker = MemoryBroker(partitions=PARTITIONS)
    mixed_feed(broker)
    async with running_daemon(two_routes(), broker, loader=load_fake) as running:
        await all_committed(broker)
        base = f"http://127.0.0.1:{running.daemon.http.port}/api/v1"
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            routes = (await http.get("/routes")).json()
            latest = (await http.get("/signals/latest")).json()
            hourly = (await http.post("/score", json=window_of("crypto-1h", "BTCUSD", 16 + MEMORY - 1))).json()
            daily = (await http.post("/score", json=window_of("stocks-1d", "AAPL", 64 + MEMORY - 1))).json()
            unclaimed = await http.post("/score", json={**window_of("crypto-1h", "BTCUSD", 20), "symbol": "BTCEUR"})
        await running.stopped()

    assert [(r["name"], r["symbols"], r["interval"], r["model"], r["model_version"]) for r in routes] == [
        ("crypto-1h", "*USD", "1h", "fake-hourly", "1.0.0"),
        ("stocks-1d", "*", "1d", "fake", "0.0.1"),
    ]
    assert {e["signal"]["symbol"]: e["route"] for e in latest}["BTCUSD"] == "crypto-1h"
    assert {e["signal"]["symbol"]: e["route"] for e in latest}["AAPL"] == "stocks-1d"
    newest = {s.symbol: s for s in broker.signals}
    for answer, route, symbol in ((hourly, "crypto-1h", "BTCUSD"), (daily, "stocks-1d", "AAPL")):
        assert answer["route"] == route
        assert answer["signal"]["signal_id"] == newest[symbol].signal_id
        assert answer["signal"]["action"] == newest[symbol].action
    assert unclaimed.status_code == 422
    assert "no route serves BTCEUR 1h" in unclaimed.json()["error"]
