"""The daemon's start-up heap, kept out of the garbage collector's full collections while it serves.

What is alive once the models are loaded and warmed (the libraries, torch's Python side, the
models' objects: about 250,000 tracked objects) is never garbage, yet every full (generation 2)
collection walks it: 116 ms of CPU on the 2-core bench machine, a pause of the event loop and of
every candle in flight that fell in some 10 s steady phases and not others, and so set their
p99 (docs/benchmarks.md, "Where the steady-state tail comes from"). Frozen (``gc.freeze``), it
is skipped: a full collection walks only what the daemon made since (the strategies' memory, the
batches in flight; the signal store keeps nothing the collector tracks per signal). Reference counting still
frees frozen objects; only cycles among them wait for ``gc.unfreeze``, at the daemon's stop.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def startup_heap_frozen() -> Iterator[None]:
    """Freeze every object alive now until the block ends; then make them collectable again (a daemon
    built and stopped inside a longer process, the tests' or the bench's, leaves nothing frozen
    behind; a second daemon in the same process loses its freeze too, which costs only pauses)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
