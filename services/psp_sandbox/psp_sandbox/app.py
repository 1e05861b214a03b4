"""Wiring of the PSP sandbox: one `create_app(settings)`, state in memory, and the keys under
which the application holds its parts (the route modules read them from here)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from common.http.app import create_base_app
from common.http.routing import Api
from common.metrics import Metrics
from psp_sandbox.settings import Settings
from psp_sandbox.store import PayoutProviderState, Store
from psp_sandbox.webhooks import WebhookSender

STORE = web.AppKey("store", Store)
WEBHOOKS = web.AppKey("webhooks", WebhookSender)
SETTINGS = web.AppKey("settings", Settings)
PAYOUT_PROVIDER = web.AppKey("payout_provider", PayoutProviderState)


def create_app(settings: Settings) -> web.Application:
    from psp_sandbox import (  # the routes read these keys
        checkout_api,
        control_api,
        payouts,
        transfers,
    )

    api = Api("psp_sandbox (a stand-in PSP: Adyen Checkout API subset)")
    checkout_api.register(api)
    extra_routes = control_api.register(api)
    transfers.register(api)
    app = create_base_app(api, Metrics())
    for method, path, handler in extra_routes:
        app.router.add_route(method, path, handler)
    store = Store()
    app[STORE] = store
    app[SETTINGS] = settings
    app[WEBHOOKS] = WebhookSender(
        store, settings.webhook_retry_delays_ms, settings.webhook_timeout_s
    )
    app.cleanup_ctx.append(_webhook_sender)
    payouts.install(app, settings)  # the payout provider's order flow (seed 003)
    return app


async def _webhook_sender(app: web.Application) -> AsyncIterator[None]:
    await app[WEBHOOKS].start()
    yield
    await app[WEBHOOKS].close()
