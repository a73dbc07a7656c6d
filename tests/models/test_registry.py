"""The registry and its commands: list, show, verify, promote, prune."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from candlecast.errors import ArtifactError
from models.commands import export, models_app
from models.export import export_run
from models.registry import Registry
from models.training import RunInfo

app = typer.Typer()
app.add_typer(models_app, name="models")
app.command("export")(export)
runner = CliRunner()


@pytest.fixture(scope="module")
def pristine(trained: tuple[Path, RunInfo], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding three versions of the tiny run, the first current."""
    out, _ = trained
    root = tmp_path_factory.mktemp("registry") / "registry"
    store = Registry(root)
    for version in ("0.1.0", "0.2.0", "0.3.0"):
        path = root.parent / f"{version}.pt"
        export_run(out, path, version=version)
        store.add(path)
    store.promote("tiny/0.1.0")
    return root


@pytest.fixture
def registry(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "registry"))


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_list_show_and_promote(registry: Path) -> None:
    code, output = invoke("models", "list", "--registry", str(registry))
    assert code == 0
    assert re.findall(r"\*\W+(tiny/[0-9.]+)", output) == ["tiny/0.1.0"]
    assert all(f"tiny/{v}" in output for v in ("0.1.0", "0.2.0", "0.3.0"))

    code, output = invoke("models", "promote", "tiny/0.3.0", "--registry", str(registry))
    assert code == 0 and "current -> tiny/0.3.0" in output
    assert Registry(registry).current_ref() == "tiny/0.3.0"

    code, output = invoke("models", "show", "current", "--registry", str(registry))
    shown = json.loads(output)
    assert shown["version"] == "0.3.0" and shown["golden"]["input"].startswith("8 windows")


def test_verify_detects_a_tampered_file(registry: Path) -> None:
    code, output = invoke("models", "verify", "--registry", str(registry))
    assert code == 0 and output.count("ok ") == 3
    artifact = registry / "tiny" / "0.2.0" / "model.pt"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    code, output = invoke("models", "verify", "--registry", str(registry))
    assert code == 1
    assert "FAILED tiny/0.2.0" in output and "differs from the registry's" in output
    assert output.count("ok ") == 2
    # Promoting a tampered version is refused; the pointer stays.
    with pytest.raises(ArtifactError, match="differs from the registry's"):
        invoke("models", "promote", "tiny/0.2.0", "--registry", str(registry))
    assert Registry(registry).current_ref() == "tiny/0.1.0"


def test_prune_keeps_the_newest_and_the_current(registry: Path) -> None:
    code, output = invoke("models", "prune", "--keep", "1", "--registry", str(registry))
    assert code == 0 and "removed tiny/0.2.0" in output
    assert [e.ref for e in Registry(registry).entries()] == ["tiny/0.1.0", "tiny/0.3.0"]
    with pytest.raises(ArtifactError, match="no version"):
        invoke("models", "show", "tiny/0.2.0", "--registry", str(registry))


def test_export_command_adds_and_promotes(trained: tuple[Path, RunInfo], tmp_path: Path) -> None:
    out, run = trained
    root = tmp_path / "fresh"
    code, output = invoke("export", "--run", str(out), "--registry", str(root), "--promote", "--version", "2.0.0")
    assert code == 0
    entry = Registry(root).current()
    assert entry is not None and entry.ref == "tiny/2.0.0"
    assert Registry(root).load(entry).manifest.weights_sha256 == run.folds[-1].weights_sha256
    # The registry copy of the manifest is readable without torch.
    assert json.loads((entry.directory / "manifest.json").read_text())["version"] == "2.0.0"
    assert "exported tiny/2.0.0" in output and "now current" in output
