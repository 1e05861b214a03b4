"""From the OMS's `SHIPPED` to the PSP's capture request, and to the payment `PAID` in
checkout, beside the bare aio-pika publish→consume rate measured in the same run.

Five OS processes, so that no service takes CPU in another's event loop: the PSP sandbox, the
webhooks service, capture and checkout (each `create_app` with its relay and consumers, logs at
INFO to /dev/null, as deployed) and this one, the load. One scratch database (a schema and role
per service) and one broker namespace, removed at the end.

Prepared beforehand, outside the measurement: one ON_SHIPMENT tenant (2.5 % platform, 10 %
supplier commission) fed to the services' tenancy replicas on the bus; N payments authorised
at the sandbox for real (`POST /v71/payments`), and the same N payments written as authorised
into checkout's and capture's tables with COPY (what PAY-101 and `payment.authorised` would
leave there; PAY-101 itself is measured by `bench.checkout_pay`). Then the merchant account's
webhooks are pointed at the webhooks service.

Measured: SHIPPED events published on `oms.events` at a steady rate (open loop: each at its
time, whatever the system does); for each, the time the sandbox received the capture request
(its request log, ms) and the time checkout moved the payment to PAID (its timeline, the
transaction's timestamp), both minus the publish time (one host, one clock); and the rate at
which payments reached PAID (how many, over first publish to last PAID). Before it, a ramp of
rates, each for some seconds, up to the first rate the system does not sustain: an event not
PAID within 5 s of the step's end, or a backlog that grows (the median latency to PAID of the
step's last quarter more than twice that of its first quarter plus 250 ms). The steady phase
comes last because it may overload: what an overload leaves behind (autovacuum of the rows it
deleted, the broker's queue segments) would slow the steps that followed it.

Before the ramp, a phase one at a time (each SHIPPED once the previous payment is PAID):
nothing batches, so its counts are the code's per-event cost whatever the machine's load. Each
phase ends with its profile per SHIPPED (`bench.profile`: statements and transactions per
service, the benchmark database's commits and rows, WAL flushes, broker messages, the top
statements by time, as the services waited for them and as PostgreSQL executed them).
`BENCH_HISTORY=N` preloads N earlier payments after the warm-up (`bench.history`).

PostgreSQL runs as in production: autovacuum on for the run (`bench.processes.autovacuum_on`),
and the tables analyzed after the bulk load and after the warm-up, as autovacuum would have
them in a running system.
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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import aiohttp
import asyncpg
from yarl import URL

from bench.checkout_pay import bounded
from bench.history import HISTORY, preload_history
from bench.outbox_pipeline import ceiling
from bench.processes import (
    CLK_TCK,
    Child,
    child,
    scratch_services,
    serve_sandbox,
    serve_service,
)
from bench.profile import (
    Profile,
    Snapshot,
    broker_counters,
    database_counters,
    server_statements,
)
from common.broker import Names, QueueSpec
from common.broker.topology import all_queue_names
from common.events import (
    DOMAIN_EXCHANGE,
    OMS_EXCHANGE,
    OMS_STATUS_CHANGED,
    EventType,
)
from common.http.auth import generate_key
from common.runtime import run_on_service_loop
from common.testing.fixtures import ServiceDb, delete_namespace, dsn_with
from common.testing.servers import test_servers
from common.testing.tenancy import api_key_upserted, publish, supplier_upserted, tenant_upserted
from psp_sandbox.testing import authorise as authorise_at_sandbox

RATE = float(os.environ.get("BENCH_CAPTURE_RATE", "200"))
SECONDS = float(os.environ.get("BENCH_CAPTURE_SECONDS", "60"))
RAMP = [
    float(r)
    for r in os.environ.get("BENCH_CAPTURE_RAMP", "20,30,40,50,60,80,100,150,200").split(",")
    if r.strip()
]
STEP_SECONDS = float(os.environ.get("BENCH_CAPTURE_STEP_SECONDS", "20"))
WARMUP = int(os.environ.get("BENCH_CAPTURE_WARMUP", "200"))
ONE_AT_A_TIME = int(os.environ.get("BENCH_CAPTURE_ONE_AT_A_TIME", "100"))
SERVICE_LOG_LEVEL = os.environ.get("BENCH_SERVICE_LOG_LEVEL", "INFO")
COMPANY_KEY = f"bench-company-{secrets.token_hex(8)}"
AMOUNT = 15000
SUSTAINED_GRACE_S = 5.0
QUEUES = [
    "checkout.tenancy",
    "checkout.psp-notifications",
    "checkout.captures",
    "webhooks.tenancy",
    "capture.tenancy",
    "capture.payments",
    "capture.oms",
    "capture.psp-notifications",
]


# -- the child processes -------------------------------------------------------------------


def service_env(db: ServiceDb, amqp_url: str, names: Names, **more: str) -> dict[str, str]:
    return {
        "MARKETPAY_PROFILE": "test",
        "MARKETPAY_LOG_LEVEL": SERVICE_LOG_LEVEL,
        "MARKETPAY_HTTP_PORT": "0",
        "MARKETPAY_DATABASE_URL": db.dsn,
        "MARKETPAY_DB_SCHEMA": db.schema,
        "MARKETPAY_AMQP_URL": amqp_url,
        "MARKETPAY_BROKER_NAMESPACE": names.namespace,
        "MARKETPAY_BROKER_QUEUE_EXPIRES_MS": str(names.queue_expires_ms),
        **more,
    }


# -- what is prepared beforehand -----------------------------------------------------------


@dataclass
class Tenant:
    id: str
    merchant_account: str
    operator_key: str
    supplier: str


@dataclass
class Payment:
    id: str
    order_id: str
    psp_reference: str


async def new_tenant(
    amqp_url: str,
    names: Names,
    dbs: dict[str, ServiceDb],
    http: aiohttp.ClientSession,
    sandbox: str,
) -> Tenant:
    tenant = Tenant(
        id=f"ten_{secrets.token_hex(6)}",
        merchant_account=f"Bench{secrets.token_hex(4)}ECOM",
        operator_key=generate_key("test"),
        supplier=f"sup_{secrets.token_hex(6)}",
    )
    await publish(
        amqp_url,
        names.exchange(DOMAIN_EXCHANGE),
        [
            (
                EventType.TENANT_UPSERTED,
                tenant_upserted(tenant.id, tenant.merchant_account, capture_mode="ON_SHIPMENT"),
            ),
            (EventType.SUPPLIER_UPSERTED, supplier_upserted(tenant.id, tenant.supplier)),
            (
                EventType.API_KEY_UPSERTED,
                api_key_upserted(tenant.id, tenant.operator_key, "operator"),
            ),
        ],
    )
    for db in dbs.values():
        await wait_for(db, "SELECT count(*) FROM replica_api_keys WHERE tenant_id = $1", tenant.id)
    await wait_for(
        dbs["capture"], "SELECT count(*) FROM replica_suppliers WHERE tenant_id = $1", tenant.id
    )
    async with http.post(
        f"{sandbox}/sandbox/merchant-accounts",
        json={"merchant_account": tenant.merchant_account, "webhook_url": None},
    ) as response:
        assert response.status == 200, await response.text()
    return tenant


async def wait_for(db: ServiceDb, sql: str, *args: Any, within: float = 30.0) -> None:
    conn = await asyncpg.connect(db.dsn, server_settings={"search_path": db.schema})
    try:
        deadline = time.monotonic() + within
        while not await conn.fetchval(sql, *args):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not there in {within} s: {sql}")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def authorise(http: aiohttp.ClientSession, sandbox: str, tenant: Tenant) -> Payment:
    payment_id = f"pay_{secrets.token_hex(12)}"
    psp_reference = await authorise_at_sandbox(
        http,
        sandbox,
        COMPANY_KEY,
        merchant_account=tenant.merchant_account,
        reference=payment_id,
        value=AMOUNT,
    )
    return Payment(payment_id, f"ord_{payment_id[4:]}", psp_reference)


async def write_authorised(
    dbs: dict[str, ServiceDb], tenant: Tenant, payments: Sequence[Payment]
) -> None:
    """What PAY-101 leaves in checkout and `payment.authorised` in capture, with COPY."""
    now = datetime.now(UTC)
    checkout = await asyncpg.connect(
        dbs["checkout"].dsn, server_settings={"search_path": dbs["checkout"].schema}
    )
    try:
        await checkout.copy_records_to_table(
            "payments",
            columns=[
                "id",
                "tenant_id",
                "order_id",
                "buyer_account",
                "payment_option",
                "amount",
                "currency",
                "status",
                "merchant_account",
                "psp_reference",
                "result_code",
                "client_token_hash",
                "client_token_expires_at",
            ],
            records=[
                (
                    p.id,
                    tenant.id,
                    p.order_id,
                    "acc_1",
                    "CREDIT_CARD",
                    AMOUNT,
                    "EUR",
                    "AUTHORIZED",
                    tenant.merchant_account,
                    p.psp_reference,
                    "Authorised",
                    secrets.token_hex(32),
                    now + timedelta(hours=1),
                )
                for p in payments
            ],
        )
        await checkout.copy_records_to_table(
            "payment_lines",
            columns=["payment_id", "logistic_order_id", "supplier_id", "amount"],
            records=[(p.id, "lo_1", tenant.supplier, AMOUNT) for p in payments],
        )
        # statistics, as autovacuum would gather after a bulk load: without them the planner
        # takes the tenant's 27,000 payments for a few dozen and plans for that
        await checkout.execute("ANALYZE payments, payment_lines")
    finally:
        await checkout.close()
    capture = await asyncpg.connect(
        dbs["capture"].dsn, server_settings={"search_path": dbs["capture"].schema}
    )
    try:
        await capture.copy_records_to_table(
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
                    p.id,
                    p.order_id,
                    "CREDIT_CARD",
                    "AUTHORISED",
                    AMOUNT,
                    "EUR",
                    p.psp_reference,
                    tenant.merchant_account,
                    now,
                )
                for p in payments
            ],
        )
        await capture.copy_records_to_table(
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
                (tenant.id, p.id, p.order_id, "lo_1", tenant.supplier, AMOUNT) for p in payments
            ],
        )
        await capture.execute("ANALYZE payments, payment_lines")
    finally:
        await capture.close()


# -- the load and its measure ----------------------------------------------------------------


@dataclass
class Phase:
    label: str
    rate: float
    published_at: dict[str, float]  # payment id → epoch seconds
    psp_ms: list[float]
    paid_ms: list[float]
    paid_in_order: list[float]  # latency to PAID, in the order the events were published
    paid: int
    paid_rate: float
    cpu_us: dict[str, float]
    wal_syncs: float  # WAL flushes per event (whole server)
    machine: tuple[float, float]  # share of the machine's CPU time busy, and in iowait
    drained_s: float  # from the last publish to the last PAID

    @staticmethod
    def p(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if values else 0.0

    @property
    def growing(self) -> bool:
        quarter = max(len(self.paid_in_order) // 4, 1)
        first = statistics.median(self.paid_in_order[:quarter])
        last = statistics.median(self.paid_in_order[-quarter:])
        return last > 2 * first + 250

    @property
    def sustained(self) -> bool:
        """Every event PAID within `SUSTAINED_GRACE_S` of the last publish, and no growing
        backlog. The first part used to come from the phase's wait alone, which is 600 s for
        the steady phase: a steady phase served at 122/s of 200/s was called sustained
        because its first quarter's latencies were already high."""
        return (
            self.paid == len(self.published_at)
            and self.drained_s <= SUSTAINED_GRACE_S
            and not self.growing
        )

    def show(self) -> None:
        print(
            f"  {self.label}: {len(self.published_at)} SHIPPED"
            f"{f' at {self.rate:.0f}/s' if self.rate else ''};"
            f" PAID {self.paid}/{len(self.published_at)} at {self.paid_rate:.0f}/s"
            f" (first publish to last PAID); sustained: {self.sustained}",
            flush=True,
        )
        for name, values in (("→ PSP capture request", self.psp_ms), ("→ PAID", self.paid_ms)):
            if values:
                print(
                    f"    {name:<22} p50 {self.p(values, 50):7.1f} ms  p99"
                    f" {self.p(values, 99):7.1f} ms  max {max(values):7.1f} ms",
                    flush=True,
                )
        if self.cpu_us:
            shown = ", ".join(f"{name} {us:,.0f}" for name, us in self.cpu_us.items())
            print(f"    CPU µs per event: {shown}", flush=True)
        busy, iowait = self.machine
        print(
            f"    WAL flushes per event (whole server): {self.wal_syncs:.1f};"
            f" machine CPU busy {busy:.0%}, iowait {iowait:.0%} (both cores, whole phase)",
            flush=True,
        )


async def ship(
    amqp_url: str,
    names: Names,
    tenant: Tenant,
    payments: Sequence[Payment],
    rate: float,
    settle: Callable[[str], Awaitable[None]] | None = None,
) -> dict[str, float]:
    """Publish one SHIPPED per payment at `rate`/s, open loop; return the publish times. With
    `settle`: one at a time instead, each published once `settle(previous payment id)` returns."""
    published: dict[str, float] = {}
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(names.exchange(OMS_EXCHANGE))
        pending: list[asyncio.Task[Any]] = []
        begin = time.perf_counter()
        for n, payment in enumerate(payments):
            delay = 0.0 if settle else begin + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = {
                "id": str(uuid.uuid4()),
                "tenant_id": tenant.id,
                "order_id": payment.order_id,
                "logistic_order_id": "lo_1",
                "supplier_id": tenant.supplier,
                "status": "SHIPPED",
                "occurred_at": datetime.now(UTC).isoformat(),
            }
            published[payment.id] = time.time()
            if settle is not None:
                await exchange.publish(
                    aio_pika.Message(
                        json.dumps(body).encode(),
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=OMS_STATUS_CHANGED,
                )
                await settle(payment.id)
                continue
            pending.append(
                asyncio.create_task(
                    exchange.publish(
                        aio_pika.Message(
                            json.dumps(body).encode(),
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=OMS_STATUS_CHANGED,
                    )
                )
            )
        await asyncio.gather(*pending)
    return published


@contextlib.asynccontextmanager
async def settling(
    checkout: ServiceDb,
) -> AsyncIterator[tuple[Callable[[str], Awaitable[None]], list[int]]]:
    """A `settle` for `ship`: wait until the payment is PAID (polling checkout's timeline every
    20 ms on one connection), and the count of those polls (the load's own commits)."""
    polls = [0]
    conn = await asyncpg.connect(checkout.dsn, server_settings={"search_path": checkout.schema})

    async def settle(payment_id: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            polls[0] += 1
            if await conn.fetchval(
                "SELECT true FROM payment_timeline WHERE payment_id = $1 AND status_to = 'PAID'",
                payment_id,
            ):
                return
            await asyncio.sleep(0.02)
        raise TimeoutError(f"{payment_id} not PAID within 60 s")

    try:
        yield settle, polls
    finally:
        await conn.close()


_PAID_AMONG = (
    "SELECT DISTINCT payment_id FROM payment_timeline"
    " WHERE status_to = 'PAID' AND payment_id = ANY((SELECT $1::text[])::text[])"
)
_PAID_AT = (
    "SELECT payment_id, min(occurred_at) AS at FROM payment_timeline"
    " WHERE status_to = 'PAID' AND payment_id = ANY((SELECT $1::text[])::text[])"
    " GROUP BY payment_id"
)


async def until_paid(checkout: ServiceDb, ids: Sequence[str], within: float) -> dict[str, float]:
    """When each of `ids` reached PAID (epoch s), once all have or `within` s have passed.

    The wait itself runs while a phase's CPU is counted, so it stays cheap: one connection,
    every 0.5 s a poll of only the ids not yet PAID (the array's length hidden from the
    planner, so the statement keeps one generic plan), and the times read once at the end."""
    conn = await asyncpg.connect(checkout.dsn, server_settings={"search_path": checkout.schema})
    try:
        deadline = time.monotonic() + within
        missing = set(ids)
        while missing:
            rows = await conn.fetch(_PAID_AMONG, list(missing))
            missing.difference_update(r["payment_id"] for r in rows)
            if not missing or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        rows = await conn.fetch(_PAID_AT, list(ids))
    finally:
        await conn.close()
    return {r["payment_id"]: r["at"].timestamp() for r in rows}


async def psp_requests(
    http: aiohttp.ClientSession, sandbox: str, tenant: Tenant
) -> dict[str, float]:
    """PSP reference → when the sandbox first received its capture request (epoch s)."""
    async with http.get(
        f"{sandbox}/sandbox/merchant-accounts/{tenant.merchant_account}/requests"
    ) as response:
        entries = (await response.json())["data"]
    first: dict[str, float] = {}
    for entry in entries:
        path = entry["path"]
        if path.endswith("/captures"):
            reference = path.split("/")[2]
            at = datetime.fromisoformat(entry["at"].replace("Z", "+00:00")).timestamp()
            first.setdefault(reference, at)
    return first


def server_cpu(command: str) -> Callable[[], float]:
    """CPU seconds used so far by the local processes named `command` (PostgreSQL's backends,
    RabbitMQ's Erlang VM), and by their children that have exited: a process's own time and
    its waited-for children's, so a backend or autovacuum worker that exits during a phase
    moves its time to the postmaster's count instead of taking it out of the sum."""

    def seconds() -> float:
        total = 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    raw = stat.read()
            except OSError:
                continue
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            if name == command:
                fields = raw.rsplit(")", 1)[1].split()
                total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
        return total / CLK_TCK

    return seconds


def machine_cpu() -> tuple[int, int, int]:
    """Jiffies of all CPUs since boot: (total, idle, iowait), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    return sum(fields), fields[3], fields[4]


async def run_phase(
    label: str,
    rate: float,
    payments: Sequence[Payment],
    *,
    amqp_url: str,
    names: Names,
    tenant: Tenant,
    dbs: dict[str, ServiceDb],
    http: aiohttp.ClientSession,
    sandbox: str,
    processes: dict[str, Any],
    services: dict[str, Child],
    grace: float,
    database_admin_dsn: str,
    one_at_a_time: bool = False,
) -> Phase:
    counted = await snapshot(http, services, dbs["capture"].dsn, database_admin_dsn)
    jiffies = machine_cpu()
    before = {name: cpu() for name, cpu in processes.items()}
    async with settling(dbs["checkout"]) as (settle, polls):
        published = await ship(
            amqp_url, names, tenant, payments, rate, settle if one_at_a_time else None
        )
    paid = await until_paid(dbs["checkout"], list(published), within=grace)
    cpu_us = {name: (cpu() - before[name]) / len(payments) * 1e6 for name, cpu in processes.items()}
    total, idle, iowait = (b - a for a, b in zip(jiffies, machine_cpu(), strict=True))
    machine = ((total - idle - iowait) / total, iowait / total) if total else (0.0, 0.0)
    profile = Profile(
        len(payments),
        len(payments),
        counted,
        await snapshot(http, services, dbs["capture"].dsn, database_admin_dsn),
        load_commits=polls[0],
    )
    flushes = profile.database("wal_sync")
    requested = await psp_requests(http, sandbox, tenant)
    psp_ms = sorted(
        (requested[p.psp_reference] - published[p.id]) * 1000
        for p in payments
        if p.psp_reference in requested
    )
    in_order = [(paid[p.id] - published[p.id]) * 1000 for p in payments if p.id in paid]
    span = max(paid.values(), default=0.0) - min(published.values())
    phase = Phase(
        label,
        rate,
        published,
        psp_ms,
        sorted(in_order),
        in_order,
        len(paid),
        len(paid) / span if span > 0 else 0.0,
        cpu_us,
        flushes,
        machine,
        max(paid.values(), default=0.0) - max(published.values()),
    )
    phase.show()
    profile.show()
    return phase


async def analyze(database_admin_dsn: str) -> None:
    """ANALYZE every table of the benchmark's database."""
    conn = await asyncpg.connect(database_admin_dsn)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def snapshot(
    http: aiohttp.ClientSession, services: dict[str, Child], dsn: str, database_admin_dsn: str
) -> Snapshot:
    """The services' statement and broker counters and the database's, now (`dsn`: a service's
    in the benchmark's database; `database_admin_dsn`: the administrator's in it)."""
    database = await database_counters(dsn)  # waits for the statistics to be reported
    return Snapshot(
        statements={name: await c.statements() for name, c in services.items()},
        broker={name: await broker_counters(http, c.url) for name, c in services.items()},
        database=database,
        server=await server_statements(database_admin_dsn),
    )


async def main() -> None:
    started = time.perf_counter()
    steady = int(RATE * SECONDS)
    needed = WARMUP + ONE_AT_A_TIME + steady + sum(int(r * STEP_SECONDS) for r in RAMP)
    with test_servers() as servers:
        names = Names(f"bench.{secrets.token_hex(3)}.", queue_expires_ms=10 * 60 * 1000)
        amqp = servers.amqp_url
        async with scratch_services(servers.pg_admin_dsn, "checkout", "webhooks", "capture") as dbs:
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
                        statements=True,
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
                        ),
                        statements=True,
                    ) as capture,
                    child(
                        __name__,
                        "checkout",
                        service_env(
                            dbs["checkout"],
                            amqp,
                            names,
                            MARKETPAY_PSP_BASE_URL=f"{sandbox.url}/v71",
                            MARKETPAY_PSP_API_KEY=COMPANY_KEY,
                        ),
                        statements=True,
                    ) as checkout,
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http,
                ):
                    await measure_all(
                        amqp,
                        names,
                        dbs,
                        http,
                        sandbox,
                        webhooks,
                        capture,
                        checkout,
                        needed,
                        servers.pg_admin_dsn,
                    )
                    print(f"  ({time.perf_counter() - started:.0f} s in all)", flush=True)
            finally:
                with contextlib.suppress(Exception):
                    connection = await aio_pika.connect(amqp, timeout=10)
                    async with connection:
                        channel = await connection.channel()
                        for queue in QUEUES:
                            for name in all_queue_names(names, QueueSpec(queue, [])):
                                await channel.queue_delete(name)
                await delete_namespace(amqp, names)


async def measure_all(
    amqp: str,
    names: Names,
    dbs: dict[str, ServiceDb],
    http: aiohttp.ClientSession,
    sandbox: Child,
    webhooks: Child,
    capture: Child,
    checkout: Child,
    needed: int,
    admin_dsn: str,
) -> None:
    prepared = time.perf_counter()
    tenant = await new_tenant(amqp, names, dbs, http, sandbox.url)
    payments = await bounded(needed, lambda: authorise(http, sandbox.url, tenant), 16)
    await write_authorised(dbs, tenant, payments)
    async with http.post(
        f"{sandbox.url}/sandbox/merchant-accounts",
        json={
            "merchant_account": tenant.merchant_account,
            "webhook_url": f"{webhooks.url}/v1/webhooks/psp/adyen",
        },
    ) as response:
        hmac_key = (await response.json())["hmac_key"]
    async with http.put(
        f"{webhooks.url}/v1/admin/webhooks/hmac-keys",
        json={"merchant_account": tenant.merchant_account, "key": hmac_key},
        headers={"Authorization": f"Bearer {tenant.operator_key}"},
    ) as response:
        assert response.status == 201, await response.text()
    print(
        f"prepared 1 tenant and {needed} authorised payments in"
        f" {time.perf_counter() - prepared:.1f} s",
        flush=True,
    )
    connection = await aio_pika.connect(amqp)
    async with connection:
        publish_run, consume_run = await ceiling(connection, names)
    bare = min(publish_run.rate, consume_run.rate)
    print(
        f"  ceiling: bare aio-pika publish {publish_run.rate:,.0f}/s, consume"
        f" {consume_run.rate:,.0f}/s (quorum queue, confirms per 100, prefetch 100)",
        flush=True,
    )
    processes = {
        "load": time.process_time,
        "capture": capture.cpu_seconds,
        "checkout": checkout.cpu_seconds,
        "webhooks": webhooks.cpu_seconds,
        "sandbox": sandbox.cpu_seconds,
        "postgres": server_cpu("postgres"),
        "rabbitmq": server_cpu("beam.smp"),
    }

    # the administrator's connection to the benchmark's own database (its statistics)
    database_admin_dsn = dsn_with(admin_dsn, database=URL(dbs["capture"].dsn).path.lstrip("/"))

    async def phase(
        label: str,
        rate: float,
        batch: Sequence[Payment],
        grace: float,
        one_at_a_time: bool = False,
    ) -> Phase:
        return await run_phase(
            label,
            rate,
            batch,
            amqp_url=amqp,
            names=names,
            tenant=tenant,
            dbs=dbs,
            http=http,
            sandbox=sandbox.url,
            processes=processes,
            services={"capture": capture, "checkout": checkout, "webhooks": webhooks},
            grace=grace,
            database_admin_dsn=database_admin_dsn,
            one_at_a_time=one_at_a_time,
        )

    rest = iter(payments)

    def take(n: int) -> list[Payment]:
        return [next(rest) for _ in range(n)]

    warmup = take(WARMUP)
    await phase("warm-up", 50, warmup, grace=30)
    if HISTORY:
        await asyncio.sleep(3)  # the last outbox rows of the warm-up published
        await preload_history(dbs, warmup[0].id, HISTORY)
    else:
        # statistics of the tables the warm-up filled, as a running system has them: the
        # plans cached while captures was empty would scan it until autovacuum's next round
        await analyze(database_admin_dsn)
    if ONE_AT_A_TIME:
        await phase(
            f"one at a time ({ONE_AT_A_TIME} SHIPPED, each once the previous is PAID)",
            0,
            take(ONE_AT_A_TIME),
            grace=30,
            one_at_a_time=True,
        )
    # the ramp before the steady phase: an overload leaves an aftermath (autovacuum of the
    # rows it deleted, the broker's queue segments) that steps run after it would pay for
    best = 0.0
    for rate in RAMP:
        step = await phase(
            f"ramp {rate:.0f}/s for {STEP_SECONDS:.0f} s",
            rate,
            take(int(rate * STEP_SECONDS)),
            grace=SUSTAINED_GRACE_S,
        )
        if not step.sustained:
            await until_paid(dbs["checkout"], list(step.published_at), within=180)
            break
        best = rate
    steady = await phase(
        f"steady {RATE:.0f}/s for {SECONDS:.0f} s",
        RATE,
        take(int(RATE * SECONDS)),
        grace=600,
    )
    print(f"  steady rate as a share of the bare aio-pika rate: {RATE / bare:.1%}")
    print(
        f"  maximum sustained rate: {best:.0f} SHIPPED/s ({best / bare:.1%} of the bare"
        f" aio-pika rate {bare:,.0f}/s); steady {RATE:.0f}/s sustained: {steady.sustained}",
        flush=True,
    )


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "sandbox":
        asyncio.run(serve_sandbox())
    elif role in ("webhooks", "capture", "checkout"):
        run_on_service_loop(serve_service(role))
    else:
        sys.exit("usage: python -m bench.capture_shipment sandbox|webhooks|capture|checkout")
