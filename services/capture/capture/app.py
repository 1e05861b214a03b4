"""Capture's wiring: the one place that builds the application from its settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from capture.api import CLOCK, EXECUTOR, api
from capture.consumers import consumptions
from capture.executor import CaptureExecutor, Scheduler
from capture.metrics import CaptureMetrics
from capture.refunds.worker import RefundWiring
from capture.service import Clock
from capture.settings import Settings
from common import runtime
from common.http.app import METRICS, create_base_app
from common.http.auth import Authenticator
from common.http.routing import AUTHENTICATOR
from common.metrics import Metrics
from common.psp.adyen import AdyenAdapter, AdyenConfig
from common.tenancy import replica_key_lookup, tenancy_consumption

MIGRATIONS = Path(__file__).parent / "migrations"
SETTINGS = web.AppKey("settings", Settings)
SCHEDULER = web.AppKey("scheduler", Scheduler)


def system_clock() -> datetime:
    return datetime.now(UTC)


def create_app(settings: Settings, *, clock: Clock = system_clock) -> web.Application:
    """`clock` is what the scheduler, the executor and the use cases read the time from; tests
    pass a clock they can move (DELAYED captures are due hours after authorisation)."""
    app = create_base_app(api, Metrics())
    metrics = CaptureMetrics(app[METRICS].registry)
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app.cleanup_ctx.append(runtime.database(settings, "capture", MIGRATIONS))
    refunds = RefundWiring(settings, clock)

    async def authentication(app: web.Application) -> AsyncIterator[None]:
        app[AUTHENTICATOR] = Authenticator(replica_key_lookup(app[runtime.DB_POOL]))
        yield

    app.cleanup_ctx.append(authentication)
    app.cleanup_ctx.append(
        runtime.broker(
            settings,
            [
                tenancy_consumption("capture.tenancy"),
                *consumptions(clock, metrics),
                *refunds.consumptions(),
            ],
        )
    )

    async def workers(app: web.Application) -> AsyncIterator[None]:
        if settings.psp_api_key is None:
            raise RuntimeError("MARKETPAY_PSP_API_KEY is required")
        # one attempt per call: the executor retries, durably, with its own back-off
        adapter = AdyenAdapter(
            AdyenConfig(
                base_url=settings.psp_base_url,
                api_key=settings.psp_api_key,
                timeout_s=settings.psp_timeout_s,
                max_attempts=1,
            )
        )
        await adapter.start()
        pool = app[runtime.DB_POOL]
        executor = CaptureExecutor(
            pool=pool, psp=adapter, clock=clock, settings=settings, metrics=metrics
        )
        scheduler = Scheduler(pool=pool, clock=clock, settings=settings)
        app[EXECUTOR] = executor
        app[SCHEDULER] = scheduler
        tasks = [
            asyncio.create_task(executor.run(), name="capture-executor"),
            asyncio.create_task(scheduler.run(), name="capture-scheduler"),
        ]
        yield
        for task in tasks:
            task.cancel()
            await runtime.bounded(task, task.get_name())
        await adapter.close()

    app.cleanup_ctx.append(workers)
    app.cleanup_ctx.append(refunds.workers())
    return app
