"""The whole stack for end-to-end tests: tenants, checkout, webhooks, capture and payouts (each
with its own schema, all on one broker namespace, as deployed) and the PSP sandbox sending its
signed webhooks to the webhooks service and playing the payout provider. Capture reads the
time from `stack.clock`, which a test moves forward instead of sleeping (DELAYED captures)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import web

from capture.app import create_app as create_capture_app
from capture.settings import Settings as CaptureSettings
from capture.testing import logistic_order_event, publish_oms
from checkout.app import create_app as create_checkout_app
from checkout.settings import Settings as CheckoutSettings
from common.broker import Names
from common.events import OMS_EXCHANGE, OMS_STATUS_CHANGED
from common.runtime import DB_POOL
from common.testing.apps import running
from common.testing.clock import MovableClock
from common.testing.waiting import eventually
from payouts.app import create_app as create_payouts_app
from payouts.settings import Settings as PayoutsSettings
from psp_sandbox.testing import Sandbox, running_sandbox
from tenants.app import create_app as create_tenants_app
from tenants.settings import Settings as TenantsSettings
from webhooks.app import create_app as create_webhooks_app
from webhooks.settings import Settings as WebhooksSettings

COMPANY_KEY = "test-company-key"


@dataclass
class Shop:
    tenant_id: str
    merchant_account: str
    operator_key: str
    storefront_key: str
    supplier_id: str
    hmac_key: str = ""  # the merchant account's, as the PSP signs its webhooks with it


@dataclass
class Stack:
    tenants_url: str
    checkout_url: str
    webhooks_url: str
    capture_url: str
    capture_app: web.Application
    payouts_url: str
    sandbox: Sandbox
    http: aiohttp.ClientSession
    admin_key: str
    clock: MovableClock
    amqp_url: str
    names: Names
    checkout_app: web.Application | None = None

    async def call(
        self,
        method: str,
        url: str,
        key: str,
        json: Any = None,
        idempotency_key: str | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        async with self.http.request(method, url, json=json, headers=headers) as response:
            return response.status, await response.json()

    async def new_shop(
        self,
        capture_mode: str = "MANUAL",
        capture_delay_hours: int = 0,
        commission_rate: str | None = None,
    ) -> Shop:
        merchant_account = f"Flow{secrets.token_hex(4)}ECOM"
        settings: dict[str, Any] = {"default_rate": "2.5", "capture_mode": capture_mode}
        if capture_delay_hours:
            settings["capture_delay_hours"] = capture_delay_hours
        status, tenant = await self.call(
            "POST",
            f"{self.tenants_url}/v1/platform/tenants",
            self.admin_key,
            json={
                "name": "Flow",
                "merchant_account": merchant_account,
                "currency": "EUR",
                "settings": settings,
            },
        )
        assert status == 201, tenant
        operator = tenant["data"]["api_key"]
        status, supplier = await self.call(
            "POST",
            f"{self.tenants_url}/v1/admin/suppliers",
            operator,
            json={"name": "S", "kyc_status": "enabled"},
        )
        assert status == 201, supplier
        if commission_rate is not None:
            status, body = await self.call(
                "PUT",
                f"{self.tenants_url}/v1/admin/commissions/{supplier['data']['id']}",
                operator,
                json={"rate": commission_rate},
            )
            assert status == 200, body
        status, storefront = await self.call(
            "POST", f"{self.tenants_url}/v1/admin/api-keys", operator, json={"role": "storefront"}
        )
        assert status == 201, storefront
        shop = Shop(
            tenant_id=tenant["data"]["id"],
            merchant_account=merchant_account,
            operator_key=operator,
            storefront_key=storefront["data"]["key"],
            supplier_id=supplier["data"]["id"],
        )

        async def replicas_arrived() -> bool:
            in_webhooks, _ = await self.call(
                "GET", f"{self.webhooks_url}/v1/admin/webhooks/notifications", operator
            )
            in_checkout, _ = await self.call(
                "GET", f"{self.checkout_url}/v1/admin/payments", operator
            )
            # an empty body: 422 once the storefront key is known, 401 before; nothing stored
            storefront_known, _ = await self.call(
                "POST", f"{self.checkout_url}/v1/checkout/sessions", shop.storefront_key, json={}
            )
            in_capture, _ = await self.call(
                "GET", f"{self.capture_url}/v1/admin/captures", operator
            )
            async with self.capture_app[DB_POOL].acquire() as conn:
                rate = await conn.fetchval(
                    "SELECT data->>'commission_rate' FROM replica_suppliers WHERE supplier_id = $1",
                    shop.supplier_id,
                )
            return (in_webhooks, in_checkout, storefront_known, in_capture) == (
                200,
                200,
                422,
                200,
            ) and (rate == commission_rate)

        await eventually(replicas_arrived)
        # the PSP side: the merchant account sends its webhooks to the webhooks service, and
        # the operator gives the webhooks service the account's HMAC key
        account = await self.sandbox.merchant_account(
            merchant_account, f"{self.webhooks_url}/v1/webhooks/psp/adyen"
        )
        status, body = await self.call(
            "PUT",
            f"{self.webhooks_url}/v1/admin/webhooks/hmac-keys",
            operator,
            json={"merchant_account": merchant_account, "key": account["hmac_key"]},
        )
        assert status == 201, body
        shop.hmac_key = account["hmac_key"]
        return shop

    async def session(
        self, shop: Shop, amount: int = 15000, lines: list[int] | None = None
    ) -> dict[str, Any]:
        """A checkout session; `lines` splits the amount into logistic orders lo_1, lo_2..."""
        amounts = lines or [amount]
        status, body = await self.call(
            "POST",
            f"{self.checkout_url}/v1/checkout/sessions",
            shop.storefront_key,
            json={
                "order_id": f"ord_{uuid.uuid4().hex[:8]}",
                "amount": {"value": sum(amounts), "currency": "EUR"},
                "buyer_account": "acc_1",
                "return_url": "https://shop.example/return",
                "lines": [
                    {
                        "logistic_order_id": f"lo_{n + 1}",
                        "supplier_id": shop.supplier_id,
                        "amount": value,
                    }
                    for n, value in enumerate(amounts)
                ],
            },
            idempotency_key=uuid.uuid4().hex,
        )
        assert status == 201, body
        session: dict[str, Any] = body["data"]
        return session

    async def pay(self, session: dict[str, Any]) -> tuple[int, Any]:
        async with self.http.post(
            f"{self.sandbox.url}/sandbox/tokenize",
            json={
                "number": "4242424242424242",
                "expiry_month": "03",
                "expiry_year": "2030",
                "cvc": "737",
            },
        ) as response:
            tokens = {k: v for k, v in (await response.json()).items() if v is not None}
        return await self.call(
            "POST",
            f"{self.checkout_url}/v1/shop/payments",
            session["client_token"],
            json={
                "payment_method": tokens,
                "browser_info": {"userAgent": "test", "acceptHeader": "*/*"},
            },
            idempotency_key=uuid.uuid4().hex,
        )

    async def payment(self, shop: Shop, payment_id: str) -> dict[str, Any]:
        status, body = await self.call(
            "GET", f"{self.checkout_url}/v1/admin/payments/{payment_id}", shop.operator_key
        )
        assert status == 200, body
        payment: dict[str, Any] = body["data"]
        return payment

    async def ship(
        self, shop: Shop, session: dict[str, Any], logistic_order_id: str = "lo_1"
    ) -> None:
        """The OMS reports the logistic order SHIPPED on `oms.events`."""
        payment = await self.payment(shop, session["id"])
        await publish_oms(
            self.amqp_url,
            self.names.exchange(OMS_EXCHANGE),
            logistic_order_event(
                tenant_id=shop.tenant_id,
                order_id=payment["order_id"],
                logistic_order_id=logistic_order_id,
                supplier_id=shop.supplier_id,
            ),
            OMS_STATUS_CHANGED,
        )

    async def until_status(self, shop: Shop, payment_id: str, status: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def reached() -> bool:
            found["payment"] = await self.payment(shop, payment_id)
            return bool(found["payment"]["status"] == status)

        await eventually(reached, within=20)
        return found["payment"]

    async def until_capture_knows(self, payment_id: str) -> None:
        """Wait until payment.authorised has reached the capture service (checkout answers
        PAY-101 before its event has travelled)."""

        async def authorised() -> bool:
            async with self.capture_app[DB_POOL].acquire() as conn:
                status = await conn.fetchval(
                    "SELECT status FROM payments WHERE payment_id = $1", payment_id
                )
            return bool(status == "AUTHORISED")

        await eventually(authorised)

    async def captures(self, shop: Shop, payment_id: str) -> list[dict[str, Any]]:
        status, body = await self.call(
            "GET",
            f"{self.capture_url}/v1/admin/captures?payment_id={payment_id}",
            shop.operator_key,
        )
        assert status == 200, body
        found: list[dict[str, Any]] = body["data"]
        return found

    @staticmethod
    def notification_entries(payment: dict[str, Any], event_code: str) -> list[dict[str, Any]]:
        return [
            e
            for e in payment["timeline"]
            if e["kind"] == "psp_notification" and e["detail"].get("event_code") == event_code
        ]

    async def until(self, shop: Shop, payment_id: str, event_code: str, **expected: Any) -> Any:
        """Wait for the payment's timeline to show the `event_code` notification."""
        found: dict[str, Any] = {}

        async def arrived() -> bool:
            found["payment"] = await self.payment(shop, payment_id)
            found["entries"] = self.notification_entries(found["payment"], event_code)
            return bool(found["entries"]) and all(
                found["payment"][k] == v for k, v in expected.items()
            )

        await eventually(arrived, within=20)
        return found["payment"], found["entries"]


@pytest_asyncio.fixture
async def stack(request, servers, test_database, broker_names) -> AsyncIterator[Stack]:
    """Parametrize indirectly with {"capture": {...}} to override capture's settings."""
    capture_overrides: dict[str, Any] = dict(getattr(request, "param", {}).get("capture", {}))
    common: dict[str, Any] = {
        "profile": "test",
        "amqp_url": servers.amqp_url,
        "broker_namespace": broker_names.namespace,
        "broker_queue_expires_ms": broker_names.queue_expires_ms,
        "outbox_poll_interval_s": 0.1,
    }
    tenants_db = await test_database.new_service_db("tenants")
    checkout_db = await test_database.new_service_db("checkout")
    webhooks_db = await test_database.new_service_db("webhooks")
    capture_db = await test_database.new_service_db("capture")
    payouts_db = await test_database.new_service_db("payouts")
    clock = MovableClock()
    admin_key = f"test_platform_{secrets.token_hex(8)}"
    async with running_sandbox(company_api_key=COMPANY_KEY, payout_api_key=COMPANY_KEY) as sandbox:
        webhooks_app = create_webhooks_app(
            WebhooksSettings(
                database_url=webhooks_db.dsn,
                db_schema=webhooks_db.schema,
                hmac_encryption_key=secrets.token_hex(32),
                **common,
            )
        )
        checkout_app = create_checkout_app(
            CheckoutSettings(
                database_url=checkout_db.dsn,
                db_schema=checkout_db.schema,
                psp_base_url=f"{sandbox.url}/v71",
                psp_api_key=COMPANY_KEY,
                psp_timeout_s=1.0,
                **common,
            )
        )
        capture_app = create_capture_app(
            CaptureSettings(
                database_url=capture_db.dsn,
                db_schema=capture_db.schema,
                psp_base_url=f"{sandbox.url}/v71",
                psp_api_key=COMPANY_KEY,
                psp_timeout_s=1.0,
                capture_lease_s=3.0,
                capture_retry_delays_s=(0.05, 0.1),
                capture_poll_interval_s=0.1,
                scheduler_poll_interval_s=0.1,
                **common,
                **capture_overrides,
            ),
            clock=clock,
        )
        payouts_app = create_payouts_app(
            PayoutsSettings(
                database_url=payouts_db.dsn,
                db_schema=payouts_db.schema,
                provider_base_url=f"{sandbox.url}/payout",
                provider_api_key=COMPANY_KEY,
                provider_timeout_s=1.0,
                pending_poll_s=0.3,
                executor_poll_interval_s=0.1,
                scheduler_poll_interval_s=3600,
                **common,
            )
        )
        tenants_app = create_tenants_app(
            TenantsSettings(
                database_url=tenants_db.dsn,
                db_schema=tenants_db.schema,
                platform_admin_key=admin_key,
                **common,
            )
        )
        # consumers first: their queues must be bound before tenants publishes anything
        async with (
            running(webhooks_app) as webhooks_url,
            running(checkout_app) as checkout_url,
            running(capture_app) as capture_url,
            running(payouts_app) as payouts_url,
            running(tenants_app) as tenants_url,
            aiohttp.ClientSession() as http,
        ):
            yield Stack(
                tenants_url=tenants_url,
                checkout_url=checkout_url,
                webhooks_url=webhooks_url,
                capture_url=capture_url,
                capture_app=capture_app,
                payouts_url=payouts_url,
                sandbox=sandbox,
                http=http,
                admin_key=admin_key,
                clock=clock,
                amqp_url=servers.amqp_url,
                names=broker_names,
                checkout_app=checkout_app,
            )
            # webhooks still in flight must not reach services that are stopping
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sandbox.drain_webhooks(), 5)
