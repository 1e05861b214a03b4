"""Retention (common.retention with capture's rules) on capture's real schema: what is past its
age goes, except what a money invariant still needs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

import capture
from capture.retention import rules
from common.db.migrations import COMMON_MIGRATIONS, apply_migrations
from common.retention import INBOX_MIN_AGE, RetentionError, purge

NOW = datetime(2026, 12, 1, tzinfo=UTC)
MIGRATIONS = Path(capture.__file__).parent / "migrations"


async def insert_capture(conn: asyncpg.Connection, status: str, at: datetime) -> str:
    capture_id = f"cap_{uuid.uuid4().hex[:12]}"
    await conn.execute(
        "INSERT INTO captures (id, tenant_id, payment_id, order_id, logistic_order_id,"
        " supplier_id, amount, currency, trigger, status, payment_psp_reference,"
        " merchant_account, created_at, updated_at)"
        " VALUES ($1, 'ten_1', 'pay_1', 'ord_1', $1, 'sup_1', 1000, 'EUR', 'ON_SHIPMENT',"
        " $2, 'PSP1', 'M', $3, $3)",
        capture_id,
        status,
        at,
    )
    await conn.execute(
        "INSERT INTO capture_history (capture_id, occurred_at, status_to, source)"
        " VALUES ($1, $2, $3, 'test')",
        capture_id,
        at,
        status,
    )
    return capture_id


async def test_purge_keeps_what_money_needs(service_db):
    conn = await asyncpg.connect(service_db.dsn, server_settings={"search_path": service_db.schema})
    try:
        await apply_migrations(
            conn, service_db.schema, {"common": COMMON_MIGRATIONS, "capture": MIGRATIONS}
        )
        # given: old history of a SUCCEEDED and of a FAILED capture (an operator may retry it),
        # a recent SUCCEEDED one
        old, recent = NOW - timedelta(days=120), NOW - timedelta(days=10)
        final_old = await insert_capture(conn, "SUCCEEDED", old)
        failed_old = await insert_capture(conn, "FAILED", old)
        final_recent = await insert_capture(conn, "SUCCEEDED", recent)
        # inbox rows older and younger than the redelivery floor
        for age in (INBOX_MIN_AGE + timedelta(days=1), INBOX_MIN_AGE - timedelta(days=1)):
            await conn.execute(
                "INSERT INTO inbox (message_id, queue, event_type, processed_at)"
                " VALUES ($1, 'capture.oms', 'x', $2)",
                uuid.uuid4(),
                NOW - age,
            )
        # old outbox rows: one published, one never published
        for published in (NOW - timedelta(days=30), None):
            await conn.execute(
                "INSERT INTO outbox (id, exchange, routing_key, envelope, created_at,"
                " published_at) VALUES ($1, 'e', 'k', '{}', $2, $3)",
                uuid.uuid4(),
                NOW - timedelta(days=30),
                published,
            )

        # when, in batches of one so that the loop is exercised
        purged = await purge(conn, rules(timedelta(days=90)), now=NOW, batch_size=1)

        # then
        counts = {p.table: p.rows for p in purged}
        assert counts == {
            "inbox": 1,
            "outbox": 1,
            "capture_history": 1,
            "logistic_order_events": 0,
        }
        kept = {r["capture_id"] for r in await conn.fetch("SELECT capture_id FROM capture_history")}
        assert kept == {failed_old, final_recent}
        assert final_old not in kept
        assert await conn.fetchval("SELECT count(*) FROM captures") == 3  # never the captures
        assert await conn.fetchval("SELECT count(*) FROM inbox") == 1
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 1
    finally:
        await conn.close()


def test_an_inbox_younger_than_redelivery_is_refused():
    from common.retention import common_rules

    with pytest.raises(RetentionError, match="inbox"):
        common_rules(inbox=timedelta(days=1))
