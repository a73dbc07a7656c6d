"""A route: which candles a model serves, with what it needs to score them as the daemon does.

Today the daemon serves one model, so it has one route, named ``DEFAULT_ROUTE``, claiming every
symbol of the model's interval. Routing several models by symbol pattern and interval adds routes
here; the query API already lists, filters and scores by route.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from daemon.core import Core
from daemon.ports import Scorer
from models.artifact import ModelOutputs

if TYPE_CHECKING:
    from daemon.monitoring import ModelMonitor

DEFAULT_ROUTE = "default"


class ServedModel(Protocol):
    """The model a route serves, as the API uses it."""

    @property
    def current(self) -> Scorer:
        """The model in service now (a hot reload swaps it between batches)."""
        ...

    async def score(self, windows: npt.NDArray[np.float32]) -> tuple[Scorer, ModelOutputs]:
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
        return interval == self.interval and fnmatch.fnmatchcase(symbol, self.symbols)
