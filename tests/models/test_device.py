"""One reading of a ``device`` setting, for the daemon's ``model.device`` and training's ``--device``."""

from __future__ import annotations

import pytest
import torch

from candlecast.errors import ConfigError
from models.device import resolve_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@no_cuda
def test_cuda_without_a_device_is_a_config_error_naming_the_field() -> None:
    """Asking for CUDA where there is none is a setting to fix (``ConfigError``), named by its field."""
    with pytest.raises(ConfigError, match=r"^model\.device: cuda"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match=r"^--device: cuda"):
        resolve_device("cuda", "--device")


def test_an_unknown_device_is_a_config_error_naming_the_field() -> None:
    """A device name other than auto, cpu or cuda is refused, naming the field."""
    with pytest.raises(ConfigError, match=r"^--device: 'tpu'"):
        resolve_device("tpu", "--device")


def test_auto_is_cuda_when_present_else_the_cpu() -> None:
    """``auto`` picks CUDA when torch sees a device, the CPU otherwise; ``cpu`` is always the CPU."""
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
