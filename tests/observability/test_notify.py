"""The sd_notify protocol against a real datagram socket, as systemd would receive it.

The daemon runs as a real subprocess (``python -m candlecast run --config FILE``) with
``NOTIFY_SOCKET`` naming a socket bound here and ``WATCHDOG_USEC`` set, against the real test broker.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import statistics
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


@dataclass
class NotifyListener:
    """A bound ``AF_UNIX``/``SOCK_DGRAM`` socket and a thread recording each datagram with its arrival time."""

    path: Path
    received: list[tuple[float, str]] = field(default_factory=list)
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
            self.received.append((time.monotonic(), data.decode()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()

    def times(self, field_: str) -> list[float]:
        return [at for at, message in list(self.received) if field_ in message.split("\n")]

    async def wait_for(self, field_: str, timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if times := self.times(field_):
                return times[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {field_} within {timeout_s} s; received {self.received}")


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
    assert [message for _, message in listener.received] == [
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
    """READY=1 once /readyz passes, WATCHDOG=1 every WATCHDOG_USEC/2 but none while the event loop is blocked,
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
        ready_at = await listener.wait_for("READY=1", timeout_s=120)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                assert response.status == 200, await response.text()

            # Keep-alives at half the watchdog timeout.
            await asyncio.sleep(3.0)
            beats = [t for t in listener.times("WATCHDOG=1") if t > ready_at]
            gaps = [b - a for a, b in itertools.pairwise(beats)]
            assert len(gaps) >= 4, beats
            assert 0.4 < statistics.median(gaps) < 0.65
            assert max(gaps) < WATCHDOG_USEC / 1e6

            # A blocked event loop sends none, so systemd would kill and restart the service.
            blocked_at = time.monotonic()
            process.send_signal(signal.SIGUSR1)
            await asyncio.sleep(BLOCK_S + 1.5)
            during = [t for t in listener.times("WATCHDOG=1") if blocked_at + 0.3 < t < blocked_at + BLOCK_S - 0.3]
            assert during == []
            after = [t for t in listener.times("WATCHDOG=1") if t > blocked_at + BLOCK_S]
            assert after, "keep-alives did not resume once the loop was free again"
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
        await listener.wait_for("STOPPING=1", timeout_s=1)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
    messages = [m for _, m in listener.received]
    assert messages.index(next(m for m in messages if "READY=1" in m)) < messages.index(
        next(m for m in messages if "STOPPING=1" in m)
    )
