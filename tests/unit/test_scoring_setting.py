"""``model.scoring``: which path a route scores through, inherited by routes like every model key, and
refused by name when it asks for a step path the artifact does not have."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from candlecast.errors import ConfigError
from daemon.settings import load_settings
from daemon.stepped_model import resolve_scoring
from models.artifact import Streaming
from tests.support.scorer import fake_manifest

ROUTES = """
[model]
artifact = "/models/default.pt"
scoring = "stream"

[[routes]]
name = "inherits"
interval = "1h"
model = { name = "crypto-1h" }

[[routes]]
name = "overrides"
interval = "1d"
model = { scoring = "window" }
"""


def test_routes_inherit_the_scoring_mode_and_may_set_their_own(tmp_path: Path) -> None:
    """A route that does not name ``scoring`` takes the top-level one (also when it names its own model);
    one that names it keeps its own."""
    config = tmp_path / "c.toml"
    config.write_text(ROUTES)
    inherits, overrides = load_settings(config).served_routes()
    assert inherits.model.scoring == "stream"
    assert overrides.model.scoring == "window"


def test_an_unknown_scoring_mode_is_refused_naming_the_field(tmp_path: Path) -> None:
    """Only ``auto``, ``window`` and ``stream`` are modes; another is refused naming the route's field."""
    config = tmp_path / "c.toml"
    config.write_text('[[routes]]\nname = "a"\nmodel = { scoring = "steps" }\n')
    with pytest.raises(ConfigError, match=r"routes\.0\.model\.scoring"):
        load_settings(config)


def test_auto_streams_exactly_when_the_manifest_says_the_artifact_streams() -> None:
    """``auto`` picks the step path for a manifest with a ``streaming`` section and the windowed forward
    otherwise; ``window`` always runs the window; ``stream`` without a step path is a ``ConfigError``."""
    windowed = fake_manifest()
    streaming = msgspec.structs.replace(windowed, streaming=Streaming(span=16, lookback=8, state_size=16))
    assert resolve_scoring("auto", windowed) == "window"
    assert resolve_scoring("auto", streaming) == "stream"
    assert resolve_scoring("window", streaming) == "window"
    assert resolve_scoring("stream", streaming) == "stream"
    with pytest.raises(ConfigError, match=r'model\.scoring: "stream", but fake/.* has no step path'):
        resolve_scoring("stream", windowed)
