"""Refunds' and disputes' SQL. Every function takes the connection of the caller's
transaction and returns typed rows.

Locks are taken in capture's order: payment → capture → refund → intervention. Requesting a
refund and applying a dispute notification both lock the payment row first, so they are
serialised per payment and never wait for each other in a cycle.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from capture.refunds.domain import (
    CaptureBook,
    CaptureDebit,
    DisputeStage,
    DisputeState,
    RefundState,
    RefundStatus,
    SendState,
    Shares,
)
from common.db.types import Conn
from common.http.pagination import Filter, ListSpec, PageInfo, fetch_list


@dataclass(frozen=True)
class LockedPayment:
    tenant_id: str
    payment_id: str
    order_id: str
    status: str
    payment_option: str
    currency: str
    psp_reference: str | None
    merchant_account: str | None
    line_ids: frozenset[str]
    funding_policy: str | None


async def lock_payment(conn: Conn, tenant_id: str, payment_id: str) -> LockedPayment | None:
    row = await conn.fetchrow(
        """
        SELECT p.order_id, p.status, p.payment_option, p.currency, p.psp_reference,
               p.merchant_account,
               ARRAY(SELECT l.logistic_order_id FROM payment_lines l
                      WHERE l.tenant_id = p.tenant_id AND l.payment_id = p.payment_id)
                   AS line_ids,
               (SELECT t.data->>'funding_policy' FROM replica_tenants t
                 WHERE t.tenant_id = p.tenant_id) AS funding_policy
          FROM payments p
         WHERE p.tenant_id = $1 AND p.payment_id = $2
           FOR UPDATE OF p
        """,
        tenant_id,
        payment_id,
    )
    if row is None:
        return None
    return LockedPayment(
        tenant_id=tenant_id,
        payment_id=payment_id,
        order_id=row["order_id"],
        status=row["status"],
        payment_option=row["payment_option"],
        currency=row["currency"],
        psp_reference=row["psp_reference"],
        merchant_account=row["merchant_account"],
        line_ids=frozenset(row["line_ids"]),
        funding_policy=row["funding_policy"],
    )


async def payment_by_psp_reference(conn: Conn, tenant_id: str, psp_reference: str) -> str | None:
    value = await conn.fetchval(
        "SELECT payment_id FROM payments WHERE tenant_id = $1 AND psp_reference = $2",
        tenant_id,
        psp_reference,
    )
    return None if value is None else str(value)


def _rate(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


async def books(
    conn: Conn, tenant_id: str, payment_id: str, dispute: Dispute | None
) -> list[CaptureBook]:
    """The payment's succeeded captures, each with what its parties have given back so far:
    refunds that hold their amount (waiting or done) and the dispute's current debit."""
    rows = await conn.fetch(
        """
        SELECT c.id, c.logistic_order_id, c.supplier_id, c.amount, c.platform_rate,
               c.marketplace_rate, c.splits,
               coalesce(r.platform, 0) AS r_platform,
               coalesce(r.marketplace, 0) AS r_marketplace,
               coalesce(r.supplier, 0) AS r_supplier
          FROM captures c
          LEFT JOIN (SELECT capture_id, sum(platform_amount)::bigint AS platform,
                            sum(marketplace_amount)::bigint AS marketplace,
                            sum(supplier_amount)::bigint AS supplier
                       FROM refunds
                      WHERE tenant_id = $1 AND payment_id = $2 AND status <> 'FAILED'
                      GROUP BY capture_id) r ON r.capture_id = c.id
         WHERE c.tenant_id = $1 AND c.payment_id = $2 AND c.status = 'SUCCEEDED'
         ORDER BY c.logistic_order_id
        """,
        tenant_id,
        payment_id,
    )
    debited = {d.capture_id: d.lines for d in dispute.debits} if dispute and dispute.debited else {}
    out = []
    for r in rows:
        captured = Shares.from_lines([(s["party"], int(s["amount"])) for s in r["splits"]])
        returned = Shares(r["r_platform"], r["r_marketplace"], r["r_supplier"])
        out.append(
            CaptureBook(
                capture_id=r["id"],
                logistic_order_id=r["logistic_order_id"],
                supplier_id=r["supplier_id"],
                amount=r["amount"],
                platform_rate=_rate(r["platform_rate"]),
                marketplace_rate=_rate(r["marketplace_rate"]),
                captured=captured,
                returned=returned + debited.get(r["id"], Shares()),
            )
        )
    return out


# -- refunds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refund:
    id: str
    tenant_id: str
    payment_id: str
    order_id: str
    capture_id: str
    logistic_order_id: str
    supplier_id: str
    amount: int
    currency: str
    lines: Shares
    reason: str
    description: str | None
    status: RefundStatus
    send_state: SendState
    revision: int
    funds_check: bool
    supplier_share_paid_out: bool | None
    funding_transfer_id: str | None
    psp_reference: str | None
    attempts: int
    next_attempt_at: datetime | None
    lease_token: uuid.UUID | None
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime
    refunded_at: datetime | None

    @property
    def state(self) -> RefundState:
        return RefundState(self.status, self.send_state, self.attempts, self.psp_reference)

    @classmethod
    def of(cls, r: asyncpg.Record) -> Refund:
        return cls(
            id=r["id"],
            tenant_id=r["tenant_id"],
            payment_id=r["payment_id"],
            order_id=r["order_id"],
            capture_id=r["capture_id"],
            logistic_order_id=r["logistic_order_id"],
            supplier_id=r["supplier_id"],
            amount=r["amount"],
            currency=r["currency"],
            lines=Shares(r["platform_amount"], r["marketplace_amount"], r["supplier_amount"]),
            reason=r["reason"],
            description=r["description"],
            status=RefundStatus(r["status"]),
            send_state=SendState(r["send_state"]),
            revision=r["revision"],
            funds_check=r["funds_check"],
            supplier_share_paid_out=r["supplier_share_paid_out"],
            funding_transfer_id=r["funding_transfer_id"],
            psp_reference=r["psp_reference"],
            attempts=r["attempts"],
            next_attempt_at=r["next_attempt_at"],
            lease_token=r["lease_token"],
            failure_code=r["failure_code"],
            failure_message=r["failure_message"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
            refunded_at=r["refunded_at"],
        )


@dataclass(frozen=True)
class NewRefund:
    id: str
    capture_id: str
    logistic_order_id: str
    supplier_id: str
    amount: int
    lines: Shares
    state: RefundState
    funds_check: bool


async def insert_refunds(
    conn: Conn,
    payment: LockedPayment,
    refunds: Sequence[NewRefund],
    *,
    reason: str,
    description: str | None,
    now: datetime,
) -> list[Refund]:
    rows = await conn.fetch(
        """
        INSERT INTO refunds (id, tenant_id, payment_id, order_id, capture_id, logistic_order_id,
                             supplier_id, amount, currency, platform_amount, marketplace_amount,
                             supplier_amount, reason, description, status, send_state,
                             funds_check, next_attempt_at, created_at, updated_at)
        SELECT x.id, $1, $2, $3, x.capture_id, x.logistic_order_id, x.supplier_id, x.amount, $4,
               x.platform, x.marketplace, x.supplier, $5, $6, x.status, x.send_state,
               x.funds_check, CASE WHEN x.send_state = 'DUE' THEN $7::timestamptz END, $7, $7
          FROM unnest($8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[],
                      $13::bigint[], $14::bigint[], $15::bigint[], $16::text[], $17::text[],
                      $18::boolean[])
            AS x(id, capture_id, logistic_order_id, supplier_id, amount, platform, marketplace,
                 supplier, status, send_state, funds_check)
        RETURNING *
        """,
        payment.tenant_id,
        payment.payment_id,
        payment.order_id,
        payment.currency,
        reason,
        description,
        now,
        [r.id for r in refunds],
        [r.capture_id for r in refunds],
        [r.logistic_order_id for r in refunds],
        [r.supplier_id for r in refunds],
        [r.amount for r in refunds],
        [r.lines.platform for r in refunds],
        [r.lines.marketplace for r in refunds],
        [r.lines.supplier for r in refunds],
        [r.state.status.value for r in refunds],
        [r.state.send.value for r in refunds],
        [r.funds_check for r in refunds],
    )
    await conn.executemany(
        "INSERT INTO refund_history (refund_id, occurred_at, status_from, status_to, source,"
        " detail) VALUES ($1, $2, NULL, $3, 'request', $4)",
        [(r["id"], now, r["status"], {"reason": reason}) for r in rows],
    )
    out: list[Refund] = sorted((Refund.of(r) for r in rows), key=lambda r: r.logistic_order_id)
    return out


async def refund(
    conn: Conn, refund_id: str, *, tenant_id: str | None = None, lock: bool = False
) -> Refund | None:
    sql = "SELECT * FROM refunds WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2)"
    row = await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), refund_id, tenant_id)
    return None if row is None else Refund.of(row)


async def refunds_of_payment(conn: Conn, tenant_id: str, payment_id: str) -> list[Refund]:
    rows = await conn.fetch(
        "SELECT * FROM refunds WHERE tenant_id = $1 AND payment_id = $2 ORDER BY created_at, id",
        tenant_id,
        payment_id,
    )
    return [Refund.of(r) for r in rows]


@dataclass(frozen=True)
class HistoryEntry:
    occurred_at: datetime
    status_from: str | None
    status_to: str
    source: str
    detail: dict[str, Any]


async def history_of(conn: Conn, refund_ids: Sequence[str]) -> dict[str, list[HistoryEntry]]:
    rows = await conn.fetch(
        "SELECT * FROM refund_history WHERE refund_id = ANY($1::text[]) ORDER BY seq",
        list(refund_ids),
    )
    out: dict[str, list[HistoryEntry]] = {}
    for r in rows:
        out.setdefault(r["refund_id"], []).append(
            HistoryEntry(
                r["occurred_at"], r["status_from"], r["status_to"], r["source"], r["detail"]
            )
        )
    return out


async def update_refund(
    conn: Conn,
    current: Refund,
    values: dict[str, Any],
    *,
    source: str,
    detail: dict[str, Any],
    now: datetime,
) -> Refund:
    """Write `values` (column → value) and one history row, in one statement."""
    values = {**values, "updated_at": now}
    columns = list(values)
    sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(columns))
    n = len(columns) + 2
    row = await conn.fetchrow(
        f"""
        WITH changed AS (UPDATE refunds SET {sets} WHERE id = $1 RETURNING *),
             logged AS (INSERT INTO refund_history (refund_id, occurred_at, status_from,
                                                    status_to, source, detail)
                        SELECT id, ${n}, ${n + 1}, status, ${n + 2}, ${n + 3} FROM changed)
        SELECT * FROM changed
        """,
        current.id,
        *[values[c] for c in columns],
        now,
        current.status.value,
        source,
        detail,
    )
    assert row is not None
    return Refund.of(row)


async def claim_due(
    conn: Conn, *, now: datetime, lease_until: datetime, limit: int
) -> list[tuple[Refund, str, str]]:
    """Lease due refunds; with each, the payment's PSP reference and merchant account."""
    rows = await conn.fetch(
        """
        WITH due AS (
            SELECT id FROM refunds
             WHERE send_state = 'DUE' AND next_attempt_at <= $1
               AND (lease_until IS NULL OR lease_until < $1)
             ORDER BY next_attempt_at
             LIMIT $3
               FOR UPDATE SKIP LOCKED)
        UPDATE refunds r SET lease_until = $2, lease_token = gen_random_uuid()
          FROM due WHERE r.id = due.id
        RETURNING r.*,
                  (SELECT p.psp_reference FROM payments p
                    WHERE p.tenant_id = r.tenant_id AND p.payment_id = r.payment_id) AS psp_ref,
                  (SELECT p.merchant_account FROM payments p
                    WHERE p.tenant_id = r.tenant_id AND p.payment_id = r.payment_id) AS account
        """,
        now,
        lease_until,
        limit,
    )
    return [(Refund.of(r), r["psp_ref"], r["account"]) for r in rows]


async def totals(conn: Conn, tenant_id: str, payment_id: str) -> tuple[int, int]:
    """(captured, refunded) of the payment: succeeded captures, REFUNDED refunds."""
    row = await conn.fetchrow(
        """
        SELECT (SELECT coalesce(sum(amount), 0) FROM captures
                 WHERE tenant_id = $1 AND payment_id = $2 AND status = 'SUCCEEDED') AS captured,
               (SELECT coalesce(sum(amount), 0) FROM refunds
                 WHERE tenant_id = $1 AND payment_id = $2 AND status = 'REFUNDED') AS refunded
        """,
        tenant_id,
        payment_id,
    )
    assert row is not None
    return int(row["captured"]), int(row["refunded"])


# -- interventions ---------------------------------------------------------------------------

REFUND_INTERVENTION_PREFIX = "rint_"


async def open_capture_intervention(
    conn: Conn, *, id_: str, tenant_id: str, capture_id: str, code: str, reason: str
) -> str | None:
    """An `unconfirmed` capture in capture's own queue (at most one open per capture)."""
    value = await conn.fetchval(
        """
        INSERT INTO interventions (id, tenant_id, capture_id, kind, code, reason, status)
        VALUES ($1, $2, $3, 'unconfirmed', $4, $5, 'OPEN')
        ON CONFLICT (capture_id) WHERE status = 'OPEN' DO NOTHING
        RETURNING id
        """,
        id_,
        tenant_id,
        capture_id,
        code,
        reason,
    )
    return None if value is None else str(value)


async def open_refund_intervention(
    conn: Conn, r: Refund, *, id_: str, kind: str, code: str, reason: str
) -> str | None:
    """At most one open intervention per refund."""
    value = await conn.fetchval(
        """
        INSERT INTO refund_interventions (id, tenant_id, refund_id, capture_id, payment_id, kind,
                                          code, reason, status)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'OPEN')
        ON CONFLICT (refund_id) WHERE status = 'OPEN' DO NOTHING
        RETURNING id
        """,
        id_,
        r.tenant_id,
        r.id,
        r.capture_id,
        r.payment_id,
        kind,
        code,
        reason,
    )
    return None if value is None else str(value)


async def close_refund_interventions(conn: Conn, refund_id: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE refund_interventions SET status = 'RESOLVED', updated_at = $2, closed_at = $2,"
        " note = coalesce(note, 'closed by the refund''s outcome')"
        " WHERE refund_id = $1 AND status = 'OPEN'",
        refund_id,
        now,
    )


@dataclass(frozen=True)
class Intervention:
    id: str
    tenant_id: str
    capture_id: str
    refund_id: str | None
    payment_id: str | None
    kind: str
    code: str
    reason: str
    status: str
    note: str | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


_CAPTURE_INTERVENTION = (
    "SELECT i.id, i.tenant_id, i.capture_id, NULL::text AS refund_id, c.payment_id, i.kind,"
    " i.code, i.reason, i.status, i.note, i.created_at, i.updated_at, i.closed_at"
    " FROM interventions i JOIN captures c ON c.id = i.capture_id"
)
INTERVENTION_STATUSES = ("OPEN", "RETRIED", "RESOLVED")
_INTERVENTION_FIELDS = (
    "id",
    "tenant_id",
    "capture_id",
    "refund_id",
    "payment_id",
    "kind",
    "code",
    "reason",
    "status",
    "note",
    "created_at",
    "updated_at",
    "closed_at",
)
_REFUND_INTERVENTION = (
    "SELECT id, tenant_id, capture_id, refund_id, payment_id, kind, code, reason, status, note,"
    " created_at, updated_at, closed_at FROM refund_interventions"
)


async def intervention(
    conn: Conn, tenant_id: str, intervention_id: str, *, lock: bool = False
) -> Intervention | None:
    """A refund's intervention (`rint_...`) or a capture's."""
    if intervention_id.startswith(REFUND_INTERVENTION_PREFIX):
        sql = _REFUND_INTERVENTION + " WHERE id = $1 AND tenant_id = $2"
    else:
        sql = _CAPTURE_INTERVENTION + " WHERE i.id = $1 AND i.tenant_id = $2"
    if lock:
        sql += " FOR UPDATE" if "JOIN" not in sql else " FOR UPDATE OF i"
    row = await conn.fetchrow(sql, intervention_id, tenant_id)
    return None if row is None else Intervention(**dict(row))


async def close_intervention(
    conn: Conn, found: Intervention, status: str, note: str | None, now: datetime
) -> Intervention:
    table = "refund_interventions" if found.refund_id is not None else "interventions"
    await conn.execute(
        f"UPDATE {table} SET status = $2, note = coalesce($3, note), updated_at = $4,"
        " closed_at = $4 WHERE id = $1",
        found.id,
        status,
        note,
        now,
    )
    closed = await intervention(conn, found.tenant_id, found.id)
    assert closed is not None
    return closed


REFUND_INTERVENTIONS = ListSpec(
    table="refund_interventions",
    filters=(
        Filter("payment_id", "payment_id = {}", "only this payment's interventions"),
        Filter(
            "status", "status = {}", "the intervention's status", "choice", INTERVENTION_STATUSES
        ),
    ),
)


async def refund_interventions(
    conn: Conn, tenant_id: str, query: Mapping[str, str]
) -> tuple[list[Intervention], PageInfo]:
    """A page of the tenant's refund interventions, newest first, filtered as the query asks."""
    rows, info = await fetch_list(
        conn, REFUND_INTERVENTIONS, query, scope=[("tenant_id = {}", tenant_id)]
    )
    return [Intervention(**{k: r[k] for k in _INTERVENTION_FIELDS}) for r in rows], info


async def stale_refunds(conn: Conn, *, older_than: datetime, limit: int) -> list[Refund]:
    """Refunds still holding their amount (awaiting funds, or taken by the PSP and not
    confirmed) last changed before `older_than`, with no open intervention. A refund still
    being sent (DUE) is the sender's: it retries, then opens `refund_unknown` itself."""
    rows = await conn.fetch(
        """
        SELECT r.* FROM refunds r
         WHERE r.status IN ('AWAITING_FUNDS', 'WAITING_REFUND')
           AND r.send_state IN ('NOT_DUE', 'RECEIVED') AND r.updated_at < $1
           AND NOT EXISTS (SELECT 1 FROM refund_interventions i
                            WHERE i.refund_id = r.id AND i.status = 'OPEN')
         ORDER BY r.updated_at
         LIMIT $2
           FOR UPDATE OF r SKIP LOCKED
        """,
        older_than,
        limit,
    )
    return [Refund.of(r) for r in rows]


async def close_settled_capture_interventions(conn: Conn, now: datetime) -> int:
    """`unconfirmed` capture interventions whose capture is no longer SENT (the webhook came
    late): resolved, with a note saying so."""
    result = await conn.execute(
        """
        UPDATE interventions i
           SET status = 'RESOLVED', updated_at = $1, closed_at = $1,
               note = coalesce(i.note, 'the PSP confirmed it late: the capture is '
                                       || c.status)
          FROM captures c
         WHERE c.id = i.capture_id AND i.kind = 'unconfirmed' AND i.status = 'OPEN'
           AND c.status <> 'SENT'
        """,
        now,
    )
    return int(result.split()[-1])


async def stale_captures(conn: Conn, *, older_than: datetime, limit: int) -> list[tuple[str, str]]:
    """Captures the PSP took (SENT) and never confirmed since `older_than`, with no open
    intervention: (capture id, tenant id)."""
    rows = await conn.fetch(
        """
        SELECT c.id, c.tenant_id FROM captures c
         WHERE c.status = 'SENT' AND c.updated_at < $1
           AND NOT EXISTS (SELECT 1 FROM interventions i
                            WHERE i.capture_id = c.id AND i.status = 'OPEN')
         ORDER BY c.updated_at
         LIMIT $2
           FOR UPDATE OF c SKIP LOCKED
        """,
        older_than,
        limit,
    )
    return [(r["id"], r["tenant_id"]) for r in rows]


# -- disputes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dispute:
    id: str
    stage: DisputeStage
    debited: bool
    debits: tuple[CaptureDebit, ...]
    revision: int

    @property
    def state(self) -> DisputeState:
        return DisputeState(self.stage, self.debited)


def _debits(raw: Any) -> tuple[CaptureDebit, ...]:
    items = json.loads(raw) if isinstance(raw, str) else raw
    return tuple(
        CaptureDebit(d["capture_id"], Shares(d["platform"], d["marketplace"], d["supplier"]))
        for d in items
    )


async def dispute(
    conn: Conn, tenant_id: str, payment_id: str, *, lock: bool = False
) -> Dispute | None:
    row = await conn.fetchrow(
        "SELECT id, stage, debited, debits, revision FROM disputes"
        " WHERE tenant_id = $1 AND payment_id = $2" + (" FOR UPDATE" if lock else ""),
        tenant_id,
        payment_id,
    )
    if row is None:
        return None
    return Dispute(
        row["id"],
        DisputeStage(row["stage"]),
        row["debited"],
        _debits(row["debits"]),
        row["revision"],
    )


async def save_dispute(
    conn: Conn,
    *,
    id_: str,
    tenant_id: str,
    payment_id: str,
    psp_reference: str,
    stage: DisputeStage,
    debited: bool,
    debits: Sequence[CaptureDebit],
    reason: str | None,
    now: datetime,
) -> int:
    """Insert or move the dispute; returns its revision."""
    value = await conn.fetchval(
        """
        INSERT INTO disputes (id, tenant_id, payment_id, psp_reference, stage, debited, debits,
                              reason, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
        ON CONFLICT (tenant_id, payment_id) DO UPDATE
           SET stage = EXCLUDED.stage, debited = EXCLUDED.debited, debits = EXCLUDED.debits,
               reason = coalesce(EXCLUDED.reason, disputes.reason),
               revision = disputes.revision + 1, updated_at = EXCLUDED.updated_at
        RETURNING revision
        """,
        id_,
        tenant_id,
        payment_id,
        psp_reference,
        stage.value,
        debited,
        [
            {
                "capture_id": d.capture_id,
                "platform": d.lines.platform,
                "marketplace": d.lines.marketplace,
                "supplier": d.lines.supplier,
            }
            for d in debits
        ],
        reason,
        now,
    )
    return int(value)


async def record_dispute_notification(
    conn: Conn,
    dispute_id: str,
    *,
    notification_id: str,
    event_code: str,
    amount: int | None,
    currency: str | None,
    applied: bool,
    detail: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO dispute_notifications (dispute_id, notification_id, event_code, amount,"
        " currency, applied, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        dispute_id,
        notification_id,
        event_code,
        amount,
        currency,
        applied,
        detail,
    )


async def dispute_history(conn: Conn, dispute_id: str) -> list[asyncpg.Record]:
    result: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM dispute_notifications WHERE dispute_id = $1 ORDER BY seq", dispute_id
    )
    return result
