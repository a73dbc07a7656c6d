"""The [api] settings: environment overrides and the bearer token file."""

from __future__ import annotations

from pathlib import Path

import pytest

from candlecast.errors import ConfigError
from daemon.settings import ApiSettings, load_settings


def test_api_settings_are_overridden_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """CANDLECAST_API__* variables set the [api] section."""
    monkeypatch.setenv("CANDLECAST_API__STREAM_CLIENTS", "5")
    monkeypatch.setenv("CANDLECAST_API__ENABLED", "false")
    settings = load_settings()
    assert settings.api.stream_clients == 5 and settings.api.enabled is False


def test_the_token_is_read_from_its_file_and_a_bad_file_is_a_config_error(tmp_path: Path) -> None:
    """The token is the file's content without surrounding space; a missing or empty file names api.token_file."""
    token = tmp_path / "token"
    token.write_text("  s3cret\n")
    assert ApiSettings(token_file=token).token() == "s3cret"
    assert ApiSettings().token() is None
    with pytest.raises(ConfigError, match=r"api\.token_file"):
        ApiSettings(token_file=tmp_path / "missing").token()
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match=r"api\.token_file: .* is empty"):
        ApiSettings(token_file=tmp_path / "empty").token()
