"""Payouts' wiring: the one place that builds the application from its settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from common import runtime
from common.db import snapshot
from common.http.app import METRICS, create_base_app
from common.http.auth import Authenticator
from common.http.routing import AUTHENTICATOR
from common.logging import get_logger
from common.metrics import Metrics
from common.tenancy import replica_key_lookup
from payouts import ledger
from payouts.api import PAYOUTS_METRICS, api
from payouts.consumers import consumptions
from payouts.metrics import PayoutsMetrics
from payouts.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
SETTINGS = web.AppKey("settings", Settings)
log = get_logger("payouts.app")


def create_app(settings: Settings) -> web.Application:
    app = create_base_app(api, Metrics())
    metrics = PayoutsMetrics(app[METRICS].registry)
    app[SETTINGS] = settings
    app[PAYOUTS_METRICS] = metrics
    app.cleanup_ctx.append(runtime.database(settings, "payouts", MIGRATIONS))

    async def authentication(app: web.Application) -> AsyncIterator[None]:
        app[AUTHENTICATOR] = Authenticator(replica_key_lookup(app[runtime.DB_POOL]))
        yield

    app.cleanup_ctx.append(authentication)
    app.cleanup_ctx.append(runtime.broker(settings, consumptions()))

    async def ledger_checker(app: web.Application) -> AsyncIterator[None]:
        async def run() -> None:
            while True:
                try:
                    async with snapshot(app[runtime.DB_POOL]) as conn:
                        result = await ledger.check(conn)
                    metrics.record_check(result)
                    if not result.ok:
                        log.error("ledger check failed", **vars(result))
                except Exception as exc:  # the next round tries again
                    log.warning("ledger check could not run", error=repr(exc))
                await asyncio.sleep(settings.ledger_check_interval_s)

        task = asyncio.create_task(run(), name="ledger-check")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(ledger_checker)
    return app
