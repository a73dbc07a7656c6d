"""Credentials and TLS against a real Mosquitto: what works, and the clear errors when it does not."""

from __future__ import annotations

import ssl
from pathlib import Path

import msgspec
import pytest
from pydantic import SecretStr

from candlecast.errors import ConfigError
from daemon.settings import MqttSettings
from daemon.signal import Signal
from tests.mqtt.broker import PASSWORD, USER
from tests.mqtt.clients import Subscriber, batch, make_signal, mqtt_settings, publisher, sample
from tests.mqtt.conftest import SharedBroker

pytestmark = pytest.mark.mqtt


async def delivers(settings: MqttSettings, subscriber: Subscriber) -> Signal:
    """Publish one signal with ``settings``; what the subscriber receives."""
    sender, _ = publisher(settings)
    async with subscriber.running():
        await sender.start()
        sender.offer(batch([make_signal("AAPL", 1)]))
        (message,) = await subscriber.wait_for(1)
        await sender.close()
    return msgspec.json.decode(message.payload, type=Signal)


def trusting(certificates_ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificates_ca))


async def test_username_and_password_file_are_accepted(mqtt_broker: SharedBroker, tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text(f"{PASSWORD}\n")
    settings = mqtt_settings(mqtt_broker.password, username=USER, password_file=secret)
    watcher = Subscriber(mqtt_broker.plain, "candlecast/signals/#")
    # Both listeners belong to one broker: what the authenticated publisher sends, the watcher sees.
    assert await delivers(settings, watcher) == make_signal("AAPL", 1)


@pytest.mark.parametrize("password", ["wrong", None])
async def test_refused_credentials_stop_start_with_an_error_naming_the_setting(
    mqtt_broker: SharedBroker, password: str | None
) -> None:
    overrides = {"username": USER, "password": SecretStr(password)} if password else {}
    sender, registry = publisher(mqtt_settings(mqtt_broker.password, **overrides))
    with pytest.raises(
        ConfigError,
        match=rf"mqtt\.username/mqtt\.password: the broker at 127\.0\.0\.1:{mqtt_broker.password} refused them",
    ):
        await sender.start()
    assert sample(registry, "candlecast_mqtt_connection_errors_total", client="signals", reason="refused") == 1


async def test_tls_with_the_brokers_ca(mqtt_broker: SharedBroker) -> None:
    settings = mqtt_settings(mqtt_broker.tls, tls_ca=mqtt_broker.certificates.ca)
    watcher = Subscriber(mqtt_broker.tls, "candlecast/signals/#", tls_context=trusting(mqtt_broker.certificates.ca))
    assert await delivers(settings, watcher) == make_signal("AAPL", 1)


async def test_tls_without_the_brokers_ca_is_refused(mqtt_broker: SharedBroker) -> None:
    """The system's CAs do not trust the test CA: the handshake fails, and the error names tls_ca."""
    sender, _ = publisher(mqtt_settings(mqtt_broker.tls, tls=True))
    with pytest.raises(ConfigError, match=r"mqtt\.tls_ca: the certificate of the broker at .* is not trusted"):
        await sender.start()


async def test_tls_with_a_client_certificate(mqtt_broker: SharedBroker) -> None:
    certificates = mqtt_broker.certificates
    settings = mqtt_settings(
        mqtt_broker.mutual_tls,
        tls_ca=certificates.ca,
        tls_cert=certificates.client_cert,
        tls_key=certificates.client_key,
    )
    watcher = Subscriber(mqtt_broker.tls, "candlecast/signals/#", tls_context=trusting(certificates.ca))
    assert await delivers(settings, watcher) == make_signal("AAPL", 1)


async def test_a_client_certificate_file_that_cannot_be_read_names_the_setting(
    mqtt_broker: SharedBroker, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.tls_cert: "):
        publisher(mqtt_settings(mqtt_broker.mutual_tls, tls_ca=mqtt_broker.certificates.ca, tls_cert=tmp_path / "none"))
