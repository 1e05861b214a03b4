"""Exports' SQL: the read models, the event journal, the export jobs and the queries the files
are streamed from."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import asyncpg

from common.db.types import Conn
from exports.domain import (
    COLUMNS,
    COMMISSION_COLUMNS,
    ExportType,
    Filters,
    FundingTransferFilters,
    FundingTransferRow,
    PayoutRow,
    Projection,
    SupplierPayoutFilters,
    TransactionFilters,
    TransactionRow,
)

# -- the journal and the read models -------------------------------------------------------


async def log_event(
    conn: Conn,
    event_id: Any,
    event_type: str,
    tenant_id: str,
    envelope: dict[str, Any],
) -> bool:
    """Record a consumed event in the journal; False if it was there already."""
    inserted = await conn.fetchval(
        "INSERT INTO event_log (event_id, event_type, tenant_id, envelope)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING RETURNING true",
        event_id,
        event_type,
        tenant_id,
        envelope,
    )
    return bool(inserted)


_TRANSACTION_FIELDS = [f.name for f in dataclasses.fields(TransactionRow)]
_TRANSACTION_TYPES = [
    "text", "text", "int", "timestamptz", "text", "text", "text", "text", "text", "text",
    "text", "text", "text", "text", "bigint", "text", "bigint", "numeric", "bigint", "numeric",
    "bigint", "text",
]  # fmt: skip
_UNNEST = ", ".join(f"${n + 1}::{t}[]" for n, t in enumerate(_TRANSACTION_TYPES))
_UPSERT_TRANSACTIONS = (
    f"INSERT INTO transactions ({', '.join(_TRANSACTION_FIELDS)})"
    f" SELECT * FROM unnest({_UNNEST})"
    " ON CONFLICT (tenant_id, row_key) DO UPDATE SET "
    + ", ".join(
        f"{name} = EXCLUDED.{name}"
        for name in _TRANSACTION_FIELDS
        if name not in ("tenant_id", "row_key")
    )
    + " WHERE transactions.revision < EXCLUDED.revision"
)


_CAPTURE_RATES = """
    UPDATE transactions t
       SET platform_rate = c.platform_rate, marketplace_rate = c.marketplace_rate
      FROM transactions c
     WHERE t.tenant_id = $1 AND t.capture_id = ANY($2::text[])
       AND t.transaction_type <> 'CAPTURE'
       AND c.tenant_id = $1 AND c.row_key = 'CAPTURE:' || t.capture_id
       AND (t.platform_rate, t.marketplace_rate)
           IS DISTINCT FROM (c.platform_rate, c.marketplace_rate)
"""
"""Refunds and chargebacks show the rates frozen at their capture, whichever came first."""


def _newest(table: str, columns: Sequence[str]) -> str:
    """SET clauses that take the incoming full state only when its revision is newer, and keep
    the earliest time seen as `created_at` whatever the order of arrival."""
    sets = [
        f"{c} = CASE WHEN {table}.revision < EXCLUDED.revision THEN EXCLUDED.{c}"
        f" ELSE {table}.{c} END"
        for c in columns
    ]
    sets.append(f"created_at = LEAST({table}.created_at, EXCLUDED.created_at)")
    return ", ".join(sets)


_PAYOUT_STATE = [
    "kind", "supplier_id", "status", "amount", "currency", "period_start", "period_end",
    "logistic_order_ids", "provider_reference", "code", "message", "updated_at", "revision",
]  # fmt: skip
_UPSERT_PAYOUT = (
    "INSERT INTO payouts (tenant_id, payout_id, revision, kind, supplier_id, status, amount,"
    " currency, period_start, period_end, logistic_order_ids, provider_reference, code,"
    " message, created_at, updated_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)"
    " ON CONFLICT (tenant_id, payout_id) DO UPDATE SET " + _newest("payouts", _PAYOUT_STATE)
)
_FUNDING_STATE = [
    "status", "amount", "currency", "source_account_type", "target_account_type",
    "supplier_id", "linked_type", "linked_id", "reason", "updated_at", "revision",
]  # fmt: skip
_UPSERT_FUNDING = (
    "INSERT INTO funding_transfers (tenant_id, funding_transfer_id, revision, status, amount,"
    " currency, source_account_type, target_account_type, supplier_id, linked_type,"
    " linked_id, reason, created_at, updated_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)"
    " ON CONFLICT (tenant_id, funding_transfer_id) DO UPDATE SET "
    + _newest("funding_transfers", _FUNDING_STATE)
)


async def apply_projection(conn: Conn, projection: Projection) -> None:
    if isinstance(projection, PayoutRow):
        p = projection
        await conn.execute(
            _UPSERT_PAYOUT,
            p.tenant_id, p.payout_id, p.revision, p.kind, p.supplier_id, p.status, p.amount,
            p.currency, p.period_start, p.period_end, p.logistic_order_ids,
            p.provider_reference, p.code, p.message, p.occurred_at,
        )  # fmt: skip
    elif isinstance(projection, FundingTransferRow):
        f = projection
        await conn.execute(
            _UPSERT_FUNDING,
            f.tenant_id, f.funding_transfer_id, f.revision, f.status, f.amount, f.currency,
            f.source_account_type, f.target_account_type, f.supplier_id, f.linked_type,
            f.linked_id, f.reason, f.occurred_at,
        )  # fmt: skip
    elif projection:
        columns = [[getattr(row, name) for row in projection] for name in _TRANSACTION_FIELDS]
        await conn.execute(_UPSERT_TRANSACTIONS, *columns)
        captures = sorted({row.capture_id for row in projection if row.capture_id is not None})
        if captures:
            await conn.execute(_CAPTURE_RATES, projection[0].tenant_id, captures)


async def truncate_read_models(conn: Conn) -> None:
    await conn.execute("TRUNCATE transactions, payouts, funding_transfers")


async def journal_batch(conn: Conn, after_seq: int, limit: int) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT seq, event_type, tenant_id, envelope FROM event_log"
            " WHERE seq > $1 ORDER BY seq LIMIT $2",
            after_seq,
            limit,
        )
    )


# -- export jobs ---------------------------------------------------------------------------

EXPORT_VIEW = (
    "(SELECT *, status = 'READY' AND expires_at <= now() AS expired FROM exports) AS exports"
)


async def insert_export(
    conn: Conn,
    *,
    export_id: str,
    tenant_id: str,
    export_type: str,
    filters: dict[str, Any],
    supplier_scope: str | None,
    requested_by: str | None,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO exports (id, tenant_id, export_type, filters, supplier_scope, requested_by)"
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " RETURNING *, false AS expired",
        export_id,
        tenant_id,
        export_type,
        filters,
        supplier_scope,
        requested_by,
    )
    assert row is not None
    return row


async def export(conn: Conn, export_id: str, tenant_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {EXPORT_VIEW} WHERE id = $1 AND tenant_id = $2", export_id, tenant_id
    )


async def claim(conn: Conn, owner: str, lease_s: float, limit: int) -> list[asyncpg.Record]:
    """Take up to `limit` jobs: PENDING ones due, and RUNNING ones whose worker's lease ran
    out (the worker died). Each claim is a new attempt."""
    return list(
        await conn.fetch(
            """
            WITH next AS (
                SELECT id FROM exports
                 WHERE (status = 'PENDING'
                        AND (lease_expires_at IS NULL OR lease_expires_at <= now()))
                    OR (status = 'RUNNING' AND lease_expires_at <= now())
                 ORDER BY created_at, id
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED)
            UPDATE exports e
               SET status = 'RUNNING', attempt = e.attempt + 1, lease_owner = $1,
                   lease_expires_at = now() + make_interval(secs => $2),
                   started_at = coalesce(e.started_at, now()), rows_written = 0,
                   updated_at = now()
              FROM next WHERE e.id = next.id
            RETURNING e.*
            """,
            owner,
            lease_s,
            limit,
        )
    )


async def heartbeat(
    conn: Conn,
    export_id: str,
    attempt: int,
    lease_s: float,
    rows_written: int,
    rows_total: int | None,
) -> bool:
    """Extend the lease and record progress; False if the attempt lost its job."""
    held = await conn.fetchval(
        "UPDATE exports SET lease_expires_at = now() + make_interval(secs => $3),"
        " rows_written = $4, rows_total = coalesce($5, rows_total), updated_at = now()"
        " WHERE id = $1 AND attempt = $2 AND status = 'RUNNING' RETURNING true",
        export_id,
        attempt,
        lease_s,
        rows_written,
        rows_total,
    )
    return bool(held)


async def complete(
    conn: Conn,
    export_id: str,
    attempt: int,
    *,
    rows: int,
    size_bytes: int,
    storage_key: str,
    retention_s: float,
) -> asyncpg.Record | None:
    """The one place a job becomes READY: only the attempt that still holds it."""
    return await conn.fetchrow(
        "UPDATE exports SET status = 'READY', rows_written = $3, rows_total = $3,"
        " size_bytes = $4, storage_key = $5, completed_at = now(),"
        " expires_at = now() + make_interval(secs => $6), lease_owner = NULL,"
        " lease_expires_at = NULL, updated_at = now()"
        " WHERE id = $1 AND attempt = $2 AND status = 'RUNNING' RETURNING *",
        export_id,
        attempt,
        rows,
        size_bytes,
        storage_key,
        retention_s,
    )


async def release(
    conn: Conn,
    export_id: str,
    attempt: int,
    *,
    retry_in_s: float | None,
    error_code: str,
    error_message: str,
) -> None:
    """An attempt that failed: the job waits `retry_in_s` for the next one, or FAILS."""
    await conn.execute(
        "UPDATE exports SET status = CASE WHEN $3::float8 IS NULL THEN 'FAILED' ELSE 'PENDING'"
        " END, lease_owner = NULL,"
        " lease_expires_at = CASE WHEN $3::float8 IS NULL THEN NULL"
        " ELSE now() + make_interval(secs => $3) END,"
        " error_code = $4, error_message = $5,"
        " completed_at = CASE WHEN $3::float8 IS NULL THEN now() END, updated_at = now()"
        " WHERE id = $1 AND attempt = $2 AND status = 'RUNNING'",
        export_id,
        attempt,
        retry_in_s,
        error_code,
        error_message[:500],
    )


async def hand_back(conn: Conn, export_id: str, attempt: int) -> None:
    """A replica shutting down ends its lease now, so another takes the job over at once."""
    await conn.execute(
        "UPDATE exports SET lease_expires_at = now(), updated_at = now()"
        " WHERE id = $1 AND attempt = $2 AND status = 'RUNNING'",
        export_id,
        attempt,
    )


async def fail_exhausted(conn: Conn, export_id: str, attempt: int) -> None:
    await conn.execute(
        "UPDATE exports SET status = 'FAILED', lease_owner = NULL, lease_expires_at = NULL,"
        " error_code = 'attempts_exhausted',"
        " error_message = 'the export was attempted too many times without completing',"
        " completed_at = now(), updated_at = now()"
        " WHERE id = $1 AND attempt = $2 AND status = 'RUNNING'",
        export_id,
        attempt,
    )


async def expire_due(conn: Conn, limit: int = 100) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "UPDATE exports SET status = 'EXPIRED', updated_at = now() WHERE id IN ("
            " SELECT id FROM exports WHERE status = 'READY' AND expires_at <= now()"
            " ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
            " RETURNING id, tenant_id, storage_key",
            limit,
        )
    )


# -- what a file is streamed from ----------------------------------------------------------


@dataclasses.dataclass
class _Where:
    clauses: list[str]
    args: list[Any]

    def add(self, clause: str, value: Any) -> None:
        self.args.append(value)
        self.clauses.append(clause.format(f"${len(self.args)}"))


def _common(where: _Where, alias: str, time_column: str, filters: Filters) -> None:
    if filters.created_from is not None:
        where.add(f"{alias}.{time_column} >= {{}}", filters.created_from)
    if filters.created_to is not None:
        where.add(f"{alias}.{time_column} <= {{}}", filters.created_to)
    if filters.supplier_ids is not None:
        where.add(f"{alias}.supplier_id = ANY({{}}::text[])", filters.supplier_ids)
    if filters.amount_min is not None:
        where.add(f"{alias}.amount >= {{}}", filters.amount_min)
    if filters.amount_max is not None:
        where.add(f"{alias}.amount <= {{}}", filters.amount_max)
    if filters.currency is not None:
        where.add(f"{alias}.currency = {{}}", filters.currency)


def _any(where: _Where, column: str, values: Sequence[str] | None) -> None:
    if values is not None:
        where.add(f"{column} = ANY({{}}::text[])", list(values))


def _text(expression: str) -> str:
    return f"csv_safe({expression})"


@dataclasses.dataclass(frozen=True)
class ExportQuery:
    select: str
    count: str
    args: list[Any]


def export_query(
    export_type: ExportType,
    filters: Filters,
    *,
    tenant_id: str,
    supplier_scope: str | None,
) -> ExportQuery:
    """The SELECT a file is the COPY of (cells already formatted and neutralised, in the
    documented column order) and its arguments. A supplier scope is a condition of its own,
    whatever the filters say."""
    where = _Where([], [])
    if isinstance(filters, TransactionFilters):
        where.add("t.tenant_id = {}", tenant_id)
        if supplier_scope is not None:
            where.add("t.supplier_id = {}", supplier_scope)
        _common(where, "t", "occurred_at", filters)
        _any(where, "t.transaction_type", filters.types)
        _any(where, "t.status", filters.statuses)
        _any(where, "t.logistic_order_id", filters.logistic_order_ids)
        if filters.payment_id is not None:
            where.add("t.payment_id = {}", filters.payment_id)
        cells = {
            "occurred_at": "csv_time(t.occurred_at)",
            "transaction_type": "t.transaction_type",
            "direction": "t.direction",
            "status": "t.status",
            "amount": "t.amount",
            "currency": "t.currency",
            "payment_id": _text("t.payment_id"),
            "order_id": _text("t.order_id"),
            "logistic_order_id": _text("t.logistic_order_id"),
            "supplier_id": _text("t.supplier_id"),
            "reference_id": _text("t.reference_id"),
            "capture_id": _text("t.capture_id"),
            "psp_reference": _text("t.psp_reference"),
            "platform_amount": "t.platform_amount",
            "platform_rate": "t.platform_rate",
            "marketplace_amount": "t.marketplace_amount",
            "marketplace_rate": "t.marketplace_rate",
            "supplier_amount": "t.supplier_amount",
            "reason": _text("t.reason"),
        }
        if supplier_scope is not None:
            cells = {k: ("NULL" if k in COMMISSION_COLUMNS else v) for k, v in cells.items()}
        source = "transactions t"
        order = "t.occurred_at, t.row_key"
    elif isinstance(filters, SupplierPayoutFilters):
        where.add("t.tenant_id = {}", tenant_id)
        where.clauses.append("t.kind = 'SUPPLIER'")
        if supplier_scope is not None:  # never reached through the API: operators only
            where.add("t.supplier_id = {}", supplier_scope)
        _common(where, "t", "created_at", filters)
        _any(where, "t.status", filters.statuses)
        cells = {
            "payout_id": _text("t.payout_id"),
            "created_at": "csv_time(t.created_at)",
            "updated_at": "csv_time(t.updated_at)",
            "supplier_id": _text("t.supplier_id"),
            "status": "t.status",
            "amount": "t.amount",
            "currency": "t.currency",
            "period_start": "csv_time(t.period_start)",
            "period_end": "csv_time(t.period_end)",
            "logistic_order_count": "cardinality(t.logistic_order_ids)",
            "logistic_order_ids": _text("array_to_string(t.logistic_order_ids, ',')"),
            "provider_reference": _text("t.provider_reference"),
            "failure_code": _text("t.code"),
            "failure_message": _text("t.message"),
        }
        source = "payouts t"
        order = "t.created_at, t.payout_id"
    elif isinstance(filters, FundingTransferFilters):
        where.add("t.tenant_id = {}", tenant_id)
        if supplier_scope is not None:
            where.add("t.supplier_id = {}", supplier_scope)
        _common(where, "t", "created_at", filters)
        _any(where, "t.status", filters.statuses)
        _any(where, "t.source_account_type", filters.source_account_types)
        _any(where, "t.target_account_type", filters.target_account_types)
        cells = {
            "funding_transfer_id": _text("t.funding_transfer_id"),
            "created_at": "csv_time(t.created_at)",
            "updated_at": "csv_time(t.updated_at)",
            "status": "t.status",
            "amount": "t.amount",
            "currency": "t.currency",
            "source_account_type": "t.source_account_type",
            "target_account_type": "t.target_account_type",
            "supplier_id": _text("t.supplier_id"),
            "linked_type": "t.linked_type",
            "linked_id": _text("t.linked_id"),
            "reason": _text("t.reason"),
        }
        source = "funding_transfers t"
        order = "t.created_at, t.funding_transfer_id"
    else:
        raise ValueError(f"unknown export type {export_type}")
    assert tuple(cells) == COLUMNS[export_type], "the SELECT must follow the documented columns"
    select = ", ".join(f'{expression} AS "{name}"' for name, expression in cells.items())
    conditions = " AND ".join(where.clauses)
    return ExportQuery(
        select=f"SELECT {select} FROM {source} WHERE {conditions} ORDER BY {order}",
        count=f"SELECT count(*) FROM {source} WHERE {conditions}",
        args=where.args,
    )
