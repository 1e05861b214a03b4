"""A refund request (`POST /v1/admin/payments/{id}/refunds`) to the PSP's refund request, and
to `REFUNDED` (the PSP's REFUND webhook through the webhooks service), beside the direct
sandbox refund call (`POST /v71/payments/{ref}/refunds`) measured in the same run.

Four OS processes: the PSP sandbox, the webhooks service, capture (its relay, consumers and
refund sender) and this one, the load. One scratch database and broker namespace, removed at
the end.

Prepared beforehand, outside the measurement: one tenant whose funding policy is
`MARKETPLACE_COVERS` (no funds check: a refund goes to the PSP at once), N payments authorised
and captured at the sandbox for real, and the same N written into capture's tables as
authorised and captured (COPY), with the split of 2.5 % / 10 %.

Measured:
- the direct sandbox refund call, one at a time (p50/p99) and with 16 in flight (rate): the
  ceiling;
- one refund at a time (each waits for the previous one's REFUNDED): the latency to the
  sandbox's receipt of the refund request (its request log) and to REFUNDED (the refund's
  history row, the transaction's timestamp), both minus the time the POST was sent;
- a ramp of open-loop rates, each for some seconds, up to the first one not sustained (a
  refund not REFUNDED within 5 s of the step's end, or a latency that grows).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import aiohttp
import asyncpg

from bench.capture_shipment import (
    COMPANY_KEY,
    Payment,
    Tenant,
    new_tenant,
    server_cpu,
    service_env,
    wait_for,
)
from bench.checkout_pay import bounded
from bench.processes import (
    Child,
    child,
    delete_queues,
    route_webhooks,
    scratch_services,
    serve_sandbox,
    serve_service,
)
from common.broker import Names
from common.events import DOMAIN_EXCHANGE, EventType
from common.runtime import run_on_service_loop
from common.testing.fixtures import ServiceDb, delete_namespace
from common.testing.servers import test_servers
from common.testing.tenancy import publish, tenant_upserted
from psp_sandbox.testing import authorise as authorise_at_sandbox

SERIAL = int(os.environ.get("BENCH_REFUND_SERIAL", "100"))
RAMP = [float(r) for r in os.environ.get("BENCH_REFUND_RAMP", "10,20,40,60,80,120").split(",")]
STEP_SECONDS = float(os.environ.get("BENCH_REFUND_STEP_SECONDS", "10"))
AMOUNT = 10000
QUEUES = [
    "webhooks.tenancy",
    "capture.tenancy",
    "capture.payments",
    "capture.oms",
    "capture.psp-notifications",
    "capture.refund-notifications",
    "capture.refund-funds",
]


def p(values: Sequence[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if values else 0.0


def show(name: str, values: Sequence[float]) -> None:
    print(
        f"    {name:<26} p50 {p(values, 50):7.1f} ms  p99 {p(values, 99):7.1f} ms"
        f"  max {max(values, default=0):7.1f} ms  (n={len(values)})",
        flush=True,
    )


async def captured_payment(http: aiohttp.ClientSession, sandbox: str, tenant: Tenant) -> Payment:
    payment_id = f"pay_{secrets.token_hex(12)}"
    ref = await authorise_at_sandbox(
        http,
        sandbox,
        COMPANY_KEY,
        merchant_account=tenant.merchant_account,
        reference=payment_id,
        value=AMOUNT,
    )
    async with http.post(
        f"{sandbox}/v71/payments/{ref}/captures",
        json={
            "merchantAccount": tenant.merchant_account,
            "amount": {"value": AMOUNT, "currency": "EUR"},
        },
        headers={"X-API-Key": COMPANY_KEY, "Idempotency-Key": uuid.uuid4().hex},
    ) as response:
        assert response.status == 201, await response.text()
    return Payment(payment_id, f"ord_{payment_id[4:]}", ref)


async def write_captured(db: ServiceDb, tenant: Tenant, payments: Sequence[Payment]) -> None:
    now = datetime.now(UTC)
    splits = [
        {"party": "PLATFORM", "amount": 250, "rate": "2.5"},
        {"party": "MARKETPLACE", "amount": 1000, "rate": "10"},
        {"party": "SUPPLIER", "amount": 8750, "rate": None},
    ]
    conn = await asyncpg.connect(db.dsn, server_settings={"search_path": db.schema})
    try:
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        await conn.copy_records_to_table(
            "payments",
            columns=[
                "tenant_id",
                "payment_id",
                "order_id",
                "payment_option",
                "status",
                "amount",
                "currency",
                "psp_reference",
                "merchant_account",
                "authorised_at",
            ],
            records=[
                (
                    tenant.id,
                    x.id,
                    x.order_id,
                    "CREDIT_CARD",
                    "AUTHORISED",
                    AMOUNT,
                    "EUR",
                    x.psp_reference,
                    tenant.merchant_account,
                    now,
                )
                for x in payments
            ],
        )
        await conn.copy_records_to_table(
            "payment_lines",
            columns=[
                "tenant_id",
                "payment_id",
                "order_id",
                "logistic_order_id",
                "supplier_id",
                "amount",
            ],
            records=[
                (tenant.id, x.id, x.order_id, "lo_1", tenant.supplier, AMOUNT) for x in payments
            ],
        )
        await conn.executemany(
            """
            INSERT INTO captures (id, tenant_id, payment_id, order_id, logistic_order_id,
                                  supplier_id, amount, currency, trigger, status, platform_rate,
                                  marketplace_rate, splits, payment_psp_reference,
                                  merchant_account, succeeded_at)
            VALUES ($1, $2, $3, $4, 'lo_1', $5, $6, 'EUR', 'MANUAL', 'SUCCEEDED', 2.5, 10, $7,
                    $8, $9, now())
            """,
            [
                (
                    f"cap_{x.id[4:]}",
                    tenant.id,
                    x.id,
                    x.order_id,
                    tenant.supplier,
                    AMOUNT,
                    splits,
                    x.psp_reference,
                    tenant.merchant_account,
                )
                for x in payments
            ],
        )
    finally:
        await conn.close()


async def post_refund(
    http: aiohttp.ClientSession, capture: str, tenant: Tenant, pay: Payment
) -> float:
    sent = time.time()
    async with http.post(
        f"{capture}/v1/admin/payments/{pay.id}/refunds",
        json={"amount": {"value": 3000, "currency": "EUR"}},
        headers={
            "Authorization": f"Bearer {tenant.operator_key}",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    ) as response:
        assert response.status == 201, await response.text()
    return sent


async def refunded_at(db: ServiceDb, ids: Sequence[str]) -> dict[str, float]:
    conn = await asyncpg.connect(db.dsn, server_settings={"search_path": db.schema})
    try:
        rows = await conn.fetch(
            "SELECT r.payment_id, min(h.occurred_at) AS at FROM refund_history h"
            " JOIN refunds r ON r.id = h.refund_id"
            " WHERE h.status_to = 'REFUNDED' AND r.payment_id = ANY($1::text[])"
            " GROUP BY r.payment_id",
            list(ids),
        )
    finally:
        await conn.close()
    return {r["payment_id"]: r["at"].timestamp() for r in rows}


async def until_refunded(db: ServiceDb, ids: Sequence[str], within: float) -> dict[str, float]:
    deadline = time.monotonic() + within
    while True:
        found = await refunded_at(db, ids)
        if len(found) == len(ids) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


async def psp_refund_requests(
    http: aiohttp.ClientSession, sandbox: str, tenant: Tenant
) -> dict[str, float]:
    async with http.get(
        f"{sandbox}/sandbox/merchant-accounts/{tenant.merchant_account}/requests"
    ) as response:
        entries = (await response.json())["data"]
    first: dict[str, float] = {}
    for entry in entries:
        if entry["path"].endswith("/refunds"):
            ref = entry["path"].split("/")[2]
            at = datetime.fromisoformat(entry["at"].replace("Z", "+00:00")).timestamp()
            first.setdefault(ref, at)
    return first


async def direct(http: aiohttp.ClientSession, sandbox: str, tenant: Tenant, pay: Payment) -> float:
    begin = time.perf_counter()
    async with http.post(
        f"{sandbox}/v71/payments/{pay.psp_reference}/refunds",
        json={
            "merchantAccount": tenant.merchant_account,
            "amount": {"value": 1000, "currency": "EUR"},
        },
        headers={"X-API-Key": COMPANY_KEY, "Idempotency-Key": uuid.uuid4().hex},
    ) as response:
        assert response.status == 201, await response.text()
    return (time.perf_counter() - begin) * 1000


async def measure(
    amqp: str,
    names: Names,
    dbs: dict[str, ServiceDb],
    http: aiohttp.ClientSession,
    sandbox: Child,
    webhooks: Child,
    capture: Child,
) -> None:
    tenant = await new_tenant(amqp, names, dbs, http, sandbox.url)
    covers = tenant_upserted(tenant.id, tenant.merchant_account, revision=2).model_copy(
        update={"funding_policy": "MARKETPLACE_COVERS"}
    )
    await publish(amqp, names.exchange(DOMAIN_EXCHANGE), [(EventType.TENANT_UPSERTED, covers)])
    await wait_for(
        dbs["capture"],
        "SELECT true FROM replica_tenants WHERE tenant_id = $1 AND revision = 2",
        tenant.id,
    )
    needed = 50 + SERIAL + sum(int(r * STEP_SECONDS) for r in RAMP)
    prepared = time.perf_counter()
    payments = await bounded(needed, lambda: captured_payment(http, sandbox.url, tenant), 16)
    await write_captured(dbs["capture"], tenant, payments)
    await route_webhooks(
        http, sandbox.url, webhooks.url, tenant.merchant_account, tenant.operator_key
    )
    print(
        f"prepared {needed} captured payments in {time.perf_counter() - prepared:.1f} s",
        flush=True,
    )
    rest = iter(payments)

    def take(n: int) -> list[Payment]:
        return [next(rest) for _ in range(n)]

    # the ceiling: the sandbox's own refund call, on payments the refunds below do not use
    ceiling_payments = take(50)
    serial_direct = [await direct(http, sandbox.url, tenant, x) for x in ceiling_payments]
    begin = time.perf_counter()
    gate = asyncio.Semaphore(16)
    count = 0

    async def one(x: Payment) -> None:
        nonlocal count
        async with gate:
            for _ in range(8):
                await direct(http, sandbox.url, tenant, x)
                count += 1

    await asyncio.gather(*(one(x) for x in ceiling_payments))
    direct_rate = count / (time.perf_counter() - begin)
    print("  ceiling: the sandbox's refund call", flush=True)
    show("one at a time", serial_direct)
    print(f"    16 in flight: {direct_rate:,.0f} refunds/s", flush=True)

    # one at a time
    to_psp: list[float] = []
    to_refunded: list[float] = []
    for x in take(SERIAL):
        posted = await post_refund(http, capture.url, tenant, x)
        done = await until_refunded(dbs["capture"], [x.id], within=30)
        requested = await psp_refund_requests(http, sandbox.url, tenant)
        to_refunded.append((done[x.id] - posted) * 1000)
        to_psp.append((requested[x.psp_reference] - posted) * 1000)
    print("  refunds one at a time (each waits for the previous REFUNDED)", flush=True)
    show("→ PSP refund request", to_psp)
    show("→ REFUNDED", to_refunded)

    # the ramp
    processes = {
        "load": time.process_time,
        "capture": capture.cpu_seconds,
        "webhooks": webhooks.cpu_seconds,
        "sandbox": sandbox.cpu_seconds,
        "postgres": server_cpu("postgres"),
        "rabbitmq": server_cpu("beam.smp"),
    }
    best = 0.0
    for rate in RAMP:
        batch = take(int(rate * STEP_SECONDS))
        before = {name: cpu() for name, cpu in processes.items()}
        started = time.perf_counter()
        sent: dict[str, float] = {}

        async def at(
            n: int,
            x: Payment,
            rate: float = rate,
            started: float = started,
            sent: dict[str, float] = sent,
        ) -> None:
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[x.id] = await post_refund(http, capture.url, tenant, x)

        await asyncio.gather(*(at(n, x) for n, x in enumerate(batch)))
        done = await until_refunded(dbs["capture"], [x.id for x in batch], within=5)
        cpu = {k: (f() - before[k]) / len(batch) * 1e6 for k, f in processes.items()}
        lat = [(done[x.id] - sent[x.id]) * 1000 for x in batch if x.id in done]
        quarter = max(len(lat) // 4, 1)
        growing = (
            bool(lat)
            and statistics.median(lat[-quarter:]) > 2 * statistics.median(lat[:quarter]) + 250
        )
        sustained = len(done) == len(batch) and not growing
        print(
            f"  ramp {rate:.0f}/s for {STEP_SECONDS:.0f} s: REFUNDED {len(done)}/{len(batch)}"
            f" within 5 s of the step; sustained: {sustained}",
            flush=True,
        )
        show("→ REFUNDED", sorted(lat))
        print(
            "    CPU µs per refund: " + ", ".join(f"{k} {v:,.0f}" for k, v in cpu.items()),
            flush=True,
        )
        if not sustained:
            await until_refunded(dbs["capture"], [x.id for x in batch], within=120)
            break
        best = rate
    print(
        f"  maximum sustained rate: {best:.0f} refunds/s; the sandbox's own refund call:"
        f" {direct_rate:,.0f}/s ({best / direct_rate:.1%})",
        flush=True,
    )


async def main() -> None:
    started = time.perf_counter()
    with test_servers() as servers:
        names = Names(f"bench.{secrets.token_hex(3)}.", queue_expires_ms=10 * 60 * 1000)
        amqp = servers.amqp_url
        async with scratch_services(servers.pg_admin_dsn, "webhooks", "capture") as dbs:
            try:
                async with (
                    child(__name__, "sandbox", {"BENCH_COMPANY_KEY": COMPANY_KEY}) as sandbox,
                    child(
                        __name__,
                        "webhooks",
                        service_env(
                            dbs["webhooks"],
                            amqp,
                            names,
                            MARKETPAY_HMAC_ENCRYPTION_KEY=secrets.token_hex(32),
                        ),
                    ) as webhooks,
                    child(
                        __name__,
                        "capture",
                        service_env(
                            dbs["capture"],
                            amqp,
                            names,
                            MARKETPAY_PSP_BASE_URL=f"{sandbox.url}/v71",
                            MARKETPAY_PSP_API_KEY=COMPANY_KEY,
                            MARKETPAY_PSP_TIMEOUT_S="5",
                            MARKETPAY_REFUND_POLL_INTERVAL_S="0.2",
                        ),
                    ) as capture,
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http,
                ):
                    await measure(amqp, names, dbs, http, sandbox, webhooks, capture)
                    print(f"  ({time.perf_counter() - started:.0f} s in all)", flush=True)
            finally:
                with contextlib.suppress(Exception):
                    await delete_queues(amqp, names, QUEUES)
                await delete_namespace(amqp, names)


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "sandbox":
        asyncio.run(serve_sandbox())
    elif role in ("webhooks", "capture"):
        run_on_service_loop(serve_service(role))
    else:
        sys.exit("usage: python -m bench.refunds sandbox|webhooks|capture")
