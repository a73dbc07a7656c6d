"""Comparing published signals: content without produce times, grouped by candle."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import msgspec
from aiokafka import ConsumerRecord

from daemon.signal import Signal

CandleKey = tuple[str, str, str]
"""(symbol, interval, ts)"""


def content(signal: Signal) -> bytes:
    """Everything a consumer acts on, i.e. the signal without ``produced_at``."""
    return msgspec.json.encode(msgspec.structs.replace(signal, produced_at=""))


def by_candle(records: Iterable[ConsumerRecord[bytes, bytes]]) -> dict[CandleKey, list[bytes]]:
    """Signal contents grouped by the candle they score, in arrival order."""
    grouped: dict[CandleKey, list[bytes]] = defaultdict(list)
    for record in records:
        signal = msgspec.json.decode(record.value, type=Signal)
        grouped[(signal.symbol, signal.interval, signal.ts)].append(content(signal))
    return dict(grouped)


def in_symbol_order(records: Iterable[ConsumerRecord[bytes, bytes]]) -> bool:
    """Whether every symbol's signals arrive in candle-time order (first copies only)."""
    seen: dict[str, str] = {}
    for record in records:
        signal = msgspec.json.decode(record.value, type=Signal)
        last = seen.get(signal.symbol)
        if last is not None and signal.ts < last:
            return False
        seen[signal.symbol] = max(signal.ts, last or "")
    return True
