"""Payout use cases: compute (supplier and marketplace), execute, apply the provider's answer
(poll or callback, whichever comes first), retry. Each takes the caller's transaction.

Life of a payout: COMPUTED (its amount held on the account) → PENDING (sent to the provider
as order `provider_reference`) → SETTLED (the amount leaves the account for BANK_CLEARING, the
hold settles) or FAILED (the hold is released; its orders are eligible again; an operator may
retry, as a new order `<id>-<attempt>`). UNKNOWN: the provider gave no definite answer; it is
polled on a backoff and never failed by us. SKIPPED and INSUFFICIENT_FUNDS never reach the
provider.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from common.broker.outbox import enqueue_many, new_envelope, publish_event
from common.db.types import Conn
from common.events import EventType, PayoutEvent, PayoutStatus
from common.money import Money
from payouts import errors, ledger, service
from payouts.domain import (
    AccountKind,
    OrderAmount,
    decide_supplier_payout,
    iban_valid,
    payout_entry,
)
from payouts.provider import ProviderOrder

LIVE = ("COMPUTED", "PENDING", "SETTLED", "UNKNOWN")
EVENT_OF: dict[str, EventType] = {
    "COMPUTED": EventType.PAYOUT_COMPUTED,
    "SKIPPED": EventType.PAYOUT_COMPUTED,
    "INSUFFICIENT_FUNDS": EventType.PAYOUT_COMPUTED,
    "PENDING": EventType.PAYOUT_PENDING,
    "SETTLED": EventType.PAYOUT_SETTLED,
    "FAILED": EventType.PAYOUT_FAILED,
    "UNKNOWN": EventType.PAYOUT_UNKNOWN,
}

ELIGIBLE = """
SELECT c.supplier_id, c.capture_id, c.logistic_order_id, sum(p.amount)::bigint AS amount
  FROM captures c
  JOIN payments pm ON pm.tenant_id = c.tenant_id AND pm.payment_id = c.payment_id
                  AND pm.status = 'PAID'
  JOIN logistic_orders lo ON lo.tenant_id = c.tenant_id AND lo.order_id = c.order_id
                         AND lo.logistic_order_id = c.logistic_order_id
                         AND lo.status = ANY($2::text[])
  JOIN ledger_transactions t ON t.tenant_id = c.tenant_id AND t.capture_id = c.capture_id
  JOIN postings p ON p.transaction_id = t.id
  JOIN accounts a ON a.id = p.account_id AND a.type = 'SUPPLIER'
 WHERE c.tenant_id = $1 AND c.currency = $3 AND c.captured_at <= $4
   AND ($5::text IS NULL OR c.supplier_id = $5)
   AND t.posted_at <= $4
   AND NOT EXISTS (SELECT 1 FROM payout_lines l JOIN payouts po ON po.id = l.payout_id
                    WHERE l.tenant_id = c.tenant_id AND l.capture_id = c.capture_id
                      AND po.status IN ('COMPUTED', 'PENDING', 'SETTLED', 'UNKNOWN'))
 GROUP BY c.supplier_id, c.capture_id, c.logistic_order_id
 ORDER BY c.supplier_id, c.capture_id
"""


def payout_event(row: asyncpg.Record | dict[str, Any], lines: list[str]) -> PayoutEvent:
    return PayoutEvent(
        payout_id=row["id"],
        revision=row["revision"],
        kind=row["kind"],
        supplier_id=row["supplier_id"],
        status=row["status"],
        amount=Money(value=row["amount"], currency=row["currency"]),
        period_start=row["period_start"],
        period_end=row["period_end"],
        logistic_order_ids=lines,
        provider_reference=row["provider_reference"],
        code=row["code"],
        message=row["message"],
    )


async def _publish(conn: Conn, row: asyncpg.Record) -> None:
    lines = await conn.fetch(
        "SELECT logistic_order_id FROM payout_lines WHERE payout_id = $1 ORDER BY capture_id",
        row["id"],
    )
    await publish_event(
        conn,
        EVENT_OF[row["status"]],
        payout_event(row, [r["logistic_order_id"] for r in lines]),
        tenant_id=row["tenant_id"],
        aggregate_id=row["id"],
    )


async def _history(
    conn: Conn, payout_id: str, status_from: str | None, status: str, note: str | None
) -> None:
    await conn.execute(
        "INSERT INTO payout_history (payout_id, status_from, status, note) VALUES ($1, $2, $3, $4)",
        payout_id,
        status_from,
        status,
        note,
    )


async def _insert_payout(conn: Conn, **values: Any) -> asyncpg.Record:
    columns = list(values)
    row = await conn.fetchrow(
        f"INSERT INTO payouts ({', '.join(columns)})"
        f" VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))}) RETURNING *",
        *values.values(),
    )
    assert row is not None
    return row


async def compute_supplier_payouts(
    conn: Conn,
    tenant_id: str,
    *,
    period_end: datetime,
    supplier_id: str | None = None,
) -> list[asyncpg.Record]:
    """One payout per supplier with eligible orders up to `period_end` (DESIGN §8)."""
    settings = await service.tenant(conn, tenant_id)
    currency = settings.currency
    # one computation per tenant at a time: two operators (or replicas) cannot both take the
    # same orders
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('payouts:compute:' || $1))", tenant_id
    )
    period_start = await conn.fetchval(
        "SELECT max(period_end) FROM payouts WHERE tenant_id = $1 AND kind = 'SUPPLIER'"
        " AND status IN ('COMPUTED', 'PENDING', 'SETTLED', 'UNKNOWN')",
        tenant_id,
    )
    rows = await conn.fetch(
        ELIGIBLE,
        tenant_id,
        settings.allowed_logistic_statuses,
        currency,
        period_end,
        supplier_id,
    )
    orders: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for r in rows:
        orders[r["supplier_id"]].append((r["capture_id"], r["logistic_order_id"], r["amount"]))
    if not orders:
        return []
    suppliers = {
        r["supplier_id"]: r["data"]
        for r in await conn.fetch(
            "SELECT supplier_id, data FROM replica_suppliers"
            " WHERE tenant_id = $1 AND supplier_id = ANY($2::text[])",
            tenant_id,
            list(orders),
        )
    }
    accounts = await ledger.lock_accounts(
        conn,
        tenant_id,
        currency,
        [("MARKETPLACE", None), *(("SUPPLIER", s) for s in sorted(orders))],
    )
    advances = {
        r["supplier_id"]: r["left"]
        for r in await conn.fetch(
            "SELECT supplier_id, sum(amount - recovered)::bigint AS left FROM funding_transfers"
            " WHERE tenant_id = $1 AND status = 'COMPLETED' AND currency = $2"
            " GROUP BY supplier_id",
            tenant_id,
            currency,
        )
    }
    # decide for every supplier (pure), then write the whole run in a few statements: with
    # thousands of suppliers, round trips per supplier would be the cost
    ids: list[str] = []
    columns: dict[str, list[Any]] = defaultdict(list)
    lines: list[tuple[str, str, str, int]] = []
    holds: list[tuple[int, int, str]] = []
    for sid in sorted(orders):
        info = suppliers.get(sid) or {}
        account = accounts[("SUPPLIER", sid)]
        decision = decide_supplier_payout(
            kyc_status=info.get("kyc_status"),
            iban=info.get("iban"),
            orders=[OrderAmount(lo, amount) for _, lo, amount in orders[sid]],
            available=account.available,
            outstanding_advances=advances.get(sid, 0),
            banking_mode=settings.marketplace_banking_mode,
        )
        payout_id = f"po_{uuid.uuid4().hex[:24]}"
        if decision.recovered:
            await _recover_advances(conn, tenant_id, sid, currency, decision.recovered)
        transfer_id = None
        if decision.funding:
            transfer_id = await service.create_funding_transfer(
                conn,
                tenant_id,
                currency=currency,
                supplier_id=sid,
                amount=decision.funding,
                linked_type="PAYOUT",
                linked_id=payout_id,
            )
        computed = decision.status == "COMPUTED"
        ids.append(payout_id)
        for name, value in (
            ("supplier_id", sid),
            ("amount", decision.amount),
            ("status", decision.status),
            ("code", decision.code),
            ("message", decision.message),
            ("recovered", decision.recovered),
            ("funding_transfer_id", transfer_id),
            ("provider_reference", payout_id if computed else None),
            ("iban", info.get("iban")),
            ("beneficiary", info.get("name")),
        ):
            columns[name].append(value)
        lines.extend((payout_id, cap, lo, amount) for cap, lo, amount in orders[sid])
        if computed:
            holds.append((account.id, decision.amount, payout_id))
    rows = await conn.fetch(
        "INSERT INTO payouts (id, tenant_id, kind, currency, period_start, period_end,"
        " supplier_id, amount, status, code, message, recovered, funding_transfer_id,"
        " provider_reference, iban, beneficiary)"
        " SELECT x.id, $2, 'SUPPLIER', $3, $4, $5, x.s, x.a, x.st, x.c, x.m, x.r, x.f, x.p,"
        " x.i, x.b FROM unnest($1::text[], $6::text[], $7::bigint[], $8::text[], $9::text[],"
        " $10::text[], $11::bigint[], $12::text[], $13::text[], $14::text[], $15::text[])"
        " WITH ORDINALITY AS x(id, s, a, st, c, m, r, f, p, i, b, n) ORDER BY x.n RETURNING *",
        ids,
        tenant_id,
        currency,
        period_start,
        period_end,
        *(
            columns[name]
            for name in (
                "supplier_id",
                "amount",
                "status",
                "code",
                "message",
                "recovered",
                "funding_transfer_id",
                "provider_reference",
                "iban",
                "beneficiary",
            )
        ),
    )
    await conn.execute(
        "INSERT INTO payout_lines (payout_id, tenant_id, capture_id, logistic_order_id, amount)"
        " SELECT p, $1, c, l, a FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[])"
        " AS x(p, c, l, a)",
        tenant_id,
        [line[0] for line in lines],
        [line[1] for line in lines],
        [line[2] for line in lines],
        [line[3] for line in lines],
    )
    if holds:
        await ledger.place_holds(conn, tenant_id, holds, "PAYOUT")
    await conn.execute(
        "INSERT INTO payout_history (payout_id, status_from, status, note)"
        " SELECT p, NULL, s, m FROM unnest($1::text[], $2::text[], $3::text[]) AS x(p, s, m)",
        ids,
        columns["status"],
        columns["message"],
    )
    by_payout: dict[str, list[str]] = defaultdict(list)
    for payout_id, _, lo, _ in lines:
        by_payout[payout_id].append(lo)
    await enqueue_many(
        conn,
        [
            (
                new_envelope(
                    EVENT_OF[row["status"]],
                    payout_event(row, by_payout[row["id"]]),
                    tenant_id=tenant_id,
                ),
                row["id"],
            )
            for row in rows
        ],
    )
    return list(rows)


async def _recover_advances(
    conn: Conn, tenant_id: str, supplier_id: str, currency: str, amount: int
) -> None:
    """Take `amount` of the supplier's advances back, oldest first."""
    rows = await conn.fetch(
        "SELECT id, amount - recovered AS left FROM funding_transfers"
        " WHERE tenant_id = $1 AND supplier_id = $2 AND currency = $3 AND status = 'COMPLETED'"
        " AND recovered < amount ORDER BY created_at, id FOR UPDATE",
        tenant_id,
        supplier_id,
        currency,
    )
    for r in rows:
        if amount <= 0:
            break
        take = min(amount, r["left"])
        await service.recover_funding(conn, tenant_id, r["id"], take)
        amount -= take


async def compute_marketplace_payout(
    conn: Conn, tenant_id: str, *, period_end: datetime
) -> list[asyncpg.Record]:
    """One consolidated payout of the MARKETPLACE account's available balance."""
    settings = await service.tenant(conn, tenant_id)
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('payouts:compute:' || $1))", tenant_id
    )
    accounts = await ledger.lock_accounts(
        conn, tenant_id, settings.currency, [("MARKETPLACE", None)]
    )
    account = accounts[("MARKETPLACE", None)]
    bank = await conn.fetchrow(
        "SELECT iban, holder FROM marketplace_bank_accounts WHERE tenant_id = $1", tenant_id
    )
    status: PayoutStatus
    code = message = None
    amount = max(account.available, 0)
    if bank is None or not iban_valid(bank["iban"]):
        status, code, message = "SKIPPED", "marketplace_iban_invalid", "no valid bank account"
        amount = 0
    elif amount <= 0:
        status, code, message = "SKIPPED", "nothing_to_pay", "no positive amount"
    else:
        status = "COMPUTED"
    payout_id = f"po_{uuid.uuid4().hex[:24]}"
    row = await _insert_payout(
        conn,
        id=payout_id,
        tenant_id=tenant_id,
        kind="MARKETPLACE",
        supplier_id=None,
        currency=settings.currency,
        amount=amount,
        status=status,
        period_end=period_end,
        code=code,
        message=message,
        provider_reference=payout_id if status == "COMPUTED" else None,
        iban=bank["iban"] if bank else None,
        beneficiary=bank["holder"] if bank else None,
    )
    if status == "COMPUTED":
        await ledger.place_hold(conn, account, amount, "PAYOUT", payout_id)
    await _history(conn, payout_id, None, status, message)
    await _publish(conn, row)
    return [row]


async def _locked(conn: Conn, tenant_id: str | None, payout_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM payouts WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2) FOR UPDATE",
        payout_id,
        tenant_id,
    )
    if row is None:
        raise errors.not_found("payout")
    return row


async def _transition(
    conn: Conn, row: asyncpg.Record, status: str, note: str | None = None, **sets: Any
) -> asyncpg.Record:
    values = {"status": status, **sets}
    assigns = ", ".join(f"{k} = ${i + 2}" for i, k in enumerate(values))
    new = await conn.fetchrow(
        f"UPDATE payouts SET {assigns}, revision = revision + 1, updated_at = now()"
        " WHERE id = $1 RETURNING *",
        row["id"],
        *values.values(),
    )
    assert new is not None
    await _history(conn, row["id"], row["status"], status, note)
    await _publish(conn, new)
    return new


async def execute(conn: Conn, tenant_id: str, payout_id: str, *, now: datetime) -> asyncpg.Record:
    """COMPUTED → PENDING: the executor sends it (ensures the provider's order exists)."""
    row = await _locked(conn, tenant_id, payout_id)
    if row["status"] in ("PENDING", "UNKNOWN", "SETTLED"):
        return row  # already under way: executing again changes nothing
    if row["status"] != "COMPUTED":
        raise errors.payout_conflict(
            "payout_not_executable", f"a {row['status']} payout cannot be executed"
        )
    return await _transition(conn, row, "PENDING", "sent to the provider", next_poll_at=now)


async def retry(conn: Conn, tenant_id: str, payout_id: str, *, now: datetime) -> asyncpg.Record:
    """FAILED → PENDING as a new provider order `<id>-<attempt>`, its amount held again."""
    row = await _locked(conn, tenant_id, payout_id)
    if row["status"] in ("PENDING", "UNKNOWN", "SETTLED"):
        return row
    if row["status"] != "FAILED":
        raise errors.payout_conflict(
            "payout_not_retryable", f"a {row['status']} payout cannot be retried"
        )
    taken = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM payout_lines l JOIN payout_lines o"
        " ON o.tenant_id = l.tenant_id AND o.capture_id = l.capture_id"
        " AND o.payout_id <> l.payout_id"
        " JOIN payouts p ON p.id = o.payout_id AND p.status = ANY($2::text[])"
        " WHERE l.payout_id = $1)",
        payout_id,
        list(LIVE),
    )
    if taken:
        raise errors.payout_conflict(
            "payout_superseded", "its orders are in a newer payout; retry that one"
        )
    kind: AccountKind = "SUPPLIER" if row["kind"] == "SUPPLIER" else "MARKETPLACE"
    account = (
        await ledger.lock_accounts(
            conn, row["tenant_id"], row["currency"], [(kind, row["supplier_id"])]
        )
    )[(kind, row["supplier_id"])]
    if account.available < row["amount"]:
        raise errors.payout_conflict(
            "insufficient_supplier_balance",
            f"available {account.available} no longer covers {row['amount']}",
        )
    attempt = row["attempt"] + 1
    reference = f"{row['id']}-{attempt}"
    await ledger.place_hold(conn, account, row["amount"], "PAYOUT", reference)
    return await _transition(
        conn,
        row,
        "PENDING",
        f"retry {attempt}",
        attempt=attempt,
        provider_reference=reference,
        next_poll_at=now,
        polls=0,
        unknown_since=None,
        code=None,
        message=None,
    )


async def apply_order(
    conn: Conn,
    payout_id: str,
    reference: str,
    order: ProviderOrder | None,
    *,
    now: datetime,
    next_poll_at: datetime,
) -> asyncpg.Record | None:
    """The provider's answer about order `reference` (a poll or a callback; whichever comes
    first wins, the other finds the payout settled or failed and changes nothing). None:
    the outcome is still unknown."""
    row = await _locked(conn, None, payout_id)
    if row["status"] not in ("PENDING", "UNKNOWN") or row["provider_reference"] != reference:
        return None  # already decided, or an older attempt's order
    account_kind: AccountKind = "SUPPLIER" if row["kind"] == "SUPPLIER" else "MARKETPLACE"
    if order is None:
        since = row["unknown_since"] or now
        if row["status"] == "UNKNOWN":
            await conn.execute(
                "UPDATE payouts SET next_poll_at = $2, polls = polls + 1, updated_at = now()"
                " WHERE id = $1",
                payout_id,
                next_poll_at,
            )
            return None
        return await _transition(
            conn,
            row,
            "UNKNOWN",
            "no definite answer from the provider",
            unknown_since=since,
            next_poll_at=next_poll_at,
            polls=row["polls"] + 1,
        )
    if order.status == "SUCCESS":
        await ledger.post(
            conn,
            [
                payout_entry(
                    row["tenant_id"],
                    payout_id=reference,
                    currency=row["currency"],
                    account=account_kind,
                    supplier_id=row["supplier_id"],
                    amount=row["amount"],
                )
            ],
        )
        await ledger.resolve_hold(conn, row["tenant_id"], "PAYOUT", reference, "SETTLED")
        return await _transition(
            conn,
            row,
            "SETTLED",
            f"order {reference}: {order.attempts} attempt(s)",
            next_poll_at=None,
        )
    if order.status == "FAILURE":
        await ledger.resolve_hold(conn, row["tenant_id"], "PAYOUT", reference, "RELEASED")
        return await _transition(
            conn,
            row,
            "FAILED",
            order.detail,
            code="provider_fulfilment_failed",
            message=f"order {reference} failed after {order.attempts} attempt(s)",
            next_poll_at=None,
        )
    if row["status"] == "UNKNOWN":
        return await _transition(
            conn,
            row,
            "PENDING",
            "the provider knows the order",
            unknown_since=None,
            next_poll_at=next_poll_at,
        )
    await conn.execute(
        "UPDATE payouts SET next_poll_at = $2, polls = polls + 1, updated_at = now() WHERE id = $1",
        payout_id,
        next_poll_at,
    )
    return None


def unknown_backoff(polls: int, delays: tuple[float, ...]) -> timedelta:
    """Minutes, then hours, then daily: the delay before the `polls`-th poll of an UNKNOWN."""
    return timedelta(seconds=delays[min(polls, len(delays) - 1)])
