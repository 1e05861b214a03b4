"""The services' HTTP APIs, called server-side with the logged-in key (or the storefront's key,
or a checkout session's client token). The back office adds no authority of its own: what a key
may not see, the service refuses, and the page says so."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from backoffice.settings import Settings


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    replayed: bool = False  # the service answered a repeated Idempotency-Key with its first answer

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def data(self) -> Any:
        return self.body.get("data") if isinstance(self.body, dict) else None

    @property
    def page_info(self) -> dict[str, Any]:
        info = self.body.get("page_info") if isinstance(self.body, dict) else None
        return info or {}

    @property
    def error(self) -> dict[str, Any]:
        """The API's error envelope (code, message, param), or one made from the status."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return dict(self.body["error"])
        return {"code": f"http_{self.status}", "message": "the service answered an error"}


class UpstreamUnavailable(Exception):
    def __init__(self, service: str) -> None:
        super().__init__(f"{service} cannot be reached")
        self.service = service


class Upstream:
    def __init__(self, settings: Settings) -> None:
        self.bases = {
            "tenants": settings.tenants_url.rstrip("/"),
            "checkout": settings.checkout_url.rstrip("/"),
            "capture": settings.capture_url.rstrip("/"),
            "payouts": settings.payouts_url.rstrip("/"),
            "exports": settings.exports_url.rstrip("/"),
        }
        self._timeout = aiohttp.ClientTimeout(total=settings.upstream_timeout_s)
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        key: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
    ) -> Answer:
        assert self._http is not None, "Upstream.start() first"
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        clean = {k: v for k, v in (params or {}).items() if v}
        try:
            async with self._http.request(
                method, self.bases[service] + path, params=clean, json=json, headers=headers
            ) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
                replayed = response.headers.get("Idempotent-Replayed") == "true"
                return Answer(response.status, body, replayed)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(service) from exc

    @contextlib.asynccontextmanager
    async def stream(
        self, service: str, path: str, key: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A GET whose body the caller reads as it comes (a file download), with the key."""
        assert self._http is not None, "Upstream.start() first"
        headers = {"Authorization": f"Bearer {key}"}
        # no total timeout on a download: the connection and each read have theirs
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self._timeout.total,
            sock_read=self._timeout.total,
        )
        try:
            async with self._http.get(
                self.bases[service] + path, headers=headers, timeout=timeout
            ) as response:
                yield response
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise UpstreamUnavailable(service) from exc


UPSTREAM = web.AppKey("upstream", Upstream)
