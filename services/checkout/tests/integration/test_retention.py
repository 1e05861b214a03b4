"""Retention on checkout's real schema (common.retention with checkout's rules): a payment's
timeline goes past its age only once the payment is final; a PAID payment (refunds and
chargebacks may follow) keeps it."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

import checkout
from checkout.retention import rules
from common.db.migrations import COMMON_MIGRATIONS, apply_migrations
from common.retention import purge

NOW = datetime(2026, 12, 1, tzinfo=UTC)
MIGRATIONS = Path(checkout.__file__).parent / "migrations"


async def insert_payment(conn: asyncpg.Connection, status: str, at: datetime) -> str:
    payment_id = f"pay_{secrets.token_hex(8)}"
    await conn.execute(
        "INSERT INTO payments (id, tenant_id, order_id, buyer_account, payment_option, amount,"
        " currency, status, merchant_account, client_token_hash, client_token_expires_at)"
        " VALUES ($1, 'ten_1', 'ord_1', 'acc_1', 'CREDIT_CARD', 1000, 'EUR', $2, 'M', $1, $3)",
        payment_id,
        status,
        at,
    )
    await conn.execute(
        "INSERT INTO payment_timeline (payment_id, occurred_at, kind, status_to)"
        " VALUES ($1, $2, 'test', $3)",
        payment_id,
        at,
        status,
    )
    return payment_id


async def test_only_final_payments_lose_their_old_timeline(service_db):
    conn = await asyncpg.connect(service_db.dsn, server_settings={"search_path": service_db.schema})
    try:
        await apply_migrations(
            conn, service_db.schema, {"common": COMMON_MIGRATIONS, "checkout": MIGRATIONS}
        )
        # given old payments: refused and refunded (final), paid and authorised (not final)
        old = NOW - timedelta(days=200)
        gone = [await insert_payment(conn, s, old) for s in ("REFUSED", "REFUNDED")]
        kept = [await insert_payment(conn, s, old) for s in ("PAID", "AUTHORIZED")]
        kept.append(await insert_payment(conn, "REFUSED", NOW - timedelta(days=5)))

        # when
        purged = await purge(conn, rules(timedelta(days=90)), now=NOW)

        # then
        assert {p.table: p.rows for p in purged}["payment_timeline"] == len(gone)
        left = {
            r["payment_id"] for r in await conn.fetch("SELECT payment_id FROM payment_timeline")
        }
        assert left == set(kept)
        assert await conn.fetchval("SELECT count(*) FROM payments") == 5
    finally:
        await conn.close()
