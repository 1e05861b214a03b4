"""Checkout's SQL for bank transfers (tables of migration 020). Every function takes the
connection of the caller's transaction."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import asyncpg

from checkout.bank_transfer_domain import (
    BankTransferFacts,
    OverdueCandidate,
    StoredBankTransfer,
    StoredIncomingTransfer,
    TransferStatus,
)
from checkout.domain import StoredPayment
from checkout.repo import payment_of
from common.db.types import Conn
from common.http.pagination import Filter, ListSpec, PageInfo, fetch_list

_COLUMNS = (
    "payment_id, tenant_id, reference, iban, amount, currency, received, excess, shipped_at,"
    " time_zone, due_date, overdue_for, paid_at, created_at"
)


def new_transfer_id() -> str:
    return f"itr_{secrets.token_hex(12)}"


async def insert(
    conn: Conn,
    *,
    payment_id: str,
    tenant_id: str,
    reference: str,
    iban: str,
    amount: int,
    currency: str,
) -> None:
    await conn.execute(
        "INSERT INTO bank_transfers (payment_id, tenant_id, reference, iban, amount, currency)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        payment_id,
        tenant_id,
        reference,
        iban,
        amount,
        currency,
    )


def _transfer_of(row: asyncpg.Record) -> StoredBankTransfer:
    """A bank_transfers row (selected with `_COLUMNS`) as the typed transfer."""
    return StoredBankTransfer(
        payment_id=row["payment_id"],
        tenant_id=row["tenant_id"],
        reference=row["reference"],
        iban=row["iban"],
        amount=row["amount"],
        currency=row["currency"].strip(),
        received=row["received"],
        excess=row["excess"],
        shipped_at=row["shipped_at"],
        time_zone=row["time_zone"],
        due_date=row["due_date"],
        overdue_for=row["overdue_for"],
        paid_at=row["paid_at"],
        created_at=row["created_at"],
    )


def _incoming_of(row: asyncpg.Record) -> StoredIncomingTransfer:
    """An incoming_transfers row as the typed transfer."""
    return StoredIncomingTransfer(
        id=row["id"],
        tenant_id=row["tenant_id"],
        psp_reference=row["psp_reference"],
        notification_id=row["notification_id"],
        reference=row["reference"],
        amount=row["amount"],
        currency=row["currency"].strip(),
        status=row["status"],
        reason=row["reason"],
        payment_id=row["payment_id"],
        created_at=row["created_at"],
        resolved_at=row["resolved_at"],
        resolved_note=row["resolved_note"],
    )


async def of_payments(conn: Conn, payment_ids: list[str]) -> dict[str, StoredBankTransfer]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM bank_transfers WHERE payment_id = ANY($1::text[])", payment_ids
    )
    return {r["payment_id"]: _transfer_of(r) for r in rows}


async def lock_by_reference(
    conn: Conn, tenant_id: str, reference: str
) -> tuple[StoredPayment, StoredBankTransfer] | None:
    """The payment row and its bank transfer, both locked (payment first, as every other
    writer of a payment locks it)."""
    payment_id = await conn.fetchval(
        "SELECT payment_id FROM bank_transfers WHERE tenant_id = $1 AND reference = $2",
        tenant_id,
        reference,
    )
    if payment_id is None:
        return None
    return await lock_by_payment(conn, tenant_id, payment_id)


async def lock_by_payment(
    conn: Conn, tenant_id: str, payment_id: str
) -> tuple[StoredPayment, StoredBankTransfer] | None:
    row = await conn.fetchrow(
        "SELECT * FROM payments WHERE tenant_id = $1 AND id = $2 FOR NO KEY UPDATE",
        tenant_id,
        payment_id,
    )
    if row is None:
        return None
    transfer = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM bank_transfers WHERE payment_id = $1 FOR UPDATE", payment_id
    )
    if transfer is None:
        return None
    return payment_of(row), _transfer_of(transfer)


def facts_of(payment: StoredPayment, transfer: StoredBankTransfer) -> BankTransferFacts:
    return BankTransferFacts(
        payment_id=payment.id,
        status=payment.status,
        amount=transfer.amount,
        currency=transfer.currency,
        received=transfer.received,
    )


async def record_incoming(
    conn: Conn,
    *,
    tenant_id: str,
    psp_reference: str,
    notification_id: str,
    reference: str,
    amount: int,
    currency: str,
    status: TransferStatus,
    reason: str | None,
    payment_id: str | None,
) -> str | None:
    """The transfer's id, or None when this PSP reference was recorded before (a transfer
    delivered twice counts once)."""
    found: str | None = await conn.fetchval(
        "INSERT INTO incoming_transfers (id, tenant_id, psp_reference, notification_id,"
        " reference, amount, currency, status, reason, payment_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (tenant_id, psp_reference) DO NOTHING RETURNING id",
        new_transfer_id(),
        tenant_id,
        psp_reference,
        notification_id,
        reference,
        amount,
        currency,
        status.value,
        reason,
        payment_id,
    )
    return found


async def incoming_for_update(
    conn: Conn, tenant_id: str, id_: str
) -> StoredIncomingTransfer | None:
    row = await conn.fetchrow(
        "SELECT * FROM incoming_transfers WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        tenant_id,
        id_,
    )
    return _incoming_of(row) if row is not None else None


async def incoming(conn: Conn, tenant_id: str, id_: str) -> StoredIncomingTransfer | None:
    row = await conn.fetchrow(
        "SELECT * FROM incoming_transfers WHERE tenant_id = $1 AND id = $2", tenant_id, id_
    )
    return _incoming_of(row) if row is not None else None


async def resolve_incoming(
    conn: Conn, id_: str, status: TransferStatus, payment_id: str | None, note: str | None
) -> None:
    await conn.execute(
        "UPDATE incoming_transfers SET status = $2, payment_id = $3, resolved_note = $4,"
        " resolved_at = now() WHERE id = $1",
        id_,
        status.value,
        payment_id,
        note,
    )


async def save_received(
    conn: Conn, payment_id: str, *, received: int, excess: int, paid_at: datetime | None
) -> None:
    await conn.execute(
        "UPDATE bank_transfers SET received = $2, excess = $3,"
        " paid_at = COALESCE(paid_at, $4) WHERE payment_id = $1",
        payment_id,
        received,
        excess,
        paid_at,
    )


async def save_due_date(
    conn: Conn, payment_id: str, *, shipped_at: datetime, time_zone: str, due: date
) -> None:
    await conn.execute(
        "UPDATE bank_transfers SET shipped_at = $2, time_zone = $3, due_date = $4"
        " WHERE payment_id = $1",
        payment_id,
        shipped_at,
        time_zone,
        due,
    )


async def payments_of_lines(conn: Conn, lines: Sequence[tuple[str, str, str]]) -> list[str | None]:
    """For each `(tenant id, order id, logistic order id)`, the latest bank-transfer payment
    with that line, or None (a card payment's line, or one checkout doesn't know): one
    statement for all, each looked up through the indexes as alone (LATERAL, LIMIT 1)."""
    # (SELECT $n) hides the arrays' lengths from the planner: the plan no longer depends on
    # them, so PostgreSQL reuses one generic plan instead of planning every call (~0.6 ms).
    rows = await conn.fetch(
        "SELECT k.n, f.id"
        " FROM unnest((SELECT $1::text[]), (SELECT $2::text[]), (SELECT $3::text[]))"
        " WITH ORDINALITY AS k(tenant_id, order_id, logistic_order_id, n)"
        " CROSS JOIN LATERAL (SELECT p.id FROM payments p"
        " JOIN bank_transfers b ON b.payment_id = p.id"
        " JOIN payment_lines l ON l.payment_id = p.id"
        " WHERE p.tenant_id = k.tenant_id AND p.order_id = k.order_id"
        " AND l.logistic_order_id = k.logistic_order_id"
        " ORDER BY p.created_at DESC LIMIT 1) f",
        [tenant for tenant, _, _ in lines],
        [order for _, order, _ in lines],
        [line for _, _, line in lines],
    )
    found: list[str | None] = [None] * len(lines)
    for row in rows:
        found[row["n"] - 1] = row["id"]
    return found


async def supplier_terms(conn: Conn, tenant_id: str, supplier_id: str) -> Mapping[str, Any] | None:
    data = await conn.fetchval(
        "SELECT data FROM replica_suppliers WHERE tenant_id = $1 AND supplier_id = $2",
        tenant_id,
        supplier_id,
    )
    return dict(data) if data is not None else None


async def claim_overdue(conn: Conn, limit: int) -> list[OverdueCandidate]:
    """Bank-transfer payments past their due date in their tenant's calendar, not flagged for
    that due date yet, locked for this transaction; rows another replica holds are skipped."""
    rows = await conn.fetch(
        "SELECT b.payment_id, b.tenant_id, b.amount, b.currency, b.received, b.due_date,"
        " (now() AT TIME ZONE b.time_zone)::date AS today, p.status, p.order_id,"
        " p.buyer_account"
        " FROM bank_transfers b JOIN payments p ON p.id = b.payment_id"
        " WHERE b.due_date IS NOT NULL AND b.paid_at IS NULL"
        " AND b.overdue_for IS DISTINCT FROM b.due_date"
        " AND b.due_date < (now() AT TIME ZONE b.time_zone)::date"
        " AND p.status IN ('WAITING_PAYMENT', 'PARTIALLY_PAID')"
        " ORDER BY b.due_date, b.payment_id LIMIT $1"
        " FOR UPDATE OF b, p SKIP LOCKED",
        limit,
    )
    return [
        OverdueCandidate(
            payment_id=r["payment_id"],
            tenant_id=r["tenant_id"],
            order_id=r["order_id"],
            buyer_account=r["buyer_account"],
            status=r["status"],
            amount=r["amount"],
            currency=r["currency"].strip(),
            received=r["received"],
            due_date=r["due_date"],
            today=r["today"],
        )
        for r in rows
    ]


async def mark_overdue(conn: Conn, payment_id: str, due: date) -> None:
    await conn.execute(
        "UPDATE bank_transfers SET overdue_for = $2 WHERE payment_id = $1", payment_id, due
    )


INCOMING_LIST = ListSpec(
    table="incoming_transfers",
    filters=(
        Filter(
            "status",
            "status = {}",
            "only transfers in this status (UNMATCHED: waiting for an operator)",
            "choice",
            tuple(TransferStatus),
        ),
        Filter("reference", "reference = {}", "only transfers to this creditor reference"),
    ),
)

OVERDUE_LIST = ListSpec(
    table=(
        "(SELECT p.*, b.reference, b.due_date, b.received, b.overdue_for FROM payments p"
        " JOIN bank_transfers b ON b.payment_id = p.id"
        " WHERE b.overdue_for IS NOT NULL AND b.overdue_for = b.due_date"
        " AND b.paid_at IS NULL AND p.status IN ('WAITING_PAYMENT', 'PARTIALLY_PAID')) AS o"
    ),
)


async def incoming_page(
    conn: Conn, tenant_id: str, query: Mapping[str, str]
) -> tuple[list[StoredIncomingTransfer], PageInfo]:
    rows, info = await fetch_list(conn, INCOMING_LIST, query, scope=[("tenant_id = {}", tenant_id)])
    return [_incoming_of(r) for r in rows], info


async def overdue_page(
    conn: Conn, tenant_id: str, query: Mapping[str, str]
) -> tuple[list[StoredPayment], PageInfo]:
    rows, info = await fetch_list(conn, OVERDUE_LIST, query, scope=[("tenant_id = {}", tenant_id)])
    return [payment_of(r) for r in rows], info


async def buyer_account_option(conn: Conn, tenant_id: str, buyer_account: str) -> str | None:
    found: str | None = await conn.fetchval(
        "SELECT payment_option FROM replica_buyer_accounts"
        " WHERE tenant_id = $1 AND buyer_account = $2",
        tenant_id,
        buyer_account,
    )
    return found


async def upsert_buyer_account(
    conn: Conn, tenant_id: str, buyer_account: str, payment_option: str, revision: int
) -> None:
    """Keep the newest revision (events may arrive in any order)."""
    await conn.execute(
        "INSERT INTO replica_buyer_accounts (tenant_id, buyer_account, payment_option, revision)"
        " VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (tenant_id, buyer_account) DO UPDATE"
        " SET payment_option = EXCLUDED.payment_option, revision = EXCLUDED.revision"
        " WHERE replica_buyer_accounts.revision < EXCLUDED.revision",
        tenant_id,
        buyer_account,
        payment_option,
        revision,
    )
