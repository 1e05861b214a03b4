"""Scale-out on one machine: two OS processes of each consuming service (checkout, webhooks,
capture) on one PostgreSQL database and one broker namespace, as `make up REPLICAS=2` runs them.
Two tenants' authorised payments get a burst of SHIPPED events; the PSP sandbox sends each
tenant's webhooks to a different webhooks replica (as a load balancer would). Every payment is
captured exactly once (one capture, one PSP capture request, PAID once), nothing is
dead-lettered, and each replica of each service did some of the work (its own /metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections import Counter
from collections.abc import AsyncIterator

import aio_pika
import aiohttp
import asyncpg
import pytest

from bench.capture_shipment import (
    COMPANY_KEY,
    QUEUES,
    Payment,
    Tenant,
    authorise,
    new_tenant,
    service_env,
    ship,
    until_paid,
    write_authorised,
)
from bench.processes import Child, child, delete_queues, route_webhooks, scratch_services
from common.broker import Names
from common.testing.fixtures import ServiceDb, delete_namespace

PER_TENANT = 30
REPLICAS = 2
MODULE = "bench.capture_shipment"
pytestmark = pytest.mark.slow


async def metric(http: aiohttp.ClientSession, replica: Child, name: str, labels: str = "") -> float:
    """The sum of a counter's samples on one replica whose labels contain `labels`."""
    async with http.get(f"{replica.url}/metrics") as response:
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}_total(\{{[^}}]*\}})? ([0-9.e+]+)$", line)
        if match and labels in (match.group(1) or ""):
            total += float(match.group(2))
    return total


@contextlib.asynccontextmanager
async def replicas(role: str, count: int, env: dict[str, str]) -> AsyncIterator[list[Child]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(child(MODULE, role, env)) for _ in range(count)]


async def dead_lettered(amqp_url: str, names: Names) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        total = 0
        for queue in QUEUES:
            dlq = await channel.declare_queue(names.queue(f"{queue}.dlq"), passive=True)
            total += dlq.declaration_result.message_count or 0
        return total


async def count(db: ServiceDb, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db.dsn, server_settings={"search_path": db.schema})
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def psp_captures(
    http: aiohttp.ClientSession, sandbox_url: str, tenant: Tenant
) -> Counter[str]:
    """PSP reference → how many capture requests the sandbox received for it."""
    async with http.get(
        f"{sandbox_url}/sandbox/merchant-accounts/{tenant.merchant_account}/requests"
    ) as response:
        entries = (await response.json())["data"]
    return Counter(e["path"].split("/")[2] for e in entries if e["path"].endswith("/captures"))


async def moves_to_paid(checkout: ServiceDb) -> Counter[str]:
    """Payment id → how many times checkout's timeline moved it to PAID (not notes on PAID)."""
    timeline = await count(
        checkout,
        "SELECT payment_id FROM payment_timeline WHERE status_to = 'PAID'"
        " AND status_from IS DISTINCT FROM 'PAID'",
    )
    return Counter(r["payment_id"] for r in timeline)


async def test_two_replicas_of_each_consumer_capture_every_payment_once(servers):
    names = Names(f"scale.{secrets.token_hex(3)}.", queue_expires_ms=10 * 60 * 1000)
    amqp = servers.amqp_url
    async with scratch_services(servers.pg_admin_dsn, "checkout", "webhooks", "capture") as dbs:
        small_batches = {"MARKETPAY_CONSUMER_PREFETCH": "5", "MARKETPAY_CONSUMER_BATCH_SIZE": "5"}
        try:
            async with (
                child(MODULE, "sandbox", {"BENCH_COMPANY_KEY": COMPANY_KEY}) as sandbox,
                replicas(
                    "webhooks",
                    REPLICAS,
                    service_env(
                        dbs["webhooks"],
                        amqp,
                        names,
                        MARKETPAY_HMAC_ENCRYPTION_KEY=secrets.token_hex(32),
                        **small_batches,
                    ),
                ) as webhooks,
                replicas(
                    "capture",
                    REPLICAS,
                    service_env(
                        dbs["capture"],
                        amqp,
                        names,
                        MARKETPAY_PSP_BASE_URL=f"{sandbox.url}/v71",
                        MARKETPAY_PSP_API_KEY=COMPANY_KEY,
                        **small_batches,
                    ),
                ) as captures,
                replicas(
                    "checkout",
                    REPLICAS,
                    service_env(
                        dbs["checkout"],
                        amqp,
                        names,
                        MARKETPAY_PSP_BASE_URL=f"{sandbox.url}/v71",
                        MARKETPAY_PSP_API_KEY=COMPANY_KEY,
                        **small_batches,
                    ),
                ) as checkouts,
                aiohttp.ClientSession() as http,
            ):
                # given two tenants, each with authorised payments, whose PSP webhooks go to
                # a different webhooks replica
                tenants: list[tuple[Tenant, list[Payment]]] = []
                for replica in webhooks:
                    tenant = await new_tenant(amqp, names, dbs, http, sandbox.url)
                    payments = [
                        await authorise(http, sandbox.url, tenant) for _ in range(PER_TENANT)
                    ]
                    await write_authorised(dbs, tenant, payments)
                    await route_webhooks(
                        http,
                        sandbox.url,
                        replica.url,
                        tenant.merchant_account,
                        tenant.operator_key,
                    )
                    tenants.append((tenant, payments))

                # when a burst of SHIPPED events arrives for all of them, each sent twice
                for _ in range(2):
                    await asyncio.gather(*(ship(amqp, names, t, p, rate=500.0) for t, p in tenants))

                # then every payment is PAID
                ids = [p.id for _, payments in tenants for p in payments]
                paid = await until_paid(dbs["checkout"], ids, within=240)
                assert len(paid) == len(ids)
                # captured exactly once: one capture per payment, one PSP request per payment,
                # PAID once in checkout's timeline
                rows = await count(dbs["capture"], "SELECT payment_id, status FROM captures")
                assert Counter(r["payment_id"] for r in rows) == Counter(ids), "captures"
                assert {r["status"] for r in rows} == {"SUCCEEDED"}
                for tenant, payments in tenants:
                    captured = await psp_captures(http, sandbox.url, tenant)
                    assert captured == Counter(p.psp_reference for p in payments), "PSP requests"
                assert await moves_to_paid(dbs["checkout"]) == Counter(ids), "PAID"
                assert await dead_lettered(amqp, names) == 0
                # and both replicas of each service did some of the work
                for replica in captures:
                    assert await metric(http, replica, "consumer_messages", "capture.oms") > 0
                    assert await metric(http, replica, "capture_psp_calls") > 0
                for replica in checkouts:
                    done = await metric(http, replica, "consumer_messages", "checkout.")
                    assert done > 0
                for replica in webhooks:
                    assert await metric(http, replica, "http_requests", "psp") > 0
        finally:
            await delete_queues(amqp, names, QUEUES)
            await delete_namespace(amqp, names)
