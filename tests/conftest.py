"""Session fixtures: a real Kafka broker on free ports, and a small exported model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from candlecast.localkafka import LocalKafka
from tests.support.model import build_test_model


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    cluster = LocalKafka(tmp_path_factory.mktemp("kafka")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def test_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "test-ensemble.pt"
    build_test_model(path)
    return path
