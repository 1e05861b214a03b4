"""PSP notification ingestion: the webhooks service's sustained rate and latency, next to a bare
aiohttp handler answering `[accepted]` in the same run, and the time from the PSP's 2xx to the
payment's status change in checkout.

OS processes: the bare aiohttp server, the webhooks service (as deployed: its outbox relay
publishes to RabbitMQ in the same process, logs at INFO to /dev/null), checkout (consuming
`psp.notification.received`), and this one: the load, on raw keep-alive connections
(`bench.httpload`), every body signed beforehand with the merchant account's HMAC key.

Phases, each on fresh notifications (nothing is a duplicate):
1. ceiling: the bare handler, closed loop, CONCURRENCY connections;
2. webhooks, one notification per request, closed loop: the maximum rate;
3. webhooks, ten per request (a batch), closed loop;
4. webhooks, one per request, open loop at half the rate of phase 2: latency at that load;
5. 2xx → status change: AUTHORISATION notifications for checkout payments at a steady rate;
   the payment's `payment.status_changed` event, read off the bus, marks the change.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiohttp
import asyncpg

from bench.httpload import Run, closed_loop, open_loop, post
from bench.processes import (
    Child,
    child,
    scratch_services,
    serve_service,
    tell_url,
    until_terminated,
)
from common.broker import Names
from common.events import (
    DOMAIN_EXCHANGE,
    EventType,
)
from common.http.auth import generate_key
from common.psp.hmac import sign_item
from common.runtime import run_on_service_loop
from common.testing.fixtures import delete_namespace
from common.testing.servers import test_servers
from common.testing.tenancy import api_key_upserted, publish, supplier_upserted, tenant_upserted

SINGLES = int(os.environ.get("BENCH_WEBHOOKS_SINGLES", "12000"))
BATCHES = int(os.environ.get("BENCH_WEBHOOKS_BATCHES", "1500"))
HALF_RATE_S = float(os.environ.get("BENCH_WEBHOOKS_HALF_RATE_S", "15"))
STATUS_PAYMENTS = int(os.environ.get("BENCH_WEBHOOKS_STATUS_PAYMENTS", "600"))
STATUS_RATE = float(os.environ.get("BENCH_WEBHOOKS_STATUS_RATE", "100"))
CONCURRENCY = int(os.environ.get("BENCH_WEBHOOKS_CONCURRENCY", "32"))
LOG_LEVEL = os.environ.get("BENCH_WEBHOOKS_LOG_LEVEL", "INFO")
AMOUNT = 15000
KIND = "REPORT_AVAILABLE"  # stored and published like any other; no payment of ours
PATH = "/v1/webhooks/psp/adyen"


# -- the child processes -------------------------------------------------------------------


async def _serve_bare() -> None:
    """The ceiling: aiohttp reading the body and answering `[accepted]`, nothing else."""
    from aiohttp import web

    from common.testing.apps import running

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="[accepted]")

    app = web.Application()
    app.router.add_post(PATH, accept)
    async with running(app) as url:
        tell_url(url)
        await until_terminated()


# -- the tenant, the payments and the notifications, made beforehand --------------------------


@dataclass
class Tenant:
    id: str
    merchant_account: str
    operator_key: str
    storefront_key: str
    supplier: str
    hmac_key: str = ""


def new_tenant() -> Tenant:
    return Tenant(
        id=f"ten_{secrets.token_hex(6)}",
        merchant_account=f"Bench{secrets.token_hex(4)}ECOM",
        operator_key=generate_key("test"),
        storefront_key=generate_key("test"),
        supplier=f"sup_{secrets.token_hex(6)}",
    )


async def replicate(amqp_url: str, exchange: str, tenant: Tenant, dsn: str, schema: str) -> None:
    """The tenant's events on the bus, as the tenants service publishes them; wait until the
    service on `schema` has them (publishing them again changes nothing where they are)."""

    await publish(
        amqp_url,
        exchange,
        [
            (EventType.TENANT_UPSERTED, tenant_upserted(tenant.id, tenant.merchant_account)),
            (EventType.SUPPLIER_UPSERTED, supplier_upserted(tenant.id, tenant.supplier)),
            (
                EventType.API_KEY_UPSERTED,
                api_key_upserted(tenant.id, tenant.operator_key, "operator"),
            ),
            (
                EventType.API_KEY_UPSERTED,
                api_key_upserted(tenant.id, tenant.storefront_key, "storefront"),
            ),
        ],
    )
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        deadline = time.monotonic() + 30
        query = "SELECT count(*) FROM replica_api_keys WHERE tenant_id = $1"
        while await conn.fetchval(query, tenant.id) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("the tenancy replica did not arrive")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def notification(tenant: Tenant, merchant_reference: str, event_code: str) -> dict[str, Any]:
    return sign_item(
        {
            "eventCode": event_code,
            "success": "true",
            "eventDate": "2026-11-24T10:00:00+01:00",
            "merchantAccountCode": tenant.merchant_account,
            "pspReference": secrets.token_hex(8).upper(),
            "merchantReference": merchant_reference,
            "amount": {"value": AMOUNT, "currency": "EUR"},
            "reason": "",
            "additionalData": {},
        },
        tenant.hmac_key,
    )


def requests(url: str, tenant: Tenant, count: int, per_request: int) -> list[bytes]:
    """`count` signed requests of `per_request` fresh notifications each."""
    made = []
    for _ in range(count):
        items = [
            {
                "NotificationRequestItem": notification(
                    tenant, f"pay_{uuid.uuid4().hex[:16]}", "REPORT_AVAILABLE"
                )
            }
            for _ in range(per_request)
        ]
        made.append(
            post(url + PATH, json.dumps({"live": "false", "notificationItems": items}).encode())
        )
    return made


# -- measuring ------------------------------------------------------------------------------


def cpu_us(child_: Child, before: float, count: int) -> float:
    return (child_.cpu_seconds() - before) / count * 1e6


def report(label: str, run: Run, per_request: int, cpu: dict[str, float]) -> None:
    shown = ", ".join(f"{name} {us:,.0f}" for name, us in cpu.items())
    print(
        f"  {label:<44} {run.rate:8,.0f} req/s ({run.rate * per_request:8,.0f} notif/s)"
        f"  p50 {run.p(50):6.2f} ms  p99 {run.p(99):7.2f} ms  errors {run.errors}",
        flush=True,
    )
    print(f"    CPU µs per request: {shown}", flush=True)


async def backlog(dsn: str, schema: str) -> tuple[int, float]:
    """Unpublished outbox rows now, and the seconds it takes the relay to publish them."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        started = time.perf_counter()
        first = await conn.fetchval("SELECT count(*) FROM outbox")
        pending = first
        while pending:
            await asyncio.sleep(0.1)
            pending = await conn.fetchval("SELECT count(*) FROM outbox")
        return int(first), time.perf_counter() - started
    finally:
        await conn.close()


async def sessions(checkout: str, tenant: Tenant, count: int) -> list[str]:
    gate = asyncio.Semaphore(8)
    async with aiohttp.ClientSession() as http:

        async def one() -> str:
            body = {
                "order_id": f"ord_{uuid.uuid4().hex[:12]}",
                "amount": {"value": AMOUNT, "currency": "EUR"},
                "buyer_account": "acc_1",
                "lines": [
                    {"logistic_order_id": "lo_1", "supplier_id": tenant.supplier, "amount": AMOUNT}
                ],
            }
            async with (
                gate,
                http.post(
                    f"{checkout}/v1/checkout/sessions",
                    json=body,
                    headers={
                        "Authorization": f"Bearer {tenant.storefront_key}",
                        "Idempotency-Key": uuid.uuid4().hex,
                    },
                ) as response,
            ):
                assert response.status == 201, await response.text()
                payment_id: str = (await response.json())["data"]["id"]
                return payment_id

        return list(await asyncio.gather(*(one() for _ in range(count))))


async def status_changes(
    amqp_url: str, names: Names, webhooks: str, tenant: Tenant, payment_ids: list[str]
) -> tuple[Run, list[float]]:
    """AUTHORISATION notifications at STATUS_RATE; latency from each 2xx to the payment's
    `payment.status_changed` arriving on the bus."""
    bodies = [
        post(
            webhooks + PATH,
            json.dumps(
                {
                    "live": "false",
                    "notificationItems": [
                        {"NotificationRequestItem": notification(tenant, p, "AUTHORISATION")}
                    ],
                }
            ).encode(),
        )
        for p in payment_ids
    ]
    arrived: dict[str, float] = {}
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(names.exchange(DOMAIN_EXCHANGE), routing_key="payment.status_changed")

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            arrived.setdefault(json.loads(message.body)["data"]["payment_id"], time.monotonic())
            await message.ack()

        await queue.consume(on_message)
        run = await open_loop(webhooks + PATH, bodies, STATUS_RATE)
        expected = len(run.answered_at)
        for _ in range(600):  # a minute at most
            if len(arrived) >= expected:
                break
            await asyncio.sleep(0.1)
    delays = [
        (arrived[payment_ids[i]] - answered) * 1000
        for i, answered in run.answered_at.items()
        if payment_ids[i] in arrived
    ]
    return run, delays


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def main() -> None:
    started = time.perf_counter()
    with test_servers() as servers:
        names = Names(f"bench.{secrets.token_hex(3)}.", queue_expires_ms=10 * 60 * 1000)
        common_env = {
            "MARKETPAY_PROFILE": "test",
            "MARKETPAY_LOG_LEVEL": LOG_LEVEL,
            "MARKETPAY_HTTP_PORT": "0",
            "MARKETPAY_AMQP_URL": servers.amqp_url,
            "MARKETPAY_BROKER_NAMESPACE": names.namespace,
            "MARKETPAY_BROKER_QUEUE_EXPIRES_MS": str(names.queue_expires_ms),
        }
        exchange = names.exchange(DOMAIN_EXCHANGE)
        tenant = new_tenant()
        async with scratch_services(servers.pg_admin_dsn, "webhooks", "checkout") as dbs:
            wh, ck = dbs["webhooks"], dbs["checkout"]
            try:
                async with (
                    child("bench.webhooks_ingest", "bare", {}) as bare,
                    child(
                        "bench.webhooks_ingest",
                        "webhooks",
                        {
                            **common_env,
                            "MARKETPAY_DATABASE_URL": wh.dsn,
                            "MARKETPAY_DB_SCHEMA": wh.schema,
                            "MARKETPAY_HMAC_ENCRYPTION_KEY": secrets.token_hex(32),
                        },
                    ) as webhooks,
                ):
                    await replicate(servers.amqp_url, exchange, tenant, wh.dsn, wh.schema)
                    await give_hmac_key(webhooks.url, tenant)
                    await ingestion(bare, webhooks, tenant, wh.dsn, wh.schema)
                    # checkout only now, so that it consumed none of the notifications above
                    async with child(
                        "bench.checkout_pay",
                        "checkout",
                        {
                            **common_env,
                            "MARKETPAY_DATABASE_URL": ck.dsn,
                            "MARKETPAY_DB_SCHEMA": ck.schema,
                            "MARKETPAY_PSP_API_KEY": "unused",
                        },
                    ) as checkout:
                        await replicate(servers.amqp_url, exchange, tenant, ck.dsn, ck.schema)
                        payment_ids = await sessions(checkout.url, tenant, STATUS_PAYMENTS)
                        run, delays = await status_changes(
                            servers.amqp_url, names, webhooks.url, tenant, payment_ids
                        )
                        print(
                            f"  2xx → payment.status_changed, {STATUS_RATE:.0f}/s:"
                            f" {len(delays)} of {run.requests}  p50 {quantile(delays, 50):6.1f} ms"
                            f"  p99 {quantile(delays, 99):6.1f} ms  (request p50"
                            f" {run.p(50):.2f} ms, p99 {run.p(99):.2f} ms)",
                            flush=True,
                        )
            finally:
                await delete_namespace(servers.amqp_url, names)
    print(f"  ({time.perf_counter() - started:.0f} s in all)", flush=True)


async def give_hmac_key(webhooks: str, tenant: Tenant) -> None:
    tenant.hmac_key = secrets.token_hex(32)
    async with (
        aiohttp.ClientSession() as http,
        http.put(
            f"{webhooks}/v1/admin/webhooks/hmac-keys",
            json={"merchant_account": tenant.merchant_account, "key": tenant.hmac_key},
            headers={"Authorization": f"Bearer {tenant.operator_key}"},
        ) as response,
    ):
        assert response.status == 201, await response.text()


async def ingestion(bare: Child, webhooks: Child, tenant: Tenant, dsn: str, schema: str) -> None:
    singles = requests(webhooks.url, tenant, SINGLES, 1)
    bare_requests = requests(bare.url, tenant, SINGLES, 1)
    batches = requests(webhooks.url, tenant, BATCHES, 10)
    warmup = requests(webhooks.url, tenant, 200, 1)
    print(
        f"prepared {SINGLES} single requests for each server, {BATCHES} ten-item requests;"
        f" {CONCURRENCY} connections",
        flush=True,
    )
    await closed_loop(bare.url, bare_requests[:200], CONCURRENCY)
    await closed_loop(webhooks.url, warmup, CONCURRENCY)
    await backlog(dsn, schema)

    def load_cpu(since: float, n: int) -> float:
        return (time.process_time() - since) / n * 1e6

    n = len(bare_requests) - 200
    load, cpu = time.process_time(), bare.cpu_seconds()
    ceiling = await closed_loop(bare.url, bare_requests[200:], CONCURRENCY)
    report(
        "ceiling: bare aiohttp [accepted]",
        ceiling,
        1,
        {"server": cpu_us(bare, cpu, n), "load": load_cpu(load, n)},
    )

    load, cpu = time.process_time(), webhooks.cpu_seconds()
    one = await closed_loop(webhooks.url, singles, CONCURRENCY)
    report(
        "webhooks: 1 notification per request",
        one,
        1,
        {"webhooks": cpu_us(webhooks, cpu, SINGLES), "load": load_cpu(load, SINGLES)},
    )
    rows, drain = await backlog(dsn, schema)
    print(
        f"    {one.rate / ceiling.rate:.0%} of the ceiling; outbox backlog at the end {rows}"
        f" rows, published within {drain:.1f} s",
        flush=True,
    )

    load, cpu = time.process_time(), webhooks.cpu_seconds()
    ten = await closed_loop(webhooks.url, batches, CONCURRENCY)
    report(
        "webhooks: 10 notifications per request",
        ten,
        10,
        {"webhooks": cpu_us(webhooks, cpu, BATCHES), "load": load_cpu(load, BATCHES)},
    )
    rows, drain = await backlog(dsn, schema)
    print(
        f"    {ten.rate / ceiling.rate:.0%} of the ceiling's requests/s"
        f" ({ten.rate * 10 / ceiling.rate:.0%} in notifications); outbox backlog {rows} rows,"
        f" published within {drain:.1f} s",
        flush=True,
    )

    half = one.rate / 2
    count = int(half * HALF_RATE_S)
    steady = requests(webhooks.url, tenant, count, 1)
    cpu = webhooks.cpu_seconds()
    run = await open_loop(webhooks.url, steady, half)
    report(
        f"webhooks: open loop at half the maximum, {half:,.0f}/s",
        run,
        1,
        {"webhooks": cpu_us(webhooks, cpu, count)},
    )
    rows, drain = await backlog(dsn, schema)
    print(f"    outbox backlog {rows} rows, published within {drain:.1f} s", flush=True)


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "bare":
        run_on_service_loop(_serve_bare())
    elif role == "webhooks":
        run_on_service_loop(serve_service("webhooks"))
    else:
        sys.exit("usage: python -m bench.webhooks_ingest bare|webhooks (run by the benchmark)")
