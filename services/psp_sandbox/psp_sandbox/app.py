"""Wiring of the PSP sandbox: one `create_app(settings)`, state in memory, and the keys under
which the application holds its parts (the route modules read them from here)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable

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
    if settings.freeze_state_interval_s > 0:
        app.cleanup_ctx.append(_freezing_state(settings.freeze_state_interval_s))
    payouts.install(app, settings)  # the payout provider's order flow (seed 003)
    return app


def _freezing_state(interval_s: float) -> Callable[[web.Application], AsyncIterator[None]]:
    """Freeze what the process holds every `interval_s`: a full collection then walks only
    what was allocated since (see `Settings.freeze_state_interval_s`)."""

    async def freeze_every_interval() -> None:
        while True:
            await asyncio.sleep(interval_s)
            gc.freeze()

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(freeze_every_interval(), name="sandbox-freeze-state")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


async def _webhook_sender(app: web.Application) -> AsyncIterator[None]:
    await app[WEBHOOKS].start()
    yield
    await app[WEBHOOKS].close()
