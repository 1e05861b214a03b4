"""OMS logistic-order events: load (the tenancy replicas, the shipped line with its payment,
locked, and its capture: one query) → decide (`shipment_domain.decide_shipment`) → save (the
OMS event with what it did and the capture it made: one statement; the capture's event)."""

from __future__ import annotations

from datetime import datetime

from capture.clock import RANDOM_IDS
from capture.repository import ShipmentRepo
from capture.shipment_domain import Ids, OmsOutcome, decide_shipment
from common.events import LogisticOrderStatusChanged


async def on_logistic_order_event(
    repo: ShipmentRepo,
    message_id: str,
    event: LogisticOrderStatusChanged,
    *,
    now: datetime,
    ids: Ids = RANDOM_IDS,
) -> OmsOutcome:
    """Record every OMS event with what it did (see `shipment_domain`)."""
    tenancy, found = await repo.load_shipment(event)
    decision = decide_shipment(event, tenancy, found, now=now, ids=ids)
    return await repo.save_shipment(message_id, event, decision)
