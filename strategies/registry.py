"""Find strategies by name: the built-ins and third-party ones from the entry-point group."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from candlecast.errors import ConfigError
from strategies.base import OutputSpec, Strategy, StrategyFactory

ENTRY_POINT_GROUP = "candlecast.strategies"


def available() -> list[str]:
    """Names of the strategies in the ``candlecast.strategies`` entry-point group."""
    return sorted({point.name for point in entry_points(group=ENTRY_POINT_GROUP)})


def load(name: str) -> StrategyFactory:
    """The factory registered under ``name``; only that entry point is imported."""
    points = {point.value: point for point in entry_points(group=ENTRY_POINT_GROUP) if point.name == name}
    if not points:
        raise ConfigError(f"strategy.name: unknown strategy {name!r}; available: {', '.join(available())}")
    if len(points) > 1:
        raise ConfigError(f"strategy.name: {name!r} is registered more than once: {', '.join(sorted(points))}")
    (point,) = points.values()
    try:
        factory: StrategyFactory = point.load()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"strategy.name: cannot load {name!r} from {point.value}: {exc}") from exc
    return factory


def create(name: str, spec: OutputSpec, params: Mapping[str, Any]) -> Strategy:
    """Build a strategy by name; a bad name or parameter raises ``ConfigError`` naming it."""
    factory = load(name)
    try:
        strategy = factory.from_params(spec, params)
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(err["loc"], err["msg"]) for err in exc.errors())) from exc
    except ValueError as exc:
        raise ConfigError(_describe((), str(exc))) from exc
    if not isinstance(strategy, Strategy):
        raise ConfigError(f"strategy.name: {name!r} does not implement the Strategy protocol")
    return strategy


def _describe(location: tuple[int | str, ...], message: str) -> str:
    """``strategy.params.FIELD: problem``; strategies name the field as ``FIELD: problem``."""
    field, _, rest = message.partition(": ")
    if not location and rest and field.isidentifier():
        location, message = (field,), rest
    return ".".join(["strategy.params", *(str(part) for part in location)]) + f": {message}"
