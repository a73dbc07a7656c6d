"""Settings: file, environment, validation messages, and the generated reference in docs/."""

from __future__ import annotations

from pathlib import Path

import pytest

from candlecast.errors import ConfigError
from daemon.settings import load_settings
from daemon.settings_reference import END, START, settings_reference

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


class TestLoading:
    def test_defaults_without_a_file(self) -> None:
        """No file: every setting has a default."""
        settings = load_settings()
        assert settings.kafka.candles_topic == "candles"
        assert settings.http.host == "127.0.0.1"

    def test_file_then_environment(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The environment overrides the file, which overrides the defaults."""
        config = tmp_path / "c.toml"
        config.write_text('[kafka]\ncandles_topic = "from-file"\nsignals_topic = "file-signals"\n')
        monkeypatch.setenv("CANDLECAST_KAFKA__SIGNALS_TOPIC", "env-signals")
        settings = load_settings(config)
        assert settings.kafka.candles_topic == "from-file"
        assert settings.kafka.signals_topic == "env-signals"

    def test_errors_name_every_bad_field(self, tmp_path: Path) -> None:
        """An unknown key and an out-of-range value are both named by their dotted path."""
        config = tmp_path / "c.toml"
        config.write_text("[kafka]\nfetch_max_records = 0\n[batching]\nmax_wait = 5\n")
        with pytest.raises(ConfigError) as raised:
            load_settings(config)
        assert "kafka.fetch_max_records" in str(raised.value)
        assert "batching.max_wait" in str(raised.value)

    def test_bad_environment_value(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CANDLECAST_KAFKA__DELIVERY", "maybe_once")
        with pytest.raises(ConfigError, match=r"kafka\.delivery"):
            load_settings()

    def test_sasl_needs_credentials(self, tmp_path: Path) -> None:
        config = tmp_path / "c.toml"
        config.write_text('[kafka]\nsecurity_protocol = "SASL_SSL"\n')
        with pytest.raises(ConfigError, match="SASL needs"):
            load_settings(config)

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="does not exist"):
            load_settings(tmp_path / "absent.toml")

    def test_secrets_are_masked(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CANDLECAST_KAFKA__SASL_PASSWORD", "hunter2-secret")
        assert "hunter2-secret" not in repr(load_settings())


def test_configuration_doc_lists_every_setting() -> None:
    """docs/configuration.md holds exactly the generated reference (regenerate with `make docs`)."""
    text = DOCS.read_text()
    assert text[text.index(START) : text.index(END) + len(END)] + "\n" == settings_reference()
