"""A 1,000,000-row transactions export through the exports service, next to a bare
`COPY (SELECT ...) TO STDOUT` of the same rows in the same run; and the worker's peak RSS for
10,000 rows versus 1,000,000 (memory must stay flat).

The rows are loaded with COPY FROM straight into the service's read model (the feed is
measured elsewhere: outbox_pipeline). Each size runs in a fresh exports process, so its peak
RSS (VmHWM) belongs to that export alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg

from bench.capture_shipment import service_env
from bench.processes import Child, child, scratch_services, serve_service
from common.broker import Names
from common.events import DOMAIN_EXCHANGE, EventType
from common.http.auth import generate_key
from common.runtime import run_on_service_loop
from common.testing.fixtures import ServiceDb, delete_namespace
from common.testing.servers import test_servers
from common.testing.tenancy import api_key_upserted, publish, tenant_upserted

BIG = 1_000_000
SMALL = 10_000
TARGET_RATIO = 2.0
START = datetime(2026, 1, 1, tzinfo=UTC)

COLUMNS = [
    "tenant_id", "row_key", "revision", "occurred_at", "transaction_type", "direction",
    "status", "payment_id", "order_id", "logistic_order_id", "supplier_id", "reference_id",
    "capture_id", "psp_reference", "amount", "currency", "platform_amount", "platform_rate",
    "marketplace_amount", "marketplace_rate", "supplier_amount", "reason",
]  # fmt: skip


def rows(tenant_id: str, count: int) -> Iterator[tuple[Any, ...]]:
    """Per payment: an authorisation, a capture with its split, and every fifth a refund (with
    the rates of its capture, as the projection copies them)."""
    n = 0
    payment = 0
    while n < count:
        payment += 1
        at = START + timedelta(seconds=payment)
        pay, lo, sup, cap = (
            f"pay_{payment}",
            f"lo_{payment}",
            f"sup_{payment % 50}",
            f"cap_{payment}",
        )
        amount = 1000 + payment % 9000
        platform, marketplace = amount * 25 // 1000, amount // 10
        batch: list[tuple[Any, ...]] = [
            (tenant_id, f"AUTHORISATION:{pay}:{lo}", 1, at, "AUTHORISATION", "NONE",
             "AUTHORISED", pay, f"ord_{payment}", lo, sup, pay, None, f"PSP{payment}", amount,
             "EUR", None, None, None, None, None, None),
            (tenant_id, f"CAPTURE:{cap}", 3, at + timedelta(minutes=1), "CAPTURE", "CREDIT",
             "SUCCEEDED", pay, f"ord_{payment}", lo, sup, cap, cap, f"PSPC{payment}", amount,
             "EUR", platform, Decimal("2.5"), marketplace, Decimal("10"),
             amount - platform - marketplace, None),
        ]  # fmt: skip
        if payment % 5 == 0:
            batch.append(
                (
                    tenant_id,
                    f"REFUND:ref_{payment}:SUCCEEDED",
                    2,
                    at + timedelta(minutes=2),
                    "REFUND",
                    "DEBIT",
                    "SUCCEEDED",
                    pay,
                    f"ord_{payment}",
                    lo,
                    sup,
                    f"ref_{payment}",
                    cap,
                    f"PSPR{payment}",
                    100,
                    "EUR",
                    2,
                    Decimal("2.5"),
                    10,
                    Decimal("10"),
                    88,
                    "=damaged; returned",
                )
            )
        for row in batch[: count - n]:
            yield row
            n += 1


async def load(db: ServiceDb, tenant_id: str, count: int) -> float:
    conn = await asyncpg.connect(db.dsn, server_settings={"search_path": db.schema})
    try:
        started = time.perf_counter()
        source = rows(tenant_id, count)
        while chunk := [r for _, r in zip(range(100_000), source, strict=False)]:
            await conn.copy_records_to_table("transactions", records=chunk, columns=COLUMNS)
        await conn.execute("ANALYZE transactions")
        return time.perf_counter() - started
    finally:
        await conn.close()


async def bare_copy(db: ServiceDb, sql: str, *args: Any) -> tuple[float, int]:
    """The ceiling: COPY of the same rows to a sink that only counts the bytes."""
    conn = await asyncpg.connect(db.dsn, server_settings={"search_path": db.schema})
    size = 0

    async def sink(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)

    try:
        started = time.perf_counter()
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.copy_from_query(
                sql, *args, output=sink, format="csv", delimiter=";", header=True
            )
        return time.perf_counter() - started, size
    finally:
        await conn.close()


def peak_rss_mib(process: Child) -> tuple[float, float]:
    """(current RSS, peak RSS) of a child, MiB."""
    values = {}
    with open(f"/proc/{process.process.pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(value.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def exports_env(
    db: ServiceDb, amqp: str, names: Names, storage: str, **more: str
) -> dict[str, str]:
    """The settings of an exports process storing its files under `storage`."""
    return service_env(
        db, amqp, names, MARKETPAY_LOG_LEVEL="WARNING", MARKETPAY_STORAGE_DIR=storage, **more
    )


async def export_through_service(
    db: ServiceDb, amqp: str, names: Names, key: str, storage: str, tenant_id: str
) -> dict[str, Any]:
    env = exports_env(db, amqp, names, storage, MARKETPAY_WORKER_POLL_INTERVAL_S="0.05")
    async with child(__name__, "exports", env) as exports, aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(200):  # the key reaches the replica through the bus
            async with http.get(f"{exports.url}/v1/exports", headers=headers) as response:
                if response.status == 200:
                    break
            await asyncio.sleep(0.1)
        idle_rss, _ = peak_rss_mib(exports)
        started = time.perf_counter()
        async with http.post(
            f"{exports.url}/v1/exports",
            json={"type": "transactions"},
            headers={**headers, "Idempotency-Key": secrets.token_hex(8)},
        ) as response:
            assert response.status == 202, await response.text()
            export_id = (await response.json())["data"]["id"]
        while True:
            async with http.get(f"{exports.url}/v1/exports/{export_id}", headers=headers) as r:
                data = (await r.json())["data"]
            if data["status"] in ("READY", "FAILED"):
                break
            await asyncio.sleep(0.02)
        wall = time.perf_counter() - started
        assert data["status"] == "READY", data
        _, peak = peak_rss_mib(exports)
        return {
            "wall": wall,
            "rows": data["rows_total"],
            "bytes": data["size_bytes"],
            "idle_rss": idle_rss,
            "peak_rss": peak,
            "cpu": exports.cpu_seconds(),
        }


async def main() -> None:
    with test_servers() as servers:
        amqp = servers.amqp_url
        names = Names(f"bench.{secrets.token_hex(3)}.", queue_expires_ms=10 * 60 * 1000)
        async with scratch_services(servers.pg_admin_dsn, "exports") as dbs:
            db = dbs["exports"]
            try:
                with tempfile.TemporaryDirectory(prefix="bench_exports_") as storage:
                    await run(db, amqp, names, storage)
            finally:
                with contextlib.suppress(Exception):
                    await delete_namespace(amqp, names)


async def run(db: ServiceDb, amqp: str, names: Names, storage: str) -> None:
    tenants = {size: f"ten_bench_{size}" for size in (SMALL, BIG)}
    keys = {size: generate_key("test") for size in tenants}
    # a first process applies the migrations and declares the queues the tenancy arrives by
    async with child(__name__, "exports", exports_env(db, amqp, names, storage)):
        exchange = names.exchange(DOMAIN_EXCHANGE)
        for size, tenant_id in tenants.items():
            await publish(
                amqp,
                exchange,
                [
                    (EventType.TENANT_UPSERTED, tenant_upserted(tenant_id, f"B{size}ECOM")),
                    (
                        EventType.API_KEY_UPSERTED,
                        api_key_upserted(tenant_id, keys[size], "operator"),
                    ),
                ],
            )
        for size, tenant_id in tenants.items():
            loaded = await load(db, tenant_id, size)
            print(f"  loaded {size:,} rows with COPY FROM in {loaded:.1f} s", flush=True)

    from exports.domain import TransactionFilters
    from exports.repo import export_query

    results = {}
    for size, tenant_id in tenants.items():
        query = export_query(
            "transactions", TransactionFilters(), tenant_id=tenant_id, supplier_scope=None
        )
        plain = "SELECT * FROM transactions WHERE tenant_id = $1 ORDER BY occurred_at, row_key"
        bare_plain, _ = await bare_copy(db, plain, tenant_id)
        bare_same, bare_bytes = await bare_copy(db, query.select, *query.args)
        service = await export_through_service(db, amqp, names, keys[size], storage, tenant_id)
        assert service["rows"] == size
        assert service["bytes"] == bare_bytes
        results[size] = (bare_plain, bare_same, service)
        ratio = service["wall"] / bare_same
        print(
            f"  {size:>9,} rows, {bare_bytes / 2**20:,.0f} MiB:"
            f" bare COPY of the table {bare_plain:.2f} s,"
            f" bare COPY of the export's SELECT {bare_same:.2f} s,"
            f" through the service (POST to READY) {service['wall']:.2f} s"
            f" = {ratio:.2f}x the bare COPY (target <= {TARGET_RATIO:.0f}x);"
            f" worker CPU {service['cpu']:.2f} s;"
            f" worker RSS idle {service['idle_rss']:.0f} MiB, peak {service['peak_rss']:.0f} MiB",
            flush=True,
        )
    small, big = results[SMALL][2], results[BIG][2]
    print(
        f"  peak RSS {SMALL:,} rows {small['peak_rss']:.0f} MiB vs {BIG:,} rows"
        f" {big['peak_rss']:.0f} MiB ({big['peak_rss'] - small['peak_rss']:+.0f} MiB for"
        f" {BIG // SMALL}x the rows)",
        flush=True,
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["exports"]:
        run_on_service_loop(serve_service("exports"))
    else:
        sys.exit("usage: python -m bench.exports_copy exports")
