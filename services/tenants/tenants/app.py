"""The tenants service's wiring: the one place that builds the application from its settings,
and the keys under which the application holds its parts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from aiohttp import web

from common import runtime
from common.http.app import create_base_app
from common.http.auth import Authenticator, KeyLookup, Principal
from common.http.routing import AUTHENTICATOR
from common.metrics import Metrics
from tenants import service
from tenants.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SETTINGS = web.AppKey("settings", Settings)


def key_lookup(pool: asyncpg.Pool) -> KeyLookup:
    """Keys are checked against this service's own `api_keys` (the source of truth)."""

    async def lookup(key_hash: str) -> Principal | None:
        async with pool.acquire() as conn:
            return await service.principal_for(conn, key_hash)

    return lookup


def create_app(settings: Settings) -> web.Application:
    from tenants.api import api  # the routes read this module's keys

    app = create_base_app(api, Metrics())
    app[SETTINGS] = settings
    app.cleanup_ctx.append(runtime.database(settings, "tenants", MIGRATIONS_DIR))

    async def authentication(app: web.Application) -> AsyncIterator[None]:
        app[AUTHENTICATOR] = Authenticator(
            key_lookup(app[runtime.DB_POOL]), settings.platform_admin_key
        )
        yield

    app.cleanup_ctx.append(authentication)
    app.cleanup_ctx.append(runtime.broker(settings))
    return app
