"""The aiohttp application every service starts from.

`create_base_app` adds the middlewares (correlation id, metrics, error envelope), the
infrastructure routes (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`) and the service's
declared endpoints. The service's own `create_app(settings)` adds its cleanup contexts.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.db.group_commit import StorageUnavailableError
from common.db.pool import connection_lost
from common.http.errors import ApiError, ServiceUnavailable
from common.http.openapi import build_openapi
from common.http.routing import Api
from common.logging import correlation, get_logger, new_correlation_id
from common.metrics import Metrics

log = get_logger("marketpay.http")
access_log = get_logger("marketpay.access")
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})

METRICS = web.AppKey("metrics", Metrics)
READINESS = web.AppKey("readiness", list[Callable[[], Awaitable[None]]])

CORRELATION_HEADER = "X-Correlation-Id"
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_BODY_BYTES = 1024 * 1024
READINESS_TIMEOUT_S = 3.0

Middleware = Any  # aiohttp's own middleware type is not exported in a stable place


@web.middleware
async def correlation_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    given = request.headers.get(CORRELATION_HEADER, "")
    correlation_id = given if _CORRELATION_ID.match(given) else new_correlation_id()
    with correlation(correlation_id):
        response: web.StreamResponse = await handler(request)
        response.headers[CORRELATION_HEADER] = correlation_id
        return response


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ApiError as exc:
        if exc.status >= 500:
            log.error("request failed", path=request.path, code=exc.code)
        error: web.StreamResponse = exc.response()
        return error

    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "request_too_large", "the request body is too large")
    except web.HTTPNotFound:
        return error_response(404, "not_found", "no such resource")
    except web.HTTPMethodNotAllowed as exc:
        response = error_response(405, "method_not_allowed", "method not allowed on this resource")
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, "http_error", exc.reason)
    except Exception as exc:
        if isinstance(exc, StorageUnavailableError) or connection_lost(exc):
            log.warning("database unavailable", path=request.path, error=type(exc).__name__)
            unavailable: web.StreamResponse = ServiceUnavailable(
                "the service cannot reach its database; retry later"
            ).response()
            return unavailable
        log.exception("unhandled error", path=request.path, method=request.method)
        return error_response(500, "internal_server_error", "an unexpected error has occurred")


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message, "param": None}}, status=status
    )


def metrics_middleware(metrics: Metrics) -> Middleware:
    @web.middleware
    async def observe(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        elapsed = time.perf_counter() - started
        metrics.http_requests.labels(request.method, route, str(response.status)).inc()
        metrics.http_duration.labels(request.method, route).observe(elapsed)
        if route not in _QUIET_ROUTES:
            # the access log: route templates, never query strings or bodies
            access_log.info(
                "request",
                method=request.method,
                route=route,
                status=response.status,
                duration_ms=round(elapsed * 1000, 2),
            )
        return response

    return observe


MAX_HEADER_BYTES = 65_536
"""The longest header field or request line a service reads (aiohttp's default is 8190)."""


def create_base_app(
    api: Api,
    metrics: Metrics,
    *,
    extra_middlewares: Sequence[Middleware] = (),
    client_max_size: int = MAX_BODY_BYTES,
) -> web.Application:
    app = web.Application(
        middlewares=[
            correlation_middleware,
            metrics_middleware(metrics),
            error_middleware,
            *extra_middlewares,
        ],
        client_max_size=client_max_size,
        # aiohttp answers a header or request line over its limit (8190 bytes) itself, in
        # plain text, before any middleware runs; a higher limit lets such requests reach the
        # validation that answers with the JSON error envelope (a 10,000-character
        # Idempotency-Key is a 400 idempotency_key_invalid, not a bare 400 echoing it)
        handler_args={"max_field_size": MAX_HEADER_BYTES, "max_line_size": MAX_HEADER_BYTES},
    )
    app[METRICS] = metrics
    app[READINESS] = []
    spec = build_openapi(api)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        problems = []
        for check in request.app[READINESS]:
            try:
                async with asyncio.timeout(READINESS_TIMEOUT_S):
                    await check()
            except Exception as exc:
                problems.append(f"{getattr(check, '__name__', 'check')}: {type(exc).__name__}")
        if problems:
            return web.json_response({"status": "unavailable", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics_endpoint(request: web.Request) -> web.Response:
        body = generate_latest(request.app[METRICS].registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(spec)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/openapi.json", openapi)
    api.install(app)
    return app
