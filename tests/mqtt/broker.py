"""A real Mosquitto broker for the tests: generated config, free ports, persistence in a temp dir.

One process can serve several listeners (``per_listener_settings``): anonymous, password-protected,
TLS, and TLS requiring a client certificate. Certificates are generated with ``cryptography``.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.tls import Certificates

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
USER, PASSWORD = "candlecast", "s3cret-pass"


@dataclass
class Listener:
    port: int
    password_file: Path | None = None
    certificates: Certificates | None = None
    require_client_certificate: bool = False

    def config(self) -> list[str]:
        lines = [f"listener {self.port} 127.0.0.1", f"allow_anonymous {str(self.password_file is None).lower()}"]
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file}")
        if self.certificates is not None:
            lines += [
                f"cafile {self.certificates.ca}",
                f"certfile {self.certificates.server_cert}",
                f"keyfile {self.certificates.server_key}",
            ]
        if self.require_client_certificate:
            lines.append("require_certificate true")
        return lines


@dataclass
class Mosquitto:
    """A broker process; ``stop`` and ``start`` again keep its ports and its persisted sessions."""

    directory: Path
    listeners: list[Listener]
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def port(self) -> int:
        return self.listeners[0].port

    def write_config(self) -> Path:
        lines = [
            "per_listener_settings true",
            f"user {getpass.getuser()}",
            "persistence true",
            f"persistence_location {self.directory}/",
            f"log_dest file {self.directory / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
        ]
        for listener in self.listeners:
            lines += listener.config()
        path = self.directory / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> Mosquitto:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 15
        for listener in self.listeners:
            while not _accepts(listener.port):
                if self.process.poll() is not None:
                    error = self.process.stderr.read().decode() if self.process.stderr else ""
                    raise RuntimeError(f"mosquitto exited: {error}{self.log()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on {listener.port}: {self.log()}")
                time.sleep(0.05)
        return self

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its sessions and queued messages, then exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text() if path.exists() else ""


def password_file(directory: Path) -> Path:
    path = directory / "passwords"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), USER, PASSWORD], check=True, capture_output=True)
    return path


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
