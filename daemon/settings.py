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

from candlecast.errors import ConfigError
from daemon.dispatch import DEFAULT_ROUTE
from daemon.intervals import interval_ms
from daemon.window import GapMode


def bundled_registry() -> Path:
    """The registry shipped inside the package, holding the bundled trained ensemble."""
    return Path(str(files("models") / "bundled"))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list.")
    candles_topic: str = Field("candles", description="Topic the candles are consumed from.")
    signals_topic: str = Field("signals", description="Topic the signals are published to.")
    dead_letter_topic: str = Field("candles.dlq", description="Topic for messages that cannot be scored.")
    dead_letter_max_bytes: int = Field(
        65_536,
        ge=4096,
        le=1_000_000,
        description="Largest dead-letter record; a longer value is cut, its size and sha256 in headers. "
        "Keep it under the dead-letter topic's max.message.bytes.",
    )
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
    linger_ms: int = Field(0, ge=0, description="Producer linger before sending a batch (docs/benchmarks.md).")
    compression: Literal["none", "gzip"] = Field("none", description="Producer compression (docs/benchmarks.md).")
    producer_batch_bytes: int = Field(
        262_144,
        ge=1024,
        le=1_000_000,
        description="Producer batch per partition: a publish batch that fits goes out in one request.",
    )
    retry_backoff_ms: int = Field(
        10,
        ge=1,
        description="Producer wait before retrying a refused produce request (docs/benchmarks.md).",
    )
    transaction_timeout_ms: int = Field(15000, ge=1000, description="Aborts a dead instance's open transaction.")
    session_timeout_ms: int = Field(10000, ge=1000, description="A silent instance leaves the group after this.")
    rebalance_timeout_ms: int = Field(
        60000,
        ge=2000,
        description="How long the group waits for every member to rejoin in a rebalance; a revoked "
        "partition's drain must end within it (drain_deadline_ms).",
    )
    drain_deadline_ms: int = Field(
        45000,
        ge=1000,
        description="Longest drain of revoked partitions; past it the instance stops committing and exits "
        "with status 3, so nothing of them is committed after the group hands them on. Below "
        "rebalance_timeout_ms.",
    )
    stable_offsets_timeout_ms: int = Field(
        30000,
        ge=100,
        description="Longest wait, at assignment, for a partition's committed offset to settle (a transaction "
        "still completing); the assignment is retried, then the daemon exits.",
    )
    max_poll_interval_ms: int = Field(
        300000,
        ge=10000,
        description="Longest gap between two polls (a stalled pipeline) before the instance leaves the group.",
    )
    heartbeat_interval_ms: int = Field(3000, ge=100, description="Consumer-group heartbeat period.")
    request_timeout_ms: int = Field(30000, ge=1000, description="Longest wait for one broker request.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Transport security towards the brokers."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="Required with the SASL protocols."
    )
    sasl_username: str | None = Field(None, description="Required with the SASL protocols.")
    sasl_password: SecretStr | None = Field(None, description="Prefer sasl_password_file.")
    sasl_password_file: Path | None = Field(None, description="File holding the SASL password.")
    ssl_cafile: Path | None = Field(
        None, description="CA certificate(s) the brokers' certificates are checked against."
    )
    ssl_certfile: Path | None = Field(None, description="Client certificate, for brokers that require one.")
    ssl_keyfile: Path | None = Field(None, description="Private key of ssl_certfile.")

    @model_validator(mode="after")
    def _group_deadlines(self) -> KafkaSettings:
        if self.drain_deadline_ms >= self.rebalance_timeout_ms:
            raise ValueError(
                "drain_deadline_ms must be below rebalance_timeout_ms: a drain must end before the group moves on"
            )
        if self.session_timeout_ms > self.rebalance_timeout_ms:
            raise ValueError("rebalance_timeout_ms must be at least session_timeout_ms")
        return self

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
    name: str | None = Field(
        None,
        description="Serve this model of the registry: its current version when `current` names it, else its "
        "newest that `candlecast retrain` did not refuse; unset: whatever `current` names.",
    )
    scoring: Literal["auto", "window", "stream"] = Field(
        "auto",
        description="`stream`: score each candle with one step from per-symbol state (the artifact's step "
        "path; an artifact whose manifest has no `streaming` section is refused, at start or reload); "
        "`window`: run the whole window through the model; `auto`: `stream` when the artifact streams.",
    )


class BatchingSettings(_Section):
    max_batch: int = Field(512, ge=1, le=65536, description="Most windows per forward pass.")
    max_wait_ms: float = Field(0.0, ge=0, description="0: continuous batching (adaptive); >0: wait for fuller batches.")
    queue_chunks: int = Field(64, ge=1, description="Bound of each pipeline queue, in polls.")
    queue_bytes: int = Field(
        256 << 20,
        ge=1 << 20,
        description="Bound of the bytes in flight through the pipeline queues (windows, dead letters' values); "
        "a chunk that would pass it waits, so memory is bounded in bytes too.",
    )


class ShutdownSettings(_Section):
    """How long a stop (SIGTERM) may take."""

    deadline_s: float = Field(
        30.0,
        ge=0,
        description="After a stop request, the longest wait for what is in flight to be published and "
        "committed; then the open transaction is aborted and the daemon exits with status 4. "
        "Keep it well under systemd's TimeoutStopSec (90 s).",
    )


class IntervalSettings(_Section):
    calendar: Literal["continuous", "weekdays"] = Field("continuous", description="Which slots expect a candle.")
    gap_policy: GapMode = Field(GapMode.RESET, description="reset, tolerate or forward_fill.")
    max_missing: int = Field(0, ge=0, description="Longest gap (in candles) tolerated or filled.")


class WindowSettings(_Section):
    max_windows: int = Field(100_000, ge=1, description="Most windows held; the least recently updated is evicted.")
    idle_expiry_intervals: int = Field(
        240,
        ge=0,
        description="A window whose newest candle is this many intervals behind its partition's newest candle "
        "(candle time) is dropped, so a dead symbol stops pinning the rebuild start; 0: never. "
        "Must exceed every gap policy's max_missing.",
    )
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
    clock_tolerance_s: float = Field(
        60.0,
        ge=0,
        description="How far a candle may open after the daemon's own clock (producers set record timestamps).",
    )


class StrategySettings(_Section):
    name: str = Field("threshold", description="Strategy name (built-in or from the entry-point group).")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters of the strategy.")


class HttpSettings(_Section):
    host: str = Field("127.0.0.1", description="Address of /metrics, /healthz, /readyz and the query API.")
    port: int = Field(9464, ge=0, le=65535, description="0 picks a free port.")


class ApiSettings(_Section):
    """The read-only query API and live signal stream on the http port (docs/api.md)."""

    enabled: bool = Field(True, description="Serve the query API and the stream under /api/v1.")
    token_file: Path | None = Field(
        None, description="File holding a bearer token the API requires; none: no token (keep host local)."
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Larger request bodies are refused with 413.")
    max_score_windows: int = Field(64, ge=1, le=4096, description="Most windows one batch-scoring request holds.")
    stale_after_intervals: float = Field(
        2.0, gt=0, description="Top signals leave out a signal whose candle closed more intervals ago than this."
    )
    ring: int = Field(10_000, ge=1, description="Newest committed signals kept for stream resumption.")
    stream_clients: int = Field(128, ge=0, description="Most stream clients at once; more are refused with 503.")
    client_buffer: int = Field(
        1000, ge=1, description="Signals queued for one stream client; a client that falls further behind is cut off."
    )
    keepalive_s: float = Field(15.0, gt=0, description="Idle stream clients get a comment line this often.")
    stream_enabled: bool = Field(
        True,
        description="Serve /api/v1/stream from the daemon's event loop; false: 404, and `candlecast stream-server` "
        "serves it from the signals topic in a process of its own (docs/operations.md).",
    )

    def token(self) -> str | None:
        if self.token_file is None:
            return None
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"api.token_file: cannot read {self.token_file}: {exc.strerror}") from exc
        if not token:
            raise ConfigError(f"api.token_file: {self.token_file} is empty")
        return token


class StreamServerSettings(_Section):
    """`candlecast stream-server`: the live stream and latest signals, read from the signals topic (the
    stream settings, token and key limit are api's and windows.max_windows, as in the daemon)."""

    host: str = Field("127.0.0.1", description="Address of the stream server's /api/v1/stream and /metrics.")
    port: int = Field(9465, ge=0, le=65535, description="0 picks a free port (logged).")


class MonitoringSettings(_Section):
    """Drift and live-quality statistics (docs/metrics.md); windows count scored candles and outcomes."""

    drift_window: int = Field(5000, ge=10, description="Newest scored candles the drift statistics cover.")
    drift_min_samples: int = Field(500, ge=1, description="Drift gauges appear once the window holds this many.")
    quality_window: int = Field(2000, ge=10, description="Newest resolved outcomes, per horizon, live quality covers.")
    quality_min_outcomes: int = Field(200, ge=1, description="Live-quality gauges appear once this many are resolved.")

    @model_validator(mode="after")
    def _minimums_fit(self) -> MonitoringSettings:
        if self.drift_min_samples > self.drift_window:
            raise ValueError("drift_min_samples cannot exceed drift_window")
        if self.quality_min_outcomes > self.quality_window:
            raise ValueError("quality_min_outcomes cannot exceed quality_window")
        return self


class MqttSettings(_Section):
    """The optional MQTT transport (docs/mqtt.md): signals out, and candles in for edge deployments."""

    enabled: bool = Field(False, description="Publish every signal to MQTT too, once Kafka has it.")
    host: str = Field("127.0.0.1", description="Broker address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS).")
    client_id: str = Field(
        default_factory=lambda: f"candlecast-{socket.gethostname()}",
        description="Client id prefix; the signal publisher adds -signals, the candle consumer -candles.",
    )
    username: str | None = Field(None, description="MQTT user name, if the broker requires one.")
    password: SecretStr | None = Field(None, description="Prefer password_file.")
    password_file: Path | None = Field(None, description="File holding the password.")
    tls: bool = Field(False, description="TLS, trusting the system's CA certificates; implied by tls_ca.")
    tls_ca: Path | None = Field(None, description="CA certificate(s) the broker's certificate is checked against.")
    tls_cert: Path | None = Field(None, description="Client certificate, for brokers that require one.")
    tls_key: Path | None = Field(None, description="Private key of tls_cert.")
    topic_prefix: str = Field("candlecast/signals", description="Signals go to {topic_prefix}/{symbol}.")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of signal messages and of the candle subscription.")
    retain: bool = Field(False, description="Retain each symbol's last signal for new subscribers.")
    buffer_limit: int = Field(
        10_000, ge=1, description="Signals held while the broker is unreachable; beyond it the oldest are dropped."
    )
    consume_candles: bool = Field(False, description="Also consume candles from MQTT (edge deployments).")
    candles_in_flight: int = Field(
        1000,
        ge=1,
        le=65535,
        description="Candles the daemon holds before its pipeline takes them: it then reads no more from the "
        "broker (also asked for as the MQTT 5 Receive Maximum); each is acknowledged once taken.",
    )
    candles_topic: str = Field("candlecast/candles/#", description="Topic filter the candles are consumed from.")
    session_expiry_s: int = Field(
        86_400, ge=0, description="How long the broker keeps queueing candles for this daemon while it is away."
    )

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if any(c in self.topic_prefix for c in "+#") or self.topic_prefix.endswith("/") or not self.topic_prefix:
            raise ValueError("topic_prefix must be a topic without wildcards or a trailing /")
        if not self.candles_topic:
            raise ValueError("candles_topic must not be empty")
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and self.username is None:
            raise ValueError("a password needs a username")
        if self.tls_key is not None and self.tls_cert is None:
            raise ValueError("tls_key needs tls_cert")
        if self.tls_cert is not None and not self.uses_tls:
            raise ValueError("tls_cert needs TLS: set tls_ca or tls = true")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.tls_ca is not None

    def password_value(self) -> str | None:
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        return self.password.get_secret_value() if self.password is not None else None


ROUTE_SECTIONS = ("model", "windows", "batching", "strategy")
"""The sections a route may set for itself; what it leaves out it inherits from the top level."""


class RouteSettings(_Section):
    """Which candles a model serves (docs/operations.md, "Several models"). A candle goes to the first
    route whose `symbols` pattern and `interval` match it; a candle no route claims is dead-lettered
    (`no_route`). Each of `model`, `windows`, `batching` and `strategy` starts from the top-level
    section: the keys a route names replace those (a route naming `artifact` or `registry` drops both
    top-level ones, and one naming a strategy `name` drops the top-level `params`)."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Unique name: in logs, commit metadata and the query API.",
    )
    symbols: str = Field("*", min_length=1, max_length=64, description="Shell-style pattern of the symbols it claims.")
    interval: str | None = Field(None, description="The interval it claims; unset: its model's.")
    model: ModelSettings = Field(default_factory=ModelSettings, description="Its model (keys as in `[model]`).")
    windows: WindowSettings = Field(default_factory=WindowSettings, description="As in `[windows]`.")
    batching: BatchingSettings = Field(default_factory=BatchingSettings, description="As in `[batching]`.")
    strategy: StrategySettings = Field(default_factory=StrategySettings, description="As in `[strategy]`.")

    @field_validator("interval")
    @classmethod
    def _interval_name(cls, value: str | None) -> str | None:
        if value is not None:
            interval_ms(value)
        return value


def _section_values(value: Any) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return {name: getattr(value, name) for name in value.model_fields_set}
    return dict(value) if isinstance(value, dict) else {}


def _route_section(section: str, top: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """A route's section: the top-level one with the keys the route names replaced."""
    if section == "model" and own.keys() & {"artifact", "registry", "name"}:
        top = {k: v for k, v in top.items() if k not in ("artifact", "registry", "name")}
    if section == "strategy" and "name" in own:
        top = {}
    return {**top, **own}


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Lowest level logged.")
    format: Literal["auto", "json", "console"] = Field("auto", description="auto: console on a TTY, else JSON.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CANDLECAST_", env_nested_delimiter="__", extra="forbid", frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    windows: WindowSettings = Field(default_factory=WindowSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    strategy: StrategySettings = Field(default_factory=StrategySettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    stream_server: StreamServerSettings = Field(default_factory=StreamServerSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    routes: list[RouteSettings] = Field(
        default_factory=list,
        description="Routes of candles to models, first match wins; none: one route, `default`, serving "
        "`[model]` for every symbol of its interval.",
    )

    @model_validator(mode="before")
    @classmethod
    def _routes_inherit(cls, data: Any) -> Any:
        """Each route's sections start from the top-level ones (keys it names replace theirs)."""
        if not isinstance(data, dict) or not data.get("routes"):
            return data
        routes = []
        for given in data["routes"]:
            route = given
            if isinstance(given, dict):
                route = dict(given)
                for section in ROUTE_SECTIONS:
                    top = _section_values(data.get(section))
                    route[section] = _route_section(section, top, _section_values(given.get(section)))
            routes.append(route)
        return {**data, "routes": routes}

    @field_validator("routes")
    @classmethod
    def _unique_names(cls, routes: list[RouteSettings]) -> list[RouteSettings]:
        seen: set[str] = set()
        for index, route in enumerate(routes):
            if route.name in seen:
                raise ValueError(f"routes.{index}.name: {route.name!r} names two routes; route names must be unique")
            seen.add(route.name)
        return routes

    def served_routes(self) -> list[RouteSettings]:
        """The routes in match order; without any configured, ``DEFAULT_ROUTE`` with the top-level sections."""
        if self.routes:
            return list(self.routes)
        sections = {section: getattr(self, section) for section in ROUTE_SECTIONS}
        return [RouteSettings(name=DEFAULT_ROUTE, **sections)]

    def for_route(self, route: RouteSettings) -> Settings:
        """These settings as one route sees them: its sections in place of the top-level ones."""
        return self.model_copy(update={section: getattr(route, section) for section in ROUTE_SECTIONS})

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
