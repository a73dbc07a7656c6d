"""The stream server's readiness, as in the daemon: not ready while its broker does not answer."""

from __future__ import annotations

from daemon.settings import Settings
from daemon.stream_server import StreamServer


def test_a_stream_server_is_not_ready_until_its_broker_answered() -> None:
    """Before its broker answered (and after a probe it did not answer), ``/readyz`` fails on ``broker_reachable``."""
    server = StreamServer(Settings())
    assert server.health.report() == ({"broker_reachable": False}, {"broker_reachable": "the broker does not answer"})
    server.broker_reachable = True
    assert server.health.report() == ({"broker_reachable": True}, {})
