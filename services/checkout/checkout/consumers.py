"""Checkout's event handlers: PSP notifications drive a payment's status.

Each notification, whatever its effect (applied, unchanged, or an anomaly), is recorded in the
payment's timeline. The status machine makes a late or repeated fact a no-op, so notifications
may arrive in any order and any number of times; the inbox makes a redelivered message a no-op.
An AUTHORISATION whose amount is not the payment's is an anomaly: recorded, never applied.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from checkout import domain, repo, service
from common.broker.consumer import Handler
from common.broker.topology import QueueSpec
from common.events import DOMAIN_EXCHANGE, Envelope, EventType, PspNotificationReceived
from common.logging import get_logger
from common.runtime import Consumption

log = get_logger("checkout.consumers")

SOURCE = "psp_notification"


async def on_psp_notification(conn: asyncpg.Connection, envelope: Envelope) -> None:
    event = PspNotificationReceived.model_validate(envelope.data)
    if envelope.tenant_id is None:
        log.warning("psp notification without a tenant", notification_id=event.notification_id)
        return
    payment = await repo.get_payment(
        conn, envelope.tenant_id, event.merchant_reference, for_update=True
    )
    if payment is None and event.original_reference:
        # a modification (CAPTURE, REFUND, ...) names our capture or refund as its merchant
        # reference, and the payment by the PSP's reference of the authorisation
        payment = await repo.payment_by_psp_reference(
            conn, envelope.tenant_id, event.original_reference, for_update=True
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
        != (payment["amount"], payment["currency"].strip())
    ):
        log.warning(
            "psp notification amount differs from the payment's",
            payment_id=payment["id"],
            notification_id=event.notification_id,
        )
        await repo.add_timeline(
            conn,
            payment["id"],
            "psp_notification_anomaly",
            status_from=payment["status"],
            status_to=payment["status"],
            detail={**detail, "reason": "amount differs from the payment's"},
        )
        return
    fact = domain.notification_fact(event.event_code, event.success)
    if fact is None:
        await repo.add_timeline(
            conn,
            payment["id"],
            SOURCE,
            status_from=payment["status"],
            status_to=payment["status"],
            detail={**detail, "applied": False},
        )
        return
    updates: dict[str, Any] = {}
    if event.event_code == "AUTHORISATION":
        updates["psp_reference"] = event.psp_reference
        if not event.success:
            updates["refusal_reason"] = event.reason or None
    await service.change_status(conn, payment, fact, source=SOURCE, detail=detail, updates=updates)


PSP_NOTIFICATION_HANDLERS: dict[str, Handler] = {
    EventType.PSP_NOTIFICATION_RECEIVED: on_psp_notification,
}


def psp_notifications_consumption() -> Consumption:
    return Consumption(
        spec=QueueSpec(
            name="checkout.psp-notifications",
            bindings=[(DOMAIN_EXCHANGE, t) for t in PSP_NOTIFICATION_HANDLERS],
        ),
        handlers=PSP_NOTIFICATION_HANDLERS,
    )
