"""The tail bench's arms: daemon settings beside the defaults, validated as the daemon validates its file."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from candlecast.bench.tail import Arm
from candlecast.errors import ConfigError
from daemon.settings import Settings


def test_an_arm_sets_the_fields_it_names_and_keeps_every_other() -> None:
    """``NAME:section.field=value,...`` reads values as JSON where they parse, else as text, and changes only
    those fields."""
    arm = Arm.parse("lean:model.threads=2,batching.max_wait_ms=2.5,kafka.compression=gzip")
    assert arm.name == "lean"
    base = Settings()
    changed = arm.apply(base)
    assert (changed.model.threads, changed.batching.max_wait_ms, changed.kafka.compression) == (2, 2.5, "gzip")
    assert changed.batching.max_batch == base.batching.max_batch
    assert changed.model_dump(exclude={"model", "batching", "kafka"}) == base.model_dump(
        exclude={"model", "batching", "kafka"}
    )


@pytest.mark.parametrize("text", ["lean", "lean:", ":model.threads=2", "lean:threads=2", "lean:model.threads"])
def test_an_arm_without_a_section_field_and_value_is_refused(text: str) -> None:
    """Each malformed arm is named in the error instead of running a phase with settings it did not mean."""
    with pytest.raises(ConfigError, match="arm"):
        Arm.parse(text)


def test_an_arm_value_the_daemon_would_refuse_is_refused() -> None:
    """A value out of the setting's range fails validation, as the daemon's own settings file would."""
    with pytest.raises(ValidationError):
        Arm.parse("bad:batching.max_wait_ms=-1").apply(Settings())
