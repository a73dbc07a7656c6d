"""The package bounds its waits with ``asyncio.timeout``, never ``asyncio.wait_for``: on Python 3.11
``wait_for`` can swallow a cancellation (tests/unit/test_cancellation_kept.py), and a helper task that
swallows its cancellation hangs the daemon's stop."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("candlecast", "daemon", "strategies", "models")


def _wait_for_uses(source: str) -> list[int]:
    tree = ast.parse(source)
    lines = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "wait_for"
        and isinstance(node.value, ast.Name)
        and node.value.id == "asyncio"
    ]
    lines += [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.module == "asyncio"
        and any(alias.name == "wait_for" for alias in node.names)
    ]
    return lines


def test_no_module_uses_asyncio_wait_for() -> None:
    """No module of the package calls or imports ``asyncio.wait_for`` (the checker finds a planted call)."""
    assert _wait_for_uses("import asyncio\n\nasync def f(x):\n    return await asyncio.wait_for(x, 1)\n") == [4]
    assert _wait_for_uses("from asyncio import wait_for\n") == [1]
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    assert len(files) > 50
    found = {str(p.relative_to(ROOT)): lines for p in files if (lines := _wait_for_uses(p.read_text()))}
    assert found == {}
