"""Fixtures of the in-memory flow tests: a second model version for reloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.model import build_streaming_test_model, build_test_model


@pytest.fixture(scope="session")
def second_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test model's architecture with other weights, as version 0.0.2."""
    path = tmp_path_factory.mktemp("model-v2") / "test-ensemble-v2.pt"
    build_test_model(path, version="0.0.2", seed=11)
    return path


@pytest.fixture(scope="session")
def second_streaming_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The streaming test model with other weights, as version 0.0.2."""
    path = tmp_path_factory.mktemp("streaming-v2") / "test-streaming-v2.pt"
    build_streaming_test_model(path, version="0.0.2", seed=11)
    return path
