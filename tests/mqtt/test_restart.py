"""A broker restart mid-stream loses nothing at QoS 1.

What QoS 1 promises, and what is asserted: every signal reaches a persistent-session subscriber
*at least once*. A repeat is possible when an acknowledgement is lost with the connection; it is
byte-for-byte the same message (same ``signal_id``), so consumers drop it by id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import msgspec
import pytest

from daemon.signal import Signal
from tests.mqtt.broker import Mosquitto
from tests.mqtt.clients import Subscriber, batch, make_signal, mqtt_settings, publisher, sample
from tests.support.kafka import wait_until

pytestmark = pytest.mark.mqtt

SYMBOLS = ("AAPL", "MSFT", "NVDA")


async def test_signals_published_while_the_broker_is_down_arrive_after_it_restarts(
    fresh_broker: Callable[[int | None], Mosquitto],
) -> None:
    """Signals offered while the broker is down wait in the buffer, then arrive (at least once, in
    per-symbol order) at a persistent subscriber once it is back."""
    broker = fresh_broker(None).start()
    sender, registry = publisher(mqtt_settings(broker.port))
    before = [make_signal(symbol, i) for i in range(10) for symbol in SYMBOLS]
    during = [make_signal(symbol, i) for i in range(10, 20) for symbol in SYMBOLS]
    after = [make_signal(symbol, i) for i in range(20, 25) for symbol in SYMBOLS]

    async with Subscriber(broker.port, "candlecast/signals/#", persistent=True).running() as subscriber:
        await sender.start()
        sender.offer(batch(before))
        await subscriber.wait_for(len(before))
        await wait_until(lambda: sender.pending == 0, timeout_s=10)  # acknowledged, not only delivered

        broker.stop()
        await wait_until(lambda: sample(registry, "candlecast_mqtt_connected", client="signals") == 0, timeout_s=10)
        sender.offer(batch(during))
        assert sender.pending == len(during)

        broker.start()
        sender.offer(batch(after))
        await subscriber.wait_for(len(before) + len(during) + len(after), timeout_s=60)
        # A marker offered last arrives after any repeat of what was in flight when the broker stopped.
        marker = make_signal("MARKER", 0)
        sender.offer(batch([marker]))
        await wait_until(lambda: any(b'"MARKER"' in m.payload for m in subscriber.messages), timeout_s=30)
        await sender.close()

    signals = [msgspec.json.decode(m.payload, type=Signal) for m in subscriber.messages]
    assert signals[-1] == marker
    signals = signals[:-1]
    copies = Counter(s.signal_id for s in signals)
    sent = before + during + after
    assert set(copies) == {s.signal_id for s in sent}, "every signal arrives (at least once)"
    first_copies = list({s.signal_id: s for s in signals}.values())
    for symbol in SYMBOLS:
        assert [s for s in first_copies if s.symbol == symbol] == [s for s in sent if s.symbol == symbol]
    assert len(signals) >= len(sent)
    assert sample(registry, "candlecast_mqtt_connection_errors_total", client="signals", reason="lost") >= 1
    assert sample(registry, "candlecast_mqtt_signals_buffered") == 0
