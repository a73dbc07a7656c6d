"""Route settings: the default route, what a route inherits from the top-level sections, validation
messages that name the field, the environment, and which registry version a named model serves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from candlecast.errors import ArtifactError, ConfigError
from daemon.dispatch import Dispatcher, RouteClaim
from daemon.engine import SourceRecord
from daemon.serving import served_entry, served_ref
from daemon.settings import ModelSettings, Settings, bundled_registry, load_settings
from daemon.signal import DeadLetter
from models.registry import Registry

TWO_ROUTES = """
[batching]
max_batch = 64
queue_chunks = 8
[strategy]
name = "threshold"
params = { buy_above = 0.6 }
[model]
artifact = "/models/default.pt"
threads = 2

[[routes]]
name = "crypto-1h"
symbols = "*USD"
interval = "1h"
model = { name = "crypto-1h" }
batching = { max_batch = 16 }

[[routes]]
name = "equities-1d"
interval = "1d"
strategy = { name = "agreement" }
"""


def configured(tmp_path: Path, text: str) -> Settings:
    config = tmp_path / "c.toml"
    config.write_text(text)
    return load_settings(config)


def test_without_routes_one_default_route_has_the_top_level_sections() -> None:
    """No ``[[routes]]``: one route, ``default``, claiming every symbol of its model's interval, with exactly
    the top-level model, windows, batching and strategy, so one-model configurations work unchanged."""
    settings = Settings(model=ModelSettings(threads=3))
    [route] = settings.served_routes()
    assert (route.name, route.symbols, route.interval) == ("default", "*", None)
    assert route.model == settings.model
    assert settings.for_route(route) == settings


def test_a_route_inherits_the_keys_it_does_not_name(tmp_path: Path) -> None:
    """A route's section is the top-level one with the keys the route names replaced; naming a model
    ``name`` drops the top-level ``artifact``; naming a strategy drops the top-level ``params``."""
    crypto, equities = configured(tmp_path, TWO_ROUTES).served_routes()
    assert crypto.batching.max_batch == 16
    assert crypto.batching.queue_chunks == 8
    assert crypto.model.name == "crypto-1h"
    assert crypto.model.artifact is None
    assert crypto.model.threads == 2
    assert crypto.strategy.params == {"buy_above": 0.6}
    assert equities.symbols == "*"
    assert equities.model.artifact == Path("/models/default.pt")
    assert equities.batching.max_batch == 64
    assert (equities.strategy.name, equities.strategy.params) == ("agreement", {})


def test_routes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CANDLECAST_ROUTES`` holds the list as JSON."""
    routes = [{"name": "a", "symbols": "BTC*", "interval": "1h"}, {"name": "b", "interval": "1d"}]
    monkeypatch.setenv("CANDLECAST_ROUTES", json.dumps(routes))
    assert [(r.name, r.symbols, r.interval) for r in load_settings().served_routes()] == [
        ("a", "BTC*", "1h"),
        ("b", "*", "1d"),
    ]


def test_duplicate_route_names_stop_start_up(tmp_path: Path) -> None:
    """Two routes of one name are refused, naming the second one's field."""
    with pytest.raises(ConfigError, match=r"routes\.1\.name: 'a' names two routes"):
        configured(tmp_path, '[[routes]]\nname = "a"\n[[routes]]\nname = "a"\n')


@pytest.mark.parametrize(
    ("route", "field"),
    [
        ('name = "x"\ninterval = "7q"', "routes.0.interval"),
        ('name = "has space"', "routes.0.name"),
        ('name = "x"\nbatching = { max_batch = 0 }', "routes.0.batching.max_batch"),
        ('name = "x"\nmodel = { nme = "typo" }', "routes.0.model.nme"),
    ],
)
def test_a_bad_route_setting_is_named_by_its_field(tmp_path: Path, route: str, field: str) -> None:
    """An invalid value or an unknown key inside a route is reported by its dotted path."""
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        configured(tmp_path, f"[[routes]]\n{route}\n")


def test_a_named_model_is_its_newest_version_unless_current_names_it(tmp_path: Path) -> None:
    """``model.name`` serves the version ``current`` names when it names that model, else the model's
    newest version; an unknown name is refused naming ``model.name`` and the models the registry holds."""
    registry_dir = tmp_path / "registry"
    shutil.copytree(bundled_registry(), registry_dir)
    registry = Registry(registry_dir)
    current = registry.current()
    assert current is not None and current.name == "equities-1d"
    named = ModelSettings(registry=registry_dir, name="crypto-1h")
    assert served_entry(registry, named).ref == "crypto-1h/1.0.0"
    assert served_ref(named) == "crypto-1h/1.0.0"
    assert served_entry(registry, ModelSettings(registry=registry_dir, name="equities-1d")).ref == current.ref
    with pytest.raises(ArtifactError, match=r"model\.name: no model 'nope'.*crypto-1h, equities-1d"):
        served_entry(registry, ModelSettings(registry=registry_dir, name="nope"))


def record(value: dict[str, object] | bytes) -> SourceRecord:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return SourceRecord("candles", 0, 7, b"K", raw, 0)


def test_the_first_claiming_route_takes_a_candle() -> None:
    """Overlapping routes: the first that claims (symbol, interval) wins; what none claims is a ``no_route``
    dead letter naming the routes; what cannot be read as far as symbol and interval goes to the first
    route, whose validator names the fault."""
    dispatcher = Dispatcher(
        [RouteClaim("BTC*", "1h"), RouteClaim("*", "1h"), RouteClaim("*", "1d")], lambda: "the routes"
    )
    assert dispatcher.route(record({"symbol": "BTCUSD", "interval": "1h"})) == 0
    assert dispatcher.route(record({"symbol": "ETHUSD", "interval": "1h"})) == 1
    assert dispatcher.route(record({"symbol": "BTCUSD", "interval": "1d"})) == 2
    assert dispatcher.route(record(b"{not json")) == 0
    assert dispatcher.route(record({"symbol": "BTCUSD"})) == 0
    refused = dispatcher.route(record({"symbol": "BTCUSD", "interval": "5m"}))
    assert isinstance(refused, DeadLetter)
    assert (refused.reason, refused.offset) == ("no_route", 7)
    assert refused.detail == "no route claims BTCUSD 5m (routes: the routes)"
    assert dispatcher.replayed(record({"symbol": "BTCUSD", "interval": "5m"})) is None
    assert dispatcher.counters.rejected["no_route"] == 1
