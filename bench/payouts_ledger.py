"""The payouts ledger: postings per second on the hot PLATFORM / MARKETPLACE accounts beside
bare INSERTs of the same rows in the same run, and a payout computation for many suppliers over
a large ledger beside a bare `SELECT sum() GROUP BY` over the same table.

Everything runs in this process against the servers of the test fixtures, in a database of its
own that is removed at the end.

- postings: W writers, each committing batches of B capture entries (4 postings each: PSP,
  PLATFORM, MARKETPLACE and one of 100 suppliers) through `ledger.post` (idempotency key,
  balance check at commit, balances updated once per account per batch, accounts locked in id
  order). Ceiling: the same rows, the same batches and commits, INSERTed into tables of the
  same shape and indexes without the ledger's triggers (`LIKE ... INCLUDING ALL`).
- payouts: S suppliers, E ledger entries (postings; 4 per capture, all eligible), bulk-loaded;
  `compute_supplier_payouts` for the whole tenant in one transaction (wall time, and the
  peak RSS of this process, the server's not counted), beside the bare aggregate.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

import payouts
from bench.processes import scratch_database
from common.db import apply_migrations, create_pool
from common.db.migrations import COMMON_MIGRATIONS
from common.db.types import Conn
from common.testing.servers import test_servers
from common.testing.tenancy import tenant_upserted
from payouts import ledger
from payouts.domain import Entry, Posting

MIGRATIONS = Path(payouts.__file__).parent / "migrations"
WRITERS = int(os.environ.get("BENCH_LEDGER_WRITERS", "4"))
SECONDS = float(os.environ.get("BENCH_LEDGER_SECONDS", "6"))
SUPPLIERS = int(os.environ.get("BENCH_PAYOUT_SUPPLIERS", "10000"))
ENTRIES = int(os.environ.get("BENCH_LEDGER_ENTRIES", "1000000"))
TENANT = "ten_bench"


def capture(n: int, writer: int, batch: int) -> Entry:
    return Entry(
        tenant_id=TENANT,
        currency="EUR",
        key=f"capture:b{batch}:w{writer}:{n}",
        kind="CAPTURE",
        postings=(
            Posting("PSP_CLEARING", -10000),
            Posting("PLATFORM", 250),
            Posting("MARKETPLACE", 1000),
            Posting("SUPPLIER", 8750, f"sup_{(n * 7 + writer) % 100}"),
        ),
        capture_id=f"cap_b{batch}_w{writer}_{n}",
    )


async def _timed(pool: asyncpg.Pool, work: object, batch: int) -> tuple[int, float]:
    stop = time.monotonic() + SECONDS
    done = [0] * WRITERS

    async def writer(w: int) -> None:
        n = 0
        async with pool.acquire() as conn:
            while time.monotonic() < stop:
                await work(conn, w, n, batch)  # type: ignore[operator]
                n += batch
                done[w] += batch

    started = time.monotonic()
    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    return sum(done), time.monotonic() - started


async def post_batch(conn: Conn, w: int, n: int, batch: int) -> None:
    async with conn.transaction():
        await ledger.post(conn, [capture(n + i, w, batch) for i in range(batch)])


async def post_each(conn: Conn, w: int, n: int, batch: int) -> None:
    """A consumer batch: one `ledger.post` per message, in the batch's transaction."""
    async with conn.transaction():
        for i in range(batch):
            await ledger.post(conn, [capture(n + i, w, -batch)])


async def bare_batch(conn: Conn, w: int, n: int, batch: int) -> None:
    entries = [capture(n + i, w, batch) for i in range(batch)]
    async with conn.transaction():
        ids = await conn.fetch(
            "INSERT INTO bare_transactions (tenant_id, idempotency_key, kind, currency,"
            " content_hash, capture_id) SELECT $1, k, 'CAPTURE', 'EUR', h, c"
            " FROM unnest($2::text[], $3::text[], $4::text[]) AS x(k, h, c) RETURNING id",
            TENANT,
            [e.key for e in entries],
            [e.content_hash for e in entries],
            [e.capture_id for e in entries],
        )
        rows = [
            (row["id"], 1 + i % 4, p.amount)
            for row, e in zip(ids, entries, strict=True)
            for i, p in enumerate(e.postings)
        ]
        await conn.execute(
            "INSERT INTO bare_postings (transaction_id, account_id, currency, amount, posted_at)"
            " SELECT t, a, 'EUR', m, now() FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])"
            " AS x(t, a, m)",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
        )


async def postings_benchmark(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "CREATE TABLE bare_transactions (LIKE ledger_transactions INCLUDING ALL);"
            "CREATE TABLE bare_postings (LIKE postings INCLUDING ALL);"
        )
    print(f"postings: {WRITERS} writers, {SECONDS:.0f} s per run, 4 postings per entry")
    for batch in (1, 20):
        entries, seconds = await _timed(pool, post_batch, batch)
        bare, bare_seconds = await _timed(pool, bare_batch, batch)
        rate, ceiling = entries / seconds, bare / bare_seconds
        print(
            f"  batch {batch:>2}: ledger {rate:,.0f} entries/s ({rate * 4:,.0f} postings/s),"
            f" bare INSERTs {ceiling:,.0f} entries/s; ratio {rate / ceiling:.0%};"
            f" vs Formance's ~1,000 writes/s: x{rate / 1000:.1f}"
        )
        if batch > 1:
            each, each_seconds = await _timed(pool, post_each, batch)
            print(
                f"  batch {batch:>2} posted one call per entry (the consumer path):"
                f" {each / each_seconds:,.0f} entries/s"
            )
    async with pool.acquire() as conn:
        result = await ledger.check(conn, TENANT)
        replays = await conn.fetchval("SELECT count(*) FROM ledger_conflicts")
    print(f"  ledger check after the runs: {'ok' if result.ok else result}, conflicts {replays}")


async def load_ledger(conn: Conn) -> None:
    """S suppliers, E postings (E/4 captures, every one PAID and SHIPPED), bulk-loaded."""
    captures = ENTRIES // 4
    await conn.execute("ALTER TABLE postings DISABLE TRIGGER postings_balance")
    await conn.execute(
        "ALTER TABLE ledger_transactions DISABLE TRIGGER ledger_transactions_postings"
    )
    await conn.execute(
        f"""
        INSERT INTO accounts (tenant_id, currency, type, supplier_id)
        SELECT 'ten_pay', 'EUR', t, '' FROM unnest(ARRAY['PSP_CLEARING', 'PLATFORM',
            'MARKETPLACE']) t
        UNION ALL
        SELECT 'ten_pay', 'EUR', 'SUPPLIER', 's' || i FROM generate_series(0, {SUPPLIERS - 1}) i;
        INSERT INTO captures (tenant_id, capture_id, payment_id, order_id, logistic_order_id,
            supplier_id, currency, amount, supplier_amount, captured_at)
        SELECT 'ten_pay', 'c' || i, 'p' || i, 'o' || i, 'lo' || i, 's' || (i % {SUPPLIERS}),
            'EUR', 10000, 8750, now() - interval '1 day'
          FROM generate_series(1, {captures}) i;
        INSERT INTO payments SELECT 'ten_pay', 'p' || i, 'PAID', now()
          FROM generate_series(1, {captures}) i;
        INSERT INTO logistic_orders SELECT 'ten_pay', 'o' || i, 'lo' || i, 's' || (i % {SUPPLIERS}),
            'SHIPPED', now() FROM generate_series(1, {captures}) i;
        INSERT INTO ledger_transactions (tenant_id, idempotency_key, kind, currency,
            content_hash, supplier_id, logistic_order_id, capture_id, posted_at)
        SELECT 'ten_pay', 'capture:c' || i, 'CAPTURE', 'EUR', 'h', 's' || (i % {SUPPLIERS}),
            'lo' || i, 'c' || i, now() - interval '1 day'
          FROM generate_series(1, {captures}) i;
        """
    )
    await conn.execute(
        """
        WITH a AS (SELECT type, supplier_id, id FROM accounts WHERE tenant_id = 'ten_pay')
        INSERT INTO postings (transaction_id, account_id, currency, amount, posted_at)
        SELECT t.id, a.id, 'EUR', v.amount, t.posted_at
          FROM ledger_transactions t
          CROSS JOIN LATERAL (VALUES ('PSP_CLEARING', '', -10000), ('PLATFORM', '', 250),
               ('MARKETPLACE', '', 1000), ('SUPPLIER', t.supplier_id, 8750))
               AS v(type, supplier_id, amount)
          JOIN a ON a.type = v.type AND a.supplier_id = v.supplier_id
         WHERE t.tenant_id = 'ten_pay'
        """
    )
    await conn.execute(
        "UPDATE accounts a SET balance = s.total FROM (SELECT account_id, sum(amount) AS total"
        " FROM postings GROUP BY account_id) s WHERE a.id = s.account_id"
        " AND a.tenant_id = 'ten_pay'"
    )
    await conn.execute("ALTER TABLE postings ENABLE TRIGGER postings_balance")
    await conn.execute(
        "ALTER TABLE ledger_transactions ENABLE TRIGGER ledger_transactions_postings"
    )
    await conn.execute("ANALYZE")


async def payouts_benchmark(pool: asyncpg.Pool) -> None:
    from payouts.payout_cases import compute_supplier_payouts

    async with pool.acquire() as conn:
        settings = tenant_upserted("ten_pay", "M").model_copy(
            update={"marketplace_banking_mode": "DISABLED"}
        )
        await conn.execute(
            "INSERT INTO replica_tenants (tenant_id, revision, merchant_account, data)"
            " VALUES ('ten_pay', 1, 'M', $1)",
            settings.model_dump(mode="json"),
        )
        await conn.execute(
            "INSERT INTO replica_suppliers (tenant_id, supplier_id, revision, data)"
            " SELECT 'ten_pay', 's' || i, 1, jsonb_build_object('kyc_status', 'enabled',"
            " 'iban', 'DE89370400440532013000', 'name', 'S' || i)"
            f" FROM generate_series(0, {SUPPLIERS - 1}) i"
        )
        started = time.monotonic()
        await load_ledger(conn)
        loaded = time.monotonic() - started
        postings = await conn.fetchval("SELECT count(*) FROM postings")
        print(f"payouts: {SUPPLIERS:,} suppliers, {postings:,} postings (loaded in {loaded:.1f} s)")
        started = time.monotonic()
        rows = await conn.fetch(
            "SELECT a.supplier_id, sum(p.amount) FROM postings p JOIN accounts a"
            " ON a.id = p.account_id WHERE a.tenant_id = 'ten_pay' AND a.type = 'SUPPLIER'"
            " GROUP BY a.supplier_id"
        )
        bare = time.monotonic() - started
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.monotonic()
        async with conn.transaction():
            made = await compute_supplier_payouts(conn, "ten_pay", period_end=datetime.now(UTC))
        wall = time.monotonic() - started
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        total = sum(r["amount"] for r in made)
        assert len(made) == len(rows) == SUPPLIERS, (len(made), len(rows))
        assert total == sum(r["sum"] for r in rows)
        print(
            f"  compute_supplier_payouts: {len(made):,} payouts in {wall:.1f} s,"
            f" peak RSS of this process {rss_after / 1024:.0f} MiB"
            f" (+{(rss_after - rss_before) / 1024:.0f} MiB during it);"
            f" bare SELECT sum() GROUP BY: {bare:.2f} s;"
            f" ratio x{wall / bare:.1f}"
        )


async def main() -> None:
    with test_servers() as servers:
        async with scratch_database(servers.pg_admin_dsn) as db:
            pool = await create_pool(db.dsn, db.schema, min_size=1, max_size=WRITERS + 1)
            try:
                async with pool.acquire() as conn:
                    await apply_migrations(
                        conn, db.schema, {"common": COMMON_MIGRATIONS, "payouts": MIGRATIONS}
                    )
                await postings_benchmark(pool)
                await payouts_benchmark(pool)
            finally:
                await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
