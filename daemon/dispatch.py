"""Which route a candle record goes to: the first whose symbol pattern and interval claim it.

Pure and synchronous. Routing reads only the message's ``symbol`` and ``interval``; everything else
is checked by the claiming route's validator. A record that cannot be read that far (oversize,
malformed, missing fields) goes to the first route, whose validator dead-letters it with the
precise reason. A record no route claims is dead-lettered as ``no_route``, naming the routes and
the models they serve, so a producer sees what this daemon can score.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from daemon.candle import CandleMessage, RejectReason
from daemon.engine import IngestCounters, SourceRecord
from daemon.signal import DeadLetter

DEFAULT_ROUTE = "default"
"""The one route of a daemon configured without routes: every symbol of its model's interval."""

CACHE_LIMIT = 65_536
"""Routing decisions remembered per (symbol, interval); the cache starts again when full."""


class _Address(msgspec.Struct, gc=False):
    symbol: str
    interval: str


_address = msgspec.json.Decoder(_Address)


@dataclass(frozen=True, slots=True)
class RouteClaim:
    """The candles a route claims: symbols matching a shell-style pattern, of one interval (``None``: any)."""

    symbols: str
    interval: str | None

    def claims(self, symbol: str, interval: str) -> bool:
        return (self.interval is None or interval == self.interval) and fnmatch.fnmatchcase(symbol, self.symbols)


class Dispatcher:
    """Routes records to the first claiming route (by position); counts and refuses the rest."""

    def __init__(
        self, claims: Sequence[RouteClaim], describe: Callable[[], str], max_message_bytes: int = 4096
    ) -> None:
        if not claims:
            raise ValueError("a dispatcher needs at least one route")
        self._claims = list(claims)
        self._describe = describe
        """The routes and the models they serve as a record is refused, for its detail (models change at a reload)."""
        self._max_bytes = max_message_bytes
        self._routes: dict[tuple[str, str], int | None] = {}
        self.counters = IngestCounters()
        """Records refused for want of a route (counted as consumed and rejected, like the ingestors')."""
        self.claims_all = len(claims) == 1 and claims[0].interval is None and claims[0].symbols == "*"

    def route(self, record: SourceRecord, message: CandleMessage | None = None) -> int | DeadLetter:
        """The position of the route that takes the record, or its ``no_route`` dead letter; ``message``:
        the record's value already decoded (``daemon.candle.decode_message``), read instead of the bytes."""
        route, address = self._claimant(record, message)
        if route is not None:
            return route
        assert address is not None
        self.counters.consumed += 1
        self.counters.rejected[RejectReason.NO_ROUTE] += 1
        return DeadLetter(
            record.key,
            record.value,
            RejectReason.NO_ROUTE.value,
            f"no route claims {address[0]} {address[1]} (routes: {self._describe()})",
            record.topic,
            record.partition,
            record.offset,
            record.timestamp_ms,
        )

    def replayed(self, record: SourceRecord) -> int | None:
        """The route a record read again for a rebuild goes to; ``None`` when none claims it (it was
        dead-lettered when first read)."""
        return self._claimant(record)[0]

    def _claimant(
        self, record: SourceRecord, message: CandleMessage | None = None
    ) -> tuple[int | None, tuple[str, str] | None]:
        if self.claims_all or len(record.value) > self._max_bytes:
            return 0, None
        address: CandleMessage | _Address | None = message
        if address is None:
            try:
                address = _address.decode(record.value)
            except msgspec.DecodeError:  # also a schema error: the first route's validator says which
                return 0, None
        key = (address.symbol, address.interval)
        route = self._routes.get(key, -1)
        if route == -1:
            route = next((i for i, claim in enumerate(self._claims) if claim.claims(*key)), None)
            if len(self._routes) >= CACHE_LIMIT:
                self._routes.clear()
            self._routes[key] = route
        return route, key
