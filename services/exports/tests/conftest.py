"""Exports under test: the real app (one or more replicas on one schema) on real PostgreSQL and
RabbitMQ, fed on the bus exactly as production feeds it: the tenancy events, and the catalogue
events the producers (checkout, capture, payouts) publish, with the times the test chooses."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest_asyncio
from aiohttp import web

from common.broker import Names
from common.events import DOMAIN_EXCHANGE, Envelope, EventData, Role, make_envelope
from common.http.auth import generate_key
from common.runtime import DB_POOL
from common.testing.apps import running
from common.testing.fixtures import service_settings_values
from common.testing.tenancy import api_key_upserted, publish, supplier_upserted, tenant_upserted
from common.testing.waiting import eventually
from exports.app import create_app
from exports.settings import Settings
from exports.testing import parse_csv


@dataclass
class Tenant:
    id: str
    operator_key: str
    suppliers: list[str] = field(default_factory=list)
    supplier_keys: dict[str, str] = field(default_factory=dict)


@dataclass
class Replica:
    url: str
    app: web.Application
    stack: contextlib.AsyncExitStack

    @property
    def pool(self) -> Any:
        return self.app[DB_POOL]


@dataclass
class ExportsHarness:
    http: aiohttp.ClientSession
    amqp_url: str
    exchange_name: str
    names: Names
    settings: Callable[..., Settings]
    start: Callable[..., Awaitable[Replica]]
    storage_dir: Path
    replicas: list[Replica] = field(default_factory=list)

    @property
    def main(self) -> Replica:
        return self.replicas[0]

    @property
    def url(self) -> str:
        return self.main.url

    # -- the bus ------------------------------------------------------------------------

    async def publish_envelopes(self, envelopes: list[Envelope]) -> None:
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(self.exchange_name)
            for envelope in envelopes:
                await exchange.publish(
                    aio_pika.Message(
                        envelope.model_dump_json().encode(),
                        message_id=str(envelope.id),
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=envelope.type,
                )

    async def publish(
        self, event_type: str, data: EventData, tenant_id: str, occurred_at: datetime
    ) -> Envelope:
        """Publish as the producer does (a catalogue model in a Marketpay envelope)."""
        envelope = make_envelope(
            event_type, data, tenant_id=tenant_id, correlation_id="test"
        ).model_copy(update={"occurred_at": occurred_at})
        await self.publish_envelopes([envelope])
        return envelope

    async def publish_raw(self, routing_key: str, body: bytes) -> None:
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(self.exchange_name)
            await exchange.publish(
                aio_pika.Message(body, message_id=str(uuid.uuid4())), routing_key=routing_key
            )

    async def dead_letters(self, queue: str) -> list[tuple[bytes, dict[str, Any]]]:
        found = []
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel()
            dlq = await channel.get_queue(self.names.queue(f"{queue}.dlq"))
            while (message := await dlq.get(no_ack=True, fail=False)) is not None:
                found.append((message.body, dict(message.headers or {})))
        return found

    async def journalled(self, tenant: Tenant, count: int) -> None:
        """Wait until `count` events of the tenant are in the read models' journal."""

        async def arrived() -> bool:
            async with self.main.pool.acquire() as conn:
                found = await conn.fetchval(
                    "SELECT count(*) FROM event_log WHERE tenant_id = $1", tenant.id
                )
            return bool(found >= count)

        await eventually(arrived, within=30)

    # -- tenancy ------------------------------------------------------------------------

    async def new_tenant(self, suppliers: int = 2) -> Tenant:
        tenant = Tenant(id=f"ten_{secrets.token_hex(6)}", operator_key=generate_key("test"))
        await publish(
            self.amqp_url,
            self.exchange_name,
            [("tenant.upserted", tenant_upserted(tenant.id, f"Exp{secrets.token_hex(4)}ECOM"))],
        )
        keys: list[tuple[str, Role, str | None]] = [(tenant.operator_key, "operator", None)]
        for n in range(suppliers):
            supplier_id = f"sup_{n + 1}_{secrets.token_hex(4)}"
            tenant.suppliers.append(supplier_id)
            key = generate_key("test")
            tenant.supplier_keys[supplier_id] = key
            keys.append((key, "supplier", supplier_id))
        await publish(
            self.amqp_url,
            self.exchange_name,
            [("supplier.upserted", supplier_upserted(tenant.id, s)) for s in tenant.suppliers]
            + [
                ("api_key.upserted", api_key_upserted(tenant.id, key, role, supplier_id=sup))
                for key, role, sup in keys
            ],
        )

        async def replicated() -> bool:
            async with self.main.pool.acquire() as conn:
                found = await conn.fetchval(
                    "SELECT count(*) FROM replica_api_keys k JOIN replica_tenants t"
                    " USING (tenant_id) WHERE tenant_id = $1",
                    tenant.id,
                )
            return bool(found == len(keys))

        await eventually(replicated)
        return tenant

    # -- HTTP ---------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        key: str,
        json: Any = None,
        idempotency_key: str | None = None,
        url: str | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"}
        if method == "POST":
            headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        async with self.http.request(
            method, (url or self.url) + path, json=json, headers=headers
        ) as response:
            return response.status, await response.json()

    async def request_export(
        self, key: str, export_type: str, filters: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        status, body = await self.call(
            "POST", "/v1/exports", key, json={"type": export_type, "filters": filters or {}}
        )
        assert status == 202, body
        data: dict[str, Any] = body["data"]
        return data

    async def until_status(
        self, key: str, export_id: str, status: str = "READY", within: float = 30
    ) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def reached() -> bool:
            code, body = await self.call("GET", f"/v1/exports/{export_id}", key)
            assert code == 200, body
            found.update(body["data"])
            return bool(body["data"]["status"] == status)

        await eventually(reached, within=within)
        return found

    async def download(self, key: str, export_id: str) -> tuple[int, bytes, dict[str, str]]:
        async with self.http.get(
            f"{self.url}/v1/exports/{export_id}/download",
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            return response.status, await response.read(), dict(response.headers)

    async def export_file(
        self, key: str, export_type: str, filters: dict[str, Any] | None = None
    ) -> bytes:
        export = await self.request_export(key, export_type, filters)
        await self.until_status(key, export["id"])
        status, body, _ = await self.download(key, export["id"])
        assert status == 200, body
        return body

    async def export_rows(
        self, key: str, export_type: str, filters: dict[str, Any] | None = None
    ) -> list[list[str]]:
        return parse_csv(await self.export_file(key, export_type, filters))


def exports_settings(
    servers: Any, service_db: Any, broker_names: Any, storage_dir: Path, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "storage_dir": str(storage_dir),
        "worker_poll_interval_s": 0.2,
        "heartbeat_s": 0.3,
        "lease_s": 3.0,
        "expiry_sweep_interval_s": 0.3,
    }
    return Settings(
        **service_settings_values(servers, service_db, broker_names, **{**values, **overrides})
    )


@pytest_asyncio.fixture
async def exports(
    request: Any, servers: Any, service_db: Any, broker_names: Any, tmp_path: Path
) -> AsyncIterator[ExportsHarness]:
    """One exports replica (`harness.start(...)` adds more on the same schema); parametrize
    indirectly with the first replica's settings overrides."""
    storage_dir = tmp_path / "files"
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())

        def settings(**overrides: Any) -> Settings:
            return exports_settings(servers, service_db, broker_names, storage_dir, **overrides)

        async def start(**overrides: Any) -> Replica:
            app = create_app(settings(**overrides))
            own = contextlib.AsyncExitStack()
            stack.push_async_callback(own.aclose)
            url = await own.enter_async_context(running(app))
            replica = Replica(url, app, own)
            harness.replicas.append(replica)
            return replica

        harness = ExportsHarness(
            http=http,
            amqp_url=servers.amqp_url,
            exchange_name=broker_names.exchange(DOMAIN_EXCHANGE),
            names=broker_names,
            settings=settings,
            start=start,
            storage_dir=storage_dir,
        )
        await start(**getattr(request, "param", {}))
        yield harness
