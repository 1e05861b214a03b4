"""Checkout's SQL. Every function takes the connection of the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from checkout.domain import (
    CaptureLine,
    Line,
    PaymentFacts,
    Status,
    StoredLine,
    StoredPayment,
    StoredTimelineEntry,
    Transition,
)
from common.broker.outbox import new_envelopes, outbox_insert, outbox_values
from common.db.types import Conn
from common.events import Envelope, PaymentLine
from common.http.pagination import Filter, ListSpec, PageInfo, fetch_list

_PAYMENT_COLUMNS = (
    "id, tenant_id, order_id, buyer_account, payment_option, capture_mode, amount, currency,"
    " country_code, status, merchant_account, return_url, psp_reference, result_code,"
    " refusal_reason, refusal_reason_code, level3, business_card, client_token_expires_at,"
    " revision, created_at, updated_at"
)
_PAYMENT_COLUMNS_OF_P = ", ".join(f"p.{name.strip()}" for name in _PAYMENT_COLUMNS.split(","))


async def tenant_replica(conn: Conn, tenant_id: str) -> dict[str, Any] | None:
    data = await conn.fetchval("SELECT data FROM replica_tenants WHERE tenant_id = $1", tenant_id)
    return dict(data) if data is not None else None


async def supplier_ids(conn: Conn, tenant_id: str, ids: Sequence[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT supplier_id FROM replica_suppliers WHERE tenant_id = $1"
        " AND supplier_id = ANY($2::text[])",
        tenant_id,
        list(ids),
    )
    return {r["supplier_id"] for r in rows}


async def insert_payment(
    conn: Conn,
    *,
    id_: str,
    tenant_id: str,
    values: dict[str, Any],
    lines: Sequence[Line],
    client_token_hash: str,
    expires_at: datetime,
) -> None:
    await conn.execute(
        """
        INSERT INTO payments (id, tenant_id, order_id, buyer_account, payment_option,
            capture_mode, amount, currency, country_code, status, merchant_account, return_url,
            level3, client_token_hash, client_token_expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'INIT_PAYMENT', $10, $11, $12, $13, $14)
        """,
        id_,
        tenant_id,
        values["order_id"],
        values["buyer_account"],
        values["payment_option"],
        values["capture_mode"],
        values["amount"],
        values["currency"],
        values["country_code"],
        values["merchant_account"],
        values["return_url"],
        values["level3"],
        client_token_hash,
        expires_at,
    )
    await conn.executemany(
        "INSERT INTO payment_lines (payment_id, logistic_order_id, supplier_id, amount)"
        " VALUES ($1, $2, $3, $4)",
        [(id_, line.logistic_order_id, line.supplier_id, line.amount) for line in lines],
    )


async def add_timeline(
    conn: Conn,
    payment_id: str,
    kind: str,
    *,
    status_from: str | None = None,
    status_to: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO payment_timeline (payment_id, kind, status_from, status_to, detail)"
        " VALUES ($1, $2, $3, $4, $5)",
        payment_id,
        kind,
        status_from,
        status_to,
        detail or {},
    )


async def note(conn: Conn, payment: StoredPayment, kind: str, detail: dict[str, Any]) -> None:
    """A timeline entry for what happened to `payment` without moving it."""
    await add_timeline(
        conn,
        payment.id,
        kind,
        status_from=payment.status,
        status_to=payment.status,
        detail=detail,
    )


def payment_of(row: asyncpg.Record) -> StoredPayment:
    """A payments row (selected with at least `_PAYMENT_COLUMNS`) as the typed payment."""
    return StoredPayment(
        id=row["id"],
        tenant_id=row["tenant_id"],
        order_id=row["order_id"],
        buyer_account=row["buyer_account"],
        payment_option=row["payment_option"],
        capture_mode=row["capture_mode"],
        amount=row["amount"],
        currency=row["currency"],
        country_code=row["country_code"],
        status=row["status"],
        merchant_account=row["merchant_account"],
        return_url=row["return_url"],
        psp_reference=row["psp_reference"],
        result_code=row["result_code"],
        refusal_reason=row["refusal_reason"],
        refusal_reason_code=row["refusal_reason_code"],
        level3=row["level3"],
        business_card=row["business_card"],
        client_token_expires_at=row["client_token_expires_at"],
        revision=row["revision"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _payment_or_none(row: asyncpg.Record | None) -> StoredPayment | None:
    return payment_of(row) if row is not None else None


# A payment is locked to change its status, never its id: NO KEY UPDATE leaves the rows that
# reference it (timeline entries, lines) free to be inserted meanwhile, where FOR UPDATE would
# make every such insert wait, and two consumers' batches deadlock on each other.
_PAYMENT_LOCK = " FOR NO KEY UPDATE"


async def get_payment(
    conn: Conn, tenant_id: str, payment_id: str, *, for_update: bool = False
) -> StoredPayment | None:
    lock = _PAYMENT_LOCK if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE tenant_id = $1 AND id = $2{lock}",
        tenant_id,
        payment_id,
    )
    return _payment_or_none(row)


async def lock_payments_with_lines(
    conn: Conn, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[StoredPayment, dict[str, CaptureLine]]]:
    """Lock the payments of `keys` (tenant id, payment id) and their lines, in one statement,
    in id order, and return those that exist by their key, with their lines by logistic
    order. One order for every batch that locks several: two of them never hold one each of
    two payments and wait for the other's. The lines are locked too so that they are read as
    they are once the locks are held (a row only joined would be read as it was when the
    statement started, before it waited), and only `save_payment_changes` changes them, under
    the payment's lock."""
    # (SELECT $n) hides the arrays' lengths from the planner: the plan no longer depends on
    # them, so PostgreSQL reuses one generic plan instead of planning every call (~0.6 ms).
    rows = await conn.fetch(
        f"SELECT {_PAYMENT_COLUMNS_OF_P}, l.logistic_order_id, l.supplier_id,"
        " l.amount AS line_amount, l.status AS line_status, l.capture_id, l.capture_revision"
        " FROM payments p JOIN payment_lines l ON l.payment_id = p.id"
        " WHERE (p.tenant_id, p.id)"
        " IN (SELECT * FROM unnest((SELECT $1::text[]), (SELECT $2::text[])))"
        " ORDER BY p.id, l.logistic_order_id FOR NO KEY UPDATE OF p, l",
        [tenant for tenant, _ in keys],
        [payment for _, payment in keys],
    )
    found: dict[tuple[str, str], tuple[StoredPayment, dict[str, CaptureLine]]] = {}
    for row in rows:
        key = (row["tenant_id"], row["id"])
        if key not in found:
            found[key] = (payment_of(row), {})
        found[key][1][row["logistic_order_id"]] = CaptureLine(
            payment_id=row["id"],
            logistic_order_id=row["logistic_order_id"],
            supplier_id=row["supplier_id"],
            amount=row["line_amount"],
            status=row["line_status"],
            capture_id=row["capture_id"],
            capture_revision=row["capture_revision"],
        )
    return found


@dataclass
class PaymentChanges:
    """What a consumer batch does to the payments it locked, gathered in memory in delivery
    order and written by `save_payment_changes` in one statement: timeline entries, status
    moves (each payment's last status and how many moves, for its revision) with their
    events, and line captures (each line's last state)."""

    timeline: list[tuple[str, str, str | None, str | None, dict[str, Any]]] = field(
        default_factory=list
    )
    statuses: dict[str, str] = field(default_factory=dict)
    moves: dict[str, int] = field(default_factory=dict)
    events: list[tuple[Envelope, str | None]] = field(default_factory=list)
    lines: dict[tuple[str, str], CaptureLine] = field(default_factory=dict)

    def note(self, payment: StoredPayment, kind: str, detail: dict[str, Any]) -> None:
        """A timeline entry for what happened to `payment` without moving it."""
        self.timeline.append((payment.id, kind, payment.status, payment.status, detail))

    def transition(self, payment: PaymentFacts, transition: Transition) -> None:
        """A transition decision: its timeline entry and, when the payment moves, its new
        status and its events. Only the status: a decision that sets other columns is saved
        by `save_transition`."""
        if transition.moved and set(transition.columns) != {"status"}:
            raise ValueError(f"a batch moves only the status, not {sorted(transition.columns)}")
        entry = transition.entry
        self.timeline.append(
            (payment.id, entry.kind, entry.status_from, entry.status_to, entry.detail)
        )
        if not transition.moved:
            return
        self.statuses[payment.id] = transition.columns["status"]
        self.moves[payment.id] = self.moves.get(payment.id, 0) + 1
        self.events.extend(
            (envelope, payment.id)
            for envelope in new_envelopes(transition.events, tenant_id=payment.tenant_id)
        )

    def line(self, line: CaptureLine) -> None:
        self.lines[(line.payment_id, line.logistic_order_id)] = line


# (SELECT $n) hides the arrays' lengths from the planner: the plan no longer depends on them,
# so PostgreSQL reuses one generic plan instead of planning every call (~0.6 ms).
_SAVE_PAYMENT_CHANGES = f"""
WITH lines AS (
    UPDATE payment_lines l SET status = v.status, capture_id = v.capture_id,
        capture_revision = v.capture_revision
    FROM unnest((SELECT $1::text[]), (SELECT $2::text[]), (SELECT $3::text[]),
        (SELECT $4::text[]), (SELECT $5::integer[]))
        AS v(payment_id, logistic_order_id, status, capture_id, capture_revision)
    WHERE l.payment_id = v.payment_id AND l.logistic_order_id = v.logistic_order_id
), moved AS (
    UPDATE payments p SET status = m.status, revision = p.revision + m.moves, updated_at = now()
    FROM unnest((SELECT $6::text[]), (SELECT $7::text[]), (SELECT $8::integer[]))
        AS m(id, status, moves)
    WHERE p.id = m.id
), timeline AS (
    INSERT INTO payment_timeline (payment_id, kind, status_from, status_to, detail)
    SELECT e.payment_id, e.kind, e.status_from, e.status_to, e.detail::jsonb
    FROM unnest((SELECT $9::text[]), (SELECT $10::text[]), (SELECT $11::text[]),
        (SELECT $12::text[]), (SELECT $13::text[]))
        WITH ORDINALITY AS e(payment_id, kind, status_from, status_to, detail, n)
    ORDER BY e.n
), o AS ({outbox_insert(14)})
SELECT 1
"""


async def save_payment_changes(conn: Conn, changes: PaymentChanges) -> None:
    """Write `changes` in one statement, under the payments' locks, in the caller's
    transaction (the events go to the outbox with the state they describe)."""
    if not (changes.timeline or changes.lines):
        return
    if not conn.is_in_transaction():
        raise RuntimeError("a payment moves inside the transaction that publishes its events")
    lines = list(changes.lines.values())
    await conn.execute(
        _SAVE_PAYMENT_CHANGES,
        [x.payment_id for x in lines],
        [x.logistic_order_id for x in lines],
        [x.status for x in lines],
        [x.capture_id for x in lines],
        [x.capture_revision for x in lines],
        list(changes.statuses),
        list(changes.statuses.values()),
        [changes.moves[payment_id] for payment_id in changes.statuses],
        [entry[0] for entry in changes.timeline],
        [entry[1] for entry in changes.timeline],
        [entry[2] for entry in changes.timeline],
        [entry[3] for entry in changes.timeline],
        [json.dumps(entry[4]) for entry in changes.timeline],
        *outbox_values(changes.events),
    )


async def payment_by_psp_reference(
    conn: Conn, tenant_id: str, psp_reference: str, *, for_update: bool = False
) -> StoredPayment | None:
    lock = _PAYMENT_LOCK if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE tenant_id = $1 AND psp_reference = $2"
        f" ORDER BY created_at LIMIT 1{lock}",
        tenant_id,
        psp_reference,
    )
    return _payment_or_none(row)


async def payment_by_token(conn: Conn, token_hash: str) -> StoredPayment | None:
    row = await conn.fetchrow(
        f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE client_token_hash = $1", token_hash
    )
    return _payment_or_none(row)


async def lines_of(
    conn: Conn, payment_ids: Sequence[str], supplier_id: str | None = None
) -> dict[str, list[StoredLine]]:
    rows = await conn.fetch(
        "SELECT payment_id, logistic_order_id, supplier_id, amount, status, capture_id"
        " FROM payment_lines"
        " WHERE payment_id = ANY($1::text[]) AND ($2::text IS NULL OR supplier_id = $2)"
        " ORDER BY payment_id, logistic_order_id",
        list(payment_ids),
        supplier_id,
    )
    found: dict[str, list[StoredLine]] = {}
    for row in rows:
        found.setdefault(row["payment_id"], []).append(
            StoredLine(
                payment_id=row["payment_id"],
                logistic_order_id=row["logistic_order_id"],
                supplier_id=row["supplier_id"],
                amount=row["amount"],
                status=row["status"],
                capture_id=row["capture_id"],
            )
        )
    return found


async def timeline_of(conn: Conn, payment_id: str) -> list[StoredTimelineEntry]:
    rows = await conn.fetch(
        "SELECT occurred_at, kind, status_from, status_to, detail FROM payment_timeline"
        " WHERE payment_id = $1 ORDER BY seq",
        payment_id,
    )
    return [
        StoredTimelineEntry(
            occurred_at=r["occurred_at"],
            kind=r["kind"],
            status_from=r["status_from"],
            status_to=r["status_to"],
            detail=r["detail"],
        )
        for r in rows
    ]


_UPDATABLE = frozenset(
    {
        "status",
        "psp_reference",
        "result_code",
        "refusal_reason",
        "refusal_reason_code",
        "business_card",
    }
)


async def update_payment(conn: Conn, payment_id: str, values: dict[str, Any]) -> None:
    unknown = set(values) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(values))
    await conn.execute(
        f"UPDATE payments SET {assignments}, revision = revision + 1, updated_at = now()"
        " WHERE id = $1",
        payment_id,
        *values.values(),
    )


async def move_payment(
    conn: Conn,
    payment_id: str,
    values: dict[str, Any],
    *,
    kind: str,
    status_from: str,
    status_to: str,
    detail: dict[str, Any],
    events: Sequence[Envelope] = (),
) -> None:
    """`update_payment`, the timeline entry that records it and the events it publishes (to
    the outbox), in one statement."""
    unknown = set(values) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    if not conn.is_in_transaction():
        raise RuntimeError("a payment moves inside the transaction that publishes its events")
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(values))
    n = len(values) + 2
    outbox = f", o AS ({outbox_insert(n + 4)})" if events else ""
    await conn.execute(
        f"WITH moved AS (UPDATE payments SET {assignments}, revision = revision + 1,"
        f" updated_at = now() WHERE id = $1 RETURNING id){outbox}"
        f" INSERT INTO payment_timeline (payment_id, kind, status_from, status_to, detail)"
        f" SELECT id, ${n}, ${n + 1}, ${n + 2}, ${n + 3} FROM moved",
        payment_id,
        *values.values(),
        kind,
        status_from,
        status_to,
        detail,
        *(outbox_values([(e, payment_id) for e in events]) if events else ()),
    )


PAYMENT_LIST = ListSpec(
    table="payments",
    filters=(
        Filter("status", "status = {}", "only payments in this status", "choice", tuple(Status)),
        Filter("order_id", "order_id = {}", "only this order's payments"),
        Filter("created_from", "created_at >= {}", "ISO 8601, inclusive", "datetime"),
        Filter("created_to", "created_at <= {}", "ISO 8601, inclusive", "datetime"),
    ),
)


async def payment_page(
    conn: Conn, tenant_id: str, supplier_id: str | None, query: Mapping[str, str]
) -> tuple[list[StoredPayment], PageInfo]:
    """A page of the tenant's payments (a supplier's: those with one of its lines)."""
    scope: list[tuple[str, Any]] = [("tenant_id = {}", tenant_id)]
    if supplier_id is not None:
        scope.append(
            (
                "EXISTS (SELECT 1 FROM payment_lines l WHERE l.payment_id = payments.id"
                " AND l.supplier_id = {})",
                supplier_id,
            )
        )
    rows, info = await fetch_list(conn, PAYMENT_LIST, query, scope=scope)
    return [payment_of(r) for r in rows], info


def facts_of(payment: StoredPayment) -> PaymentFacts:
    """The payment as the transition decision reads it."""
    return PaymentFacts(
        id=payment.id,
        tenant_id=payment.tenant_id,
        order_id=payment.order_id,
        status=Status(payment.status),
        amount=payment.amount,
        currency=payment.currency,
        psp_reference=payment.psp_reference,
        payment_option=payment.payment_option,
        capture_mode=payment.capture_mode,
        merchant_account=payment.merchant_account,
        level3=payment.level3,
    )


async def event_lines(conn: Conn, payment_id: str) -> list[PaymentLine]:
    """The payment's lines as `payment.authorised` carries them."""
    return event_lines_of((await lines_of(conn, [payment_id])).get(payment_id, []))


def event_lines_of(lines: Sequence[StoredLine]) -> list[PaymentLine]:
    """`lines` as `payment.authorised` carries them, in `lines_of`'s order."""
    return [
        PaymentLine(
            logistic_order_id=line.logistic_order_id,
            supplier_id=line.supplier_id,
            amount=line.amount,
        )
        for line in sorted(lines, key=lambda line: line.logistic_order_id)
    ]


async def save_transition(conn: Conn, payment: PaymentFacts, transition: Transition) -> None:
    """Write a transition decision in the caller's transaction: the timeline entry (with the
    payment's new columns when it moved) and its events in the outbox."""
    entry = transition.entry
    if not transition.moved:
        await add_timeline(
            conn,
            payment.id,
            entry.kind,
            status_from=entry.status_from,
            status_to=entry.status_to,
            detail=entry.detail,
        )
        return
    assert entry.status_to is not None
    await move_payment(
        conn,
        payment.id,
        transition.columns,
        kind=entry.kind,
        status_from=entry.status_from,
        status_to=entry.status_to,
        detail=entry.detail,
        events=new_envelopes(transition.events, tenant_id=payment.tenant_id),
    )
