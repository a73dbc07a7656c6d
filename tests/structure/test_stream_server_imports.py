"""The stream server's process holds no model: its feed is pure, and its edge loads no torch."""

from __future__ import annotations

from tests.structure.test_core_imports import HTTP, IO_LIBRARIES, _loaded_after


def test_the_signal_feed_loads_no_io_library() -> None:
    """Decoding topic records into the store and choosing the ring's tail need no asyncio, Kafka, HTTP or torch."""
    assert (set(IO_LIBRARIES) | HTTP) & _loaded_after("daemon.signal_feed") == set()


def test_the_stream_server_loads_kafka_and_http_but_not_torch() -> None:
    """A stream server next to the daemon costs no model memory: the daemon's API module is imported without torch."""
    loaded = _loaded_after("daemon.stream_server")
    assert {"aiokafka", "fastapi", "uvicorn"} <= loaded
    assert "torch" not in loaded


def test_the_stream_server_loads_no_model_wiring() -> None:
    """The stream server serves the store and its metrics: the daemon's model wiring and model monitoring stay
    unloaded (the control: the daemon's service loads them)."""
    wiring = {"daemon.api_wiring", "daemon.monitoring"}
    assert wiring <= _loaded_after("daemon.service")
    assert wiring & _loaded_after("daemon.stream_server") == set()
