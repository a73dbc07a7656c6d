"""A real Apache Kafka broker (KRaft mode) run from its Maven Central jars, for the demo,
development (``make kafka-up``) and tests (one node, or three for failover).

The jars are fetched once with Maven (``deploy/kafka/pom.xml``) into ``.cache/kafka/libs`` of the
source tree, or the directory named by ``$CANDLECAST_KAFKA_LIBS``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from candlecast.errors import CandlecastError

SOURCE_ROOT = Path(__file__).resolve().parent.parent
KAFKA_POM = SOURCE_ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J = SOURCE_ROOT / "deploy" / "kafka" / "log4j.properties"
STARTED = "Kafka Server started"


class BrokerError(CandlecastError):
    """The local broker could not be fetched or started."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def kafka_libs() -> Path:
    """The broker's jar directory, fetched with Maven on first use."""
    libs = Path(os.environ.get("CANDLECAST_KAFKA_LIBS", SOURCE_ROOT / ".cache" / "kafka" / "libs"))
    if any(libs.glob("kafka_2.13-*.jar")):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None or not KAFKA_POM.is_file():
        raise BrokerError(f"no Kafka jars in {libs}; run `make kafka-jars` (needs Maven and a source checkout)")
    libs.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            mvn,
            "-B",
            "-q",
            "-f",
            str(KAFKA_POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        check=True,
    )
    return libs


@dataclass
class BrokerNode:
    node_id: int
    port: int
    controller_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class LocalKafka:
    """One or more KRaft nodes (each broker and controller) on 127.0.0.1."""

    root: Path
    nodes: int = 1
    ports: list[int] | None = None
    """PLAINTEXT ports; free ones are picked when not given."""
    properties: dict[str, str] = field(default_factory=dict)
    """Extra or overriding server properties (e.g. SASL listeners), applied to every node."""
    heap: str = "512m"
    sasl_ssl_port: int | None = None
    """Adds a SASL_SSL client listener on this port (single node); configure it through ``properties``."""
    format_args: list[str] = field(default_factory=list)
    """Extra storage-format arguments, e.g. ``--add-scram`` to create SCRAM users."""
    members: list[BrokerNode] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        ports = self.ports or [free_port() for _ in range(self.nodes)]
        self.members = [BrokerNode(i + 1, ports[i], free_port(), self.root / f"node{i + 1}") for i in range(self.nodes)]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.members)

    def _server_properties(self, node: BrokerNode) -> str:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.members)
        replication = str(min(3, self.nodes))
        listeners = f"PLAINTEXT://127.0.0.1:{node.port}"
        protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        if self.sasl_ssl_port is not None:
            listeners += f",SASL_SSL://127.0.0.1:{self.sasl_ssl_port}"
            protocols += ",SASL_SSL:SASL_SSL"
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"{listeners},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": listeners,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": protocols,
            "log.dirs": str(node.data_dir / "logs"),
            "offsets.topic.replication.factor": replication,
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": "2" if self.nodes >= 3 else "1",
            "transaction.state.log.num.partitions": "4",
            "default.replication.factor": replication,
            "min.insync.replicas": "2" if self.nodes >= 3 else "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.dedupe.buffer.size": "16777216",
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "broker.session.timeout.ms": "5000",
            "broker.heartbeat.interval.ms": "500",
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": "2000",
            "log.flush.interval.messages": "9223372036854775807",
        }
        props.update(self.properties)
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def start(self, timeout_s: float = 90.0) -> LocalKafka:
        libs = kafka_libs()
        cluster_id = self._formatted_cluster_id() or _cluster_id(libs)
        for node in self.members:
            node.data_dir.mkdir(parents=True, exist_ok=True)
            config = node.data_dir / "server.properties"
            config.write_text(self._server_properties(node))
            subprocess.run(
                [
                    "java",
                    "-cp",
                    f"{libs}/*",
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(config),
                    "--ignore-formatted",
                    *self.format_args,
                ],
                check=True,
                capture_output=True,
            )
        for node in self.members:
            self.start_node(node, wait=False)
        deadline = time.monotonic() + timeout_s
        for node in self.members:
            self._wait_started(node, deadline)
        return self

    def _formatted_cluster_id(self) -> str | None:
        """The cluster id of data formatted by an earlier start: a restart must format with the same one."""
        for node in self.members:
            meta = node.data_dir / "logs" / "meta.properties"
            if meta.is_file():
                for line in meta.read_text().splitlines():
                    key, _, value = line.partition("=")
                    if key.strip() == "cluster.id":
                        return value.strip()
        return None

    def start_node(self, node: BrokerNode, *, wait: bool = True, timeout_s: float = 90.0) -> None:
        libs = kafka_libs()
        config = node.data_dir / "server.properties"
        node.log_path.write_bytes(b"")
        log_file = node.log_path.open("ab")
        node.process = subprocess.Popen(
            [
                "java",
                f"-Xmx{self.heap}",
                "-Xms128m",
                "-XX:+UseSerialGC",
                "-cp",
                f"{libs}/*",
                f"-Dlog4j.configuration=file:{LOG4J}",
                "kafka.Kafka",
                str(config),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()
        if wait:
            self._wait_started(node, time.monotonic() + timeout_s)

    def _wait_started(self, node: BrokerNode, deadline: float) -> None:
        while time.monotonic() < deadline:
            if STARTED in node.log_path.read_text(errors="replace"):
                return
            if not node.alive:
                raise BrokerError(f"Kafka node {node.node_id} exited; see {node.log_path}")
            time.sleep(0.2)
        raise BrokerError(f"Kafka node {node.node_id} did not start in time; see {node.log_path}")

    def kill_node(self, node: BrokerNode, sig: int = signal.SIGKILL) -> None:
        if node.process is not None and node.alive:
            os.killpg(node.process.pid, sig)
            node.process.wait(timeout=60)

    def stop(self) -> None:
        for node in self.members:
            if node.alive:
                assert node.process is not None
                os.killpg(node.process.pid, signal.SIGTERM)
        for node in self.members:
            if node.process is not None:
                try:
                    node.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(node.process.pid, signal.SIGKILL)
                    node.process.wait(timeout=20)

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _cluster_id(libs: Path) -> str:
    try:
        result = subprocess.run(
            ["java", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "random-uuid"],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BrokerError(f"java cannot run the Kafka storage tool: {exc}") from exc
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else str(uuid.uuid4())
