"""Checkout's wiring: the one place that builds the application from its settings."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from checkout.api import SETTINGS, api
from checkout.settings import Settings
from common import runtime
from common.http.app import create_base_app
from common.http.auth import Authenticator
from common.http.routing import AUTHENTICATOR
from common.metrics import Metrics
from common.tenancy import replica_key_lookup, tenancy_consumption

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings) -> web.Application:
    app = create_base_app(api, Metrics())
    app[SETTINGS] = settings
    app.cleanup_ctx.append(runtime.database(settings, "checkout", MIGRATIONS))

    async def authentication(app: web.Application):  # type: ignore[no-untyped-def]
        app[AUTHENTICATOR] = Authenticator(replica_key_lookup(app[runtime.DB_POOL]))
        yield

    app.cleanup_ctx.append(authentication)
    app.cleanup_ctx.append(runtime.broker(settings, [tenancy_consumption("checkout.tenancy")]))
    return app
