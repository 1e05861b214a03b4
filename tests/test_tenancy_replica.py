"""The tenants service feeds every other service's tenancy replica over RabbitMQ.

A probe service is built here only from `libs/common` pieces, exactly as checkout and the
others are: an operator-only route, authenticated against its own replica of the API keys
(`replica_key_lookup`), kept by `tenancy_consumption`. A key created in tenants starts working
in the probe, and a key revoked in tenants stops working there one event's delay later.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest_asyncio
from aiohttp import web

from common import runtime
from common.config import ServiceSettings
from common.http.app import create_base_app
from common.http.auth import Authenticator
from common.http.envelope import ok
from common.http.routing import AUTHENTICATOR, OPERATOR, Api, Call
from common.metrics import Metrics
from common.runtime import DB_POOL
from common.tenancy import replica_key_lookup, tenancy_consumption
from common.testing.apps import running
from tenants.app import create_app as create_tenants_app
from tenants.settings import Settings as TenantsSettings

DEADLINE_S = 10.0

probe_api = Api("probe")


@probe_api.get("/v1/probe", summary="Who the key is, in the probe", roles=OPERATOR)
async def probe(request: web.Request, call: Call[None]) -> web.Response:
    return ok("probe", {"id": None, "tenant_id": call.tenant_id})


def create_probe_app(settings: ServiceSettings, migrations: Any) -> web.Application:
    app = create_base_app(probe_api, Metrics())
    app.cleanup_ctx.append(runtime.database(settings, "probe", migrations))

    async def authentication(app: web.Application) -> AsyncIterator[None]:
        app[AUTHENTICATOR] = Authenticator(replica_key_lookup(app[DB_POOL]))
        yield

    app.cleanup_ctx.append(authentication)
    app.cleanup_ctx.append(runtime.broker(settings, [tenancy_consumption("probe.tenancy")]))
    return app


@dataclass
class Stack:
    tenants_url: str
    probe_url: str
    probe_app: web.Application
    admin_key: str
    http: aiohttp.ClientSession

    async def tenants(self, method: str, path: str, key: str, json: Any = None) -> Any:
        async with self.http.request(
            method, self.tenants_url + path, headers={"Authorization": f"Bearer {key}"}, json=json
        ) as response:
            body = await response.json()
            assert response.status < 300, body
            return body["data"]

    async def probe_status(self, key: str) -> int:
        async with self.http.get(
            self.probe_url + "/v1/probe", headers={"Authorization": f"Bearer {key}"}
        ) as response:
            return response.status

    async def replica(self, sql: str, *args: Any) -> Any:
        async with self.probe_app[DB_POOL].acquire() as conn:
            return await conn.fetchrow(sql, *args)


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> float:
    """Seconds until `check` holds, or fail after the deadline."""
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE_S:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} within {DEADLINE_S} s")


@pytest_asyncio.fixture
async def stack(servers, test_database, broker_names, tmp_path) -> AsyncIterator[Stack]:
    tenants_db = await test_database.new_service_db("tenants")
    probe_db = await test_database.new_service_db("probe")
    admin_key = f"test_platform_{secrets.token_hex(8)}"
    common: dict[str, Any] = {
        "profile": "test",
        "amqp_url": servers.amqp_url,
        "broker_namespace": broker_names.namespace,
        "broker_queue_expires_ms": broker_names.queue_expires_ms,
        "outbox_poll_interval_s": 0.2,
    }
    probe_settings = ServiceSettings(
        service_name="probe", database_url=probe_db.dsn, db_schema=probe_db.schema, **common
    )
    tenants_settings = TenantsSettings(
        database_url=tenants_db.dsn,
        db_schema=tenants_db.schema,
        platform_admin_key=admin_key,
        **common,
    )
    probe_app = create_probe_app(probe_settings, tmp_path)
    # The probe first: its queue must be bound before tenants publishes anything.
    async with (
        running(probe_app) as probe_url,
        running(create_tenants_app(tenants_settings)) as tenants_url,
        aiohttp.ClientSession() as http,
    ):
        yield Stack(tenants_url, probe_url, probe_app, admin_key, http)


async def test_keys_created_and_revoked_in_tenants_take_effect_in_another_service(stack):
    # given: a tenant, a supplier with a commission, and a second operator key
    tenant = await stack.tenants(
        "POST",
        "/v1/platform/tenants",
        stack.admin_key,
        json={
            "name": "Replica",
            "merchant_account": "ReplicaECOM",
            "currency": "EUR",
            "settings": {"default_rate": "2.5", "capture_mode": "ON_SHIPMENT"},
        },
    )
    operator = tenant["api_key"]
    supplier = await stack.tenants(
        "POST", "/v1/admin/suppliers", operator, json={"name": "S", "kyc_status": "enabled"}
    )
    await stack.tenants(
        "PUT", f"/v1/admin/commissions/{supplier['id']}", operator, json={"rate": "12.5"}
    )
    await stack.tenants(
        "PATCH", "/v1/admin/tenant/settings", operator, json={"capture_mode": "MANUAL"}
    )
    second = await stack.tenants("POST", "/v1/admin/api-keys", operator, json={"role": "operator"})
    supplier_key = await stack.tenants(
        "POST", "/v1/admin/api-keys", operator, json={"role": f"supplier:{supplier['id']}"}
    )

    # when the events arrive, the key works in the probe
    async def second_key_works() -> bool:
        return await stack.probe_status(second["key"]) == 200

    await eventually(second_key_works, "the new key works in the probe")

    # then the replica holds the tenant's and the supplier's full state
    async def replica_complete() -> bool:
        tenant_row = await stack.replica(
            "SELECT revision, data FROM replica_tenants WHERE tenant_id = $1", tenant["id"]
        )
        supplier_row = await stack.replica(
            "SELECT revision, data FROM replica_suppliers WHERE supplier_id = $1", supplier["id"]
        )
        return (
            tenant_row is not None
            and tenant_row["revision"] == 2
            and supplier_row is not None
            and supplier_row["revision"] == 2
        )

    await eventually(replica_complete, "the tenant and supplier replicas are complete")
    tenant_row = await stack.replica(
        "SELECT merchant_account, data FROM replica_tenants WHERE tenant_id = $1", tenant["id"]
    )
    assert tenant_row["merchant_account"] == "ReplicaECOM"
    assert tenant_row["data"]["default_rate"] == "2.5"
    assert tenant_row["data"]["capture_mode"] == "MANUAL"
    assert tenant_row["data"]["currency"] == "EUR"
    supplier_row = await stack.replica(
        "SELECT data FROM replica_suppliers WHERE supplier_id = $1", supplier["id"]
    )
    assert supplier_row["data"]["commission_rate"] == "12.5"
    assert supplier_row["data"]["kyc_status"] == "enabled"

    async def supplier_key_known() -> bool:
        return await stack.probe_status(supplier_key["key"]) != 401

    await eventually(supplier_key_known, "the supplier key reaches the probe")
    assert await stack.probe_status(supplier_key["key"]) == 403
    assert await stack.probe_status("test_not_a_key") == 401

    # when the key is revoked in tenants
    await stack.tenants("DELETE", f"/v1/admin/api-keys/{second['id']}", operator)

    # then the probe refuses it within one event's delay, and the other key still works
    async def second_key_refused() -> bool:
        return await stack.probe_status(second["key"]) == 401

    await eventually(second_key_refused, "the revoked key is refused by the probe")
    assert await stack.probe_status(operator) == 200


async def test_a_service_that_joins_later_gets_the_tenants_by_a_republish(
    servers, test_database, broker_names, tmp_path
):
    # given a tenant created before a service existed (its queue did not exist either)
    tenants_db = await test_database.new_service_db("tenants")
    late_db = await test_database.new_service_db("late")
    admin_key = f"test_platform_{secrets.token_hex(8)}"
    common: dict[str, Any] = {
        "profile": "test",
        "amqp_url": servers.amqp_url,
        "broker_namespace": broker_names.namespace,
        "broker_queue_expires_ms": broker_names.queue_expires_ms,
        "outbox_poll_interval_s": 0.2,
    }
    tenants_settings = TenantsSettings(
        database_url=tenants_db.dsn,
        db_schema=tenants_db.schema,
        platform_admin_key=admin_key,
        **common,
    )
    late_settings = ServiceSettings(
        service_name="late", database_url=late_db.dsn, db_schema=late_db.schema, **common
    )
    async with (
        running(create_tenants_app(tenants_settings)) as tenants_url,
        aiohttp.ClientSession() as http,
    ):
        stack = Stack(tenants_url, "", web.Application(), admin_key, http)
        tenant = await stack.tenants(
            "POST",
            "/v1/platform/tenants",
            admin_key,
            json={"name": "Early", "merchant_account": "EarlyECOM", "currency": "EUR"},
        )
        revoked = await stack.tenants(
            "POST", "/v1/admin/api-keys", tenant["api_key"], json={"role": "operator"}
        )
        await stack.tenants("DELETE", f"/v1/admin/api-keys/{revoked['id']}", tenant["api_key"])
        async with running(create_probe_app(late_settings, tmp_path)) as probe_url:
            late = Stack(tenants_url, probe_url, web.Application(), admin_key, http)
            assert await late.probe_status(tenant["api_key"]) == 401
            # when the platform admin republishes
            counts = await stack.tenants("POST", "/v1/platform/replicas/republish", admin_key)

            # then the late service knows the tenant and its keys, revocations included
            async def known() -> bool:
                return await late.probe_status(tenant["api_key"]) == 200

            await eventually(known, "the republished operator key works in the late service")
            assert await late.probe_status(revoked["key"]) == 401
            conn = await asyncpg.connect(
                late_db.dsn, server_settings={"search_path": late_db.schema}
            )
            try:
                replicated = await conn.fetchval(
                    "SELECT revoked FROM replica_api_keys WHERE key_id = $1", revoked["id"]
                )
            finally:
                await conn.close()
            assert replicated is True  # known, and known as revoked
            assert counts["tenants"] == 1
            assert counts["api_keys"] == 2
