"""Brokers for the MQTT tests: one shared broker with four listeners, and fresh ones for restarts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from candlecast.localkafka import free_port
from tests.mqtt.broker import Listener, Mosquitto, password_file
from tests.support.tls import Certificates, make_certificates


@dataclass(frozen=True)
class SharedBroker:
    broker: Mosquitto
    plain: int
    """Anonymous, no TLS."""
    password: int
    """Needs ``USER`` / ``PASSWORD``."""
    tls: int
    """TLS with the test CA's server certificate."""
    mutual_tls: int
    """TLS that also requires a client certificate signed by the test CA."""
    certificates: Certificates


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedBroker]:
    directory = tmp_path_factory.mktemp("mosquitto")
    certificates = make_certificates(directory / "tls")
    listeners = [
        Listener(free_port()),
        Listener(free_port(), password_file=password_file(directory)),
        Listener(free_port(), certificates=certificates),
        Listener(free_port(), certificates=certificates, require_client_certificate=True),
    ]
    broker = Mosquitto(directory / "broker", listeners).start()
    plain, password, tls, mutual_tls = (listener.port for listener in listeners)
    yield SharedBroker(broker, plain, password, tls, mutual_tls, certificates)
    broker.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[Callable[[int | None], Mosquitto]]:
    """Brokers of one test (``make(port)``; not yet started), stopped at its end."""
    made: list[Mosquitto] = []

    def make(port: int | None = None) -> Mosquitto:
        broker = Mosquitto(tmp_path / f"broker-{len(made)}", [Listener(port or free_port())])
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.stop()
