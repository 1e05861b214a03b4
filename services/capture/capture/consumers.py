"""Capture's event handlers and the queues they read.

- `capture.tenancy` (`tenant.*`, `supplier.*`, `api_key.*`): the tenancy replica (rates,
  capture modes, API keys).
- `capture.payments` (`payment.created`, `.authorised`, `.cancelled`, `.refused`): the payments
  replica; IMMEDIATE captures, DELAYED schedules, SHIPPED events that came first.
- `capture.oms` (`logistic_order.status_changed` on `oms.events`): SHIPPED → capture in
  ON_SHIPMENT mode; every event recorded with its outcome.
- `capture.psp-notifications` (`psp.notification.received.CAPTURE`, `.CAPTURE_FAILED`): they
  confirm or fail a capture.

The OMS publishes bare JSON, not Marketpay envelopes: `common.broker.consumer.oms_parser`
validates it (anything malformed goes to `capture.oms.dlq` with the reason) and wraps it so that
the OMS event's `id` is the inbox message id: the same event delivered again is applied once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from capture import bank_transfers, oms
from capture import notifications as psp_notifications
from capture import payments as payments_replica
from capture.clock import Clock
from capture.metrics import CaptureMetrics
from capture.repo import PgRepo
from common.broker.consumer import (
    Batched,
    Handler,
    oms_parser,
    one_by_one,
    tenant_payload,
)
from common.broker.topology import QueueSpec
from common.db.types import Conn
from common.events import (
    DOMAIN_EXCHANGE,
    OMS_EXCHANGE,
    OMS_STATUS_CHANGED,
    BankTransferPaid,
    Envelope,
    EventType,
    LogisticOrderStatusChanged,
    PaymentAuthorised,
    PaymentCreated,
    PaymentOutcome,
    PspNotificationReceived,
)
from common.logging import get_logger
from common.runtime import Consumption, notification_consumption

log = get_logger("capture.consumers")

OMS_ID_NAMESPACE = uuid.UUID("6f0e3c52-6a5e-4c38-9d55-2b8f0a1c9e77")


def consumptions(
    clock: Clock, metrics: CaptureMetrics, sender: oms.Sender | None = None
) -> list[Consumption]:
    async def on_payment_created(conn: Conn, envelope: Envelope) -> None:
        event, tenant_id = tenant_payload(envelope, PaymentCreated)
        await payments_replica.record_payment_created(PgRepo(conn), tenant_id, event)

    async def on_payment_authorised(conn: Conn, envelope: Envelope) -> None:
        event, tenant_id = tenant_payload(envelope, PaymentAuthorised)
        await payments_replica.record_payment_authorised(
            PgRepo(conn), tenant_id, event, authorised_at=envelope.occurred_at, now=clock()
        )

    def on_payment_closed(status: str) -> Handler:
        async def handle(conn: Conn, envelope: Envelope) -> None:
            event, tenant_id = tenant_payload(envelope, PaymentOutcome)
            await payments_replica.record_payment_closed(PgRepo(conn), tenant_id, event, status)

        return handle

    async def on_logistic_order_events(conn: Conn, envelopes: Sequence[Envelope]) -> None:
        repo = PgRepo(conn)
        events = [LogisticOrderStatusChanged.model_validate(e.data) for e in envelopes]
        batch = await oms.ShipmentBatch.load(repo, events, now=clock, sender=sender)
        for envelope, event in zip(one_by_one(envelopes), events, strict=True):
            await batch.decide(str(envelope.id), event)
        outcomes = await batch.save()
        for _, event, result in zip(one_by_one(envelopes), events, outcomes, strict=True):
            metrics.oms_events.labels(result.outcome, result.reason or "").inc()
            if result.outcome == "ignored":
                log.warning(
                    "OMS event ignored",
                    reason=result.reason,
                    oms_event_id=event.id,
                    tenant_id=event.tenant_id,
                    order_id=event.order_id,
                    logistic_order_id=event.logistic_order_id,
                    status=event.status,
                )

    async def on_psp_notifications(conn: Conn, envelopes: Sequence[Envelope]) -> None:
        repo = PgRepo(conn)
        parsed = [tenant_payload(e, PspNotificationReceived) for e in envelopes]
        loaded = await psp_notifications.captures_named(repo, [event for event, _ in parsed])
        for _, (event, tenant_id) in zip(one_by_one(envelopes), parsed, strict=True):
            await psp_notifications.on_psp_notification(
                repo,
                tenant_id,
                event,
                now=clock(),
                metrics=metrics,
                loaded=loaded,
                defer=True,
            )
        await repo.save_deferred()

    payments: dict[str, Handler] = {
        EventType.PAYMENT_CREATED: on_payment_created,
        EventType.PAYMENT_AUTHORISED: on_payment_authorised,
        EventType.PAYMENT_CANCELLED: on_payment_closed("CANCELLED"),
        EventType.PAYMENT_REFUSED: on_payment_closed("REFUSED"),
    }

    async def on_bank_transfer_paid(conn: Conn, envelope: Envelope) -> None:
        event, tenant_id = tenant_payload(envelope, BankTransferPaid)
        await bank_transfers.record_bank_transfer_paid(PgRepo(conn), tenant_id, event, now=clock())

    bank_transfers_paid: dict[str, Handler] = {
        EventType.PAYMENT_BANK_TRANSFER_PAID: on_bank_transfer_paid
    }
    return [
        Consumption(
            spec=QueueSpec(
                name="capture.payments", bindings=[(DOMAIN_EXCHANGE, t) for t in payments]
            ),
            handlers=payments,
        ),
        Consumption(
            spec=QueueSpec(name="capture.oms", bindings=[(OMS_EXCHANGE, OMS_STATUS_CHANGED)]),
            handlers={OMS_STATUS_CHANGED: Batched(on_logistic_order_events)},
            parser=oms_parser(OMS_ID_NAMESPACE),
        ),
        notification_consumption(
            "capture.psp-notifications",
            Batched(on_psp_notifications),
            psp_notifications.CAPTURE_CODES,
        ),
        Consumption(
            spec=QueueSpec(
                name="capture.bank-transfers",
                bindings=[(DOMAIN_EXCHANGE, t) for t in bank_transfers_paid],
            ),
            handlers=bank_transfers_paid,
        ),
    ]
