"""The stream server's settings: typed, in the daemon's file, a bad value named by its field."""

from __future__ import annotations

from typing import Any

import pytest

from candlecast.errors import ConfigError
from daemon.settings import load_settings


def test_the_stream_server_section_defaults_to_a_local_port_and_the_daemon_keeps_its_stream() -> None:
    """By default the stream server listens on 127.0.0.1:9465 and the daemon still serves its stream."""
    settings = load_settings()
    assert (settings.stream_server.host, settings.stream_server.port) == ("127.0.0.1", 9465)
    assert settings.api.stream_enabled is True


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"stream_server": {"port": 70000}}, "stream_server.port"),
        ({"stream_server": {"hots": "0.0.0.0"}}, "stream_server.hots"),
        ({"api": {"stream_enabled": "sometimes"}}, "api.stream_enabled"),
    ],
)
def test_a_bad_stream_server_setting_names_its_field(overrides: dict[str, Any], field: str) -> None:
    """An out-of-range port, an unknown key or a non-boolean switch stops start-up naming the field."""
    with pytest.raises(ConfigError, match=rf"{field}: "):
        load_settings(**overrides)
