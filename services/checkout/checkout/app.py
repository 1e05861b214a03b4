"""Checkout's wiring: the one place that builds the application from its settings."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from checkout.api import PSP, SETTINGS, api
from checkout.consumers import (
    captures_consumption,
    psp_notifications_consumption,
    refunds_consumption,
)
from checkout.settings import Settings
from common import runtime
from common.http.app import create_base_app
from common.http.auth import Authenticator
from common.http.routing import AUTHENTICATOR
from common.metrics import Metrics
from common.psp.adyen import AdyenAdapter, AdyenConfig
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

    async def psp(app: web.Application):  # type: ignore[no-untyped-def]
        if settings.psp_api_key is None:
            raise RuntimeError("MARKETPAY_PSP_API_KEY is required")
        adapter = AdyenAdapter(
            AdyenConfig(
                base_url=settings.psp_base_url,
                api_key=settings.psp_api_key,
                timeout_s=settings.psp_timeout_s,
            )
        )
        await adapter.start()
        app[PSP] = adapter
        yield
        await adapter.close()

    app.cleanup_ctx.append(psp)
    app.cleanup_ctx.append(
        runtime.broker(
            settings,
            [
                tenancy_consumption("checkout.tenancy"),
                psp_notifications_consumption(),
                captures_consumption(),
                refunds_consumption(),
            ],
        )
    )
    return app
