"""Session fixtures: a real Kafka broker on free ports, and a small exported model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from candlecast.localkafka import LocalKafka
from tests.support.model import build_streaming_test_model, build_test_model


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


@pytest.fixture(scope="session")
def streaming_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny streaming artifact (step path beside the windowed forward), version 0.0.1."""
    path = tmp_path_factory.mktemp("streaming") / "test-streaming.pt"
    build_streaming_test_model(path)
    return path
