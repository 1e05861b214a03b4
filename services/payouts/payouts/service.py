"""Payouts' use cases fed by events: load, decide (`domain`), save (ledger and state in the
caller's transaction, events to the outbox in the same one).

The funding answer to refunds (the contract with capture, docs/events.md): for each
`refund.requested`, exactly one `refund.funds_reserved` or `refund.funds_refused`.
- The supplier's share of the refund (its SUPPLIER line) is checked against the supplier's
  available balance (balance − holds), its account locked.
- Covered: the share is held until `refund.succeeded` (posted, hold settled) or
  `refund.failed` (hold released).
- Short and `funds_check` (tenant policy REFUSE_REFUND): refused, code
  `insufficient_supplier_balance`; nothing is held or posted.
- Short without `funds_check` (MARKETPLACE_COVERS): a MARKETPLACE → SUPPLIER funding transfer
  of the shortfall (linked to the REFUND) is posted first, then the share held; later payouts
  recover the advance. A refund that then fails gives the advance back at once.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from common.broker.outbox import publish_event
from common.db.types import Conn
from common.events import (
    CaptureSucceeded,
    ChargebackEvent,
    EventType,
    FundingTransferEvent,
    LogisticOrderStatusChanged,
    PaymentStatusChanged,
    RefundFailed,
    RefundFundsDecision,
    RefundRequested,
    RefundSucceeded,
    TenantUpserted,
)
from common.money import Money
from common.tenancy import tenant_settings
from payouts import ledger
from payouts.domain import (
    InvalidEventError,
    capture_entry,
    chargeback_funding,
    check_currency,
    check_return_lines,
    decide_refund_funds,
    funding_entry,
    return_entries,
    supplier_shares,
)
from payouts.errors import TenantNotReplicatedError


async def tenant(conn: Conn, tenant_id: str) -> TenantUpserted:
    data = await conn.fetchval("SELECT data FROM replica_tenants WHERE tenant_id = $1", tenant_id)
    if data is None:
        raise TenantNotReplicatedError(tenant_id)
    return tenant_settings(data)


# -- captures -------------------------------------------------------------------------------


async def on_capture_succeeded(conn: Conn, tenant_id: str, event: CaptureSucceeded) -> None:
    settings = await tenant(conn, tenant_id)
    check_currency(settings.currency, event.amount, f"capture {event.capture_id}")
    entry = capture_entry(tenant_id, event)
    supplier_amount = sum(s.amount for s in event.splits if s.party == "SUPPLIER")
    await conn.execute(
        "INSERT INTO captures (tenant_id, capture_id, payment_id, order_id, logistic_order_id,"
        " supplier_id, currency, amount, supplier_amount)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        tenant_id,
        event.capture_id,
        event.payment_id,
        event.order_id,
        event.logistic_order_id,
        event.supplier_id,
        event.amount.currency,
        event.amount.value,
        supplier_amount,
    )
    await ledger.post(conn, [entry])


# -- funding transfers ----------------------------------------------------------------------


async def create_funding_transfer(
    conn: Conn,
    tenant_id: str,
    *,
    currency: str,
    supplier_id: str,
    amount: int,
    linked_type: str,
    linked_id: str,
) -> str:
    """An advance MARKETPLACE → SUPPLIER, posted at once (both accounts are ours: it cannot
    fail half-way), with its `funding_transfer.created` and `.completed` events."""
    transfer_id = f"ft_{uuid.uuid4().hex[:24]}"
    await ledger.post(
        conn,
        [
            funding_entry(
                tenant_id,
                transfer_id=transfer_id,
                currency=currency,
                supplier_id=supplier_id,
                amount=amount,
                linked_type=linked_type,
                linked_id=linked_id,
            )
        ],
    )
    await conn.execute(
        "INSERT INTO funding_transfers (id, tenant_id, supplier_id, currency, amount, status,"
        " source_account_type, target_account_type, linked_type, linked_id, revision)"
        " VALUES ($1, $2, $3, $4, $5, 'COMPLETED', 'MARKETPLACE', 'SUPPLIER', $6, $7, 2)",
        transfer_id,
        tenant_id,
        supplier_id,
        currency,
        amount,
        linked_type,
        linked_id,
    )
    for revision, status, event_type in (
        (1, "PENDING", EventType.FUNDING_TRANSFER_CREATED),
        (2, "COMPLETED", EventType.FUNDING_TRANSFER_COMPLETED),
    ):
        await publish_event(
            conn,
            event_type,
            FundingTransferEvent(
                funding_transfer_id=transfer_id,
                revision=revision,
                status=status,
                amount=Money(value=amount, currency=currency),
                source_account_type="MARKETPLACE",
                target_account_type="SUPPLIER",
                supplier_id=supplier_id,
                linked_type=linked_type,
                linked_id=linked_id,
            ),
            tenant_id=tenant_id,
            aggregate_id=transfer_id,
        )
    return transfer_id


async def recover_funding(conn: Conn, tenant_id: str, transfer_id: str, amount: int) -> None:
    """Take `amount` of an advance back SUPPLIER → MARKETPLACE."""
    row = await conn.fetchrow(
        "UPDATE funding_transfers SET recovered = recovered + $3, updated_at = now()"
        " WHERE tenant_id = $1 AND id = $2 RETURNING *",
        tenant_id,
        transfer_id,
        amount,
    )
    assert row is not None
    await ledger.post(
        conn,
        [
            funding_entry(
                tenant_id,
                transfer_id=f"{transfer_id}:{row['recovered']}",
                currency=row["currency"],
                supplier_id=row["supplier_id"],
                amount=amount,
                linked_type=row["linked_type"],
                linked_id=row["linked_id"],
                recover=True,
            )
        ],
    )


# -- refunds --------------------------------------------------------------------------------


def _validate_refund(settings: TenantUpserted, event: RefundRequested | RefundSucceeded) -> None:
    check_currency(settings.currency, event.amount, f"refund {event.refund_id}")
    check_return_lines(f"refund {event.refund_id}", event.amount, event.lines)
    for line in event.lines:
        if line.capture_id != event.capture_id:
            raise InvalidEventError(
                f"refund {event.refund_id}: a line of capture {line.capture_id}, the refund is"
                f" of capture {event.capture_id}"
            )


async def share_paid_out(conn: Conn, tenant_id: str, capture_id: str) -> bool:
    """Whether the capture's supplier share went out in a payout (PENDING, UNKNOWN, SETTLED)."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM payout_lines l JOIN payouts p ON p.id = l.payout_id"
            " WHERE l.tenant_id = $1 AND l.capture_id = $2"
            " AND p.status IN ('PENDING', 'UNKNOWN', 'SETTLED'))",
            tenant_id,
            capture_id,
        )
    )


async def on_refund_requested(conn: Conn, tenant_id: str, event: RefundRequested) -> None:
    settings = await tenant(conn, tenant_id)
    _validate_refund(settings, event)
    currency = event.amount.currency
    share = supplier_shares(event.lines).get(event.supplier_id, 0)
    accounts = await ledger.lock_accounts(
        conn, tenant_id, currency, [("MARKETPLACE", None), ("SUPPLIER", event.supplier_id)]
    )
    known = await conn.fetchrow(
        "SELECT * FROM refunds WHERE tenant_id = $1 AND refund_id = $2",
        tenant_id,
        event.refund_id,
    )
    if known is not None:
        # a request sent again: the same answer again (the decision is made once)
        reserved = known["status"] != "REFUSED"
        transfer_id, code = known["funding_transfer_id"], known["code"]
    else:
        supplier = accounts[("SUPPLIER", event.supplier_id)]
        decision = decide_refund_funds(
            share=share, available=supplier.available, funds_check=event.funds_check
        )
        transfer_id = None
        if decision.funding:
            transfer_id = await create_funding_transfer(
                conn,
                tenant_id,
                currency=currency,
                supplier_id=event.supplier_id,
                amount=decision.funding,
                linked_type="REFUND",
                linked_id=event.refund_id,
            )
        if decision.reserved and decision.hold:
            await ledger.place_hold(conn, supplier, decision.hold, "REFUND", event.refund_id)
        reserved, code = decision.reserved, decision.code
        await conn.execute(
            "INSERT INTO refunds (tenant_id, refund_id, capture_id, payment_id, supplier_id,"
            " currency, supplier_amount, funds_check, status, code, funding_transfer_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            tenant_id,
            event.refund_id,
            event.capture_id,
            event.payment_id,
            event.supplier_id,
            currency,
            share,
            event.funds_check,
            "RESERVED" if reserved else "REFUSED",
            code,
            transfer_id,
        )
    await publish_event(
        conn,
        EventType.REFUND_FUNDS_RESERVED if reserved else EventType.REFUND_FUNDS_REFUSED,
        RefundFundsDecision(
            refund_id=event.refund_id,
            payment_id=event.payment_id,
            supplier_id=event.supplier_id,
            supplier_amount=Money(value=share, currency=currency),
            supplier_share_paid_out=await share_paid_out(conn, tenant_id, event.capture_id),
            funding_transfer_id=transfer_id,
            code=code,
        ),
        tenant_id=tenant_id,
        aggregate_id=event.refund_id,
    )


async def on_refund_succeeded(conn: Conn, tenant_id: str, event: RefundSucceeded) -> None:
    """The refund happened: its lines are debited, its hold settled (once)."""
    settings = await tenant(conn, tenant_id)
    _validate_refund(settings, event)
    entries = return_entries(
        tenant_id,
        key=f"refund:{event.refund_id}",
        kind="REFUND",
        currency=event.amount.currency,
        lines=event.lines,
        ref_type="REFUND",
        ref_id=event.refund_id,
        sign=-1,
    )
    await ledger.post(conn, entries)  # locks its accounts in the fixed order
    await ledger.resolve_hold(conn, tenant_id, "REFUND", event.refund_id, "SETTLED")
    await conn.execute(
        "UPDATE refunds SET status = 'SUCCEEDED', updated_at = now()"
        " WHERE tenant_id = $1 AND refund_id = $2",
        tenant_id,
        event.refund_id,
    )


async def on_refund_failed(conn: Conn, tenant_id: str, event: RefundFailed) -> None:
    """The refund did not happen: its hold is released and an advance made for it is taken
    back at once (the supplier owes nothing for a refund that did not happen)."""
    await tenant(conn, tenant_id)
    await ledger.lock_accounts(
        conn,
        tenant_id,
        event.amount.currency,
        [("MARKETPLACE", None), ("SUPPLIER", event.supplier_id)],
    )
    await ledger.resolve_hold(conn, tenant_id, "REFUND", event.refund_id, "RELEASED")
    row = await conn.fetchrow(
        "UPDATE refunds SET status = 'FAILED', updated_at = now()"
        " WHERE tenant_id = $1 AND refund_id = $2 AND status = 'RESERVED'"
        " RETURNING funding_transfer_id",
        tenant_id,
        event.refund_id,
    )
    if row is not None and row["funding_transfer_id"] is not None:
        left = await conn.fetchval(
            "SELECT amount - recovered FROM funding_transfers WHERE id = $1",
            row["funding_transfer_id"],
        )
        if left:
            await recover_funding(conn, tenant_id, row["funding_transfer_id"], left)


# -- chargebacks ----------------------------------------------------------------------------


async def on_chargeback(
    conn: Conn, tenant_id: str, event: ChargebackEvent, *, reversed_: bool
) -> None:
    """A chargeback debits each party's lines (it cannot be refused); a short supplier is
    funded by the marketplace under MARKETPLACE_COVERS, otherwise its balance goes negative
    and later payouts recover it. A reversal credits the lines back."""
    settings = await tenant(conn, tenant_id)
    check_currency(settings.currency, event.amount, f"chargeback {event.chargeback_id}")
    check_return_lines(f"chargeback {event.chargeback_id}", event.amount, event.lines)
    currency = event.amount.currency
    status = "REVERSED" if reversed_ else "RECEIVED"
    previous = await conn.fetchval(
        "SELECT status FROM chargebacks WHERE tenant_id = $1 AND chargeback_id = $2",
        tenant_id,
        event.chargeback_id,
    )
    if previous == status:
        return  # the same stage again (another message id): applied once
    if reversed_ and previous is None:
        # a reversal before its chargeback: keep it for when the chargeback comes? No: both
        # are full descriptions of their lines, so apply the reversal only after the debit.
        raise RuntimeError(f"chargeback {event.chargeback_id} reversed before it was received")
    await conn.execute(
        "INSERT INTO chargebacks (tenant_id, chargeback_id, payment_id, status, revision)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, chargeback_id) DO UPDATE"
        " SET status = EXCLUDED.status, revision = EXCLUDED.revision, updated_at = now()",
        tenant_id,
        event.chargeback_id,
        event.payment_id,
        status,
        event.revision,
    )
    shares = supplier_shares(event.lines)
    entries = return_entries(
        tenant_id,
        key=f"chargeback{'_reversal' if reversed_ else ''}:{event.chargeback_id}",
        kind="CHARGEBACK_REVERSAL" if reversed_ else "CHARGEBACK",
        currency=currency,
        lines=event.lines,
        ref_type="CHARGEBACK",
        ref_id=event.chargeback_id,
        sign=1 if reversed_ else -1,
    )
    # every account the entries and a funding transfer touch, locked in the fixed order first
    wanted = {
        ("MARKETPLACE", None),
        *((p.account, p.supplier_id) for e in entries for p in e.postings),
    }
    accounts = await ledger.lock_accounts(
        conn, tenant_id, currency, sorted(wanted, key=lambda w: (w[0], w[1] or ""))
    )
    if not reversed_ and settings.funding_policy == "MARKETPLACE_COVERS":
        for supplier_id, share in sorted(shares.items()):
            funding = chargeback_funding(
                share=share,
                available=accounts[("SUPPLIER", supplier_id)].available,
                policy=settings.funding_policy,
            )
            if funding:
                await create_funding_transfer(
                    conn,
                    tenant_id,
                    currency=currency,
                    supplier_id=supplier_id,
                    amount=funding,
                    linked_type="CHARGEBACK",
                    linked_id=event.chargeback_id,
                )
    await ledger.post(conn, entries)


# -- eligibility facts ----------------------------------------------------------------------


async def on_payment_status(
    conn: Conn, tenant_id: str, event: PaymentStatusChanged, occurred_at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO payments (tenant_id, payment_id, status, occurred_at)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, payment_id) DO UPDATE"
        " SET status = EXCLUDED.status, occurred_at = EXCLUDED.occurred_at"
        " WHERE payments.occurred_at <= EXCLUDED.occurred_at",
        tenant_id,
        event.payment_id,
        event.status,
        occurred_at,
    )


async def on_logistic_order_status(conn: Conn, event: LogisticOrderStatusChanged) -> None:
    await conn.execute(
        "INSERT INTO logistic_orders"
        " (tenant_id, order_id, logistic_order_id, supplier_id, status, occurred_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (tenant_id, order_id, logistic_order_id) DO UPDATE"
        " SET status = EXCLUDED.status, supplier_id = EXCLUDED.supplier_id,"
        " occurred_at = EXCLUDED.occurred_at"
        " WHERE logistic_orders.occurred_at <= EXCLUDED.occurred_at",
        event.tenant_id,
        event.order_id,
        event.logistic_order_id,
        event.supplier_id,
        event.status,
        event.occurred_at,
    )
