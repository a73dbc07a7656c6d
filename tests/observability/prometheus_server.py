"""A real Prometheus server (Debian's ``prometheus``) for tests: the shipped config and rules, a test target."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Self

import msgspec
import yaml

from candlecast.localkafka import free_port
from tests.observability.promql import PROMETHEUS_DIR

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
"""Debian's packages (``make system-deps``)."""


class PrometheusServer:
    """Scrapes one target every second with ``deploy/prometheus``'s configuration and rules."""

    def __init__(self, root: Path, target: str, *, interval_s: int = 1) -> None:
        if PROMETHEUS is None:
            raise RuntimeError("prometheus is not installed (make system-deps)")
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": f"{interval_s}s", "evaluation_interval": f"{interval_s}s"}
        config["rule_files"] = [str(PROMETHEUS_DIR / path) for path in config["rule_files"]]
        config.pop("alerting", None)  # no Alertmanager here: the ALERTS series is enough
        [job] = config["scrape_configs"]
        job["static_configs"] = [{"targets": [target]}]
        config_path = root / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self._log = (root / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 60.0) -> Self:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.root / 'prometheus.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus did not become ready")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query at the current time: its result vector (raises on a PromQL error)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = msgspec.json.decode(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{expr}: {exc.read().decode()}") from exc
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()
