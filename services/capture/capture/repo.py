"""Capture's SQL. Every function takes the connection of the caller's transaction.

Locks are always taken in the order payment → capture → intervention, whichever use case
takes them, so two use cases never wait for each other in a cycle.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from common.events import (
    LogisticOrderStatusChanged,
    PaymentCreated,
    SupplierUpserted,
    TenantUpserted,
)
from common.tenancy import tenant_settings

# -- replicas --------------------------------------------------------------------------------


async def tenancy(
    conn: asyncpg.Connection, tenant_id: str, supplier_ids: Sequence[str]
) -> tuple[TenantUpserted | None, dict[str, SupplierUpserted]]:
    """The tenant's replica and those of the suppliers named (the known ones), in one query."""
    rows = await conn.fetch(
        """
        SELECT t.data AS tenant, s.supplier_id, s.data AS supplier
          FROM replica_tenants t
          LEFT JOIN replica_suppliers s
            ON s.tenant_id = t.tenant_id AND s.supplier_id = ANY($2::text[])
         WHERE t.tenant_id = $1
        """,
        tenant_id,
        list(supplier_ids),
    )
    if not rows:
        return None, {}
    suppliers = {
        r["supplier_id"]: SupplierUpserted.model_validate(r["supplier"])
        for r in rows
        if r["supplier_id"]
    }
    return tenant_settings(rows[0]["tenant"]), suppliers


# -- payments --------------------------------------------------------------------------------


async def insert_created_payment(
    conn: asyncpg.Connection, tenant_id: str, event: PaymentCreated
) -> None:
    inserted = await conn.fetchval(
        """
        INSERT INTO payments (tenant_id, payment_id, order_id, payment_option, status, amount,
                              currency)
        VALUES ($1, $2, $3, $4, 'CREATED', $5, $6)
        ON CONFLICT (tenant_id, payment_id) DO NOTHING
        RETURNING true
        """,
        tenant_id,
        event.payment_id,
        event.order_id,
        event.payment_option,
        event.amount.value,
        event.amount.currency,
    )
    if inserted:
        await insert_lines(
            conn,
            tenant_id,
            event.payment_id,
            event.order_id,
            [(x.logistic_order_id, x.supplier_id, x.amount) for x in event.lines],
        )


async def insert_lines(
    conn: asyncpg.Connection,
    tenant_id: str,
    payment_id: str,
    order_id: str,
    lines: Sequence[tuple[str, str, int]],
) -> None:
    await conn.executemany(
        "INSERT INTO payment_lines (tenant_id, payment_id, order_id, logistic_order_id,"
        " supplier_id, amount) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        [(tenant_id, payment_id, order_id, *line) for line in lines],
    )


async def upsert_authorised_payment(
    conn: asyncpg.Connection, tenant_id: str, values: dict[str, Any]
) -> asyncpg.Record | None:
    """The payment as authorised (locked), or None when it was cancelled or refused already."""
    return await conn.fetchrow(
        """
        INSERT INTO payments (tenant_id, payment_id, order_id, payment_option, status,
                              capture_mode, amount, currency, psp_reference, merchant_account,
                              level3, authorised_at)
        VALUES ($1, $2, $3, $4, 'AUTHORISED', $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (tenant_id, payment_id) DO UPDATE
           SET status = 'AUTHORISED', capture_mode = EXCLUDED.capture_mode,
               psp_reference = EXCLUDED.psp_reference,
               merchant_account = EXCLUDED.merchant_account, level3 = EXCLUDED.level3,
               authorised_at = EXCLUDED.authorised_at, updated_at = now()
         WHERE payments.status IN ('CREATED', 'AUTHORISED')
        RETURNING *
        """,
        tenant_id,
        values["payment_id"],
        values["order_id"],
        values["payment_option"],
        values["capture_mode"],
        values["amount"],
        values["currency"],
        values["psp_reference"],
        values["merchant_account"],
        values["level3"],
        values["authorised_at"],
    )


async def close_payment(
    conn: asyncpg.Connection,
    tenant_id: str,
    payment_id: str,
    status: str,
    values: dict[str, Any],
) -> None:
    """A cancelled or refused payment is never captured (a known one, or a first sight)."""
    await conn.execute(
        """
        INSERT INTO payments (tenant_id, payment_id, order_id, payment_option, status, amount,
                              currency, psp_reference)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (tenant_id, payment_id) DO UPDATE
           SET status = EXCLUDED.status, updated_at = now()
        """,
        tenant_id,
        payment_id,
        values["order_id"],
        values["payment_option"],
        status,
        values["amount"],
        values["currency"],
        values["psp_reference"],
    )


async def lock_payment(
    conn: asyncpg.Connection, tenant_id: str, payment_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM payments WHERE tenant_id = $1 AND payment_id = $2 FOR UPDATE",
        tenant_id,
        payment_id,
    )


async def lines_of(
    conn: asyncpg.Connection, tenant_id: str, payment_id: str
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT * FROM payment_lines WHERE tenant_id = $1 AND payment_id = $2"
            " ORDER BY logistic_order_id",
            tenant_id,
            payment_id,
        )
    )


async def shipment_lines(
    conn: asyncpg.Connection, tenant_id: str, order_id: str, logistic_order_id: str
) -> list[asyncpg.Record]:
    """Every payment line of this logistic order, with its payment (locked) and the line's
    capture if it has one: all an OMS event needs, in one query."""
    return list(
        await conn.fetch(
            """
            SELECT p.*, l.logistic_order_id, l.supplier_id AS line_supplier_id,
                   l.amount AS line_amount, c.id AS capture_id
              FROM payment_lines l
              JOIN payments p USING (tenant_id, payment_id)
              LEFT JOIN captures c
                ON c.tenant_id = l.tenant_id AND c.payment_id = l.payment_id
               AND c.logistic_order_id = l.logistic_order_id
             WHERE l.tenant_id = $1 AND l.order_id = $2 AND l.logistic_order_id = $3
             ORDER BY p.payment_id
               FOR UPDATE OF p
            """,
            tenant_id,
            order_id,
            logistic_order_id,
        )
    )


# -- captures --------------------------------------------------------------------------------


async def insert_capture(
    conn: asyncpg.Connection, values: dict[str, Any], *, source: str, detail: dict[str, Any]
) -> asyncpg.Record | None:
    """The new capture (its first history entry written by the same statement), or None when
    this logistic order of this payment has one already."""
    columns = list(values)
    placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
    n = len(columns)
    return await conn.fetchrow(
        f"WITH c AS (INSERT INTO captures ({', '.join(columns)}) VALUES ({placeholders})"
        " ON CONFLICT (tenant_id, payment_id, logistic_order_id) DO NOTHING RETURNING *),"
        " h AS (INSERT INTO capture_history (capture_id, status_from, status_to, source, detail)"
        f" SELECT id, NULL, status, ${n + 1}, ${n + 2} FROM c)"
        " SELECT * FROM c",
        *values.values(),
        source,
        detail,
    )


async def captures_of_payment(
    conn: asyncpg.Connection, tenant_id: str, payment_id: str, *, for_update: bool = False
) -> dict[str, asyncpg.Record]:
    lock = " FOR UPDATE" if for_update else ""
    rows = await conn.fetch(
        f"SELECT * FROM captures WHERE tenant_id = $1 AND payment_id = $2 ORDER BY id{lock}",
        tenant_id,
        payment_id,
    )
    return {r["logistic_order_id"]: r for r in rows}


async def capture(
    conn: asyncpg.Connection, capture_id: str, *, tenant_id: str | None = None, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM captures WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2)"
        + (" FOR UPDATE" if lock else ""),
        capture_id,
        tenant_id,
    )


async def waiting_captures_for_psp_reference(
    conn: asyncpg.Connection, tenant_id: str, payment_psp_reference: str, amount: int
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT * FROM captures WHERE tenant_id = $1 AND payment_psp_reference = $2"
            " AND amount = $3 AND status IN ('PENDING', 'SENT') ORDER BY id FOR UPDATE",
            tenant_id,
            payment_psp_reference,
            amount,
        )
    )


_UPDATABLE = frozenset(
    {
        "status",
        "revision",
        "platform_rate",
        "marketplace_rate",
        "splits",
        "additional_data",
        "block_code",
        "block_message",
        "failure_code",
        "failure_reason",
        "outcome_known",
        "generation",
        "round_attempts",
        "next_attempt_at",
        "psp_reference",
        "succeeded_at",
    }
)


@dataclass(frozen=True)
class History:
    status_from: str
    source: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class FinishedAttempt:
    attempt: int
    now: datetime
    outcome: str
    code: str | None
    detail: str | None
    psp_reference: str | None
    lease_token: uuid.UUID


async def update_capture(
    conn: asyncpg.Connection,
    capture_id: str,
    values: dict[str, Any],
    *,
    history: History | None = None,
    attempt: FinishedAttempt | None = None,
) -> asyncpg.Record:
    """Update a capture and, in the same statement, add its history entry and finish the PSP
    attempt whose answer this is, releasing the lease only if that attempt still holds it (a
    late answer of an expired claim must not release the lease of the replica that took
    over)."""
    unknown = set(values) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    args: list[Any] = [capture_id]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    sets = [f"{name} = {arg(value)}" for name, value in values.items()]
    if attempt is not None:
        token = arg(attempt.lease_token)
        sets.append(f"lease_until = CASE WHEN lease_token = {token} THEN NULL ELSE lease_until END")
        sets.append(f"lease_token = CASE WHEN lease_token = {token} THEN NULL ELSE lease_token END")
    ctes = [
        f"u AS (UPDATE captures SET {', '.join([*sets, 'updated_at = now()'])}"
        " WHERE id = $1 RETURNING *)"
    ]
    if history is not None:
        ctes.append(
            "h AS (INSERT INTO capture_history (capture_id, status_from, status_to, source,"
            f" detail) SELECT id, {arg(history.status_from)}, status, {arg(history.source)},"
            f" {arg(history.detail)} FROM u)"
        )
    if attempt is not None:
        ctes.append(
            f"a AS (UPDATE capture_attempts SET finished_at = {arg(attempt.now)},"
            f" outcome = {arg(attempt.outcome)}, code = {arg(attempt.code)},"
            f" detail = {arg(attempt.detail)}, psp_reference = {arg(attempt.psp_reference)}"
            f" WHERE capture_id = $1 AND attempt = {arg(attempt.attempt)})"
        )
    row = await conn.fetchrow(f"WITH {', '.join(ctes)} SELECT * FROM u", *args)
    assert row is not None
    return row


async def history_of(conn: asyncpg.Connection, capture_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT occurred_at, status_from, status_to, source, detail FROM capture_history"
            " WHERE capture_id = $1 ORDER BY seq",
            capture_id,
        )
    )


async def attempts_of(conn: asyncpg.Connection, capture_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT * FROM capture_attempts WHERE capture_id = $1 ORDER BY attempt", capture_id
        )
    )


# -- the executor ----------------------------------------------------------------------------


async def claim_due(
    conn: asyncpg.Connection, *, now: datetime, lease_until: datetime, limit: int
) -> list[asyncpg.Record]:
    """Lease up to `limit` due captures and record the attempt each is about to make, in one
    statement (FOR UPDATE SKIP LOCKED: replicas never claim the same one)."""
    return list(
        await conn.fetch(
            """
            WITH due AS (
                SELECT id FROM captures
                 WHERE status = 'PENDING' AND next_attempt_at <= $1
                   AND (lease_until IS NULL OR lease_until <= $1)
                 ORDER BY next_attempt_at
                 LIMIT $3
                   FOR UPDATE SKIP LOCKED
            ), claimed AS (
                UPDATE captures c
                   SET lease_until = $2, lease_token = gen_random_uuid(),
                       attempts = c.attempts + 1, round_attempts = c.round_attempts + 1,
                       updated_at = now()
                  FROM due
                 WHERE c.id = due.id
                RETURNING c.*
            ), attempt AS (
                INSERT INTO capture_attempts (capture_id, attempt, generation, idempotency_key,
                                              started_at)
                SELECT id, attempts, generation, 'capture:' || id || ':' || generation, $1
                  FROM claimed
            )
            SELECT * FROM claimed
            """,
            now,
            lease_until,
            limit,
        )
    )


# -- interventions ---------------------------------------------------------------------------


async def open_intervention(
    conn: asyncpg.Connection,
    *,
    id_: str,
    tenant_id: str,
    capture_id: str,
    kind: str,
    code: str,
    reason: str,
) -> str:
    """The open intervention of the capture (this new one, or the one already open)."""
    created = await conn.fetchval(
        """
        INSERT INTO interventions (id, tenant_id, capture_id, kind, code, reason, status)
        VALUES ($1, $2, $3, $4, $5, $6, 'OPEN')
        ON CONFLICT (capture_id) WHERE status = 'OPEN' DO NOTHING
        RETURNING id
        """,
        id_,
        tenant_id,
        capture_id,
        kind,
        code,
        reason,
    )
    if created is not None:
        return str(created)
    existing = await conn.fetchval(
        "SELECT id FROM interventions WHERE capture_id = $1 AND status = 'OPEN'", capture_id
    )
    return str(existing)


async def close_interventions(conn: asyncpg.Connection, capture_id: str, status: str) -> None:
    await conn.execute(
        "UPDATE interventions SET status = $2, closed_at = now(), updated_at = now()"
        " WHERE capture_id = $1 AND status = 'OPEN'",
        capture_id,
        status,
    )


async def intervention(
    conn: asyncpg.Connection, tenant_id: str, intervention_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT i.*, c.payment_id, c.logistic_order_id FROM interventions i"
        " JOIN captures c ON c.id = i.capture_id"
        " WHERE i.id = $1 AND i.tenant_id = $2" + (" FOR UPDATE OF i" if lock else ""),
        intervention_id,
        tenant_id,
    )


# -- schedules -------------------------------------------------------------------------------


async def schedule(
    conn: asyncpg.Connection, tenant_id: str, payment_id: str, due_at: datetime
) -> bool:
    inserted = await conn.fetchval(
        "INSERT INTO scheduled_captures (tenant_id, payment_id, due_at) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING true",
        tenant_id,
        payment_id,
        due_at,
    )
    return bool(inserted)


async def claim_due_schedules(
    conn: asyncpg.Connection, now: datetime, limit: int
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT tenant_id, payment_id, due_at FROM scheduled_captures"
            " WHERE status = 'SCHEDULED' AND due_at <= $1 ORDER BY due_at LIMIT $2"
            " FOR UPDATE SKIP LOCKED",
            now,
            limit,
        )
    )


async def finish_schedule(
    conn: asyncpg.Connection, tenant_id: str, payment_id: str, status: str, outcome: str
) -> None:
    await conn.execute(
        "UPDATE scheduled_captures SET status = $3, outcome = $4, done_at = now()"
        " WHERE tenant_id = $1 AND payment_id = $2",
        tenant_id,
        payment_id,
        status,
        outcome,
    )


# -- OMS events ------------------------------------------------------------------------------


async def record_logistic_order_event(
    conn: asyncpg.Connection,
    message_id: str,
    event: LogisticOrderStatusChanged,
    *,
    outcome: str,
    reason: str | None,
    payment_id: str | None = None,
    capture_id: str | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO logistic_order_events (id, oms_event_id, tenant_id, order_id,
            logistic_order_id, supplier_id, status, occurred_at, outcome, reason, payment_id,
            capture_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        ON CONFLICT (id) DO NOTHING
        """,
        message_id,
        event.id,
        event.tenant_id,
        event.order_id,
        event.logistic_order_id,
        event.supplier_id,
        event.status,
        event.occurred_at,
        outcome,
        reason,
        payment_id,
        capture_id,
    )


async def shipments_waiting(
    conn: asyncpg.Connection, tenant_id: str, order_id: str
) -> list[asyncpg.Record]:
    """SHIPPED events of this order that found no authorised payment when they arrived."""
    return list(
        await conn.fetch(
            """
            SELECT id, logistic_order_id, supplier_id FROM logistic_order_events
             WHERE tenant_id = $1 AND order_id = $2 AND status = 'SHIPPED'
               AND (outcome = 'awaiting_authorisation'
                    OR (outcome = 'ignored' AND reason = 'logistic_order_unknown'))
             ORDER BY occurred_at
               FOR UPDATE
            """,
            tenant_id,
            order_id,
        )
    )


async def resolve_logistic_order_event(
    conn: asyncpg.Connection,
    event_id: str,
    *,
    outcome: str,
    reason: str | None,
    payment_id: str | None,
    capture_id: str | None,
) -> None:
    await conn.execute(
        "UPDATE logistic_order_events SET outcome = $2, reason = $3, payment_id = $4,"
        " capture_id = $5, updated_at = now() WHERE id = $1",
        event_id,
        outcome,
        reason,
        payment_id,
        capture_id,
    )
