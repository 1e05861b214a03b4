"""The payments replica: checkout's `payment.created`, `.authorised`, `.cancelled` and
`.refused`, and what an authorisation sets off according to the capture mode (the session's,
else the tenant's): IMMEDIATE captures every line now, DELAYED schedules the capture,
ON_SHIPMENT captures the lines whose SHIPPED arrived already, MANUAL waits for ADM-PAY-101."""

from __future__ import annotations

from datetime import datetime

from capture import errors
from capture.clock import RANDOM_IDS
from capture.creation import create_captures
from capture.domain import (
    CARD_OPTIONS,
    Capture,
    Line,
    Payment,
    effective_mode,
    schedule_capture,
)
from capture.repository import PaymentsRepo
from capture.shipment_domain import Ids, decide_earlier_shipments
from common.broker import PoisonMessageError
from common.events import PaymentAuthorised, PaymentCreated, PaymentOutcome
from common.logging import get_logger

log = get_logger("capture.service")


def _lines(event: PaymentCreated | PaymentAuthorised) -> list[Line]:
    return [Line(x.logistic_order_id, x.supplier_id, x.amount) for x in event.lines]


async def record_payment_created(repo: PaymentsRepo, tenant_id: str, event: PaymentCreated) -> None:
    """Remember the payment and its lines, so that a SHIPPED before the authorisation is
    recognised as one (and captured when the authorisation arrives)."""
    payment = Payment(
        tenant_id=tenant_id,
        payment_id=event.payment_id,
        order_id=event.order_id,
        payment_option=event.payment_option,
        status="CREATED",
        capture_mode=None,
        amount=event.amount.value,
        currency=event.amount.currency,
        psp_reference=None,
        merchant_account=None,
        level3=None,
    )
    await repo.insert_created_payment(payment, _lines(event))


async def record_payment_authorised(
    repo: PaymentsRepo,
    tenant_id: str,
    event: PaymentAuthorised,
    *,
    authorised_at: datetime,
    now: datetime,
    ids: Ids = RANDOM_IDS,
) -> list[Capture]:
    """Store the authorised payment, then act on its capture mode."""
    if event.psp_reference is None:
        raise PoisonMessageError("payment.authorised without a psp_reference cannot be captured")
    lines = _lines(event)
    tenancy = await repo.tenancy(tenant_id, [x.supplier_id for x in lines])
    if tenancy.tenant is None:
        raise errors.TenantNotReplicated(tenant_id)
    payment = await repo.upsert_authorised_payment(
        Payment(
            tenant_id=tenant_id,
            payment_id=event.payment_id,
            order_id=event.order_id,
            payment_option=event.payment_option,
            status="AUTHORISED",
            capture_mode=event.capture_mode,
            amount=event.amount.value,
            currency=event.amount.currency,
            psp_reference=event.psp_reference,
            merchant_account=event.merchant_account,
            level3=event.level3,
        ),
        lines,
        authorised_at,
    )
    if payment is None:
        log.info("authorisation of a closed payment ignored", payment_id=event.payment_id)
        return []
    if event.payment_option not in CARD_OPTIONS:
        return []
    mode = effective_mode(event.capture_mode, tenancy.tenant.capture_mode)
    if mode == "IMMEDIATE":
        return await create_captures(
            repo, payment, lines, tenancy=tenancy, trigger="IMMEDIATE", now=now, ids=ids
        )
    if mode == "DELAYED":
        due_at, scheduled = schedule_capture(
            payment,
            lines,
            delay_hours=tenancy.tenant.capture_delay_hours,
            authorised_at=authorised_at,
        )
        await repo.schedule(tenant_id, payment.payment_id, due_at, scheduled)
    waiting = await repo.shipments_waiting(tenant_id, payment.order_id)
    if not waiting:
        return []
    existing = await repo.captures_of_payment(tenant_id, payment.payment_id)
    resolutions, new = decide_earlier_shipments(
        payment,
        lines,
        waiting,
        tenancy,
        mode=mode,
        captured=frozenset(existing),
        now=now,
        ids=ids,
    )
    created = await repo.save_new_captures(new)
    await repo.resolve_logistic_order_events(resolutions)
    return created


async def record_payment_closed(
    repo: PaymentsRepo, tenant_id: str, event: PaymentOutcome, status: str
) -> None:
    """A cancelled or refused payment: nothing of it is captured any more (a due schedule
    finds it closed and is skipped)."""
    await repo.close_payment(
        Payment(
            tenant_id=tenant_id,
            payment_id=event.payment_id,
            order_id=event.order_id,
            payment_option=event.payment_option,
            status=status,
            capture_mode=event.capture_mode,
            amount=event.amount.value,
            currency=event.amount.currency,
            psp_reference=event.psp_reference,
            merchant_account=None,
            level3=None,
        )
    )
