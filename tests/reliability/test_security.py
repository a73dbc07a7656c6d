"""TLS and SASL (SCRAM-SHA-512, PLAIN) against a real broker with a SASL_SSL listener and a test CA."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from candlecast.candlefile import bundled_path, read_candles
from candlecast.localkafka import LocalKafka, free_port
from candlecast.replay import publish_candles
from daemon.settings import HttpSettings, KafkaSettings, ModelSettings, Settings
from tests.support.kafka import Topics, fresh_topics, read_records, running_daemon
from tests.support.tls import Certificates, make_certificates

pytestmark = pytest.mark.kafka

SCRAM_PASSWORD = "alice-s3cret-value"
PLAIN_PASSWORD = "bob-s3cret-value"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, int, Certificates]]:
    root = tmp_path_factory.mktemp("secured")
    certs = make_certificates(root / "tls")
    port = free_port()
    broker = LocalKafka(
        root / "kafka",
        sasl_ssl_port=port,
        properties={
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
            "listener.name.sasl_ssl.plain.sasl.jaas.config": (
                f'org.apache.kafka.common.security.plain.PlainLoginModule required user_bob="{PLAIN_PASSWORD}";'
            ),
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(certs.server_bundle),
        },
        format_args=["--add-scram", f"SCRAM-SHA-512=[name=alice,password={SCRAM_PASSWORD}]"],
    ).start()
    yield broker, port, certs
    broker.stop()


def secured_settings(
    port: int, topics: Topics, artifact: Path, mechanism: str, user: str, password_file: Path, ca: Path | None
) -> Settings:
    return Settings(
        kafka=KafkaSettings(
            bootstrap_servers=f"127.0.0.1:{port}",
            candles_topic=topics.candles,
            signals_topic=topics.signals,
            dead_letter_topic=topics.dead_letters,
            group_id=topics.group,
            instance_id=f"secure-{mechanism}",
            security_protocol="SASL_SSL",
            sasl_mechanism=mechanism,
            sasl_username=user,
            sasl_password_file=password_file,
            ssl_cafile=ca,
        ),
        model=ModelSettings(artifact=artifact),
        http=HttpSettings(port=0),
    )


@pytest.mark.parametrize(
    ("mechanism", "user", "password"), [("SCRAM-SHA-512", "alice", SCRAM_PASSWORD), ("PLAIN", "bob", PLAIN_PASSWORD)]
)
async def test_daemon_over_sasl_ssl(
    secured: tuple[LocalKafka, int, Certificates],
    test_artifact: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    mechanism: str,
    user: str,
    password: str,
) -> None:
    """The daemon consumes and publishes over TLS with SASL; the password never reaches the logs."""
    broker, port, certs = secured
    topics = await fresh_topics(broker.bootstrap_servers)
    table = read_candles(bundled_path("us_stocks_1d.csv")).only(["AAPL", "NVDA"]).tail_per_symbol(70)
    await publish_candles(table.messages("1d"), bootstrap_servers=broker.bootstrap_servers, topic=topics.candles)
    secret = tmp_path / "password"
    secret.write_text(password + "\n")
    settings = secured_settings(port, topics, test_artifact, mechanism, user, secret, certs.ca)
    assert password not in repr(settings)
    caplog.set_level(logging.DEBUG)
    async with running_daemon(settings):
        records = await read_records(broker.bootstrap_servers, topics.signals, expected=14, settle_s=1)
    assert len(records) == 2 * (70 - 64 + 1)
    assert password not in caplog.text
    assert password not in "".join(capsys.readouterr())


@pytest.mark.parametrize("failure", ["wrong password", "untrusted certificate"])
async def test_refused_connections_keep_the_daemon_not_ready(
    secured: tuple[LocalKafka, int, Certificates],
    test_artifact: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    """A bad credential or an untrusted broker certificate: the daemon stays not ready, says why, and retries."""
    broker, port, certs = secured
    topics = await fresh_topics(broker.bootstrap_servers)
    secret = tmp_path / "password"
    secret.write_text("not-the-password" if failure == "wrong password" else SCRAM_PASSWORD)
    ca = certs.ca if failure == "wrong password" else None
    settings = secured_settings(port, topics, test_artifact, "SCRAM-SHA-512", "alice", secret, ca)
    caplog.set_level(logging.WARNING)
    async with running_daemon(settings) as daemon:
        await asyncio.sleep(6)
        assert not daemon.became_ready.is_set()
        assert not all(daemon.health.readiness().values())
    expected = "SaslAuthenticationFailed" if failure == "wrong password" else "CERTIFICATE_VERIFY_FAILED"
    assert expected in caplog.text
    assert "not-the-password" not in caplog.text
