"""Checkout's wiring: the one place that builds the application from its settings, and the
keys under which the application holds its parts (handlers read them from here)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from checkout.settings import Settings
from common import runtime
from common.http.app import create_base_app
from common.metrics import Metrics
from common.psp.port import PspPort
from common.tenancy import replica_authentication, tenancy_consumption

MIGRATIONS = Path(__file__).parent / "migrations"
SETTINGS = web.AppKey("settings", Settings)
PSP = web.AppKey("psp", PspPort)


def create_app(settings: Settings) -> web.Application:
    from checkout.api import api  # the routes read this module's keys
    from checkout.bank_transfer_consumers import (
        buyer_accounts_consumption,
        overdue_scheduler,
        shipments_consumption,
    )
    from checkout.consumers import (
        captures_consumption,
        psp_notifications_consumption,
        refunds_consumption,
    )

    app = create_base_app(api, Metrics())
    app[SETTINGS] = settings
    app.cleanup_ctx.append(runtime.database(settings, "checkout", MIGRATIONS))
    app.cleanup_ctx.append(replica_authentication())
    app.cleanup_ctx.append(runtime.psp_adapter(settings, PSP))
    app.cleanup_ctx.append(
        runtime.broker(
            settings,
            [
                tenancy_consumption("checkout.tenancy"),
                psp_notifications_consumption(),
                captures_consumption(),
                shipments_consumption(),
                buyer_accounts_consumption(),
                refunds_consumption(),
            ],
        )
    )
    app.cleanup_ctx.append(overdue_scheduler(settings.overdue_interval_s))
    return app
