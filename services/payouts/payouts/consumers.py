"""Payouts' event handlers and the queues they read.

- `payouts.tenancy` (`tenant.*`, `supplier.*`, `api_key.*`): the tenancy replica (funding
  policy, banking mode, allowed logistic statuses, schedules, KYC, IBAN, API keys).
- `payouts.ledger` (`capture.succeeded`, `refund.*`, `chargeback.*`): the ledger, and the
  funding answer to each `refund.requested`. One queue, so that a refund's events are applied
  in the order capture published them.
- `payouts.payments` (`payment.status_changed`): which payments are PAID.
- `payouts.oms` (`logistic_order.status_changed` on `oms.events`): logistic statuses.

An event no retry can fix (a negative amount, an unknown or foreign currency, lines that do
not add up) goes to the queue's DLQ with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel

from common.broker.consumer import Handler, PoisonMessageError, oms_parser, tenant_payload
from common.broker.topology import QueueSpec
from common.db.types import Conn
from common.events import (
    DOMAIN_EXCHANGE,
    OMS_EXCHANGE,
    OMS_STATUS_CHANGED,
    CaptureSucceeded,
    ChargebackEvent,
    Envelope,
    EventType,
    LogisticOrderStatusChanged,
    PaymentStatusChanged,
    RefundFailed,
    RefundRequested,
    RefundSucceeded,
)
from common.runtime import Consumption
from common.tenancy import tenancy_consumption
from payouts import service
from payouts.domain import InvalidEventError

OMS_ID_NAMESPACE = uuid.UUID("0d7f5f6e-3b9e-4d0e-8a6c-3f1c2b7a9e55")
M = TypeVar("M", bound=BaseModel)


def _handler(model: type[M], apply: Callable[[Conn, str, M], Awaitable[None]]) -> Handler:
    async def handle(conn: Conn, envelope: Envelope) -> None:
        event, tenant_id = tenant_payload(envelope, model)
        try:
            await apply(conn, tenant_id, event)
        except InvalidEventError as exc:
            raise PoisonMessageError(str(exc)) from exc

    return handle


async def _chargeback_received(conn: Conn, tenant_id: str, event: ChargebackEvent) -> None:
    await service.on_chargeback(conn, tenant_id, event, reversed_=False)


async def _chargeback_reversed(conn: Conn, tenant_id: str, event: ChargebackEvent) -> None:
    await service.on_chargeback(conn, tenant_id, event, reversed_=True)


async def _payment_status(conn: Conn, envelope: Envelope) -> None:
    event, tenant_id = tenant_payload(envelope, PaymentStatusChanged)
    await service.on_payment_status(conn, tenant_id, event, envelope.occurred_at)


async def _logistic_order(conn: Conn, envelope: Envelope) -> None:
    await service.on_logistic_order_status(
        conn, LogisticOrderStatusChanged.model_validate(envelope.data)
    )


LEDGER_HANDLERS: dict[str, Handler] = {
    EventType.CAPTURE_SUCCEEDED: _handler(CaptureSucceeded, service.on_capture_succeeded),
    EventType.REFUND_REQUESTED: _handler(RefundRequested, service.on_refund_requested),
    EventType.REFUND_SUCCEEDED: _handler(RefundSucceeded, service.on_refund_succeeded),
    EventType.REFUND_FAILED: _handler(RefundFailed, service.on_refund_failed),
    EventType.CHARGEBACK_RECEIVED: _handler(ChargebackEvent, _chargeback_received),
    EventType.CHARGEBACK_REVERSED: _handler(ChargebackEvent, _chargeback_reversed),
}


def consumptions() -> list[Consumption]:
    return [
        tenancy_consumption("payouts.tenancy"),
        Consumption(
            spec=QueueSpec(
                name="payouts.ledger", bindings=[(DOMAIN_EXCHANGE, t) for t in LEDGER_HANDLERS]
            ),
            handlers=LEDGER_HANDLERS,
        ),
        Consumption(
            spec=QueueSpec(
                name="payouts.payments",
                bindings=[(DOMAIN_EXCHANGE, EventType.PAYMENT_STATUS_CHANGED)],
            ),
            handlers={EventType.PAYMENT_STATUS_CHANGED: _payment_status},
        ),
        Consumption(
            spec=QueueSpec(name="payouts.oms", bindings=[(OMS_EXCHANGE, OMS_STATUS_CHANGED)]),
            handlers={OMS_STATUS_CHANGED: _logistic_order},
            parser=oms_parser(OMS_ID_NAMESPACE),
        ),
    ]
