"""A file-based model registry: versions side by side and a ``current`` pointer.

Layout::

    ROOT/
      current                      "NAME/VERSION", replaced atomically by `promote`
      NAME/VERSION/model.pt        the artifact (TorchScript + manifest)
      NAME/VERSION/model.pt.sha256 its file digest, recorded when it was added
      NAME/VERSION/manifest.json   a copy of the manifest, readable without torch
      NAME/VERSION/tracking.json   the MLflow run it came from, when its training was tracked
      NAME/VERSION/decision.json   for a version `candlecast retrain` made: promoted or refused, why,
                                   and both models' figures (``models.decision``)

The daemon loads ``current`` and reloads when the pointer changes; every load checks the file
digest recorded here, then the artifact's own weights digest and golden outputs.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import msgspec
import torch

from candlecast.errors import ArtifactError
from models.artifact import Manifest, file_digest
from models.decision import DECISION_FILE, Decision, encode
from models.torchscript import LoadedModel, load_artifact, read_manifest

CURRENT = "current"
ARTIFACT_FILE = "model.pt"
TRACKING_FILE = "tracking.json"
RecordT = TypeVar("RecordT", bound=msgspec.Struct)


class TrackingRun(msgspec.Struct, frozen=True):
    """An MLflow run: the store it lives in and its id (``models.tracking`` writes to it)."""

    uri: str
    run_id: str


@dataclass(frozen=True, slots=True)
class Entry:
    """One version in the registry."""

    name: str
    version: str
    directory: Path

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def artifact(self) -> Path:
        return self.directory / ARTIFACT_FILE

    @property
    def recorded_sha256(self) -> str:
        try:
            return (self.directory / f"{ARTIFACT_FILE}.sha256").read_text().split()[0]
        except (OSError, IndexError) as exc:
            raise ArtifactError(f"{self.ref}: no recorded sha256 in the registry") from exc

    def manifest(self) -> Manifest:
        return self._record("manifest.json", Manifest)

    def tracking(self) -> TrackingRun | None:
        """The MLflow run this version's training was recorded in, if any."""
        return self._optional_record(TRACKING_FILE, TrackingRun)

    def decision(self) -> Decision | None:
        """The retraining decision this version was the challenger of, if ``candlecast retrain`` made it."""
        return self._optional_record(DECISION_FILE, Decision)

    def _record(self, name: str, kind: type[RecordT]) -> RecordT:
        """The version's JSON file ``name`` decoded as ``kind``; a missing or malformed one is an ``ArtifactError``."""
        try:
            return msgspec.json.decode((self.directory / name).read_bytes(), type=kind)
        except (OSError, msgspec.DecodeError) as exc:
            raise ArtifactError(f"{self.ref}: unreadable {name} ({exc})") from exc

    def _optional_record(self, name: str, kind: type[RecordT]) -> RecordT | None:
        """As ``_record``, but None where the version has no such file."""
        return self._record(name, kind) if (self.directory / name).exists() else None


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def pointer(self) -> Path:
        return self.root / CURRENT

    def entries(self) -> list[Entry]:
        """All versions, sorted by name and then by the manifest's creation time."""
        found = [
            Entry(artifact.parent.parent.name, artifact.parent.name, artifact.parent)
            for artifact in self.root.glob(f"*/*/{ARTIFACT_FILE}")
        ]
        return sorted(found, key=lambda e: (e.name, _created_at(e), e.version))

    def entry(self, ref: str) -> Entry:
        name, _, version = ref.partition("/")
        directory = self.root / name / version
        if not version or not (directory / ARTIFACT_FILE).is_file():
            raise ArtifactError(f"no version {ref!r} in the registry at {self.root}")
        return Entry(name, version, directory)

    def current(self) -> Entry | None:
        try:
            ref = self.pointer.read_text().strip()
        except FileNotFoundError:
            return None
        return self.entry(ref)

    def current_ref(self) -> str | None:
        """The pointer's text, without checking it (cheap enough to poll)."""
        try:
            return self.pointer.read_text().strip() or None
        except FileNotFoundError:
            return None

    def add(self, artifact: Path) -> Entry:
        """Copy an artifact into the registry under its manifest's name and version."""
        manifest = read_manifest(artifact)
        directory = self.root / manifest.name / manifest.version
        target = directory / ARTIFACT_FILE
        digest = file_digest(artifact)
        if target.exists():
            if file_digest(target) == digest:
                return Entry(manifest.name, manifest.version, directory)
            raise ArtifactError(f"{manifest.name}/{manifest.version} is already in the registry with other content")
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact, target)
        (directory / f"{ARTIFACT_FILE}.sha256").write_text(f"{digest}  {ARTIFACT_FILE}\n")
        (directory / "manifest.json").write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
        return Entry(manifest.name, manifest.version, directory)

    def record_tracking(self, entry: Entry, run: TrackingRun) -> None:
        """Record the MLflow run a version came from (``candlecast models show`` prints it)."""
        (entry.directory / TRACKING_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(run)) + b"\n")

    def record_decision(self, entry: Entry, decision: Decision) -> None:
        """Record a retraining decision beside its challenger (written whole, then renamed into place)."""
        partial = entry.directory / f"{DECISION_FILE}.partial"
        partial.write_bytes(encode(decision))
        partial.replace(entry.directory / DECISION_FILE)

    def champion(self, name: str) -> Entry | None:
        """The version of ``name`` in service: the current one when ``current`` names this model, else
        the newest version of it that no retraining refused (another model may hold the pointer)."""
        current = self.current()
        if current is not None and current.name == name:
            return current
        candidates = [e for e in self.entries() if e.name == name and _not_refused(e)]
        return candidates[-1] if candidates else None

    def load(self, entry: Entry, device: str | torch.device = "cpu") -> LoadedModel:
        """Load and verify a version: recorded file digest, weights digest, golden outputs."""
        return load_artifact(entry.artifact, device, expected_sha256=entry.recorded_sha256)

    def promote(self, ref: str) -> Entry:
        """Verify a version and make it current (atomic rename of the pointer)."""
        entry = self.entry(ref)
        self.load(entry)
        partial = self.pointer.with_suffix(".partial")
        partial.write_text(f"{entry.ref}\n")
        partial.replace(self.pointer)
        return entry

    def prune(self, keep: int) -> list[Entry]:
        """Delete all but the ``keep`` newest versions of each name; never the current one."""
        current = self.current_ref()
        removed: list[Entry] = []
        by_name: dict[str, list[Entry]] = {}
        for entry in self.entries():
            by_name.setdefault(entry.name, []).append(entry)
        for versions in by_name.values():
            for entry in versions[: max(0, len(versions) - keep)]:
                if entry.ref != current:
                    shutil.rmtree(entry.directory)
                    removed.append(entry)
        return removed


def _not_refused(entry: Entry) -> bool:
    try:
        decision = entry.decision()
    except ArtifactError:
        return False
    return decision is None or decision.outcome == "promoted"


def _created_at(entry: Entry) -> str:
    try:
        return entry.manifest().created_at
    except ArtifactError:
        return ""
