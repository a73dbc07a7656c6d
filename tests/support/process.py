"""The daemon as a real process (``candlecast run --config``), for kill, restart and systemd tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from candlecast.localkafka import free_port
from tests.support.kafka import Topics

CANDLECAST = str(Path(sys.executable).with_name("candlecast"))


def write_config(
    path: Path,
    *,
    bootstrap: str,
    topics: Topics,
    artifact: Path | None = None,
    registry: Path | None = None,
    instance_id: str = "p0",
    http_port: int = 0,
    delivery: str = "exactly_once",
    extra: str = "",
    kafka_extra: dict[str, Any] | None = None,
) -> Path:
    """A TOML config for a test daemon."""
    model = f'artifact = "{artifact}"' if artifact is not None else f'registry = "{registry}"'
    kafka_lines = "".join(
        f"{key} = {value!r}\n".replace("'", '"') if isinstance(value, str) else f"{key} = {value}\n"
        for key, value in (kafka_extra or {}).items()
    )
    path.write_text(
        f"""
[kafka]
bootstrap_servers = "{bootstrap}"
candles_topic = "{topics.candles}"
signals_topic = "{topics.signals}"
dead_letter_topic = "{topics.dead_letters}"
group_id = "{topics.group}"
instance_id = "{instance_id}"
delivery = "{delivery}"
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
{kafka_lines}
[model]
{model}
reload_poll_s = 0.5

[http]
port = {http_port}

[log]
format = "json"
{extra}
"""
    )
    return path


@dataclass
class DaemonProcess:
    """One daemon process; logs go to ``log_path``."""

    config: Path
    log_path: Path
    http_port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        env = {**os.environ, "CANDLECAST_HTTP__PORT": str(self.http_port), **self.env}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [CANDLECAST, "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def get(self, path: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=timeout_s) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def ready(self) -> bool:
        try:
            return self.get("/readyz")[0] == 200
        except (OSError, urllib.error.URLError):
            return False

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready():
                return
            if not self.alive:
                raise AssertionError(f"daemon exited with {self.returncode}; log:\n{self.log_tail()}")
            time.sleep(0.1)
        raise AssertionError(f"daemon not ready in {timeout_s} s; log:\n{self.log_tail()}")

    def send(self, sig: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no drain, no commit, no goodbye."""
        self.send(signal.SIGKILL)
        self.wait()

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait for the graceful drain."""
        if self.alive:
            self.send(signal.SIGTERM)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float = 60.0) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            return self.process.wait(10)

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
