"""The webhooks service's wiring: the one place that builds the application from its settings,
and the keys under which the application holds its parts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from common import runtime
from common.http.app import METRICS, create_base_app
from common.metrics import Metrics
from common.tenancy import replica_authentication, tenancy_consumption
from webhooks.crypto import KeyBox, parse_encryption_key
from webhooks.ingestion import Ingestion, MerchantAccounts
from webhooks.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
SETTINGS = web.AppKey("settings", Settings)
KEYBOX = web.AppKey("keybox", KeyBox)
MERCHANT_ACCOUNTS = web.AppKey("merchant_accounts", MerchantAccounts)
INGESTION = web.AppKey("ingestion", Ingestion)


def create_app(settings: Settings) -> web.Application:
    from webhooks.api import api  # the routes read this module's keys

    keybox = KeyBox(parse_encryption_key(settings.hmac_encryption_key.get_secret_value()))
    # a little over the limit, so the handler's own check answers 413 with our envelope
    app = create_base_app(api, Metrics(), client_max_size=settings.max_body_bytes + 1)
    app[SETTINGS] = settings
    app[KEYBOX] = keybox
    app.cleanup_ctx.append(runtime.database(settings, "webhooks", MIGRATIONS))

    app.cleanup_ctx.append(replica_authentication())

    async def ingestion(app: web.Application) -> AsyncIterator[None]:
        pool = app[runtime.DB_POOL]
        accounts = MerchantAccounts(pool, keybox, settings.hmac_key_cache_ttl_s)
        app[MERCHANT_ACCOUNTS] = accounts
        app[INGESTION] = Ingestion(
            pool,
            accounts,
            app[METRICS],
            max_batch_items=settings.group_commit_max_items,
            writers=settings.group_commit_writers,
        )
        await app[INGESTION].start()
        yield
        await app[INGESTION].stop()

    app.cleanup_ctx.append(ingestion)
    app.cleanup_ctx.append(runtime.broker(settings, [tenancy_consumption("webhooks.tenancy")]))
    return app
