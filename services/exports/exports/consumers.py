"""Exports' event handlers and the queues they read.

- `exports.tenancy` (`tenant.*`, `supplier.*`, `api_key.*`): the tenancy replica (API keys).
- `exports.feed`: every event the read models are built from (`payment.authorised`,
  `capture.succeeded`, `refund.succeeded` / `.failed`, `chargeback.received` / `.reversed`,
  `payout.*`, `funding_transfer.*`). One queue, so the events of one payment are applied in
  the order they were published; a payload that does not match the catalogue is poison and goes
  to `exports.feed.dlq` with the reason.
"""

from __future__ import annotations

from common.broker.consumer import Handler, tenant_payload
from common.broker.topology import QueueSpec
from common.db.types import Conn
from common.events import DOMAIN_EXCHANGE, Envelope
from common.runtime import Consumption
from exports import service
from exports.domain import FEED_EVENTS

FEED_QUEUE = "exports.feed"


async def on_feed_event(conn: Conn, envelope: Envelope) -> None:
    event, tenant_id = tenant_payload(envelope, FEED_EVENTS[envelope.type])
    await service.apply_event(conn, envelope, event, tenant_id)


def consumptions() -> list[Consumption]:
    handlers: dict[str, Handler] = {event_type: on_feed_event for event_type in FEED_EVENTS}
    return [
        Consumption(
            spec=QueueSpec(name=FEED_QUEUE, bindings=[(DOMAIN_EXCHANGE, t) for t in FEED_EVENTS]),
            handlers=handlers,
        )
    ]
