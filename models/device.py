"""Which torch device a ``device`` setting names: the daemon's ``model.device``, training's ``--device``."""

from __future__ import annotations

import torch

from candlecast.errors import ConfigError

DEVICE_NAMES = ("auto", "cpu", "cuda")


def resolve_device(setting: str, field: str = "model.device") -> torch.device:
    """``auto`` is CUDA when torch sees a device, else the CPU; an unknown name, or CUDA where there is
    none, is a ``ConfigError`` naming ``field``."""
    if setting not in DEVICE_NAMES:
        raise ConfigError(f"{field}: {setting!r} is not one of {', '.join(DEVICE_NAMES)}")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{field}: cuda was asked for but no CUDA device is available")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)
