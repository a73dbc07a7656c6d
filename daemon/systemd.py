"""The systemd notify protocol (sd_notify): READY, STOPPING, STATUS and watchdog keep-alives.

Datagrams go to the socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract
socket); without it every call is a no-op, so the daemon runs the same outside systemd.
"""

from __future__ import annotations

import os
import socket


class SystemdNotifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._address = None if not address else "\0" + address[1:] if address.startswith("@") else address
        watchdog_usec = os.environ.get("WATCHDOG_USEC")
        watchdog_pid = os.environ.get("WATCHDOG_PID")
        mine = watchdog_pid is None or watchdog_pid == str(os.getpid())
        self.watchdog_interval_s = int(watchdog_usec) / 1e6 / 2 if watchdog_usec and mine else None
        """Half the watchdog timeout, as sd_watchdog_enabled(3) advises; ``None`` when disabled."""

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        if self._address is None:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode(), self._address)
        return True

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def stopping(self, status: str = "draining") -> None:
        self.notify("STOPPING=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")
