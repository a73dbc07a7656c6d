"""What a hot reload accepts: the same model, reading the same windows, in a new version."""

from __future__ import annotations

import msgspec
import pytest

from candlecast.errors import ArtifactError
from daemon.serving import check_compatible
from tests.support.scorer import fake_manifest


def test_a_new_version_of_the_same_model_is_accepted() -> None:
    """Only the version differs: the reload goes ahead."""
    check_compatible(fake_manifest(version="2.0.0"), fake_manifest(version="1.0.0"))


def test_another_model_is_refused_since_signals_name_the_routes_model() -> None:
    """A model of another name is refused, naming the field: a route's signals carry its model's name."""
    other = msgspec.structs.replace(fake_manifest(version="2.0.0"), name="other")
    with pytest.raises(ArtifactError, match="name is 'other', the running model's is 'fake'"):
        check_compatible(other, fake_manifest())
