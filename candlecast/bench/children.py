"""Stopping a bench's child process: a terminate it may answer, then a kill if it does not."""

from __future__ import annotations

import asyncio


async def stop_child(child: asyncio.subprocess.Process, grace_s: float) -> None:
    """Terminate ``child`` if it still runs and reap it, killing it if it outlives ``grace_s``."""
    if child.returncode is None:
        child.terminate()
    try:
        async with asyncio.timeout(grace_s):
            await child.wait()
    except TimeoutError:
        child.kill()
        await child.wait()
