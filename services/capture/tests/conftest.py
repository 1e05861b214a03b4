"""Capture under test: the real app (one or more replicas on one schema) on real PostgreSQL and
RabbitMQ, fed on the bus exactly as in production: the tenancy events, checkout's
`payment.created` / `payment.authorised`, the OMS's `logistic_order.status_changed`. The PSP is
the sandbox, with real authorisations; its signed webhooks go to a small forwarder that
publishes them as `psp.notification.received`, standing in for the webhooks service."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aio_pika
import aiohttp
import pytest_asyncio
from aiohttp import web

from capture.app import create_app
from capture.settings import Settings
from capture.testing import logistic_order_event, publish_oms
from common.broker import Names
from common.events import (
    DOMAIN_EXCHANGE,
    OMS_EXCHANGE,
    OMS_STATUS_CHANGED,
    EventData,
    PaymentAuthorised,
    PaymentCreated,
    PaymentOutcome,
    PspNotificationReceived,
    Role,
)
from common.http.auth import generate_key
from common.runtime import DB_POOL
from common.testing.apps import running
from common.testing.clock import MovableClock
from common.testing.fixtures import ServiceDb, dsn_with, service_settings_values
from common.testing.tcpproxy import TcpProxy
from common.testing.tenancy import api_key_upserted, publish, supplier_upserted, tenant_upserted
from common.testing.waiting import eventually
from psp_sandbox.testing import Sandbox, authorise, running_sandbox

COMPANY_KEY = "test-company-key"


@dataclass
class Tenant:
    id: str
    merchant_account: str
    operator_key: str
    suppliers: list[str] = field(default_factory=list)
    supplier_keys: dict[str, str] = field(default_factory=dict)


@dataclass
class Payment:
    id: str
    order_id: str
    psp_reference: str
    lines: list[dict[str, Any]]
    amount: int


@dataclass
class Replica:
    url: str
    app: web.Application
    stack: contextlib.AsyncExitStack
    proxy: TcpProxy | None = None
    stopped: bool = False

    @property
    def pool(self) -> Any:
        return self.app[DB_POOL]

    async def stop(self) -> None:
        """Stop the replica (its unacknowledged messages go back to the queue)."""
        self.stopped = True
        await self.stack.aclose()


@dataclass
class CaptureHarness:
    http: aiohttp.ClientSession
    amqp_url: str
    exchange_name: str
    oms_exchange_name: str
    sandbox: Sandbox
    forwarder_url: str
    start: Callable[..., Awaitable[Replica]]
    tenants_of_accounts: dict[str, str]
    names: Names
    replicas: list[Replica] = field(default_factory=list)

    @property
    def main(self) -> Replica:
        """The first replica still running."""
        return next(r for r in self.replicas if not r.stopped)

    @property
    def url(self) -> str:
        return self.main.url

    # -- the bus ------------------------------------------------------------------------

    async def publish(self, event_type: str, data: EventData, tenant_id: str) -> None:
        await publish(self.amqp_url, self.exchange_name, [(event_type, data)], tenant_id=tenant_id)

    async def publish_oms(self, body: dict[str, Any] | bytes) -> None:
        await publish_oms(self.amqp_url, self.oms_exchange_name, body, OMS_STATUS_CHANGED)

    async def dead_letters(self, queue: str) -> list[tuple[bytes, dict[str, Any]]]:
        """Take the messages parked in `queue`'s DLQ (body, headers)."""
        found = []
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel()
            dlq = await channel.get_queue(self.names.queue(f"{queue}.dlq"))
            while (message := await dlq.get(no_ack=True, fail=False)) is not None:
                found.append((message.body, dict(message.headers or {})))
        return found

    async def ship(
        self,
        tenant: Tenant,
        payment: Payment,
        logistic_order_id: str | None = None,
        *,
        status: str = "SHIPPED",
        event_id: str | None = None,
        supplier_id: str | None = None,
    ) -> dict[str, Any]:
        line = next(
            x
            for x in payment.lines
            if logistic_order_id is None or x["logistic_order_id"] == logistic_order_id
        )
        body = logistic_order_event(
            tenant_id=tenant.id,
            order_id=payment.order_id,
            logistic_order_id=line["logistic_order_id"],
            supplier_id=supplier_id or line["supplier_id"],
            status=status,
            event_id=event_id,
        )
        await self.publish_oms(body)
        return body

    # -- tenancy ------------------------------------------------------------------------

    async def new_tenant(
        self,
        *,
        capture_mode: str = "MANUAL",
        capture_delay_hours: int = 0,
        default_rate: str | None = "2.5",
        commission_rate: str | None = "10",
        suppliers: int = 2,
    ) -> Tenant:
        tenant = Tenant(
            id=f"ten_{secrets.token_hex(6)}",
            merchant_account=f"Cap{secrets.token_hex(4)}ECOM",
            operator_key=generate_key("test"),
        )
        await self.publish(
            "tenant.upserted",
            tenant_upserted(
                tenant.id,
                tenant.merchant_account,
                capture_mode=capture_mode,
                capture_delay_hours=capture_delay_hours,
                default_rate=default_rate,
            ),
            tenant.id,
        )
        keys: list[tuple[str, Role, str | None]] = [(tenant.operator_key, "operator", None)]
        for _ in range(suppliers):
            supplier_id = f"sup_{secrets.token_hex(6)}"
            tenant.suppliers.append(supplier_id)
            await self.set_supplier(tenant, supplier_id, commission_rate, revision=1)
            key = generate_key("test")
            tenant.supplier_keys[supplier_id] = key
            keys.append((key, "supplier", supplier_id))
        await publish(
            self.amqp_url,
            self.exchange_name,
            [
                ("api_key.upserted", api_key_upserted(tenant.id, key, role, supplier_id=supplier))
                for key, role, supplier in keys
            ],
        )

        async def replicated() -> bool:
            async with self.main.pool.acquire() as conn:
                keys_found = await conn.fetchval(
                    "SELECT count(*) FROM replica_api_keys WHERE tenant_id = $1", tenant.id
                )
                suppliers_found = await conn.fetchval(
                    "SELECT count(*) FROM replica_suppliers WHERE tenant_id = $1", tenant.id
                )
            return keys_found == len(keys) and suppliers_found == suppliers

        await eventually(replicated)
        self.tenants_of_accounts[tenant.merchant_account] = tenant.id
        await self.sandbox.merchant_account(tenant.merchant_account, self.forwarder_url)
        return tenant

    async def set_supplier(
        self, tenant: Tenant, supplier_id: str, rate: str | None, *, revision: int
    ) -> None:
        await self.publish(
            "supplier.upserted",
            supplier_upserted(tenant.id, supplier_id, commission_rate=rate, revision=revision),
            tenant.id,
        )

    # -- payments, as checkout reports them ---------------------------------------------

    async def authorise(
        self,
        tenant: Tenant,
        amounts: list[int] | None = None,
        *,
        payment_option: str = "CREDIT_CARD",
        capture_mode: str | None = None,
        level3: dict[str, Any] | None = None,
        publish_authorised: bool = True,
    ) -> Payment:
        """A payment authorised at the sandbox for real, then reported as checkout does."""
        amounts = amounts or [10000]
        payment_id = f"pay_{secrets.token_hex(12)}"
        order_id = f"ord_{secrets.token_hex(6)}"
        lines = [
            {
                "logistic_order_id": f"lo_{n + 1}",
                "supplier_id": tenant.suppliers[n % len(tenant.suppliers)],
                "amount": amount,
            }
            for n, amount in enumerate(amounts)
        ]
        total = sum(amounts)
        psp_reference = await authorise(
            self.http,
            self.sandbox.url,
            COMPANY_KEY,
            merchant_account=tenant.merchant_account,
            reference=payment_id,
            value=total,
        )
        payment = Payment(payment_id, order_id, psp_reference, lines, total)
        await self.publish(
            "payment.created",
            PaymentCreated(
                payment_id=payment_id,
                order_id=order_id,
                payment_option=payment_option,
                amount={"value": total, "currency": "EUR"},
                lines=lines,
            ),
            tenant.id,
        )
        if publish_authorised:
            await self.report_authorised(tenant, payment, payment_option, capture_mode, level3)
        return payment

    async def report_authorised(
        self,
        tenant: Tenant,
        payment: Payment,
        payment_option: str = "CREDIT_CARD",
        capture_mode: str | None = None,
        level3: dict[str, Any] | None = None,
    ) -> None:
        await self.publish(
            "payment.authorised",
            PaymentAuthorised(
                payment_id=payment.id,
                order_id=payment.order_id,
                status_from="AUTHORIZATION_PENDING",
                status="AUTHORIZED",
                amount={"value": payment.amount, "currency": "EUR"},
                psp_reference=payment.psp_reference,
                payment_option=payment_option,
                capture_mode=capture_mode,
                merchant_account=tenant.merchant_account,
                lines=payment.lines,
                level3=level3,
            ),
            tenant.id,
        )

        async def arrived() -> bool:
            async with self.main.pool.acquire() as conn:
                status = await conn.fetchval(
                    "SELECT status FROM payments WHERE tenant_id = $1 AND payment_id = $2",
                    tenant.id,
                    payment.id,
                )
            return status == "AUTHORISED"

        await eventually(arrived)

    async def report_closed(self, tenant: Tenant, payment: Payment, status: str) -> None:
        """`payment.cancelled` or `payment.refused`, as checkout publishes it."""
        await self.publish(
            "payment.cancelled" if status == "CANCELLED" else "payment.refused",
            PaymentOutcome(
                payment_id=payment.id,
                order_id=payment.order_id,
                status_from="AUTHORIZED",
                status=status,
                amount={"value": payment.amount, "currency": "EUR"},
                psp_reference=payment.psp_reference,
                payment_option="CREDIT_CARD",
                capture_mode=None,
            ),
            tenant.id,
        )

    # -- HTTP ---------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        key: str,
        json: Any = None,
        idempotency_key: str | None = None,
        url: str | None = None,
        data: bytes | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        async with self.http.request(
            method, (url or self.url) + path, json=json, data=data, headers=headers
        ) as response:
            return response.status, await response.json()

    async def capture_now(
        self, tenant: Tenant, payment: Payment, body: Any = None, key: str | None = None
    ) -> tuple[int, Any]:
        return await self.call(
            "POST",
            f"/v1/admin/payments/{payment.id}/capture",
            tenant.operator_key,
            json=body,
            idempotency_key=key or uuid.uuid4().hex,
        )

    async def captures(self, tenant: Tenant, payment: Payment) -> list[dict[str, Any]]:
        status, body = await self.call(
            "GET", f"/v1/admin/captures?payment_id={payment.id}", tenant.operator_key
        )
        assert status == 200, body
        found: list[dict[str, Any]] = body["data"]
        return found

    async def until_captured(
        self, tenant: Tenant, payment: Payment, status: str = "SUCCEEDED", count: int = 1
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []

        async def reached() -> bool:
            found[:] = await self.captures(tenant, payment)
            return len(found) >= count and all(c["status"] == status for c in found)

        await eventually(reached, within=20)
        return found

    # -- what the PSP and the bus saw ---------------------------------------------------

    async def psp_captures(self, payment: Payment) -> list[dict[str, Any]]:
        held = await self.sandbox.get(f"/sandbox/payments/{payment.psp_reference}")
        return [m for m in held["modifications"] if m["kind"] == "capture"]

    async def psp_capture_requests(self, tenant: Tenant) -> list[dict[str, Any]]:
        requests = await self.sandbox.get(
            f"/sandbox/merchant-accounts/{tenant.merchant_account}/requests"
        )
        return [r for r in requests["data"] if r["path"].endswith("/captures")]

    async def events(self, event_type: str, payment: Payment) -> list[dict[str, Any]]:
        """What capture published about the payment (every event it wrote to its outbox)."""
        async with self.main.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT envelope FROM outbox_log WHERE routing_key = $1"
                " AND envelope->'data'->>'payment_id' = $2 ORDER BY seq",
                event_type,
                payment.id,
            )
        return [r["envelope"]["data"] for r in rows]

    async def logistic_order_events(self, tenant: Tenant, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        status, body = await self.call(
            "GET", f"/v1/admin/logistic-order-events?{query}", tenant.operator_key
        )
        assert status == 200, body
        found: list[dict[str, Any]] = body["data"]
        return found


async def _forwarder(
    harness_ref: dict[str, CaptureHarness],
) -> AsyncIterator[str]:
    """Receives the sandbox's webhooks and publishes them as the webhooks service would."""

    async def receive(request: web.Request) -> web.Response:
        harness = harness_ref["harness"]
        body = await request.json()
        for entry in body["notificationItems"]:
            item = entry["NotificationRequestItem"]
            tenant_id = harness.tenants_of_accounts[item["merchantAccountCode"]]
            await harness.publish(
                "psp.notification.received",
                PspNotificationReceived(
                    notification_id=f"ntf_{secrets.token_hex(8)}",
                    psp="adyen",
                    merchant_account=item["merchantAccountCode"],
                    event_code=item["eventCode"],
                    success=item["success"] == "true",
                    psp_reference=item["pspReference"],
                    original_reference=item.get("originalReference"),
                    merchant_reference=item["merchantReference"],
                    amount=item["amount"],
                    reason=item.get("reason") or None,
                    event_date=item.get("eventDate"),
                ),
                tenant_id,
            )
        return web.Response(text="[accepted]")

    app = web.Application()
    app.router.add_post("/webhooks", receive)
    async with running(app) as base:
        yield base + "/webhooks"


def capture_settings(
    servers: Any, service_db: Any, broker_names: Any, sandbox: Sandbox, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "psp_base_url": f"{sandbox.url}/v71",
        "psp_api_key": COMPANY_KEY,
        "psp_timeout_s": 1.0,
        "capture_lease_s": 3.0,
        "capture_retry_delays_s": (0.05, 0.1),
        "capture_poll_interval_s": 0.1,
        "scheduler_poll_interval_s": 0.1,
    }
    return Settings(
        **service_settings_values(servers, service_db, broker_names, **{**values, **overrides})
    )


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with running_sandbox(company_api_key=COMPANY_KEY) as running_one:
        yield running_one


@pytest_asyncio.fixture
async def clock() -> MovableClock:
    return MovableClock()


@pytest_asyncio.fixture
async def capture(
    request, servers, service_db, broker_names, sandbox, clock
) -> AsyncIterator[CaptureHarness]:
    """One capture replica (`harness.start(...)` adds more on the same schema); parametrize
    indirectly with the first replica's `start` arguments (e.g. `{"proxied": True}`)."""
    ref: dict[str, CaptureHarness] = {}
    async with contextlib.AsyncExitStack() as stack:
        forwarder_url = await stack.enter_async_context(
            contextlib.asynccontextmanager(_forwarder)(ref)
        )
        http = await stack.enter_async_context(aiohttp.ClientSession())

        async def start(*, proxied: bool = False, **overrides: Any) -> Replica:
            proxy = None
            db = service_db
            if proxied:
                proxy = await TcpProxy("127.0.0.1", 5432).start()
                stack.push_async_callback(proxy.close)
                db = ServiceDb(
                    schema=service_db.schema,
                    role=service_db.role,
                    dsn=dsn_with(service_db.dsn, host="127.0.0.1", port=proxy.port),
                )
            settings = capture_settings(servers, db, broker_names, sandbox, **overrides)
            app = create_app(settings, clock=clock)
            own = contextlib.AsyncExitStack()
            stack.push_async_callback(own.aclose)
            url = await own.enter_async_context(running(app))
            replica = Replica(url, app, own, proxy)
            harness.replicas.append(replica)
            return replica

        harness = CaptureHarness(
            http=http,
            amqp_url=servers.amqp_url,
            exchange_name=broker_names.exchange(DOMAIN_EXCHANGE),
            oms_exchange_name=broker_names.exchange(OMS_EXCHANGE),
            sandbox=sandbox,
            forwarder_url=forwarder_url,
            start=start,
            tenants_of_accounts={},
            names=broker_names,
        )
        ref["harness"] = harness
        await start(**getattr(request, "param", {}))
        yield harness
        # the sandbox's webhooks still in flight must not reach a stopped forwarder
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sandbox.drain_webhooks(), 5)


DAY = timedelta(days=1)
