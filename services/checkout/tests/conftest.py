"""Checkout under test: the real app on real PostgreSQL and RabbitMQ, its tenancy replica fed
by `tenant.upserted` / `supplier.upserted` / `api_key.upserted` events on the bus, exactly as
the tenants service publishes them."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest_asyncio

from checkout.app import create_app
from checkout.settings import Settings
from common.events import DOMAIN_EXCHANGE, BuyerAccountUpserted, EventData, Role
from common.http.auth import generate_key
from common.runtime import DB_POOL
from common.testing.apps import running
from common.testing.tenancy import api_key_upserted, publish, supplier_upserted, tenant_upserted
from common.testing.waiting import eventually
from psp_sandbox.testing import Sandbox, running_sandbox

COMPANY_KEY = "test-company-key"


@dataclass
class Tenant:
    id: str
    merchant_account: str
    storefront_key: str
    operator_key: str
    suppliers: list[str] = field(default_factory=list)
    supplier_keys: dict[str, str] = field(default_factory=dict)


@dataclass
class CheckoutHarness:
    url: str
    app: object
    http: aiohttp.ClientSession
    amqp_url: str
    exchange_name: str
    sandbox: Sandbox

    async def publish(self, event_type: str, data: EventData, tenant_id: str) -> None:
        await publish(self.amqp_url, self.exchange_name, [(event_type, data)], tenant_id=tenant_id)

    async def new_tenant(self, suppliers: int = 2) -> Tenant:
        tenant_id = f"ten_{secrets.token_hex(6)}"
        tenant = Tenant(
            id=tenant_id,
            merchant_account=f"Test{secrets.token_hex(4)}ECOM",
            storefront_key=generate_key("test"),
            operator_key=generate_key("test"),
        )
        events: list[tuple[str, EventData]] = [
            ("tenant.upserted", tenant_upserted(tenant_id, tenant.merchant_account))
        ]
        keys: list[tuple[str, Role, str | None]] = [
            (tenant.storefront_key, "storefront", None),
            (tenant.operator_key, "operator", None),
        ]
        for _ in range(suppliers):
            supplier_id = f"sup_{secrets.token_hex(6)}"
            tenant.suppliers.append(supplier_id)
            events.append(("supplier.upserted", supplier_upserted(tenant_id, supplier_id)))
            key = generate_key("test")
            tenant.supplier_keys[supplier_id] = key
            keys.append((key, "supplier", supplier_id))
        events += [
            ("api_key.upserted", api_key_upserted(tenant_id, key, role, supplier_id=supplier_id))
            for key, role, supplier_id in keys
        ]
        await publish(self.amqp_url, self.exchange_name, events)
        await self.wait_for_replica(tenant_id, len(keys))
        await self.sandbox.merchant_account(tenant.merchant_account, None)
        return tenant

    async def pays_on_due_date(self, tenant: Tenant, buyer_account: str = "acc_1") -> None:
        """The tenant's buyer account pays by bank transfer on a due date (as the tenants
        service publishes it), once checkout's replica has it."""
        await self.publish(
            "buyer_account.upserted",
            BuyerAccountUpserted(
                tenant_id=tenant.id,
                buyer_account=buyer_account,
                revision=1,
                payment_option="BANK_WIRE_ON_DUE_DATE",
            ),
            tenant.id,
        )
        pool = self.app[DB_POOL]  # type: ignore[index]

        async def replicated() -> bool:
            found = await pool.fetchval(
                "SELECT payment_option FROM replica_buyer_accounts"
                " WHERE tenant_id = $1 AND buyer_account = $2",
                tenant.id,
                buyer_account,
            )
            return bool(found == "BANK_WIRE_ON_DUE_DATE")

        await eventually(replicated)

    async def tokenise(self, number: str, cvc: str | None = "737") -> dict[str, str]:
        """What the sandbox's drop-in does in the browser: card in, tokens out."""
        body = {"number": number, "expiry_month": "03", "expiry_year": "2030"}
        if cvc is not None:
            body["cvc"] = cvc
        async with self.http.post(f"{self.sandbox.url}/sandbox/tokenize", json=body) as response:
            assert response.status == 200, await response.text()
            tokens = await response.json()
        return {k: v for k, v in tokens.items() if v is not None}

    async def wait_for_replica(self, tenant_id: str, keys: int) -> None:
        pool = self.app[DB_POOL]  # type: ignore[index]
        for _ in range(100):
            async with pool.acquire() as conn:
                found = await conn.fetchval(
                    "SELECT count(*) FROM replica_api_keys WHERE tenant_id = $1", tenant_id
                )
                tenant = await conn.fetchval(
                    "SELECT 1 FROM replica_tenants WHERE tenant_id = $1", tenant_id
                )
            if found == keys and tenant:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("tenancy replica did not arrive")


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with running_sandbox(company_api_key=COMPANY_KEY) as running_one:
        yield running_one


@pytest_asyncio.fixture
async def checkout(servers, service_db, broker_names, sandbox) -> AsyncIterator[CheckoutHarness]:
    settings = Settings(
        profile="test",
        database_url=service_db.dsn,
        db_schema=service_db.schema,
        amqp_url=servers.amqp_url,
        broker_namespace=broker_names.namespace,
        broker_queue_expires_ms=broker_names.queue_expires_ms,
        outbox_poll_interval_s=0.2,
        psp_base_url=f"{sandbox.url}/v71",
        psp_api_key=COMPANY_KEY,
        psp_timeout_s=1.0,  # the PSP-timeout tests wait three attempts of it
    )
    app = create_app(settings)
    async with running(app) as url, aiohttp.ClientSession() as http:
        yield CheckoutHarness(
            url=url,
            app=app,
            http=http,
            amqp_url=servers.amqp_url,
            exchange_name=broker_names.exchange(DOMAIN_EXCHANGE),
            sandbox=sandbox,
        )
