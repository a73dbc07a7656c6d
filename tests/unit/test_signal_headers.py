"""Kafka headers of a signal record."""

from __future__ import annotations

import pytest

from daemon.signal import Signal, signal_headers


def signal(model_version: str, model: str | None, route: str | None) -> Signal:
    return Signal(
        signal_id="id",
        symbol="S",
        interval="1d",
        ts="t",
        action="HOLD",
        confidence=0.5,
        probability=0.5,
        horizon=1,
        probabilities={},
        quantiles={},
        quantile_levels=[],
        disagreement=0.0,
        model_version=model_version,
        model=model,
        route=route,
        strategy="s",
        produced_at="t",
    )


@pytest.mark.parametrize(("model", "route"), [("equities", "default"), (None, None), ("crypto", None)])
def test_headers_name_the_schema_model_route_and_source_record(model: str | None, route: str | None) -> None:
    """Content type, schema, model version, model and route when known, then the source record; the
    shared part is the same for every signal of a route, the source each signal's own."""
    for offset in (7, 8):
        headers = signal_headers(
            signal("1.2.0", model, route), source_topic="c", source_partition=3, source_offset=offset
        )
        expected = [
            ("content-type", b"application/json"),
            ("schema", b"candlecast.signal/1"),
            ("model-version", b"1.2.0"),
        ]
        expected += [("model", model.encode())] if model is not None else []
        expected += [("route", route.encode())] if route is not None else []
        assert headers == [*expected, ("source", f"c/3/{offset}".encode())]
    other = signal_headers(signal("1.3.0", model, route), source_topic="c", source_partition=3, source_offset=7)
    assert other[2] == ("model-version", b"1.3.0")
