"""The sd_notify protocol against a real datagram socket, as systemd would receive it.

The daemon runs as a real subprocess (``python -m candlecast run --config FILE``) with
``NOTIFY_SOCKET`` naming a socket bound here and ``WATCHDOG_USEC`` set, against the real test broker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from candlecast.localkafka import LocalKafka, free_port
from daemon.service import DEBUG_BLOCK_LOOP_VARIABLE
from daemon.systemd import SystemdNotifier
from tests.support.kafka import fresh_topics

WATCHDOG_USEC = 1_000_000
BLOCK_S = 3.0
BLOCKED, FREE = "STATUS=debug: event loop blocked", "STATUS=debug: event loop free"


@dataclass
class NotifyListener:
    """A bound ``AF_UNIX``/``SOCK_DGRAM`` socket and a thread recording each datagram in arrival order."""

    path: Path
    received: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(self.path))
        self._socket.settimeout(0.1)
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._socket.recv(4096)
            except TimeoutError:
                continue
            self.received.append(data.decode())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()

    def messages(self) -> list[str]:
        """Every field of every datagram so far, in arrival order."""
        return [line for message in list(self.received) for line in message.split("\n")]

    async def wait_for(self, field_: str, timeout_s: float, *, count: int = 1, after: str | None = None) -> None:
        """Until ``count`` datagrams carried ``field_`` (after the first ``after``, when given)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            fields = self.messages()
            if after is None or after in fields:
                since = fields[fields.index(after) + 1 :] if after is not None else fields
                if since.count(field_) >= count:
                    return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {count} x {field_} within {timeout_s} s; received {self.received}")


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    receiver = NotifyListener(tmp_path / "notify.sock")
    yield receiver
    receiver.close()


def test_notifier_sends_datagrams_to_the_socket(listener: NotifyListener, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = SystemdNotifier(str(listener.path))
    assert notifier.watchdog_interval_s == 1.5
    notifier.ready("serving 1.0")
    notifier.watchdog()
    notifier.stopping()
    deadline = time.monotonic() + 5
    while len(listener.received) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert listener.received == [
        "READY=1\nSTATUS=serving 1.0",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=draining",
    ]


def test_notifier_is_a_no_op_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # the watchdog is someone else's
    notifier = SystemdNotifier()
    assert not notifier.enabled
    assert not notifier.notify("READY=1")
    assert notifier.watchdog_interval_s is None


def write_config(path: Path, bootstrap: str, topics_: object, artifact: Path, port: int) -> None:
    candles, signals, dead_letters, group = (
        getattr(topics_, n) for n in ("candles", "signals", "dead_letters", "group")
    )
    path.write_text(
        f"""
[kafka]
bootstrap_servers = "{bootstrap}"
candles_topic = "{candles}"
signals_topic = "{signals}"
dead_letter_topic = "{dead_letters}"
group_id = "{group}"
instance_id = "notify-test"

[model]
artifact = "{artifact}"
threads = 1

[http]
port = {port}

[log]
format = "json"
"""
    )


@pytest.mark.kafka
async def test_ready_watchdog_and_stopping_from_a_real_daemon(
    kafka: LocalKafka, test_artifact: Path, listener: NotifyListener, tmp_path: Path
) -> None:
    """READY=1 once /readyz passes, WATCHDOG=1 keep-alives but none while the event loop is blocked,
    STOPPING=1 on SIGTERM."""
    topics = await fresh_topics(kafka.bootstrap_servers, candle_partitions=1)
    port = free_port()
    config = tmp_path / "candlecast.toml"
    write_config(config, kafka.bootstrap_servers, topics, test_artifact, port)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(listener.path),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        DEBUG_BLOCK_LOOP_VARIABLE: str(BLOCK_S),
    }
    env.pop("WATCHDOG_PID", None)
    log = (tmp_path / "daemon.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "candlecast", "run", "--config", str(config), env=env, stdout=log, stderr=log
    )
    try:
        await listener.wait_for("READY=1", timeout_s=120)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                assert response.status == 200, await response.text()

            # Keep-alives flow (the interval, WATCHDOG_USEC/2, is the notifier's test above).
            await listener.wait_for("WATCHDOG=1", timeout_s=30, count=3, after="READY=1")

            # A blocked event loop sends none, so systemd would kill and restart the service; the
            # daemon marks the block's start and end, and keep-alives resume after it.
            process.send_signal(signal.SIGUSR1)
            await listener.wait_for("WATCHDOG=1", timeout_s=30, after=FREE)
            order = listener.messages()
            blocked, free = order.index(BLOCKED), order.index(FREE)
            assert "WATCHDOG=1" in order[:blocked], "keep-alives flowed before the block"
            assert "WATCHDOG=1" not in order[blocked:free]
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
        await listener.wait_for("STOPPING=1", timeout_s=5)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
    messages = listener.messages()
    assert messages.index("READY=1") < messages.index("STOPPING=1")
