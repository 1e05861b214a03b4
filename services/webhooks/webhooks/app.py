"""The webhooks service's wiring: the one place that builds the application from its settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from common import runtime
from common.http.app import create_base_app
from common.http.auth import Authenticator
from common.http.routing import AUTHENTICATOR
from common.metrics import Metrics
from common.tenancy import replica_key_lookup, tenancy_consumption
from webhooks.api import KEYBOX, SETTINGS, api
from webhooks.crypto import KeyBox, parse_encryption_key
from webhooks.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings) -> web.Application:
    keybox = KeyBox(parse_encryption_key(settings.hmac_encryption_key.get_secret_value()))
    # a little over the limit, so the handler's own check answers 413 with our envelope
    app = create_base_app(api, Metrics(), client_max_size=settings.max_body_bytes + 1)
    app[SETTINGS] = settings
    app[KEYBOX] = keybox
    app.cleanup_ctx.append(runtime.database(settings, "webhooks", MIGRATIONS))

    async def authentication(app: web.Application) -> AsyncIterator[None]:
        app[AUTHENTICATOR] = Authenticator(replica_key_lookup(app[runtime.DB_POOL]))
        yield

    app.cleanup_ctx.append(authentication)
    app.cleanup_ctx.append(runtime.broker(settings, [tenancy_consumption("webhooks.tenancy")]))
    return app
