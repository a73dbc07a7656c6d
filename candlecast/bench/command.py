"""What a bench command does once it has its options: measure, with progress on stderr, then the report
on stdout and, when asked for, the figures as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

ResultT = TypeVar("ResultT")


def report_run(
    measure: Callable[[Console], Coroutine[Any, Any, ResultT]],
    render: Callable[[ResultT], str],
    document: Callable[[ResultT], object],
    out: Path | None,
) -> None:
    """Runs ``measure``, writes ``render`` of its result to stdout and ``document`` of it to ``out``."""
    console = Console(stderr=True)
    started = time.perf_counter()
    result = asyncio.run(measure(console))
    console.print(f"done in {time.perf_counter() - started:.0f} s")
    sys.stdout.write(render(result) + "\n")
    if out is not None:
        out.write_text(json.dumps(document(result), indent=2, default=str) + "\n")
