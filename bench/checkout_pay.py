"""PAY-101 through checkout against the PSP sandbox (no injected latency), beside the same
authorisation sent straight to the sandbox's `POST /v71/payments` in the same run: the
difference is Marketpay's overhead.

Three OS processes, so that none of them takes the CPU of another in its own event loop:
- the sandbox (`running_sandbox(company_api_key=...)`), started as a child of this one;
- checkout (`checkout.app.create_app`), a child too, with its outbox relay and tenancy consumer,
  on a database and a broker namespace of its own that are removed at the end;
- this process: the load (one aiohttp client session, keep-alive), the tenant, sessions and
  card tokens made beforehand, so that only PAY-101 (or the direct `/payments`) is timed.

Measured: sequential latency p50/p99 of each, then throughput with CONCURRENCY requests in
flight; the CPU seconds each process spent per request (from /proc, clock ticks).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiohttp
import asyncpg

from bench.processes import (
    START_TIMEOUT_S,
    child,
    scratch_database,
    serve_sandbox,
    serve_service,
)
from common.broker import Names, QueueSpec
from common.broker.topology import all_queue_names
from common.events import (
    DOMAIN_EXCHANGE,
    EventType,
)
from common.http.auth import generate_key
from common.runtime import run_on_service_loop
from common.testing.fixtures import delete_namespace
from common.testing.servers import test_servers
from common.testing.tenancy import api_key_upserted, publish, supplier_upserted, tenant_upserted

SEQUENTIAL = int(os.environ.get("BENCH_PAY_SEQUENTIAL", "300"))
CONCURRENT = int(os.environ.get("BENCH_PAY_CONCURRENT", "400"))
CONCURRENCY = int(os.environ.get("BENCH_PAY_CONCURRENCY", "16"))
WARMUP = 20
# checkout logs at INFO as deployed (one access line per request), to /dev/null here
CHECKOUT_LOG_LEVEL = os.environ.get("BENCH_CHECKOUT_LOG_LEVEL", "INFO")
COMPANY_KEY = f"bench-company-{secrets.token_hex(8)}"
AMOUNT = 15000
CARD = "4242424242424242"
BROWSER_INFO = {"userAgent": "bench", "acceptHeader": "*/*"}
RETURN_URL = "https://shop.example/return"


# -- the child processes -------------------------------------------------------------------


# -- fixtures made beforehand -------------------------------------------------------------


@dataclass
class Tenant:
    id: str
    merchant_account: str
    storefront_key: str
    supplier: str


async def new_tenant(
    amqp_url: str,
    exchange_name: str,
    dsn: str,
    schema: str,
    http: aiohttp.ClientSession,
    sandbox: str,
) -> Tenant:
    """The tenancy replica fed as the tenants service feeds it: events on the bus."""
    tenant = Tenant(
        id=f"ten_{secrets.token_hex(6)}",
        merchant_account=f"Bench{secrets.token_hex(4)}ECOM",
        storefront_key=generate_key("test"),
        supplier=f"sup_{secrets.token_hex(6)}",
    )
    await publish(
        amqp_url,
        exchange_name,
        [
            (EventType.TENANT_UPSERTED, tenant_upserted(tenant.id, tenant.merchant_account)),
            (EventType.SUPPLIER_UPSERTED, supplier_upserted(tenant.id, tenant.supplier)),
            (
                EventType.API_KEY_UPSERTED,
                api_key_upserted(tenant.id, tenant.storefront_key, "storefront"),
            ),
        ],
    )
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not await conn.fetchval(
            "SELECT count(*) FROM replica_api_keys k JOIN replica_tenants t USING (tenant_id)"
            " WHERE k.tenant_id = $1",
            tenant.id,
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("the tenancy replica did not arrive")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    async with http.post(
        f"{sandbox}/sandbox/merchant-accounts",
        json={"merchant_account": tenant.merchant_account, "webhook_url": None},
    ) as response:
        assert response.status == 200, await response.text()
    return tenant


async def tokenise(http: aiohttp.ClientSession, sandbox: str) -> dict[str, str]:
    body = {"number": CARD, "expiry_month": "03", "expiry_year": "2030", "cvc": "737"}
    async with http.post(f"{sandbox}/sandbox/tokenize", json=body) as response:
        assert response.status == 200, await response.text()
        tokens = await response.json()
    return {k: v for k, v in tokens.items() if v is not None}


async def new_session(http: aiohttp.ClientSession, checkout: str, tenant: Tenant) -> str:
    body = {
        "order_id": f"ord_{uuid.uuid4().hex[:12]}",
        "amount": {"value": AMOUNT, "currency": "EUR"},
        "buyer_account": "acc_1",
        "return_url": RETURN_URL,
        "lines": [{"logistic_order_id": "lo_1", "supplier_id": tenant.supplier, "amount": AMOUNT}],
    }
    async with http.post(
        f"{checkout}/v1/checkout/sessions",
        json=body,
        headers={
            "Authorization": f"Bearer {tenant.storefront_key}",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    ) as response:
        assert response.status == 201, await response.text()
        token: str = (await response.json())["data"]["client_token"]
        return token


async def bounded(count: int, make: Callable[[], Awaitable[Any]], in_flight: int) -> list[Any]:
    gate = asyncio.Semaphore(in_flight)

    async def one() -> Any:
        async with gate:
            return await make()

    return list(await asyncio.gather(*(one() for _ in range(count))))


# -- the two requests under test -----------------------------------------------------------

Request = Callable[[int], Awaitable[None]]


def through_checkout(
    http: aiohttp.ClientSession, checkout: str, tokens: list[str], cards: list[dict[str, str]]
) -> Request:
    async def pay(i: int) -> None:
        async with http.post(
            f"{checkout}/v1/shop/payments",
            json={"payment_method": cards[i], "browser_info": BROWSER_INFO},
            headers={
                "Authorization": f"Bearer {tokens[i]}",
                "Idempotency-Key": uuid.uuid4().hex,
            },
        ) as response:
            body = await response.read()
            if response.status != 200 or b'"AUTHORIZED"' not in body:
                raise RuntimeError(f"PAY-101 answered {response.status}: {body[:300]!r}")

    return pay


def straight_to_sandbox(
    http: aiohttp.ClientSession, sandbox: str, tenant: Tenant, cards: list[dict[str, str]]
) -> Request:
    """What checkout's Adyen adapter sends for PAY-101 (same fields, a fresh Idempotency-Key)."""
    run = secrets.token_hex(3)

    async def pay(i: int) -> None:
        body = {
            "merchantAccount": tenant.merchant_account,
            "amount": {"value": AMOUNT, "currency": "EUR"},
            "reference": f"pay_bench_{run}_{i}",
            "paymentMethod": cards[i],
            "returnUrl": RETURN_URL,
            "channel": "Web",
            "browserInfo": BROWSER_INFO,
            "shopperReference": "acc_1",
        }
        async with http.post(
            f"{sandbox}/v71/payments",
            json=body,
            headers={"X-API-Key": COMPANY_KEY, "Idempotency-Key": f"authorise:{run}_{i}"},
        ) as response:
            answer = await response.read()
            if response.status != 200 or b'"Authorised"' not in answer:
                raise RuntimeError(f"/payments answered {response.status}: {answer[:300]!r}")

    return pay


@dataclass
class Result:
    label: str
    latencies_ms: list[float]
    rate: float
    sequential_cpu_us: dict[str, float]  # process → CPU µs per request, one at a time
    cpu_us: dict[str, float]  # process → CPU µs per request, CONCURRENCY in flight
    wal_syncs: float  # WAL flushes per request (server-wide), one at a time

    def p(self, q: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]


Probe = Callable[[], float]


def cpu_per_request(before: dict[str, float], probes: dict[str, Probe], n: int) -> dict[str, float]:
    return {name: (probe() - before[name]) / n * 1e6 for name, probe in probes.items()}


async def wal_syncs(admin_dsn: str) -> int:
    """WAL flushes of the whole server so far (each one an fsync with the defaults here)."""
    await asyncio.sleep(1.1)  # backends report their statistics at most once a second
    conn = await asyncpg.connect(admin_dsn)
    try:
        return int(await conn.fetchval("SELECT wal_sync FROM pg_stat_wal"))
    finally:
        await conn.close()


async def measure(
    label: str, request: Request, processes: dict[str, Probe], admin_dsn: str
) -> Result:
    """Uses indices 0 .. WARMUP+SEQUENTIAL+CONCURRENT of the prepared fixtures."""
    for i in range(WARMUP):
        await request(i)
    first = WARMUP
    latencies = []
    syncs = await wal_syncs(admin_dsn)
    before = {name: cpu() for name, cpu in processes.items()}
    for i in range(first, first + SEQUENTIAL):
        started = time.perf_counter()
        await request(i)
        latencies.append((time.perf_counter() - started) * 1000)
    sequential_cpu = cpu_per_request(before, processes, SEQUENTIAL)
    syncs = await wal_syncs(admin_dsn) - syncs
    first += SEQUENTIAL
    before = {name: cpu() for name, cpu in processes.items()}
    indices = iter(range(first, first + CONCURRENT))
    started = time.perf_counter()
    await bounded(CONCURRENT, lambda: request(next(indices)), CONCURRENCY)
    seconds = time.perf_counter() - started
    cpu_us = cpu_per_request(before, processes, CONCURRENT)
    result = Result(
        label, latencies, CONCURRENT / seconds, sequential_cpu, cpu_us, syncs / SEQUENTIAL
    )
    print(
        f"  {label:<36} p50 {result.p(50):6.2f} ms  p99 {result.p(99):6.2f} ms"
        f"  {result.rate:7,.0f} /s at {CONCURRENCY} in flight",
        flush=True,
    )
    for phase, cpu in (("one at a time", sequential_cpu), (f"{CONCURRENCY} in flight", cpu_us)):
        shown = ", ".join(f"{name} {us:,.0f}" for name, us in cpu.items())
        print(f"    CPU µs per request, {phase}: {shown}", flush=True)
    print(f"    WAL flushes per request, one at a time (whole server): {result.wal_syncs:.2f}")
    return result


async def commit_ceiling(dsn: str, schema: str, count: int = 200) -> list[float]:
    """One single-row INSERT per transaction, one connection: what one commit costs here."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        await conn.execute("CREATE TABLE bench_commit (n int)")
        latencies = []
        for n in range(count):
            started = time.perf_counter()
            await conn.execute("INSERT INTO bench_commit VALUES ($1)", n)
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies
    finally:
        await conn.close()


async def main() -> None:
    started = time.perf_counter()
    per_path = WARMUP + SEQUENTIAL + CONCURRENT
    with test_servers() as servers:
        names = Names(f"bench.{secrets.token_hex(3)}.", queue_expires_ms=10 * 60 * 1000)
        async with scratch_database(servers.pg_admin_dsn) as service:
            try:
                async with (
                    child(
                        "bench.checkout_pay", "sandbox", {"BENCH_COMPANY_KEY": COMPANY_KEY}
                    ) as sandbox,
                    child(
                        "bench.checkout_pay",
                        "checkout",
                        {
                            "MARKETPAY_PROFILE": "test",
                            "MARKETPAY_LOG_LEVEL": CHECKOUT_LOG_LEVEL,
                            "MARKETPAY_HTTP_PORT": "0",
                            "MARKETPAY_DATABASE_URL": service.dsn,
                            "MARKETPAY_DB_SCHEMA": service.schema,
                            "MARKETPAY_AMQP_URL": servers.amqp_url,
                            "MARKETPAY_BROKER_NAMESPACE": names.namespace,
                            "MARKETPAY_BROKER_QUEUE_EXPIRES_MS": str(names.queue_expires_ms),
                            "MARKETPAY_PSP_BASE_URL": f"{sandbox.url}/v71",
                            "MARKETPAY_PSP_API_KEY": COMPANY_KEY,
                            "MARKETPAY_PSP_TIMEOUT_S": "5",
                        },
                    ) as checkout,
                    aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=2 * CONCURRENCY)
                    ) as http,
                ):
                    tenant = await new_tenant(
                        servers.amqp_url,
                        names.exchange(DOMAIN_EXCHANGE),
                        service.dsn,
                        service.schema,
                        http,
                        sandbox.url,
                    )
                    cards = await bounded(
                        2 * per_path, lambda: tokenise(http, sandbox.url), CONCURRENCY
                    )
                    tokens = await bounded(
                        per_path, lambda: new_session(http, checkout.url, tenant), CONCURRENCY
                    )
                    print(
                        f"prepared 1 tenant, {per_path} sessions, {2 * per_path} card tokens"
                        f" in {time.perf_counter() - started:.1f} s; per path: {WARMUP} warm-up,"
                        f" {SEQUENTIAL} sequential, {CONCURRENT} at {CONCURRENCY} in flight",
                        flush=True,
                    )
                    processes = {
                        "load": time.process_time,
                        "checkout": checkout.cpu_seconds,
                        "sandbox": sandbox.cpu_seconds,
                    }
                    commits = await commit_ceiling(service.dsn, service.schema)
                    print(
                        f"  ceiling: one-row INSERT commit, one connection: p50"
                        f" {statistics.median(commits):.2f} ms",
                        flush=True,
                    )
                    admin = servers.pg_admin_dsn
                    direct = await measure(
                        "direct: sandbox POST /v71/payments",
                        straight_to_sandbox(http, sandbox.url, tenant, cards[per_path:]),
                        processes,
                        admin,
                    )
                    through = await measure(
                        "checkout: PAY-101 /v1/shop/payments",
                        through_checkout(http, checkout.url, tokens, cards),
                        processes,
                        admin,
                    )
                    print(
                        f"  overhead at p50: {through.p(50) - direct.p(50):.2f} ms"
                        f" (ratio {through.p(50) / direct.p(50):.1f}×);"
                        f" at p99: {through.p(99) - direct.p(99):.2f} ms;"
                        f" throughput ratio {through.rate / direct.rate:.0%}"
                        f" ({time.perf_counter() - started:.1f} s in all)",
                        flush=True,
                    )
            finally:
                # the checkout child deleted what it declared; this is the safety net
                with contextlib.suppress(Exception):
                    connection = await aio_pika.connect(servers.amqp_url, timeout=10)
                    async with connection:
                        channel = await connection.channel()
                        for queue in (
                            *all_queue_names(names, QueueSpec("checkout.tenancy", [])),
                            *all_queue_names(names, QueueSpec("checkout.psp-notifications", [])),
                        ):
                            await channel.queue_delete(queue)
                await delete_namespace(servers.amqp_url, names)


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "sandbox":
        asyncio.run(serve_sandbox())
    elif role == "checkout":
        run_on_service_loop(serve_service("checkout"))
    else:
        sys.exit("usage: python -m bench.checkout_pay sandbox|checkout (run by the benchmark)")
