"""The tenants service under test: the real app, in-process, on real PostgreSQL and RabbitMQ,
driven over HTTP as its users drive it. Events are read from the service's outbox, where the
transaction that changed the state wrote them."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest_asyncio

from common.runtime import DB_POOL
from common.testing.apps import running
from tenants.app import create_app
from tenants.settings import Settings

VALID_IBANS = ("DE89370400440532013000", "FR1420041010050500013M02606", "NL91ABNA0417164300")


@dataclass
class Response:
    status: int
    body: Any

    @property
    def data(self) -> Any:
        return self.body["data"]

    @property
    def error(self) -> dict[str, Any]:
        return self.body["error"]


@dataclass
class Tenant:
    id: str
    operator_key: str
    body: dict[str, Any]


@dataclass
class TenantsHarness:
    url: str
    app: Any
    http: aiohttp.ClientSession
    admin_key: str

    async def call(
        self,
        method: str,
        path: str,
        key: str | None = None,
        json: Any = None,
        data: str | bytes | None = None,
    ) -> Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.http.request(
            method, self.url + path, headers=headers, json=json, data=data
        ) as response:
            return Response(response.status, await response.json())

    async def new_tenant(self, **fields: Any) -> Tenant:
        body = {
            "name": "Acme Marketplace",
            "merchant_account": f"Acme{secrets.token_hex(4)}ECOM",
            "psp": "adyen",
            "currency": "EUR",
            **fields,
        }
        created = await self.call("POST", "/v1/platform/tenants", self.admin_key, json=body)
        assert created.status == 201, created.body
        return Tenant(
            id=created.data["id"], operator_key=created.data["api_key"], body=created.data
        )

    async def new_supplier(self, tenant: Tenant, **fields: Any) -> dict[str, Any]:
        body = {"name": "Supplier", **fields}
        created = await self.call("POST", "/v1/admin/suppliers", tenant.operator_key, json=body)
        assert created.status == 201, created.body
        data: dict[str, Any] = created.data
        return data

    async def new_key(self, tenant: Tenant, role: str) -> str:
        created = await self.call(
            "POST", "/v1/admin/api-keys", tenant.operator_key, json={"role": role}
        )
        assert created.status == 201, created.body
        key: str = created.data["key"]
        return key

    async def events(self, aggregate_id: str | None = None) -> list[dict[str, Any]]:
        """The envelopes written to the outbox (`outbox_log`: the relay deletes what it
        published), oldest first (optionally of one aggregate)."""
        async with self.app[DB_POOL].acquire() as conn:
            rows = await conn.fetch(
                "SELECT envelope FROM outbox_log WHERE $1::text IS NULL OR aggregate_id = $1"
                " ORDER BY seq",
                aggregate_id,
            )
        return [r["envelope"] for r in rows]

    async def outbox_count(self) -> int:
        async with self.app[DB_POOL].acquire() as conn:
            count: int = await conn.fetchval("SELECT count(*) FROM outbox_log")
        return count

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self.app[DB_POOL].acquire() as conn:
            return list(await conn.fetch(sql, *args))


def tenants_settings(servers: Any, service_db: Any, broker_names: Any, admin_key: str) -> Settings:
    return Settings(
        profile="test",
        database_url=service_db.dsn,
        db_schema=service_db.schema,
        amqp_url=servers.amqp_url,
        broker_namespace=broker_names.namespace,
        broker_queue_expires_ms=broker_names.queue_expires_ms,
        outbox_poll_interval_s=0.2,
        platform_admin_key=admin_key,
    )


@pytest_asyncio.fixture
async def tenants(servers, service_db, broker_names) -> AsyncIterator[TenantsHarness]:
    admin_key = f"test_platform_{secrets.token_hex(8)}"
    app = create_app(tenants_settings(servers, service_db, broker_names, admin_key))
    async with running(app) as url, aiohttp.ClientSession() as http:
        yield TenantsHarness(url=url, app=app, http=http, admin_key=admin_key)
