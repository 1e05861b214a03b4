"""Test helpers for suites that talk to the sandbox: run it in-process, register a merchant
account, and collect its webhooks with a tiny receiver app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from common.testing.apps import running
from psp_sandbox.app import WEBHOOKS, create_app
from psp_sandbox.settings import Settings

FAST_RETRIES = (20, 40, 80)

# A success card in Adyen's test-environment form (`test_`-prefixed plain fields)
TEST_CARD = {
    "type": "scheme",
    "encryptedCardNumber": "test_4111111111111111",
    "encryptedExpiryMonth": "test_03",
    "encryptedExpiryYear": "test_2030",
    "encryptedSecurityCode": "test_737",
}


async def authorise(
    http: aiohttp.ClientSession,
    sandbox_url: str,
    api_key: str,
    *,
    merchant_account: str,
    reference: str,
    value: int,
) -> str:
    """Authorise `value` EUR cents with the test card, as checkout's adapter would (idempotency
    key `authorise:<reference>`); the payment's PSP reference."""
    async with http.post(
        f"{sandbox_url}/v71/payments",
        json={
            "merchantAccount": merchant_account,
            "amount": {"value": value, "currency": "EUR"},
            "reference": reference,
            "paymentMethod": TEST_CARD,
            "returnUrl": "https://shop.example/return",
        },
        headers={"X-API-Key": api_key, "Idempotency-Key": f"authorise:{reference}"},
    ) as response:
        answer: dict[str, Any] = await response.json()
    if answer.get("resultCode") != "Authorised":
        raise RuntimeError(f"authorisation failed: {answer}")
    psp_reference: str = answer["pspReference"]
    return psp_reference


@dataclass
class Receiver:
    """Collects notifications; answers 500 to the first `fail_first` deliveries."""

    url: str = ""
    fail_first: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def items(self) -> list[dict[str, Any]]:
        return [
            entry["NotificationRequestItem"]
            for body in self.received
            for entry in body["notificationItems"]
        ]

    async def wait_for(self, count: int, within_s: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(within_s), self.arrived:
            await self.arrived.wait_for(lambda: len(self.received) >= count)
        return self.items()


@asynccontextmanager
async def webhook_receiver(fail_first: int = 0) -> AsyncIterator[Receiver]:
    receiver = Receiver(fail_first=fail_first)

    async def receive(request: web.Request) -> web.Response:
        body = await request.json()
        if len(receiver.answered) < receiver.fail_first:
            receiver.answered.append(500)
            return web.Response(status=500, text="try again")
        receiver.answered.append(200)
        async with receiver.arrived:
            receiver.received.append(body)
            receiver.arrived.notify_all()
        return web.Response(text="[accepted]")

    app = web.Application()
    app.router.add_post("/webhooks", receive)
    async with running(app) as base:
        receiver.url = base + "/webhooks"
        yield receiver


@dataclass
class Sandbox:
    url: str
    app: web.Application
    http: aiohttp.ClientSession

    async def merchant_account(self, code: str, webhook_url: str | None) -> dict[str, Any]:
        async with self.http.post(
            f"{self.url}/sandbox/merchant-accounts",
            json={"merchant_account": code, "webhook_url": webhook_url},
        ) as response:
            assert response.status == 200, await response.text()
            account: dict[str, Any] = await response.json()
            return account

    async def faults(self, code: str, **faults: Any) -> None:
        async with self.http.put(
            f"{self.url}/sandbox/merchant-accounts/{code}/faults", json=faults
        ) as response:
            assert response.status == 200, await response.text()

    async def get(self, path: str) -> Any:
        async with self.http.get(self.url + path) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def drain_webhooks(self) -> None:
        await self.app[WEBHOOKS].drain()


@asynccontextmanager
async def running_sandbox(**settings: Any) -> AsyncIterator[Sandbox]:
    settings.setdefault("webhook_retry_delays_ms", FAST_RETRIES)
    settings.setdefault("webhook_timeout_s", 2.0)
    settings.setdefault("freeze_state_interval_s", 0)  # the test run's process is shared
    app = create_app(Settings(**settings))
    async with running(app) as url, aiohttp.ClientSession() as http:
        yield Sandbox(url=url, app=app, http=http)
