"""The query API's verbs and their errors, in process, on the daemon's real pure parts."""

from __future__ import annotations

from typing import Any

import msgspec

from daemon.api_models import SignalBody
from daemon.settings import ApiSettings
from daemon.signal import Signal
from tests.api.support import HOUR_MS, candles, client, harness, window


def test_signal_body_mirrors_the_signal_message() -> None:
    """The API's signal model has exactly the fields of the signal on the topic, each of the same JSON type."""
    aliases = {f.alias or name for name, f in SignalBody.model_fields.items()}
    assert aliases == set(Signal.__struct_fields__)
    published = msgspec.json.schema(Signal)["$defs"]["Signal"]["properties"]
    served = SignalBody.model_json_schema(by_alias=True)["properties"]
    assert {name: json_type(field) for name, field in served.items()} == {
        name: json_type(field) for name, field in published.items()
    }


def json_type(field: dict[str, Any]) -> object:
    """A property's type as JSON Schema states it, without titles, descriptions and defaults (an enum's
    values as a set: its order and the implied ``string`` type differ between the generators)."""
    if "enum" in field:
        return frozenset(field["enum"])
    return {key: value for key, value in field.items() if key not in ("title", "description", "default")}


async def test_routes_and_models_describe_the_served_model() -> None:
    """Routes name the model and strategy; models carry the manifest's evaluation and reference figures."""
    h = harness()
    async with client(h) as http:
        routes = (await http.get("/api/v1/routes")).json()
        models = (await http.get("/api/v1/models")).json()
        details = await http.get("/api/v1/models/fake")
        missing = await http.get("/api/v1/models/nope")
    assert routes == [
        {
            "name": "default",
            "symbols": "*",
            "interval": "1h",
            "model": "fake",
            "model_version": "1.0.0",
            "strategy": h.core.builder.strategy_name,
        }
    ]
    assert models[0]["name"] == "fake" and models[0]["reference"] == {"hit_rate": 0.5, "brier": 0.25, "ece": 0.0}
    assert details.status_code == 200
    assert details.json()["manifest"]["window"] == 4 and details.json()["registry_versions"] == []
    assert missing.status_code == 404 and missing.json()["field"] == "path.name"


async def test_latest_signals_are_each_symbols_newest_committed_one() -> None:
    """Latest holds one signal per symbol, the newest committed, filterable by symbol."""
    h = harness()
    async with client(h) as http:
        assert (await http.get("/api/v1/signals/latest")).json() == []
        first = h.feed("AAA", candles(6))
        second = h.feed("BBB", candles(5, drift=-0.01))
        everything = (await http.get("/api/v1/signals/latest")).json()
        one = (await http.get("/api/v1/signals/latest", params={"symbol": "BBB"})).json()
    assert [e["signal"]["signal_id"] for e in everything] == [first[-1].signal_id, second[-1].signal_id]
    assert [e["signal"] for e in one] == [msgspec.to_builtins(second[-1])]


async def test_top_signals_rank_by_confidence_filter_and_leave_out_stale_ones() -> None:
    """Top ranks each symbol's latest signal by confidence, filters by action and confidence, and drops stale ones."""
    h = harness(sell_below=0.4999, buy_above=0.5001)
    h.feed("UP1", candles(5, drift=0.01))
    h.feed("UP2", candles(5, drift=0.03))
    h.feed("DOWN", candles(5, drift=-0.02))
    h.feed("OLD", candles(4, start=-20, drift=0.05))
    # The clock stands 30 hours after the first candle: candles of hour 4 closed 25 hours ago.
    async with client(h) as http:
        ranked = (await http.get("/api/v1/signals/top", params={"max_age_intervals": 100})).json()
        buys = (
            await http.get("/api/v1/signals/top", params={"action": "BUY", "limit": 1, "max_age_intervals": 100})
        ).json()
        fresh = (await http.get("/api/v1/signals/top", params={"max_age_intervals": 25})).json()
        confident = (
            await http.get("/api/v1/signals/top", params={"min_confidence": 0.52, "max_age_intervals": 100})
        ).json()
        default = (await http.get("/api/v1/signals/top")).json()
        bad = await http.get("/api/v1/signals/top", params={"limit": 0})
        route = await http.get("/api/v1/signals/top", params={"route": "nope"})
    symbols = [r["signal"]["symbol"] for r in ranked]
    confidences = [r["signal"]["confidence"] for r in ranked]
    assert sorted(symbols) == ["DOWN", "OLD", "UP1", "UP2"] and confidences == sorted(confidences, reverse=True)
    assert [b["signal"]["symbol"] for b in buys] == [symbols[0]] and buys[0]["signal"]["action"] == "BUY"
    assert "OLD" not in {r["signal"]["symbol"] for r in fresh} and len(fresh) == 3
    assert all(r["signal"]["confidence"] >= 0.52 for r in confident) and 0 < len(confident) < 4
    by_symbol = {r["signal"]["symbol"]: r["age_s"] for r in ranked}
    assert by_symbol["UP1"] == 25 * HOUR_MS / 1000
    assert default == []  # two intervals by default: every candle here closed longer ago
    assert bad.status_code == 422 and bad.json()["field"] == "query.limit"
    assert route.status_code == 404 and route.json()["field"] == "query.route"


async def test_symbol_stats_count_signals_and_report_quality_and_drift() -> None:
    """Stats give the serving model, signals by action and the symbol's own resolved quality beside the route's."""
    h = harness()
    signals = h.feed("AAA", candles(12))
    h.feed("BBB", candles(8, drift=-0.01))
    async with client(h) as http:
        stats = await http.get("/api/v1/symbols/AAA/stats")
        unknown = await http.get("/api/v1/symbols/ZZZ/stats")
    assert stats.status_code == 200
    body = stats.json()["routes"][0]
    assert body["model"] == "fake" and body["model_version"] == "1.0.0"
    assert sum(body["signals"].values()) == len(signals)
    quality = {q["horizon"]: q for q in body["quality"]}
    # 9 scored candles: horizon 1 resolves 8 of them, horizon 2 resolves 7; the close always rose.
    assert quality[1]["resolved"] == 8 and quality[2]["resolved"] == 7
    assert quality[1]["hit_rate"] == 1.0
    route_resolved = {q["horizon"]: q["resolved"] for q in body["route_quality"]}
    assert route_resolved[1] == 10  # 8 + 4 resolved; the route's window (quality_window) keeps the newest 10
    assert body["drift"]["samples"] == 10
    assert unknown.status_code == 404 and unknown.json()["field"] == "path.symbol"


async def test_batch_scoring_is_one_forward_pass_and_matches_single_scoring() -> None:
    """A batch's windows are scored in one forward pass, each answered as the single endpoint answers it."""
    h = harness()
    windows = [window("AAA"), window("BBB", 6, drift=-0.02), window("CCC", 5)]
    async with client(h) as http:
        batch = await http.post("/api/v1/score/batch", json={"windows": windows})
        passes = list(h.model.passes)
        singles = [(await http.post("/api/v1/score", json=w)).json() for w in windows]
    assert batch.status_code == 200
    assert passes == [1 + 3 + 2]
    strip = lambda a: {**a, "signal": {k: v for k, v in a["signal"].items() if k != "produced_at"}}  # noqa: E731
    assert [strip(a) for a in batch.json()["answers"]] == [strip(s) for s in singles]
    assert singles[1]["signal"]["action"] == "SELL" and singles[1]["published"] is True


async def test_scoring_refusals_name_the_offending_field() -> None:
    """A candle the daemon would dead-letter, a short window, an unserved interval or too many windows are 4xx
    naming the field."""
    h = harness(api=None)
    bad_ohlc = window("AAA")
    bad_ohlc["candles"][2]["high"] = 1.0
    async with client(h) as http:
        ohlc = await http.post("/api/v1/score", json=bad_ohlc)
        short = await http.post("/api/v1/score", json=window("AAA", 3))
        unserved = await http.post("/api/v1/score", json={**window("AAA"), "interval": "1d"})
        gap = await http.post("/api/v1/score", json={**window("AAA"), "candles": candles(2) + candles(2, start=5)})
        typed = await http.post("/api/v1/score", json={**window("AAA"), "symbol": "bad symbol"})
        many = await http.post("/api/v1/score/batch", json={"windows": [window("AAA")] * 65})
        in_batch = await http.post("/api/v1/score/batch", json={"windows": [window("AAA"), bad_ohlc]})
        long = await http.post("/api/v1/score", json=window("AAA", 12))
    assert (ohlc.status_code, ohlc.json()["field"], ohlc.json()["reason"]) == (
        422,
        "body.candles.2",
        "ohlc_inconsistent",
    )
    assert (short.status_code, short.json()["field"], short.json()["reason"]) == (
        422,
        "body.candles",
        "incomplete_window",
    )
    assert (unserved.status_code, unserved.json()["field"]) == (422, "body.interval")
    assert gap.status_code == 422 and gap.json()["field"] == "body.candles"
    assert (typed.status_code, typed.json()["field"]) == (422, "body.symbol")
    assert (many.status_code, many.json()["field"]) == (422, "body.windows")
    assert (in_batch.status_code, in_batch.json()["field"]) == (422, "body.windows.1.candles.2")
    assert (long.status_code, long.json()["field"], long.json()["reason"]) == (422, "body.candles", "too_many")
    assert h.model.passes == []


async def test_oversized_bodies_are_refused_before_parsing() -> None:
    """A body over api.max_body_bytes gets 413, declared or streamed in chunks."""
    h = harness(api=ApiSettings(max_body_bytes=2048))
    big = {"windows": [window("AAA", 11)] * 4}
    raw = msgspec.json.encode(big)

    async def chunks():  # no Content-Length: the limit applies while the body streams in
        for start in range(0, len(raw), 512):
            yield raw[start : start + 512]

    async with client(h) as http:
        declared = await http.post("/api/v1/score/batch", content=raw, headers={"content-type": "application/json"})
        streamed = await http.post(
            "/api/v1/score/batch", content=chunks(), headers={"content-type": "application/json"}
        )
        small = await http.post("/api/v1/score", json=window("AAA"))
    assert len(raw) > 2048
    assert declared.status_code == 413 and declared.json()["field"] == "body"
    assert streamed.status_code == 413
    assert small.status_code == 200


async def test_a_configured_token_is_required_by_every_api_verb() -> None:
    """With a token, API calls without it or with a wrong one get 401; health endpoints stay open."""
    h = harness(token="s3cret")
    async with client(h) as http:
        none = await http.get("/api/v1/routes")
        wrong = await http.get("/api/v1/routes", headers={"Authorization": "Bearer nope"})
        right = await http.get("/api/v1/routes", headers={"Authorization": "Bearer s3cret"})
        scoring = await http.post("/api/v1/score", json=window("AAA"))
        health = await http.get("/healthz")
    assert none.status_code == wrong.status_code == scoring.status_code == 401
    assert none.headers["www-authenticate"] == "Bearer" and none.json()["field"] == "header.authorization"
    assert right.status_code == 200
    assert health.status_code == 200
