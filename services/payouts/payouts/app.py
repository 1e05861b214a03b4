"""Payouts' wiring: the one place that builds the application from its settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
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
from payouts.api import CLOCK, EXECUTOR, PAYOUTS_METRICS, api, provider_callback
from payouts.consumers import consumptions
from payouts.executor import Clock, PayoutExecutor, PayoutScheduler
from payouts.metrics import PayoutsMetrics
from payouts.provider import HttpPayoutProvider, PayoutProvider
from payouts.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
SETTINGS = web.AppKey("settings", Settings)
SCHEDULER = web.AppKey("scheduler", PayoutScheduler)
log = get_logger("payouts.app")


def system_clock() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    provider: PayoutProvider | None = None,
    workers: bool = True,
) -> web.Application:
    """`provider` replaces the HTTP adapter (tests wrap it); `workers=False` runs no executor
    nor scheduler (a replica that only serves and consumes)."""
    app = create_base_app(api, Metrics())
    app.router.add_post("/v1/provider/payouts/callback", provider_callback)
    metrics = PayoutsMetrics(app[METRICS].registry)
    app[SETTINGS] = settings
    app[PAYOUTS_METRICS] = metrics
    app[CLOCK] = clock
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

    async def executor_and_scheduler(app: web.Application) -> AsyncIterator[None]:
        adapter: HttpPayoutProvider | None = None
        port = provider
        if port is None:
            if settings.provider_api_key is None:
                raise RuntimeError("MARKETPAY_PROVIDER_API_KEY is required")
            adapter = HttpPayoutProvider(
                settings.provider_base_url,
                settings.provider_api_key.get_secret_value(),
                settings.provider_timeout_s,
                settings.provider_callback_url,
            )
            await adapter.start()
            port = adapter
        pool = app[runtime.DB_POOL]
        executor = PayoutExecutor(pool=pool, provider=port, settings=settings, clock=clock)
        scheduler = PayoutScheduler(pool=pool, settings=settings, clock=clock, executor=executor)
        app[EXECUTOR] = executor
        app[SCHEDULER] = scheduler
        tasks = []
        if workers:
            tasks = [
                asyncio.create_task(executor.run(), name="payout-executor"),
                asyncio.create_task(scheduler.run(), name="payout-scheduler"),
            ]
        yield
        for task in tasks:
            task.cancel()
            await runtime.bounded(task, task.get_name())
        if adapter is not None:
            await adapter.close()

    app.cleanup_ctx.append(executor_and_scheduler)
    return app
