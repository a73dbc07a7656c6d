"""Which model fits which candles: a file or market of another interval than the model's is
refused with the models a registry holds, so the user can pick one instead of getting nothing."""

from __future__ import annotations

from models.artifact import Manifest
from models.registry import Registry


def available_models(registry: Registry) -> str:
    """``name/version (interval, calendar)`` of every version in a registry."""
    described = []
    for entry in registry.entries():
        manifest = entry.manifest()
        described.append(f"{entry.ref} ({manifest.interval}, {manifest.calendar})")
    return ", ".join(described) or "none"


def misfit(manifest: Manifest, interval: str, registry: Registry) -> str | None:
    """Why ``manifest``'s model cannot score candles of ``interval``, naming the models available;
    None when it can."""
    if interval == manifest.interval:
        return None
    return (
        f"the candles are {interval}, the model scores {manifest.interval} candles ({manifest.name} "
        f"{manifest.version}, {manifest.calendar} calendar); models in {registry.root}: "
        f"{available_models(registry)}"
    )
