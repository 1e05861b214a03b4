"""The back office's wiring: the one place that builds the application from its settings.

Server-rendered pages (Jinja2 through aiohttp-jinja2, htmx for the parts that refresh
themselves), sessions through aiohttp-session, every call to the services over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from backoffice import chart, exports, ledger, login, operations, payments, refunds, storefront
from backoffice.sessions import STORE, SessionStore, csrf_middleware, visit_of
from backoffice.settings import Settings
from backoffice.upstream import UPSTREAM, Upstream, UpstreamUnavailable
from backoffice.web import money, render
from common.http.app import create_base_app
from common.http.routing import Api
from common.logging import get_logger
from common.metrics import Metrics

HERE = Path(__file__).parent
SESSION_COOKIE = "marketpay_backoffice"
log = get_logger("marketpay.backoffice")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Screens, each a module of routes (and a line in web.NAV).
SCREENS = [
    login.routes,
    payments.routes,
    refunds.routes,
    operations.routes,
    ledger.routes,
    exports.routes,
    chart.routes,
    storefront.routes,
]


@web.middleware
async def html_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as pages (the services' JSON envelope is for API clients, not for people)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith("/static/"):
            raise
        if request.path.startswith("/shop/pay/") and request.method == "POST":
            return web.json_response(
                {"error": {"code": f"http_{exc.status}", "message": exc.reason}},
                status=exc.status,
            )
        await visit_of(request)
        return render(
            request,
            "error.html",
            {"title": exc.reason, "status": exc.status, "error": {"message": exc.reason}},
            status=exc.status,
        )
    except UpstreamUnavailable as exc:
        log.warning("upstream unavailable", service=exc.service, path=request.path)
        await visit_of(request)
        return render(
            request,
            "error.html",
            {
                "title": "Service unavailable",
                "status": 503,
                "error": {"message": f"The {exc.service} service cannot be reached; retry."},
            },
            status=503,
        )


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _when(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def session_secret(settings: Settings) -> str:
    if settings.session_secret is not None:
        secret = settings.session_secret.get_secret_value()
        Fernet(secret)  # a malformed key fails at start, not at the first login
        return secret
    # local and test profiles only (production refuses to start without one): sessions end
    # when the process stops, as they do anyway with the in-memory store
    return Fernet.generate_key().decode()


def create_app(settings: Settings) -> web.Application:
    storage = EncryptedCookieStorage(
        session_secret(settings),
        cookie_name=SESSION_COOKIE,
        httponly=True,
        samesite="Strict",
        secure=settings.cookie_secure,
        max_age=settings.session_max_age_s,
    )
    app = create_base_app(
        Api("Marketpay back office"),
        Metrics(),
        extra_middlewares=[
            security_headers,
            session_middleware(storage),
            html_errors,
            csrf_middleware,
        ],
    )
    app[STORE] = SessionStore(settings.session_max_age_s)
    app[storefront.SETTINGS] = settings
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
    )
    environment.filters["money"] = lambda m: money(m["value"], m["currency"]) if m else ""
    environment.filters["minor"] = money
    environment.filters["when"] = _when
    for routes in SCREENS:
        app.router.add_routes(routes)
    app.router.add_static("/static", HERE / "static")

    async def upstream(app: web.Application) -> AsyncIterator[None]:
        client = Upstream(settings)
        await client.start()
        app[UPSTREAM] = client
        yield
        await client.close()

    app.cleanup_ctx.append(upstream)
    return app
