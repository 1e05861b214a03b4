"""Run a service's aiohttp application in-process on a free port, as its users reach it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from common.runtime import DB_POOL
from common.testing.outbox import record_outbox


@asynccontextmanager
async def running(app: web.Application, *, outbox_log: bool = True) -> AsyncIterator[str]:
    """Start `app` (its cleanup contexts included) and yield its base URL. A service with an
    outbox gets its `outbox_log` (`common.testing.outbox`) before the first request, unless
    `outbox_log` is False (a benchmark runs the service as deployed)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    if outbox_log and DB_POOL in app:
        async with app[DB_POOL].acquire() as conn:
            await record_outbox(conn)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
