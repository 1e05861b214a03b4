"""Waiting for asynchronous effects in tests: poll with a deadline, never sleep and hope."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> float:
    """Poll `check` until it holds; return the seconds it took, or fail after `within`."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started
