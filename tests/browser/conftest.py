"""The back office and the demo storefront in headless Chromium, on the whole chain.

The browser is Debian's Chromium (installed by `make install` / CI through
scripts/ensure-chromium.sh), driven by Playwright through `executable_path`: Playwright never
downloads a browser of its own. Checkout is reached through a recording proxy, so that a test
can read every request body that reached it; screenshots go to `.artifacts/browser/`
(git-ignored)."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from backoffice.app import create_app
from backoffice.settings import Settings
from common.testing.apps import running
from common.testing.waiting import eventually
from exports.app import create_app as create_exports_app
from exports.settings import Settings as ExportsSettings

ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "browser"
HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection"}


def chromium_path() -> str:
    found = os.environ.get("MARKETPAY_CHROMIUM") or shutil.which("chromium")
    if found is None:
        pytest.fail("Chromium is missing: run `make install` (scripts/ensure-chromium.sh)")
    return found


@dataclass
class Recorded:
    method: str
    path: str
    body: bytes


@dataclass
class RecordingProxy:
    """Forwards every request to `target` and keeps what it received."""

    target: str
    requests: list[Recorded] = field(default_factory=list)

    def app(self, http: aiohttp.ClientSession) -> web.Application:
        async def forward(request: web.Request) -> web.Response:
            body = await request.read()
            self.requests.append(Recorded(request.method, request.path_qs, body))
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            async with http.request(
                request.method, self.target + request.path_qs, data=body, headers=headers
            ) as response:
                payload = await response.read()
                kept = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}
                return web.Response(status=response.status, body=payload, headers=kept)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        return app


@dataclass
class Web:
    url: str
    browser: Browser
    checkout: RecordingProxy
    shop: Any
    supplier_keys: dict[str, str]
    other_supplier_id: str
    payouts_url: str | None = None
    exports_url: str | None = None

    async def page(self) -> Page:
        context = await self.browser.new_context(viewport={"width": 1280, "height": 860})
        page = await context.new_page()
        page.set_default_timeout(20_000)
        return page

    async def login(self, page: Page, key: str) -> None:
        await page.goto(f"{self.url}/login")
        if not await page.locator("input[name=api_key]").count():
            raise AssertionError(await page.content())
        await page.fill("input[name=api_key]", key)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{self.url}/payments")


async def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
        )
        yield launched
        await launched.close()


async def _supplier_key(stack: Any, shop: Any, supplier_id: str) -> str:
    status, body = await stack.call(
        "POST",
        f"{stack.tenants_url}/v1/admin/api-keys",
        shop.operator_key,
        json={"role": f"supplier:{supplier_id}"},
    )
    assert status == 201, body
    key: str = body["data"]["key"]

    async def known() -> bool:
        in_checkout, _ = await stack.call("GET", f"{stack.checkout_url}/v1/admin/payments", key)
        in_capture, _ = await stack.call("GET", f"{stack.capture_url}/v1/admin/captures", key)
        return (in_checkout, in_capture) == (200, 200)

    await eventually(known)
    return key


# the payout provider is the sandbox, with the PSP's company key (tests/conftest.py's stack)


@contextlib.asynccontextmanager
async def money_services(
    stack: Any, servers: Any, test_database: Any, broker_names: Any, tmp_path: Path
) -> AsyncIterator[tuple[str, str]]:
    """The stack's payouts service (ledger, payouts with the sandbox as payout provider, funding
    transfers) and an exports service on the stack's broker, started before the shop exists, so
    that its queues take the tenant's events from the first."""
    common: dict[str, Any] = {
        "profile": "test",
        "amqp_url": servers.amqp_url,
        "broker_namespace": broker_names.namespace,
        "broker_queue_expires_ms": broker_names.queue_expires_ms,
        "outbox_poll_interval_s": 0.1,
    }
    exports_db = await test_database.new_service_db("exports")
    exports = create_exports_app(
        ExportsSettings(
            database_url=exports_db.dsn,
            db_schema=exports_db.schema,
            storage_dir=str(tmp_path / "exports"),
            worker_poll_interval_s=0.2,
            heartbeat_s=0.3,
            lease_s=3.0,
            **common,
        )
    )
    async with running(exports) as exports_url:
        yield stack.payouts_url, exports_url


@contextlib.asynccontextmanager
async def back_office(
    stack: Any, browser: Browser, payouts_url: str | None, exports_url: str | None
) -> AsyncIterator[Web]:
    shop = await stack.new_shop(capture_mode="MANUAL")
    status, other = await stack.call(
        "POST",
        f"{stack.tenants_url}/v1/admin/suppliers",
        shop.operator_key,
        json={"name": "Other supplier", "kyc_status": "enabled"},
    )
    assert status == 201, other
    other_id = other["data"]["id"]
    keys = {
        shop.supplier_id: await _supplier_key(stack, shop, shop.supplier_id),
        other_id: await _supplier_key(stack, shop, other_id),
    }
    if payouts_url is not None and exports_url is not None:
        known = (payouts_url, exports_url)

        async def replicated() -> bool:
            for key in (shop.operator_key, *keys.values()):
                for base, path in zip(known, ("/v1/admin/payouts", "/v1/exports"), strict=True):
                    status, _ = await stack.call("GET", f"{base}{path}", key)
                    if status != 200:
                        return False
            return True

        await eventually(replicated, within=20)
    proxy = RecordingProxy(stack.checkout_url)
    async with aiohttp.ClientSession() as http, running(proxy.app(http)) as checkout_url:
        settings = Settings(
            profile="test",
            tenants_url=stack.tenants_url,
            checkout_url=checkout_url,
            capture_url=stack.capture_url,
            psp_dropin_url=f"{stack.sandbox.url}/sandbox/dropin.js",
            storefront_key=shop.storefront_key,
            storefront_supplier_ids=(shop.supplier_id, other_id),
            storefront_capture_mode="MANUAL",
            # without the money services, nothing listens there (never another run's 8084)
            payouts_url=payouts_url or "http://127.0.0.1:9",
            exports_url=exports_url or "http://127.0.0.1:9",
        )
        async with running(create_app(settings)) as url:
            yield Web(
                url=url,
                browser=browser,
                checkout=proxy,
                shop=shop,
                supplier_keys=keys,
                other_supplier_id=other_id,
                payouts_url=payouts_url,
                exports_url=exports_url,
            )


@pytest_asyncio.fixture
async def web_ui(stack: Any, browser: Browser) -> AsyncIterator[Web]:
    async with back_office(stack, browser, None, None) as found:
        yield found


@pytest_asyncio.fixture
async def money_ui(
    stack: Any,
    browser: Browser,
    servers: Any,
    test_database: Any,
    broker_names: Any,
    tmp_path: Path,
) -> AsyncIterator[Web]:
    """The back office over the whole chain, payouts and exports included."""
    async with (
        money_services(stack, servers, test_database, broker_names, tmp_path) as (po, ex),
        back_office(stack, browser, po, ex) as found,
    ):
        yield found


def idempotency_key() -> str:
    return uuid.uuid4().hex
