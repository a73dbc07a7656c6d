"""Every module has exactly one importable name: its folder path (docs/design.md, "One path per module")."""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from candlecast import candlefile
from candlecast.candlefile import bundled_path
from candlecast.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("candlecast", "daemon", "strategies", "models")
SKIPPED_DIRS = {".git", ".venv", ".cache", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "build"}


def _tree() -> list[Path]:
    found: list[Path] = []
    stack = [ROOT]
    while stack:
        folder = stack.pop()
        for entry in folder.iterdir():
            if entry.name in SKIPPED_DIRS:
                continue
            found.append(entry)
            if entry.is_dir() and not entry.is_symlink():
                stack.append(entry)
    return found


def _module_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if p.name != "__main__.py")


class TestOnePath:
    def test_the_tree_holds_no_symlinks(self) -> None:
        """A symlink is how a second import path appears, so the checkout has none."""
        assert [p.relative_to(ROOT) for p in _tree() if p.is_symlink()] == []

    @pytest.mark.parametrize("package", ["daemon", "models", "strategies", "data"])
    def test_card_folders_are_not_reachable_under_candlecast(self, package: str) -> None:
        """``candlecast.daemon`` and its siblings do not exist; the folders are top-level packages."""
        assert importlib.util.find_spec(f"candlecast.{package}") is None

    def test_each_module_loads_from_its_own_file(self) -> None:
        """The name derived from a file's path imports that very file, for every module of the package tree."""
        files = _module_files()
        assert len(files) > 50
        for path in files:
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            module = importlib.import_module(name)
            assert module.__file__ is not None
            assert Path(module.__file__).resolve() == path.resolve(), name

    def test_no_other_installed_distribution_ships_our_top_level_names(self) -> None:
        """Top-level ``daemon``, ``models``, ``strategies`` are safe while no other installed package has them."""
        owners = packages_distributions()
        for package in PACKAGES:
            assert set(owners.get(package, ["candlecast"])) == {"candlecast"}, (package, owners.get(package))


class TestBundledCandles:
    def test_bundled_candles_are_found_beside_the_packages(self) -> None:
        """The demo's candles come from the checkout's data/ folder, the one the package tree sits in."""
        assert bundled_path("us_stocks_1d.csv") == ROOT / "data" / "us_stocks_1d.csv"

    def test_missing_candles_name_where_they_were_looked_for(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Without data/ (an installed wheel) the error says where the candles were expected and to pass --data."""
        monkeypatch.setattr(candlefile, "BUNDLED_DIR", tmp_path)
        with pytest.raises(DataError, match="pass --data"):
            bundled_path("us_stocks_1d.csv")
