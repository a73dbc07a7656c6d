"""Loading the model to serve: threads, verification, warm-up, reload compatibility (the device a
setting names is ``models.device``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

import numpy as np
import structlog
import torch

from candlecast.errors import ArtifactError, ConfigError
from daemon.ports import Scorer
from daemon.settings import ModelSettings
from daemon.stepped_model import ScoringMode, SteppedModel, StepTally, resolve_scoring, warm_up_origins
from models.artifact import BATCH_MULTIPLE, Manifest
from models.registry import Entry, Registry
from models.torchscript import LoadedModel, load_artifact

log = structlog.get_logger("candlecast.model")


class ServedModel(Scorer, Protocol):
    """A scorer the daemon serves: loaded on a device from a file it can tell apart from another."""

    @property
    def device(self) -> torch.device: ...

    @property
    def file_sha256(self) -> str: ...


ModelLoader = Callable[[ModelSettings, torch.device], ServedModel]
"""Loads the model the settings name onto a device (``load_serving_model``; flow tests load fakes)."""


def configure_threads(threads: int) -> int:
    """Set torch's intra-op threads; 0 leaves one core to the event loop (at least one thread)."""
    count = threads or max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(count)
    return count


def load_serving_model(settings: ModelSettings, device: torch.device) -> LoadedModel:
    """The artifact named by the settings, verified: an explicit file, else the registry's version
    (``served_entry``)."""
    if settings.artifact is not None:
        return load_artifact(settings.artifact, device)
    registry = Registry(settings.registry)
    return registry.load(served_entry(registry, settings), device)


def served_scoring(
    model: ServedModel, scoring: ScoringMode, windows: int, tally: StepTally | None = None
) -> ServedModel:
    """The model as ``model.scoring`` serves it: through its step path (``SteppedModel``, with new
    states for at most ``windows`` keys, the route's ``windows.max_windows``, counting its steps in
    the route's ``tally`` when given) or its windowed forward; raises ``ConfigError`` naming the setting when
    ``stream`` meets an artifact without a step path."""
    if resolve_scoring(scoring, model.manifest) == "window":
        return model
    if not isinstance(model, LoadedModel):
        raise ConfigError(f"model.scoring: {model.manifest.name}/{model.version} is not a TorchScript artifact")
    return SteppedModel(model, tally, windows)


def served_entry(registry: Registry, settings: ModelSettings) -> Entry:
    """The registry version the settings serve: ``current``, or with ``name`` that model's current
    version when ``current`` names it, else its newest that ``candlecast retrain`` did not refuse
    (``Registry.champion``)."""
    current = registry.current()
    if settings.name is None or (current is not None and current.name == settings.name):
        if current is None:
            raise ArtifactError(f"model.registry: {settings.registry} has no current version")
        return current
    champion = registry.champion(settings.name)
    if champion is None:
        known = sorted({entry.name for entry in registry.entries()})
        raise ArtifactError(
            f"model.name: no model {settings.name!r} in the registry at {settings.registry} "
            f"(it holds: {', '.join(known) or 'nothing'})"
        )
    return champion


def served_ref(settings: ModelSettings) -> str | None:
    """What a registry-served route would load now (``NAME/VERSION``), cheap enough to poll; ``None``
    for an artifact file, or when the registry cannot say."""
    if settings.artifact is not None:
        return None
    registry = Registry(settings.registry)
    if settings.name is None:
        return registry.current_ref()
    try:
        return served_entry(registry, settings).ref
    except ArtifactError:
        return None


WARM_EVERY_SIZE_UP_TO = 256
"""Up to this many rows every padded batch size is warmed: the first forward pass at a new size pays
TorchScript's one-off specialisation for that shape (milliseconds, or seconds when the profiling
executor re-optimises; docs/benchmarks.md), and such batches form all the time at moderate load.
Larger batches form only under heavy load, where that one-off is small beside the pass."""


def warm_up_sizes(max_batch: int) -> list[int]:
    """Batch sizes the scorer can form, padded: every multiple of 8 up to ``WARM_EVERY_SIZE_UP_TO``,
    then powers of two, and the largest."""
    largest = -(-max_batch // BATCH_MULTIPLE) * BATCH_MULTIPLE
    sizes = list(range(BATCH_MULTIPLE, min(largest, WARM_EVERY_SIZE_UP_TO) + 1, BATCH_MULTIPLE))
    size = WARM_EVERY_SIZE_UP_TO * 2
    while size < largest:
        sizes.append(size)
        size *= 2
    if sizes[-1] != largest:
        sizes.append(largest)
    return sizes


def warm_up(model: Scorer, max_batch: int) -> None:
    """Run the model once at each batch size it will see, so no live request pays for first-call
    setup (once is enough: the second pass at a size is as fast as any later one)."""
    golden = np.asarray(model.manifest.golden.input, dtype=np.float32)
    for size in warm_up_sizes(max_batch):
        windows = np.resize(golden, (size, *golden.shape[1:]))
        model.score(windows, warm_up_origins(windows, model.manifest))


def check_compatible(new: Manifest, old: Manifest) -> None:
    """A reloaded model must be the same model (its name is in every signal of the route) reading the
    same windows and predicting the same things; only its version changes."""
    for field in ("name", "window", "interval", "calendar", "horizons", "quantiles"):
        if getattr(new, field) != getattr(old, field):
            raise ArtifactError(
                f"{new.name}/{new.version}: {field} is {getattr(new, field)!r}, the running model's is "
                f"{getattr(old, field)!r}; restart the daemon to change it"
            )
