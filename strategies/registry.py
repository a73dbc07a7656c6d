"""Find strategies by name: the built-ins and third-party ones from the entry-point group."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from candlecast.errors import ConfigError
from candlecast.strategies.base import OutputSpec, Strategy, StrategyFactory

ENTRY_POINT_GROUP = "candlecast.strategies"


def available() -> dict[str, StrategyFactory]:
    """Strategy factories by name, from the ``candlecast.strategies`` entry-point group."""
    found: dict[str, StrategyFactory] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found[point.name] = point.load()
    return found


def create(name: str, spec: OutputSpec, params: Mapping[str, Any]) -> Strategy:
    """Build a strategy by name; a bad name or parameter raises ``ConfigError`` naming it."""
    factories = available()
    factory = factories.get(name)
    if factory is None:
        raise ConfigError(f"strategy.name: unknown strategy {name!r}; available: {', '.join(sorted(factories))}")
    try:
        strategy = factory.from_params(spec, params)
    except ValidationError as exc:
        problems = "; ".join(
            f"strategy.params.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(problems) from exc
    except ValueError as exc:
        raise ConfigError(f"strategy.params: {exc}") from exc
    if not isinstance(strategy, Strategy):
        raise ConfigError(f"strategy.name: {name!r} does not implement the Strategy protocol")
    return strategy
