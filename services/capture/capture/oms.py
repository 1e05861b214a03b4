"""OMS logistic-order events: load (the tenancy replica, the shipped line with its payment,
locked, and its capture) → decide (`shipment_domain.decide_shipment`) → save (the capture if
one is decided, with its event, and the OMS event with what it did)."""

from __future__ import annotations

from dataclasses import replace
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
    outcome = decision.outcome
    if decision.capture is not None and not await repo.save_new_captures([decision.capture]):
        # another trigger committed the line's capture while this one waited for the lock
        outcome = replace(outcome, outcome="ignored", reason="capture_exists", capture_id=None)
    await repo.record_logistic_order_event(message_id, event, outcome)
    return outcome
