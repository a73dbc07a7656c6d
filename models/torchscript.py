"""TorchScript artifacts: load, verify, score and save (the one model module that imports torch).

Loading never unpickles Python objects: the archive is read by ``torch.jit.load`` (TorchScript's
own restricted format) and the manifest is plain JSON (``models.artifact``). ``load_artifact``
verifies what it loads (the weights digest, and the outputs on the golden input stored in the
manifest) and raises ``ArtifactError`` naming what is wrong, so that a running daemon can refuse a
bad artifact and keep the model it has.
"""

from __future__ import annotations

import hashlib
import io
import math
import platform
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt
import torch

from candlecast.errors import ArtifactError
from models.artifact import (
    MANIFEST_FILE,
    Manifest,
    ModelOutputs,
    Streaming,
    decode_manifest,
    file_digest,
    pad_rows,
)

# torch deprecates torch.jit in favour of torch.export; TorchScript is still this project's artifact
# format, and the warning would only alarm operators reading the daemon's log.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)


class HostStaging:
    """Reused host buffers for a CUDA model: the padded batch is copied into a pinned buffer and
    sent to the device in one asynchronous copy; the five outputs are packed on the device into
    one ``[B, k]`` tensor and come back in one copy. Pageable memory would make each copy a
    synchronous staging round trip, and five outputs five of them.

    ``pin=False`` runs the same packing on any device (how it is tested without a GPU)."""

    def __init__(self, device: torch.device, *, pin: bool = True) -> None:
        self.device = device
        self._pin = pin
        self._buffers: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()

    def _rows(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """The first ``shape[0]`` rows of a reused buffer, grown when too small."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape[0] < shape[0] or buffer.shape[1:] != shape[1:]:
            buffer = self._buffers[name] = torch.empty(shape, dtype=torch.float32, pin_memory=self._pin)
        return buffer[: shape[0]]

    def run(self, module: torch.jit.ScriptModule, padded: npt.NDArray[np.float32], count: int) -> ModelOutputs:
        with self._lock, torch.inference_mode():
            inputs = self._rows("inputs", padded.shape)
            inputs.numpy()[...] = padded
            outputs = module(inputs.to(self.device, non_blocking=True))
            packed = torch.cat([t.float().reshape(len(padded), -1) for t in outputs], dim=1)
            host = self._rows("outputs", tuple(packed.shape))
            host.copy_(packed, non_blocking=True)
            if self.device.type == "cuda":
                torch.cuda.current_stream(self.device).synchronize()
            columns = host[:count].numpy()
            parts = []
            start = 0
            for tensor in outputs:
                width = math.prod(tensor.shape[1:])
                parts.append(columns[:, start : start + width].reshape(count, *tensor.shape[1:]).copy())
                start += width
        p, q, d, m, f = parts
        return ModelOutputs(p, q, d, m, f)


@dataclass(frozen=True)
class LoadedModel:
    """A verified artifact, ready to score windows."""

    module: torch.jit.ScriptModule
    manifest: Manifest
    path: Path
    file_sha256: str
    device: torch.device
    staging: HostStaging | None = field(default=None, compare=False)
    """Pinned transfer buffers, on CUDA."""

    @property
    def version(self) -> str:
        return self.manifest.version

    def score(self, windows: npt.NDArray[np.float32], origins: object = None) -> ModelOutputs:
        """Score ``[B, T, 5]`` windows through the windowed forward; rows are padded to a multiple of
        ``BATCH_MULTIPLE``. ``origins`` (the step path's, ``daemon.ports.WindowOrigins``) is not needed."""
        count = len(windows)
        if count == 0:
            raise ValueError("no windows to score")
        padded = pad_rows(windows)
        if self.staging is not None:
            return self.staging.run(self.module, padded, count)
        with torch.inference_mode():
            outputs = self.module(torch.from_numpy(padded).to(self.device))
        p, q, d, m, f = (t[:count].float().cpu().numpy() for t in outputs)
        return ModelOutputs(p, q, d, m, f)


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over the state dict: each entry's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def framework_versions() -> dict[str, str]:
    from candlecast import __version__

    return {
        "candlecast": __version__,
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def read_manifest(path: Path) -> Manifest:
    """The manifest of an artifact, read without running its model."""
    extra = {MANIFEST_FILE: ""}
    try:
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)  # type: ignore[no-untyped-call]
    except (RuntimeError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a TorchScript archive ({exc})") from exc
    return decode_manifest(path, extra[MANIFEST_FILE])


def load_artifact(path: Path, device: str | torch.device = "cpu", *, expected_sha256: str | None = None) -> LoadedModel:
    """Load and verify an artifact; raises ``ArtifactError`` saying what is wrong.

    ``expected_sha256`` is the file digest recorded by the registry, when loading from one.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read the artifact ({exc.strerror})") from exc
    file_sha = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and file_sha != expected_sha256:
        raise ArtifactError(f"{path}: file sha256 {file_sha} differs from the registry's {expected_sha256}")
    extra = {MANIFEST_FILE: ""}
    target = torch.device(device)
    try:
        module = torch.jit.load(io.BytesIO(data), map_location=target, _extra_files=extra)  # type: ignore[no-untyped-call]
    except (RuntimeError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a loadable TorchScript archive ({exc})") from exc
    manifest = decode_manifest(path, extra[MANIFEST_FILE])
    module.eval()
    actual = weights_digest(module)
    if actual != manifest.weights_sha256:
        raise ArtifactError(f"{path}: weights sha256 {actual} differs from the manifest's {manifest.weights_sha256}")
    staging = HostStaging(target) if target.type == "cuda" else None
    model = LoadedModel(module, manifest, path, file_sha, target, staging)
    check_golden(model)
    if manifest.streaming is not None:
        check_golden_steps(model, manifest.streaming)
    return model


def check_golden(model: LoadedModel) -> None:
    """Score the manifest's golden windows and compare with the recorded probabilities."""
    golden = model.manifest.golden
    windows = np.asarray(golden.input, dtype=np.float32)
    expected = np.asarray(golden.probabilities, dtype=np.float64)
    try:
        got = model.score(windows).probabilities.astype(np.float64)
    except RuntimeError as exc:
        raise ArtifactError(f"{model.path}: the model failed on its golden input ({exc})") from exc
    if got.shape != expected.shape:
        raise ArtifactError(f"{model.path}: golden output shape {got.shape}, manifest says {expected.shape}")
    error = float(np.max(np.abs(got - expected)))
    if not math.isfinite(error) or error > golden.tolerance:
        raise ArtifactError(
            f"{model.path}: golden outputs differ from the manifest by {error:.3g} (tolerance {golden.tolerance:g})"
        )


def check_golden_steps(model: LoadedModel, streaming: Streaming) -> None:
    """Step the golden windows from a zero state through the longest history they allow and compare
    the step path's probabilities with the recorded (windowed) ones."""
    golden = model.manifest.golden
    windows = torch.from_numpy(pad_rows(np.asarray(golden.input, dtype=np.float32))).to(model.device)
    expected = np.asarray(golden.probabilities, dtype=np.float64)
    length = windows.shape[1]
    history = min(streaming.span, length - streaming.lookback)
    try:
        with torch.inference_mode():
            state = torch.zeros(windows.shape[0], streaming.state_size, device=model.device)
            for position in range(length - history, length):
                state = model.module.advance(state, windows[:, position - streaming.lookback : position + 1])
            got = model.module.emit(state, windows)[0][: len(expected)].double().cpu().numpy()
    except RuntimeError as exc:
        raise ArtifactError(f"{model.path}: the step path failed on the golden input ({exc})") from exc
    error = float(np.max(np.abs(got - expected)))
    if got.shape != expected.shape or not math.isfinite(error) or error > golden.tolerance:
        raise ArtifactError(
            f"{model.path}: stepped golden outputs differ from the manifest by {error:.3g} "
            f"(tolerance {golden.tolerance:g})"
        )


def save_artifact(module: torch.jit.ScriptModule, manifest: Manifest, path: Path) -> str:
    """Write an artifact (atomically, through a temporary file); returns its file sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    torch.jit.save(module, str(partial), _extra_files={MANIFEST_FILE: msgspec.json.encode(manifest).decode()})
    partial.replace(path)
    return file_digest(path)
