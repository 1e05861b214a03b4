"""The ledger on real PostgreSQL: the database refuses an unbalanced transaction, keys are
idempotent (other content = a recorded conflict), balances follow the postings, a balance at
a past instant comes from the postings, holds resolve exactly once, and the check sees it all.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import asyncpg
import pytest

from payouts import ledger
from payouts.domain import Entry, Posting

T = "ten_ledger"


def capture(key: str, amount: int, platform: int, marketplace: int, supplier: str) -> Entry:
    return Entry(
        tenant_id=T,
        currency="EUR",
        key=key,
        kind="CAPTURE",
        postings=tuple(
            p
            for p in (
                Posting("PSP_CLEARING", -amount),
                Posting("PLATFORM", platform),
                Posting("MARKETPLACE", marketplace),
                Posting("SUPPLIER", amount - platform - marketplace, supplier),
            )
            if p.amount
        ),
    )


async def insert_by_hand(conn: asyncpg.Connection, account_id: int, amounts: list[int]) -> None:
    async with conn.transaction():
        tx = await conn.fetchval(
            "INSERT INTO ledger_transactions"
            " (tenant_id, idempotency_key, kind, currency, content_hash)"
            " VALUES ($1, 'by-hand', 'MANUAL', 'EUR', 'x') RETURNING id",
            T,
        )
        await conn.executemany(
            "INSERT INTO postings (transaction_id, account_id, currency, amount, posted_at)"
            " VALUES ($1, $2, 'EUR', $3, now())",
            [(tx, account_id, amount) for amount in amounts],
        )


async def test_database_refuses_an_unbalanced_transaction_inserted_directly(
    ledger_pool: asyncpg.Pool,
) -> None:
    # given an account
    async with ledger_pool.acquire() as conn, conn.transaction():
        acct = await ledger.account(conn, T, "EUR", "PLATFORM")
    # when postings that do not sum to zero are inserted by hand
    # then the commit is refused
    async with ledger_pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
            await insert_by_hand(conn, acct.id, [100, -99])
        # and a transaction with one posting only, or none, is refused too
        with pytest.raises(asyncpg.CheckViolationError, match="fewer than two"):
            await insert_by_hand(conn, acct.id, [])
        # and a posting cannot be changed afterwards
        async with conn.transaction():
            await ledger.post(conn, [capture("c0", 100, 1, 9, "sup_a")])
        with pytest.raises(asyncpg.RestrictViolationError):
            await conn.execute("UPDATE postings SET amount = amount + 1")
        assert await conn.fetchval("SELECT count(*) FROM ledger_transactions") == 1


async def test_same_key_replays_and_other_content_is_a_recorded_conflict(
    ledger_pool: asyncpg.Pool,
) -> None:
    async with ledger_pool.acquire() as conn, conn.transaction():
        first = await ledger.post(conn, [capture("capture:1", 10000, 250, 1000, "sup_a")])
        again = await ledger.post(conn, [capture("capture:1", 10000, 250, 1000, "sup_a")])
        other = await ledger.post(conn, [capture("capture:1", 10000, 250, 999, "sup_a")])
    assert [p.outcome for p in first + again + other] == ["posted", "replayed", "conflict"]
    async with ledger_pool.acquire() as conn:
        rows = {r["type"]: r["balance"] for r in await ledger.balances(conn, T)}
        assert rows == {
            "PSP_CLEARING": -10000,
            "PLATFORM": 250,
            "MARKETPLACE": 1000,
            "SUPPLIER": 8750,
        }
        result = await ledger.check(conn, T)
        assert result.ok
        assert result.conflicts == 1


async def test_balance_as_of_a_past_instant_comes_from_the_postings(
    ledger_pool: asyncpg.Pool,
) -> None:
    async with ledger_pool.acquire() as conn:
        async with conn.transaction():
            await ledger.post(conn, [capture("c1", 1000, 10, 100, "sup_a")])
        between = await conn.fetchval("SELECT clock_timestamp()")
        async with conn.transaction():
            await ledger.post(conn, [capture("c2", 2000, 20, 200, "sup_a")])
        past = {r["type"]: r["balance"] for r in await ledger.balances(conn, T, as_of=between)}
        now = {r["type"]: r["balance"] for r in await ledger.balances(conn, T)}
    assert past["SUPPLIER"] == 890
    assert past["PLATFORM"] == 10
    assert now["SUPPLIER"] == 890 + 1780
    assert now["PLATFORM"] == 30


async def test_a_hold_resolves_exactly_once_also_when_raced(ledger_pool: asyncpg.Pool) -> None:
    async with ledger_pool.acquire() as conn, conn.transaction():
        await ledger.post(conn, [capture("c1", 1000, 0, 0, "sup_a")])
        acct = await ledger.account(conn, T, "EUR", "SUPPLIER", "sup_a")
        assert await ledger.place_hold(conn, acct, 600, "PAYOUT", "po_1")
        assert not await ledger.place_hold(conn, acct, 600, "PAYOUT", "po_1")
    async with ledger_pool.acquire() as conn:
        acct = await ledger.account(conn, T, "EUR", "SUPPLIER", "sup_a")
    assert (acct.balance, acct.held, acct.available) == (1000, 600, 400)

    async def resolve(to: Literal["SETTLED", "RELEASED"]) -> int | None:
        async with ledger_pool.acquire() as conn, conn.transaction():
            resolved: int | None = await ledger.resolve_hold(conn, T, "PAYOUT", "po_1", to)
            return resolved

    results = await asyncio.gather(resolve("SETTLED"), resolve("RELEASED"), resolve("SETTLED"))
    assert sorted(r for r in results if r is not None) == [600]
    assert results.count(None) == 2
    async with ledger_pool.acquire() as conn:
        acct = await ledger.account(conn, T, "EUR", "SUPPLIER", "sup_a")
        assert acct.held == 0
        assert (await ledger.check(conn, T)).ok


async def test_concurrent_batches_on_the_hot_accounts_keep_every_balance_exact(
    ledger_pool: asyncpg.Pool,
) -> None:
    # given many batches of captures crediting the same PLATFORM and MARKETPLACE accounts,
    # posted concurrently (some suppliers in both orders, so a cycle would deadlock)
    async def batch(n: int) -> None:
        entries = [capture(f"b{n}:{i}", 1000, 25, 100, f"sup_{(n + i) % 3}") for i in range(20)]
        async with ledger_pool.acquire() as conn, conn.transaction():
            await ledger.post(conn, entries if n % 2 else list(reversed(entries)))

    await asyncio.gather(*(batch(n) for n in range(8)))
    async with ledger_pool.acquire() as conn:
        rows = {(r["type"], r["supplier_id"]): r["balance"] for r in await ledger.balances(conn, T)}
        assert rows[("PLATFORM", "")] == 8 * 20 * 25
        assert rows[("MARKETPLACE", "")] == 8 * 20 * 100
        assert rows[("PSP_CLEARING", "")] == -8 * 20 * 1000
        assert sum(v for (t, _), v in rows.items() if t == "SUPPLIER") == 8 * 20 * 875
        assert (await ledger.check(conn)).ok


async def test_a_transactions_balance_changes_apply_once_per_account_at_commit(
    ledger_pool: asyncpg.Pool,
) -> None:
    # given twenty captures posted one call each in one transaction (a consumer batch)
    async with ledger_pool.acquire() as conn:
        async with conn.transaction():
            for n in range(20):
                await ledger.post(conn, [capture(f"batch:{n}", 1000, 25, 100, "sup_a")])
            # then nothing touched the hot rows yet: the changes wait, staged
            staged = await conn.fetchval("SELECT count(*) FROM balance_deltas")
            untouched = await conn.fetchval(
                "SELECT count(*) FROM accounts WHERE tenant_id = $1 AND balance = 0", T
            )
            updates_before = await conn.fetchval(
                "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'accounts'"
            )
        # and at commit each account is updated once
        assert staged == 20 * 4
        assert untouched == 4
        assert updates_before == 0
        balances = {r["type"]: r["balance"] for r in await ledger.balances(conn, T)}
        assert balances == {
            "PSP_CLEARING": -20000,
            "PLATFORM": 500,
            "MARKETPLACE": 2000,
            "SUPPLIER": 17500,
        }
        assert await conn.fetchval("SELECT count(*) FROM balance_deltas") == 0
        # a use case that reads balances in the posting transaction sees them (flushed first)
        async with conn.transaction():
            await ledger.post(conn, [capture("late", 1000, 0, 0, "sup_a")])
            acct = await ledger.account(conn, T, "EUR", "SUPPLIER", "sup_a")
            assert acct.balance == 18500
        assert (await ledger.check(conn, T)).ok
