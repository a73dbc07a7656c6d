"""Typed settings: a TOML file, overridden by ``CANDLECAST_*`` environment variables.

Nested keys use a double underscore in the environment: ``[kafka] bootstrap_servers`` is
``CANDLECAST_KAFKA__BOOTSTRAP_SERVERS``. Unknown keys are errors, so a typo stops start-up
instead of being ignored. ``docs/configuration.md`` documents every setting.
"""

from __future__ import annotations

import os
import socket
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from candlecast.daemon.intervals import interval_ms
from candlecast.daemon.window import GapMode
from candlecast.errors import ConfigError


def bundled_registry() -> Path:
    """The registry shipped inside the package, holding the bundled trained ensemble."""
    return Path(str(files("candlecast.models") / "bundled"))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list.")
    candles_topic: str = Field("candles", description="Topic the candles are consumed from.")
    signals_topic: str = Field("signals", description="Topic the signals are published to.")
    dead_letter_topic: str = Field("candles.dlq", description="Topic for messages that cannot be scored.")
    group_id: str = Field("candlecast", description="Consumer group of the daemon instances.")
    instance_id: str = Field(
        default_factory=socket.gethostname,
        description="Stable name of this instance; the transactional id is derived from it.",
    )
    delivery: Literal["exactly_once", "at_least_once"] = Field(
        "exactly_once", description="Delivery mode (docs/reliability.md)."
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a group with no committed offset starts."
    )
    fetch_max_records: int = Field(2000, ge=1, description="Most records taken per poll.")
    poll_timeout_ms: int = Field(100, ge=1, description="Longest wait of one poll for new records.")
    linger_ms: int = Field(2, ge=0, description="Producer linger before sending a batch.")
    compression: Literal["none", "gzip"] = Field("none", description="Producer compression.")
    transaction_timeout_ms: int = Field(15000, ge=1000, description="Aborts a dead instance's open transaction.")
    session_timeout_ms: int = Field(10000, ge=1000)
    heartbeat_interval_ms: int = Field(3000, ge=100)
    request_timeout_ms: int = Field(30000, ge=1000)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = Field(None, description="Prefer sasl_password_file.")
    sasl_password_file: Path | None = Field(None, description="File holding the SASL password.")
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @model_validator(mode="after")
    def _security(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism is None or self.sasl_username is None:
                raise ValueError("SASL needs sasl_mechanism and sasl_username")
            if self.sasl_password is None and self.sasl_password_file is None:
                raise ValueError("SASL needs sasl_password or sasl_password_file")
        return self

    def password(self) -> str | None:
        if self.sasl_password_file is not None:
            return self.sasl_password_file.read_text().strip()
        return self.sasl_password.get_secret_value() if self.sasl_password is not None else None


class ModelSettings(_Section):
    registry: Path = Field(
        default_factory=bundled_registry, description="Registry directory; its `current` version is served."
    )
    artifact: Path | None = Field(None, description="Serve this artifact file instead of the registry's current one.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`auto`: CUDA when available, else CPU.")
    threads: int = Field(0, ge=0, description="torch intra-op threads; 0 = one less than the CPU count (at least 1).")
    reload_poll_s: float = Field(5.0, gt=0, description="How often the registry's current pointer is checked.")


class BatchingSettings(_Section):
    max_batch: int = Field(512, ge=1, le=65536, description="Most windows per forward pass.")
    max_wait_ms: float = Field(0.0, ge=0, description="0: continuous batching (adaptive); >0: wait for fuller batches.")
    queue_chunks: int = Field(64, ge=1, description="Bound of each pipeline queue, in polls.")


class IntervalSettings(_Section):
    calendar: Literal["continuous", "weekdays"] = Field("continuous", description="Which slots expect a candle.")
    gap_policy: GapMode = Field(GapMode.RESET, description="reset, tolerate or forward_fill.")
    max_missing: int = Field(0, ge=0, description="Longest gap (in candles) tolerated or filled.")


class WindowSettings(_Section):
    max_windows: int = Field(100_000, ge=1, description="Most windows held; the least recently updated is evicted.")
    intervals: dict[str, IntervalSettings] = Field(
        default_factory=dict, description="Per-interval calendar and gap policy; defaults from the model."
    )

    @field_validator("intervals")
    @classmethod
    def _names(cls, value: dict[str, IntervalSettings]) -> dict[str, IntervalSettings]:
        for name in value:
            interval_ms(name)
        return value


class ValidationSettings(_Section):
    max_message_bytes: int = Field(4096, ge=64, description="Larger messages are dead-lettered.")
    future_tolerance_s: float = Field(60.0, ge=0, description="How far a candle may open after its record timestamp.")


class StrategySettings(_Section):
    name: str = Field("threshold", description="Strategy name (built-in or from the entry-point group).")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters of the strategy.")


class HttpSettings(_Section):
    host: str = Field("127.0.0.1", description="Address of /metrics, /healthz and /readyz.")
    port: int = Field(9464, ge=0, le=65535, description="0 picks a free port.")


class MqttSettings(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    topic_prefix: str = "candlecast/signals"
    qos: Literal[0, 1, 2] = 1
    retain: bool = False


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = Field("auto", description="auto: console on a TTY, else JSON.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CANDLECAST_", env_nested_delimiter="__", extra="forbid", frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    windows: WindowSettings = Field(default_factory=WindowSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    strategy: StrategySettings = Field(default_factory=StrategySettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = os.environ.get(_CONFIG_FILE_VARIABLE)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_file)))
        return tuple(sources)


_CONFIG_FILE_VARIABLE = "CANDLECAST_CONFIG"


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Settings from a TOML file (or ``$CANDLECAST_CONFIG``) and the environment.

    Raises ``ConfigError`` listing each invalid field by its dotted name.
    """
    previous = os.environ.get(_CONFIG_FILE_VARIABLE)
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        os.environ[_CONFIG_FILE_VARIABLE] = str(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    finally:
        if path is not None:
            if previous is None:
                os.environ.pop(_CONFIG_FILE_VARIABLE, None)
            else:
                os.environ[_CONFIG_FILE_VARIABLE] = previous


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(settings)"
        lines.append(f"{field}: {error['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)
