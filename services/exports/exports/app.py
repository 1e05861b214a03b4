"""Exports' wiring: the one place that builds the application from its settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from common import runtime
from common.http.app import METRICS, create_base_app
from common.http.auth import Authenticator
from common.http.routing import AUTHENTICATOR
from common.metrics import Metrics
from common.tenancy import replica_key_lookup, tenancy_consumption
from exports.api import STORAGE, WORKER, api
from exports.consumers import consumptions
from exports.metrics import ExportMetrics
from exports.settings import Settings
from exports.storage import LocalStorage, S3Storage, Storage
from exports.worker import ExportWorker

MIGRATIONS = Path(__file__).parent / "migrations"
SETTINGS = web.AppKey("settings", Settings)


def create_storage(settings: Settings) -> Storage:
    if settings.storage == "s3":
        assert settings.s3_bucket is not None
        return S3Storage(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=(
                settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else None
            ),
            secret_access_key=(
                settings.s3_secret_access_key.get_secret_value()
                if settings.s3_secret_access_key
                else None
            ),
            part_size=settings.s3_part_size_bytes,
        )
    return LocalStorage(settings.storage_dir)


def create_app(settings: Settings) -> web.Application:
    app = create_base_app(api, Metrics())
    metrics = ExportMetrics(app[METRICS].registry)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(runtime.database(settings, "exports", MIGRATIONS))

    async def authentication(app: web.Application) -> AsyncIterator[None]:
        app[AUTHENTICATOR] = Authenticator(replica_key_lookup(app[runtime.DB_POOL]))
        yield

    app.cleanup_ctx.append(authentication)
    app.cleanup_ctx.append(
        runtime.broker(settings, [tenancy_consumption("exports.tenancy"), *consumptions()])
    )

    async def worker(app: web.Application) -> AsyncIterator[None]:
        storage = create_storage(settings)
        app[STORAGE] = storage
        app[WORKER] = ExportWorker(
            pool=app[runtime.DB_POOL], storage=storage, settings=settings, metrics=metrics
        )
        task = asyncio.create_task(app[WORKER].run(), name="export-worker")
        yield
        task.cancel()
        await runtime.bounded(task, "export worker")
        await storage.close()

    app.cleanup_ctx.append(worker)
    return app
