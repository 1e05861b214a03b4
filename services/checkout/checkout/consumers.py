"""Checkout's event handlers: PSP notifications and the capture service's events drive a
payment's status.

Checkout's queue of PSP notifications is bound to the event codes checkout acts on
(AUTHORISATION, CANCELLATION, BANK_TRANSFER_RECEIVED) and to those about a payment that no
other service applies (`RECORDED_CODES`); the broker never delivers it a CAPTURE, a REFUND or a
dispute, which the capture service applies and reports to checkout as its own events. Each
notification checkout receives, whatever its effect (applied, unchanged, or an anomaly), is
recorded in the payment's timeline. The status machine makes a late or repeated fact a no-op,
so notifications may arrive in any order and any number of times; the inbox makes a
redelivered message a no-op.
An AUTHORISATION whose amount is not the payment's is an anomaly: recorded, never applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from checkout import bank_transfers, domain, repo, service
from checkout.bank_transfer_domain import TRANSFER_EVENT_CODE
from common.broker.consumer import Batched, Handler, one_by_one, tenant_payload
from common.broker.topology import QueueSpec
from common.db.types import Conn
from common.events import (
    CATALOGUE,
    DOMAIN_EXCHANGE,
    CaptureEvent,
    CaptureScheduled,
    ChargebackEvent,
    Envelope,
    EventType,
    PspNotificationReceived,
    RefundEvent,
    RefundFailed,
    RefundSucceeded,
    read_data,
)
from common.logging import get_logger
from common.runtime import Consumption, notification_consumption

log = get_logger("checkout.consumers")

SOURCE = "psp_notification"

APPLIED_CODES = ("AUTHORISATION", "CANCELLATION", TRANSFER_EVENT_CODE)
"""The PSP notifications that move a checkout payment (or its bank transfer)."""
RECORDED_CODES = (
    "AUTHORISATION_ADJUSTMENT",
    "CANCEL_OR_REFUND",
    "EXPIRE",
    "HANDLED_EXTERNALLY",
    "MANUAL_REVIEW_ACCEPT",
    "MANUAL_REVIEW_REJECT",
    "NOTIFICATION_OF_FRAUD",
    "OFFER_CLOSED",
    "ORDER_CLOSED",
    "ORDER_OPENED",
    "PENDING",
    "TECHNICAL_CANCEL",
)
"""Notifications about a payment that no service applies: recorded in its timeline only."""
NOTIFICATION_CODES = (*APPLIED_CODES, *RECORDED_CODES)


async def on_psp_notification(conn: Conn, envelope: Envelope) -> None:
    event = read_data(PspNotificationReceived, envelope.data)
    if envelope.tenant_id is None:
        log.warning("psp notification without a tenant", notification_id=event.notification_id)
        return
    if event.event_code == TRANSFER_EVENT_CODE:
        await bank_transfers.receive(conn, envelope.tenant_id, event, now=envelope.occurred_at)
        return
    fact = domain.notification_fact(event.event_code, event.success)
    # Only a notification that may move the payment locks it. One that is only recorded must
    # not: in a batch it would lock payments in delivery order while the capture events'
    # batch locks them in its own, a deadlock that PostgreSQL breaks only after a second.
    lock = fact is not None or event.event_code == "AUTHORISATION"
    payment = None
    if event.merchant_reference.startswith(service.PAYMENT_ID_PREFIX):
        payment = await repo.get_payment(
            conn, envelope.tenant_id, event.merchant_reference, for_update=lock
        )
    if payment is None and event.original_reference:
        # a modification (CAPTURE, REFUND, ...) names our capture or refund as its merchant
        # reference, and the payment by the PSP's reference of the authorisation
        payment = await repo.payment_by_psp_reference(
            conn, envelope.tenant_id, event.original_reference, for_update=lock
        )
    if payment is None:
        # not one of checkout's payments (a payout's, another service's reference)
        return
    detail: dict[str, Any] = {
        "notification_id": event.notification_id,
        "event_code": event.event_code,
        "success": event.success,
        "psp_reference": event.psp_reference,
        "original_reference": event.original_reference,
        "amount": event.amount.model_dump() if event.amount is not None else None,
        "reason": event.reason,
    }
    if (
        event.event_code == "AUTHORISATION"
        and event.amount is not None
        and (event.amount.value, event.amount.currency)
        != (payment.amount, payment.currency.strip())
    ):
        log.warning(
            "psp notification amount differs from the payment's",
            payment_id=payment.id,
            notification_id=event.notification_id,
        )
        await repo.note(
            conn,
            payment,
            "psp_notification_anomaly",
            {**detail, "reason": "amount differs from the payment's"},
        )
        return
    if fact is None:
        await repo.note(conn, payment, SOURCE, {**detail, "applied": False})
        return
    updates: dict[str, Any] = {}
    if event.event_code == "AUTHORISATION":
        updates["psp_reference"] = event.psp_reference
        if not event.success:
            updates["refusal_reason"] = event.reason or None
    await service.change_status(conn, payment, fact, source=SOURCE, detail=detail, updates=updates)


def psp_notifications_consumption() -> Consumption:
    return notification_consumption(
        "checkout.psp-notifications", on_psp_notification, NOTIFICATION_CODES
    )


# --- the capture service's events ---------------------------------------------------------------

CAPTURE_SOURCE = "capture"


async def on_capture_events(conn: Conn, envelopes: Sequence[Envelope]) -> None:
    """Captures' progress, applied to their lines and, through the status machine, to their
    payments; each recorded in its payment's timeline whatever it changes. The payments of
    the whole batch and their lines are locked and loaded first, in one statement and in id
    order (two batches never wait on each other's locks crosswise); each event is then
    decided in delivery order, in memory, a later one seeing what an earlier one did; what
    they all change (lines, statuses, timeline entries, events) is written in one statement
    at the end. Each line keeps the revision of the capture event it last applied, so events
    may arrive in any order and any number of times: an older one is recorded and changes
    nothing."""
    events = [_capture_event(envelope) for envelope in envelopes]
    payments = await repo.lock_payments_with_lines(conn, [(t, e.payment_id) for e, t in events])
    changes = repo.PaymentChanges()
    for envelope, (event, tenant_id) in zip(one_by_one(envelopes), events, strict=True):
        key = (tenant_id, event.payment_id)
        if key not in payments:
            log.warning("capture event for an unknown payment", payment_id=event.payment_id)
            continue
        payment, lines = payments[key]
        line = None
        if not isinstance(event, CaptureScheduled):
            line = _applied_line(lines, envelope.type, event)
        if line is not None:
            lines[line.logistic_order_id] = line
            changes.line(line)
        status = _record_capture_event(changes, payment, lines, envelope.type, event, line)
        if status is not None:  # a later event of this batch sees the payment as it now is
            payments[key] = (dataclasses.replace(payment, status=status.value), lines)
    await repo.save_payment_changes(conn, changes)


def _capture_event(envelope: Envelope) -> tuple[CaptureEvent | CaptureScheduled, str]:
    event, tenant_id = tenant_payload(envelope, CATALOGUE[envelope.type])
    assert isinstance(event, CaptureEvent | CaptureScheduled)
    return event, tenant_id


def _applied_line(
    lines: dict[str, domain.CaptureLine], event_type: str, event: CaptureEvent
) -> domain.CaptureLine | None:
    """The event's line as the event leaves it; None if it changes nothing."""
    line = lines.get(event.logistic_order_id)
    if line is None:
        return None
    return domain.apply_line_capture(
        line, domain.line_capture_of(event_type), event.capture_id, event.revision
    )


def _record_capture_event(
    changes: repo.PaymentChanges,
    payment: domain.StoredPayment,
    lines: dict[str, domain.CaptureLine],
    event_type: str,
    event: CaptureEvent | CaptureScheduled,
    applied: domain.CaptureLine | None,
) -> domain.Status | None:
    """One capture event, applied (`applied`: its line as it left it) to `lines`, recorded in
    its payment's timeline, and the payment moved when the status machine decides so, all in
    `changes`; the payment's status when it decided (None: only recorded)."""
    if isinstance(event, CaptureScheduled):
        changes.note(
            payment, CAPTURE_SOURCE, {"event": event_type, "due_at": event.due_at.isoformat()}
        )
        return None
    detail: dict[str, Any] = {
        "event": event_type,
        "capture_id": event.capture_id,
        "revision": event.revision,
        "logistic_order_id": event.logistic_order_id,
        "amount": event.amount.model_dump(),
        **{
            name: getattr(event, name)
            for name in ("psp_reference", "code", "reason", "message", "retries_exhausted")
            if hasattr(event, name)
        },
    }
    status = domain.line_capture_of(event_type)
    line = lines.get(event.logistic_order_id)
    unchanged = None
    if line is None:
        unchanged = "the payment has no such logistic order"
    elif status is not None and applied is None:
        unchanged = f"older than the capture's revision {line.capture_revision} applied"
    if unchanged is not None or status is None:
        changes.note(payment, CAPTURE_SOURCE, {**detail, "applied": False, "reason": unchanged})
        return None
    decided = domain.capture_fact(
        [domain.LineCapture(x.status) for x in lines.values()],
        failed=status in (domain.LineCapture.CAPTURE_FAILED, domain.LineCapture.CAPTURE_BLOCKED),
    )
    if decided is None:
        changes.note(payment, CAPTURE_SOURCE, detail)
        return None
    return service.stage_status_change(
        changes,
        payment,
        decided.fact,
        lines=list(lines.values()),
        source=CAPTURE_SOURCE,
        detail=detail,
        remaining_capture=decided.remaining_capture,
    )


_CAPTURE_EVENTS = Batched(on_capture_events)
CAPTURE_HANDLERS: dict[str, Handler | Batched] = {
    EventType.CAPTURE_SCHEDULED: _CAPTURE_EVENTS,
    EventType.CAPTURE_REQUESTED: _CAPTURE_EVENTS,
    EventType.CAPTURE_SUCCEEDED: _CAPTURE_EVENTS,
    EventType.CAPTURE_FAILED: _CAPTURE_EVENTS,
    EventType.CAPTURE_BLOCKED: _CAPTURE_EVENTS,
}


def captures_consumption() -> Consumption:
    return Consumption(
        spec=QueueSpec(
            name="checkout.captures", bindings=[(DOMAIN_EXCHANGE, t) for t in CAPTURE_HANDLERS]
        ),
        handlers=CAPTURE_HANDLERS,
    )


# --- the capture service's refunds and chargebacks ----------------------------------------------

REFUND_SOURCE = "refund"


async def on_refund_event(conn: Conn, envelope: Envelope) -> None:
    """A refund's or a chargeback's progress moves the payment through the status machine
    (WAITING_REFUND, PARTIALLY_REFUNDED, REFUNDED, CHARGEBACK and back) and is recorded in
    its timeline whatever it changes."""
    event, tenant_id = tenant_payload(envelope, CATALOGUE[envelope.type])
    assert isinstance(event, RefundEvent | ChargebackEvent)
    payment = await repo.get_payment(conn, tenant_id, event.payment_id, for_update=True)
    if payment is None:
        log.warning("refund event for an unknown payment", payment_id=event.payment_id)
        return
    refunded = None
    if isinstance(event, RefundSucceeded | RefundFailed) and event.payment_refunded is not None:
        refunded = event.payment_refunded.value
    detail: dict[str, Any] = {
        "event": envelope.type,
        "revision": event.revision,
        "amount": event.amount.model_dump(),
        "lines": [line.model_dump() for line in event.lines],
    }
    if isinstance(event, RefundEvent):
        detail.update(refund_id=event.refund_id, logistic_order_id=event.logistic_order_id)
    else:
        detail.update(chargeback_id=event.chargeback_id, stage=event.stage)
    decided = domain.refund_fact(envelope.type, payment.amount, refunded)
    if decided is None:
        await repo.note(conn, payment, REFUND_SOURCE, detail)
        return
    await service.change_status(
        conn,
        payment,
        decided.fact,
        source=REFUND_SOURCE,
        detail=detail,
        previous=decided.previous,
    )


REFUND_HANDLERS: dict[str, Handler] = {
    EventType.REFUND_REQUESTED: on_refund_event,
    EventType.REFUND_SUCCEEDED: on_refund_event,
    EventType.REFUND_FAILED: on_refund_event,
    EventType.CHARGEBACK_RECEIVED: on_refund_event,
    EventType.CHARGEBACK_REVERSED: on_refund_event,
}


def refunds_consumption() -> Consumption:
    return Consumption(
        spec=QueueSpec(
            name="checkout.refunds", bindings=[(DOMAIN_EXCHANGE, t) for t in REFUND_HANDLERS]
        ),
        handlers=REFUND_HANDLERS,
    )
