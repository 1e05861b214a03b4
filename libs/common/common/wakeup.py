"""A sleep that a notification cuts short: how the outbox relay and other polling loops wait
for work (PostgreSQL NOTIFY, a finished task) with a polling fallback.

It waits with `asyncio.timeout`, not `asyncio.wait_for`: on Python 3.11, `wait_for` swallows a
cancellation that arrives while the awaited event is being set, and a loop woken as often as
the relay then goes on running after it was cancelled (a relay that never lets go of its lock,
a shutdown that hangs).
"""

from __future__ import annotations

import asyncio
import contextlib


class Wakeup:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self, *_: object) -> None:
        """Cut the current (or next) sleep short; usable as a LISTEN or done callback."""
        self._event.set()

    async def sleep(self, timeout_s: float) -> bool:
        """Sleep until `set` or for `timeout_s`, whichever comes first; True when `set` cut
        it short."""
        woken = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._event.wait()
                woken = True
        self._event.clear()
        return woken
