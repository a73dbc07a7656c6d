"""A route as the query API sees it: which candles a model serves, with what it needs to score them
as the daemon does.

A daemon configured without ``[[routes]]`` has one route, named ``daemon.dispatch.DEFAULT_ROUTE``, claiming every
symbol of its model's interval. The daemon routes candles with ``daemon.dispatch`` (first claiming
route wins); the API lists, filters and scores by route the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from daemon.core import Core
from daemon.dispatch import RouteClaim
from daemon.ports import Scorer, WindowOrigins
from models.artifact import ModelOutputs

if TYPE_CHECKING:
    from daemon.monitoring import ModelMonitor


class ServedModel(Protocol):
    """The model a route serves, as the API uses it."""

    @property
    def current(self) -> Scorer:
        """The model in service now (a hot reload swaps it between batches)."""
        ...

    async def score(
        self, windows: npt.NDArray[np.float32], origins: WindowOrigins | None = None
    ) -> tuple[Scorer, ModelOutputs]:
        """One forward pass on the daemon's inference thread, between its batches; also the model that ran."""
        ...


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    symbols: str
    """Shell-style pattern of the symbols the route claims (``*``: all)."""
    interval: str
    model: ServedModel
    new_core: Callable[[Scorer], Core]
    """A fresh pure core (validation, window, strategy, signal building) with the route's settings."""
    monitor: ModelMonitor | None = None
    registry: Path | None = None
    """The model registry the route's model comes from, when it is served from one."""

    def claims(self, symbol: str, interval: str) -> bool:
        return RouteClaim(self.symbols, self.interval).claims(symbol, interval)
