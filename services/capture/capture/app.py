"""Capture's wiring: the one place that builds the application from its settings, and the
keys under which the application holds its parts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from capture.clock import Clock
from capture.consumers import consumptions
from capture.executor import CaptureExecutor, Scheduler, SendAfterCommit
from capture.metrics import CaptureMetrics
from capture.refunds.worker import RefundWiring
from capture.settings import Settings
from common import runtime
from common.http.app import METRICS, create_base_app
from common.metrics import Metrics
from common.psp.port import PspPort
from common.tenancy import replica_authentication, tenancy_consumption

MIGRATIONS = Path(__file__).parent / "migrations"
SETTINGS = web.AppKey("settings", Settings)
SCHEDULER = web.AppKey("scheduler", Scheduler)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
EXECUTOR = web.AppKey("executor", CaptureExecutor)
PSP = web.AppKey("psp", PspPort)


def system_clock() -> datetime:
    return datetime.now(UTC)


def create_app(settings: Settings, *, clock: Clock = system_clock) -> web.Application:
    """`clock` is what the scheduler, the executor and the use cases read the time from; tests
    pass a clock they can move (DELAYED captures are due hours after authorisation)."""
    from capture.api import api  # the routes read this module's keys

    app = create_base_app(api, Metrics())
    metrics = CaptureMetrics(app[METRICS].registry)
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app.cleanup_ctx.append(runtime.database(settings, "capture", MIGRATIONS))
    refunds = RefundWiring(settings, clock)
    sender = SendAfterCommit(settings)  # the executor, once it runs

    app.cleanup_ctx.append(replica_authentication())
    app.cleanup_ctx.append(
        runtime.broker(
            settings,
            [
                tenancy_consumption("capture.tenancy"),
                *consumptions(clock, metrics, sender),
                *refunds.consumptions(),
            ],
        )
    )

    # one attempt per call: the executor retries, durably, with its own back-off
    app.cleanup_ctx.append(runtime.psp_adapter(settings, PSP, max_attempts=1))

    async def workers(app: web.Application) -> AsyncIterator[None]:
        pool = app[runtime.DB_POOL]
        executor = CaptureExecutor(
            pool=pool, psp=app[PSP], clock=clock, settings=settings, metrics=metrics
        )
        scheduler = Scheduler(pool=pool, clock=clock, settings=settings)
        app[EXECUTOR] = executor
        app[SCHEDULER] = scheduler
        tasks = [
            asyncio.create_task(executor.run(), name="capture-executor"),
            asyncio.create_task(scheduler.run(), name="capture-scheduler"),
        ]
        sender.executor = executor
        yield
        sender.executor = None
        for task in tasks:
            task.cancel()
            await runtime.bounded(task, task.get_name())

    app.cleanup_ctx.append(workers)
    app.cleanup_ctx.append(refunds.workers())
    return app
