"""The webhooks service under test: the real app on real PostgreSQL and RabbitMQ, its tenancy
replica fed by `tenant.upserted` / `api_key.upserted` events on the bus as the tenants service
publishes them. What it publishes is read off the bus by an exclusive queue of the test."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp
import pytest_asyncio
from aio_pika.abc import AbstractRobustConnection
from yarl import URL

from common.broker.topology import Names
from common.events import DOMAIN_EXCHANGE
from common.http.auth import generate_key
from common.runtime import DB_POOL
from common.testing.apps import running
from common.testing.fixtures import dsn_with
from common.testing.tcpproxy import TcpProxy
from common.testing.tenancy import api_key_upserted, publish, tenant_upserted
from common.testing.waiting import eventually
from webhooks.app import create_app
from webhooks.settings import Settings
from webhooks.testing import Tenant

ENCRYPTION_KEY = secrets.token_hex(32)


@dataclass
class Bus:
    """Every `psp.notification.received` the service publishes, as it arrives."""

    received: list[dict[str, Any]] = field(default_factory=list)
    routing_keys: list[str] = field(default_factory=list)

    async def settle(self, expected: int, quiet_s: float = 0.6, within_s: float = 10.0) -> None:
        """Wait for `expected` messages, then a little longer to see any extra one."""

        async def enough() -> bool:
            return len(self.received) >= expected

        await eventually(enough, within_s)
        await asyncio.sleep(quiet_s)


@dataclass
class WebhooksHarness:
    url: str
    app: Any
    http: aiohttp.ClientSession
    amqp: AbstractRobustConnection
    amqp_url: str
    exchange_name: str
    bus: Bus

    async def new_tenant(self, *, with_key: bool = True) -> Tenant:
        tenant = Tenant(
            id=f"ten_{secrets.token_hex(6)}",
            merchant_account=f"Test{secrets.token_hex(4)}ECOM",
            operator_key=generate_key("test"),
        )
        await publish(
            self.amqp_url,
            self.exchange_name,
            [
                ("tenant.upserted", tenant_upserted(tenant.id, tenant.merchant_account)),
                ("api_key.upserted", api_key_upserted(tenant.id, tenant.operator_key, "operator")),
            ],
        )
        await self.wait_for_replica(tenant.id)
        if with_key:
            tenant.hmac_key = secrets.token_hex(32)
            status, body = await self.put_key(tenant, tenant.merchant_account, tenant.hmac_key)
            assert status == 201, body
        return tenant

    async def wait_for_replica(self, tenant_id: str) -> None:
        pool = self.app[DB_POOL]
        for _ in range(200):
            async with pool.acquire() as conn:
                found = await conn.fetchval(
                    "SELECT count(*) FROM replica_api_keys k JOIN replica_tenants t"
                    " USING (tenant_id) WHERE tenant_id = $1",
                    tenant_id,
                )
            if found:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("tenancy replica did not arrive")

    async def put_key(self, tenant: Tenant, merchant_account: str, key: str) -> tuple[int, Any]:
        return await self.call(
            "PUT",
            "/v1/admin/webhooks/hmac-keys",
            key=tenant.operator_key,
            json_body={"merchant_account": merchant_account, "key": key},
        )

    async def call(
        self, method: str, path: str, *, key: str | None = None, json_body: Any = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with self.http.request(
            method, self.url + path, json=json_body, headers=headers
        ) as response:
            text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text

    async def notify(self, body: Any) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.http.post(
            self.url + "/v1/webhooks/psp/adyen",
            data=io.BytesIO(data),  # aiohttp warns about large raw bytes
            headers={"Content-Type": "application/json"},
        ) as response:
            text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text

    async def count(self, table: str) -> int:
        async with self.app[DB_POOL].acquire() as conn:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))


@contextlib.asynccontextmanager
async def webhooks_service(
    amqp_url: str, database_url: str, schema: str, broker_names: Names
) -> AsyncIterator[WebhooksHarness]:
    settings = Settings(
        profile="test",
        database_url=database_url,
        db_schema=schema,
        amqp_url=amqp_url,
        broker_namespace=broker_names.namespace,
        broker_queue_expires_ms=broker_names.queue_expires_ms,
        outbox_poll_interval_s=0.1,
        hmac_encryption_key=ENCRYPTION_KEY,
    )
    app = create_app(settings)
    bus = Bus()
    exchange_name = broker_names.exchange(DOMAIN_EXCHANGE)
    async with running(app) as url, aiohttp.ClientSession() as http:
        amqp = await aio_pika.connect_robust(amqp_url)
        try:
            channel = await amqp.channel()
            # exclusive and auto-deleted: gone with this connection, whatever happens
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await queue.bind(exchange_name, routing_key="psp.notification.received.#")

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with message.process():
                    bus.received.append(json.loads(message.body))
                    bus.routing_keys.append(message.routing_key or "")

            await queue.consume(on_message)
            yield WebhooksHarness(
                url=url,
                app=app,
                http=http,
                amqp=amqp,
                amqp_url=amqp_url,
                exchange_name=exchange_name,
                bus=bus,
            )
        finally:
            await asyncio.wait_for(amqp.close(), 10)


@pytest_asyncio.fixture
async def webhooks(servers, service_db, broker_names) -> AsyncIterator[WebhooksHarness]:
    async with webhooks_service(
        servers.amqp_url, service_db.dsn, service_db.schema, broker_names
    ) as harness:
        yield harness


@dataclass
class Proxied:
    harness: WebhooksHarness
    proxy: TcpProxy
    schema: str


@pytest_asyncio.fixture
async def proxied_webhooks(servers, service_db, broker_names) -> AsyncIterator[Proxied]:
    """The service reaching PostgreSQL through a proxy the test can sever."""
    target = URL(service_db.dsn)
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 5432).start()
    try:
        dsn = dsn_with(service_db.dsn, host="127.0.0.1", port=proxy.port)
        async with webhooks_service(
            servers.amqp_url, dsn, service_db.schema, broker_names
        ) as harness:
            yield Proxied(harness, proxy, service_db.schema)
    finally:
        await proxy.close()
