"""OMS logistic-order events: load (the tenancy replicas, the shipped line with its payment,
locked, and its capture: one query) → decide (`shipment_domain.decide_shipment`) → save (the
OMS event with what it did, the capture it made and the capture's event: one statement).

A capture due at once is leased in that statement when a `Sender` can send it right after the
commit (an executor on this replica, inside a consumer's transaction): the PSP request leaves
without waiting for an executor to claim it."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from capture.clock import RANDOM_IDS
from capture.domain import CaptureStatus, Claim, Lease, first_claim
from capture.repository import ShipmentRepo
from capture.shipment_domain import Ids, OmsOutcome, ShipmentDecision, decide_shipment
from common.events import LogisticOrderStatusChanged


class Sender(Protocol):
    def lease(self, now: datetime) -> Lease | None:
        """A lease for a capture this replica will send after the commit; None if it can't."""
        ...

    def send_after_commit(self, claim: Claim) -> None:
        """Send `claim` once the transaction that created its capture has committed."""
        ...


async def on_logistic_order_event(
    repo: ShipmentRepo,
    message_id: str,
    event: LogisticOrderStatusChanged,
    *,
    now: datetime,
    ids: Ids = RANDOM_IDS,
    sender: Sender | None = None,
) -> OmsOutcome:
    """Record every OMS event with what it did (see `shipment_domain`)."""
    tenancy, found = await repo.load_shipment(event)
    decision = decide_shipment(event, tenancy, found, now=now, ids=ids)
    lease = sender.lease(now) if sender is not None and _due_now(decision, now) else None
    outcome = await repo.save_shipment(message_id, event, decision, lease=lease)
    created = decision.capture is not None and outcome.capture_id == decision.capture.capture.id
    if lease is not None and sender is not None and created:  # so leased by this statement
        assert decision.capture is not None
        sender.send_after_commit(first_claim(decision.capture.capture, lease))
    return outcome


def _due_now(decision: ShipmentDecision, now: datetime) -> bool:
    capture = decision.capture.capture if decision.capture is not None else None
    return (
        capture is not None
        and capture.status is CaptureStatus.PENDING
        and capture.next_attempt_at is not None
        and capture.next_attempt_at <= now
    )
