"""Bank transfer on due date: the use cases (DESIGN §10). Each takes the connection of the
caller's transaction; decisions come from `bank_transfer_domain` (pure), state changes and
their events commit together.

- `open_payment`: a BANK_WIRE_* session's payment waits in WAITING_PAYMENT with its transfer
  instructions (beneficiary IBAN, ISO 11649 reference, amount).
- `bank_transfer_payments` / `record_shipment`: the OMS's SHIPPED for one of its lines fixes
  the due date (the first shipment does; later ones leave it).
- `receive`: the PSP's BANK_TRANSFER_RECEIVED notification, reconciled by reference, once per
  PSP reference; unmatched transfers are parked, non-positive ones rejected.
- `assign` / `return_transfer`: an operator resolves a parked transfer.
- `flag_overdue`: the scheduler's step; `payment.overdue` once per payment and due date.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from checkout import bank_transfer_repo as btrepo
from checkout import repo
from checkout.bank_transfer_domain import (
    Applied,
    StoredBankTransfer,
    StoredIncomingTransfer,
    TransferStatus,
    apply_transfer,
    creditor_reference,
    due_date,
    is_overdue,
    normalise_reference,
    valid_time_zone,
)
from checkout.domain import StoredPayment
from checkout.schemas import BankTransferInstructions, IncomingTransfer
from common.broker import new_envelope, publish_event
from common.db.types import Conn
from common.events import (
    BankTransferPaid,
    EventType,
    LogisticOrderStatusChanged,
    PaymentOverdue,
    PaymentStatusChanged,
    PspNotificationReceived,
)
from common.http.errors import Conflict, NotFound, Unprocessable
from common.logging import get_logger
from common.money import Money

log = get_logger("checkout.bank_transfers")

SOURCE = "bank_transfer"


async def open_payment(
    conn: Conn,
    *,
    payment_id: str,
    tenant_id: str,
    order_id: str,
    amount: int,
    currency: str,
    iban: str,
) -> BankTransferInstructions:
    reference = creditor_reference()
    await btrepo.insert(
        conn,
        payment_id=payment_id,
        tenant_id=tenant_id,
        reference=reference,
        iban=iban,
        amount=amount,
        currency=currency,
    )
    await _move(
        conn,
        payment_id=payment_id,
        tenant_id=tenant_id,
        order_id=order_id,
        amount=Money(value=amount, currency=currency),
        status_from="INIT_PAYMENT",
        status_to="WAITING_PAYMENT",
        detail={"source": SOURCE, "reference": reference},
    )
    return BankTransferInstructions(
        iban=iban,
        reference=reference,
        amount=Money(value=amount, currency=currency),
        received=Money(value=0, currency=currency),
        remaining=Money(value=amount, currency=currency),
        excess=Money(value=0, currency=currency),
        due_date=None,
        overdue=False,
    )


def instructions_of(transfer: StoredBankTransfer) -> BankTransferInstructions:
    currency = transfer.currency
    return BankTransferInstructions(
        iban=transfer.iban,
        reference=transfer.reference,
        amount=Money(value=transfer.amount, currency=currency),
        received=Money(value=transfer.received, currency=currency),
        remaining=Money(value=max(transfer.amount - transfer.received, 0), currency=currency),
        excess=Money(value=transfer.excess, currency=currency),
        due_date=transfer.due_date,
        overdue=transfer.overdue_for is not None
        and transfer.overdue_for == transfer.due_date
        and transfer.paid_at is None,
    )


async def _move(
    conn: Conn,
    *,
    payment_id: str,
    tenant_id: str,
    order_id: str,
    amount: Money,
    status_from: str,
    status_to: str,
    detail: dict[str, Any],
) -> None:
    await repo.move_payment(
        conn,
        payment_id,
        {"status": status_to},
        kind=SOURCE,
        status_from=status_from,
        status_to=status_to,
        detail=detail,
        events=[
            new_envelope(
                EventType.PAYMENT_STATUS_CHANGED,
                PaymentStatusChanged(
                    payment_id=payment_id,
                    order_id=order_id,
                    status_from=status_from,
                    status=status_to,
                    amount=amount,
                    psp_reference=None,
                ),
                tenant_id=tenant_id,
            )
        ],
    )


async def _apply(
    conn: Conn,
    payment: StoredPayment,
    applied: Applied,
    *,
    now: datetime,
    detail: dict[str, Any],
) -> None:
    """Save a reconciliation: the amounts, the payment's status (when it changes), and
    `payment.bank_transfer_paid` the first time the payment is fully paid."""
    transfer = (await btrepo.of_payments(conn, [payment.id]))[payment.id]
    paid = applied.status in ("PAID", "OVER_PAID")
    await btrepo.save_received(
        conn,
        payment.id,
        received=applied.received,
        excess=applied.excess,
        paid_at=now if paid else None,
    )
    currency = payment.currency.strip()
    detail = {
        **detail,
        "received": applied.received,
        "remaining": applied.remaining,
        "excess": applied.excess,
    }
    if applied.status == payment.status:
        await repo.note(conn, payment, SOURCE, detail)
    else:
        await _move(
            conn,
            payment_id=payment.id,
            tenant_id=payment.tenant_id,
            order_id=payment.order_id,
            amount=Money(value=payment.amount, currency=currency),
            status_from=payment.status,
            status_to=applied.status,
            detail=detail,
        )
    if paid and transfer.paid_at is None:
        await publish_event(
            conn,
            EventType.PAYMENT_BANK_TRANSFER_PAID,
            BankTransferPaid(
                payment_id=payment.id,
                order_id=payment.order_id,
                payment_option=payment.payment_option,
                merchant_account=payment.merchant_account,
                reference=transfer.reference,
                amount=Money(value=payment.amount, currency=currency),
                received=Money(value=applied.received, currency=currency),
                lines=await repo.event_lines(conn, payment.id),
                paid_at=now,
            ),
            tenant_id=payment.tenant_id,
            aggregate_id=payment.id,
        )


async def receive(
    conn: Conn, tenant_id: str, event: PspNotificationReceived, *, now: datetime
) -> TransferStatus | None:
    """Reconcile one incoming-transfer notification; None when this PSP reference was
    already recorded (nothing changes the second time)."""
    value = event.amount.value if event.amount is not None else 0
    currency = event.amount.currency if event.amount is not None else "XXX"
    reference = normalise_reference(event.merchant_reference) or event.merchant_reference
    found = await btrepo.lock_by_reference(conn, tenant_id, reference)
    facts = btrepo.facts_of(*found) if found is not None else None
    decision = apply_transfer(facts, value=value, currency=currency)
    if not event.success:
        decision_status, reason = TransferStatus.REJECTED, "not_successful"
    elif isinstance(decision, Applied):
        decision_status, reason = TransferStatus.APPLIED, None
    else:
        decision_status, reason = decision.status, decision.reason
    transfer_id = await btrepo.record_incoming(
        conn,
        tenant_id=tenant_id,
        psp_reference=event.psp_reference,
        notification_id=event.notification_id,
        reference=reference[:64],
        amount=value,
        currency=currency,
        status=decision_status,
        reason=reason,
        payment_id=found[0].id if found is not None else None,
    )
    if transfer_id is None:
        log.info("incoming transfer delivered again", psp_reference=event.psp_reference)
        return None
    detail = {
        "source": SOURCE,
        "transfer_id": transfer_id,
        "psp_reference": event.psp_reference,
        "notification_id": event.notification_id,
        "amount": {"value": value, "currency": currency},
    }
    if found is None:
        log.warning("incoming transfer to an unknown reference parked", transfer_id=transfer_id)
        return decision_status
    payment = found[0]
    if decision_status is not TransferStatus.APPLIED or not isinstance(decision, Applied):
        await repo.note(conn, payment, "bank_transfer_not_applied", {**detail, "reason": reason})
        return decision_status
    await _apply(conn, payment, decision, now=now, detail=detail)
    return decision_status


async def assign(
    conn: Conn, tenant_id: str, transfer_id: str, payment_id: str, *, now: datetime
) -> IncomingTransfer:
    """An operator applies a parked transfer to a bank-transfer payment of the tenant."""
    incoming = await btrepo.incoming_for_update(conn, tenant_id, transfer_id)
    if incoming is None:
        raise NotFound("no such incoming transfer", code="transfer_not_found", param="id")
    if incoming.status != TransferStatus.UNMATCHED:
        raise Conflict(
            f"the transfer is {incoming.status}, only an UNMATCHED one can be assigned",
            code="transfer_not_unmatched",
        )
    found = await btrepo.lock_by_payment(conn, tenant_id, payment_id)
    if found is None:
        raise Unprocessable(
            "no bank-transfer payment with this id", code="payment_not_found", param="payment_id"
        )
    decision = apply_transfer(
        btrepo.facts_of(*found), value=incoming.amount, currency=incoming.currency
    )
    if not isinstance(decision, Applied):
        raise Unprocessable(
            f"the transfer cannot be applied to this payment: {decision.reason}",
            code=decision.reason,
            param="payment_id",
        )
    await btrepo.resolve_incoming(conn, transfer_id, TransferStatus.ASSIGNED, payment_id, None)
    await _apply(
        conn,
        found[0],
        decision,
        now=now,
        detail={
            "source": "operator",
            "transfer_id": transfer_id,
            "psp_reference": incoming.psp_reference,
            "amount": {"value": incoming.amount, "currency": incoming.currency},
        },
    )
    row = await btrepo.incoming(conn, tenant_id, transfer_id)
    assert row is not None
    return incoming_of(row)


async def return_transfer(
    conn: Conn, tenant_id: str, transfer_id: str, note: str | None
) -> IncomingTransfer:
    """An operator sends a parked transfer back to its sender (recorded here; the bank
    return itself is the operator's)."""
    incoming = await btrepo.incoming_for_update(conn, tenant_id, transfer_id)
    if incoming is None:
        raise NotFound("no such incoming transfer", code="transfer_not_found", param="id")
    if incoming.status != TransferStatus.UNMATCHED:
        raise Conflict(
            f"the transfer is {incoming.status}, only an UNMATCHED one can be returned",
            code="transfer_not_unmatched",
        )
    await btrepo.resolve_incoming(conn, transfer_id, TransferStatus.RETURNED, None, note)
    row = await btrepo.incoming(conn, tenant_id, transfer_id)
    assert row is not None
    return incoming_of(row)


def incoming_of(transfer: StoredIncomingTransfer) -> IncomingTransfer:
    return IncomingTransfer(
        id=transfer.id,
        psp_reference=transfer.psp_reference,
        reference=transfer.reference,
        amount=transfer.amount,
        currency=transfer.currency,
        status=transfer.status,
        reason=transfer.reason,
        payment_id=transfer.payment_id,
        created_at=transfer.created_at,
        resolved_at=transfer.resolved_at,
        resolved_note=transfer.resolved_note,
    )


async def bank_transfer_payments(
    conn: Conn, events: Sequence[LogisticOrderStatusChanged]
) -> list[str | None]:
    """The bank-transfer payment each SHIPPED is about (None for any other event, and for a
    card payment's line: most of them), looked up for a batch of events in one statement."""
    shipped = [i for i, e in enumerate(events) if e.status == "SHIPPED"]
    found: list[str | None] = [None] * len(events)
    if not shipped:
        return found
    payments = await btrepo.payments_of_lines(
        conn,
        [(events[i].tenant_id, events[i].order_id, events[i].logistic_order_id) for i in shipped],
    )
    for i, payment_id in zip(shipped, payments, strict=True):
        found[i] = payment_id
    return found


async def record_shipment(
    conn: Conn, event: LogisticOrderStatusChanged, payment_id: str | None
) -> str:
    """The due date of the bank-transfer payment one of whose lines shipped (the first
    shipment fixes it), `payment_id` as `bank_transfer_payments` found it; the outcome for
    logs and metrics."""
    if event.status != "SHIPPED":
        return "ignored_status"
    if payment_id is None:
        return "not_a_bank_transfer"
    found = await btrepo.lock_by_payment(conn, event.tenant_id, payment_id)
    assert found is not None
    payment, transfer = found
    if payment.payment_option != "BANK_WIRE_ON_DUE_DATE":
        return "not_on_due_date"  # ON_ACCEPTANCE: the order waits for the money, no terms
    if transfer.due_date is not None:
        return "due_date_known"
    terms = await btrepo.supplier_terms(conn, event.tenant_id, event.supplier_id)
    if terms is None:
        # its terms have not reached checkout yet: the consumer retries with a growing delay
        raise LookupError(f"supplier {event.supplier_id} is not in checkout's replica yet")
    tenant = await repo.tenant_replica(conn, event.tenant_id) or {}
    time_zone = str(tenant.get("time_zone") or "UTC")
    if not valid_time_zone(time_zone):
        time_zone = "UTC"
    delay = int(terms.get("payment_due_date_delay", 0))
    mode = str(terms.get("payment_due_date_mode", "SIMPLE"))
    due = due_date(event.occurred_at, delay, mode, time_zone)
    await btrepo.save_due_date(
        conn, payment_id, shipped_at=event.occurred_at, time_zone=time_zone, due=due
    )
    await repo.note(
        conn,
        payment,
        "bank_transfer_due_date",
        {
            "logistic_order_id": event.logistic_order_id,
            "shipped_at": event.occurred_at.isoformat(),
            "time_zone": time_zone,
            "payment_due_date_delay": delay,
            "payment_due_date_mode": mode,
            "due_date": due.isoformat(),
        },
    )
    return "due_date_set"


async def flag_overdue(conn: Conn, *, limit: int = 100) -> int:
    """One step of the overdue scheduler: flag what is overdue now, once per payment and due
    date. Rows are claimed with FOR UPDATE SKIP LOCKED and marked in the same transaction as
    their `payment.overdue`, so replicas running this at once never flag one twice."""
    flagged = 0
    for row in await btrepo.claim_overdue(conn, limit):
        if not is_overdue(row.due_date, row.today, row.status):
            continue
        currency = row.currency
        await btrepo.mark_overdue(conn, row.payment_id, row.due_date)
        await repo.add_timeline(
            conn,
            row.payment_id,
            "bank_transfer_overdue",
            status_from=row.status,
            status_to=row.status,
            detail={"due_date": row.due_date.isoformat()},
        )
        await publish_event(
            conn,
            EventType.PAYMENT_OVERDUE,
            PaymentOverdue(
                payment_id=row.payment_id,
                order_id=row.order_id,
                buyer_account=row.buyer_account,
                due_date=row.due_date,
                amount=Money(value=row.amount, currency=currency),
                remaining=Money(value=max(row.amount - row.received, 0), currency=currency),
            ),
            tenant_id=row.tenant_id,
            aggregate_id=row.payment_id,
        )
        flagged += 1
    return flagged
