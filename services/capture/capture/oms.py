"""OMS logistic-order events: load (the tenancy replicas, the shipped line with its payment,
locked, and its capture: one query for a consumer batch of events) → decide
(`shipment_domain.decide_shipment`) → save (the OMS event with what it did, the capture it
made and the capture's event: one statement).

A capture due at once is leased in that statement when a `Sender` can send it right after the
commit (an executor on this replica, inside a consumer's transaction): the PSP request leaves
without waiting for an executor to claim it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from capture.clock import RANDOM_IDS
from capture.domain import CaptureStatus, Claim, Lease, Tenancy, first_claim
from capture.repository import ShipmentRepo
from capture.shipment_domain import (
    Ids,
    OmsOutcome,
    ShipmentDecision,
    ShipmentLine,
    decide_shipment,
)
from common.events import LogisticOrderStatusChanged


class Sender(Protocol):
    def lease(self, now: datetime) -> Lease | None:
        """A lease for a capture this replica will send after the commit; None if it can't."""
        ...

    def send_after_commit(self, claim: Claim) -> None:
        """Send `claim` once the transaction that created its capture has committed."""
        ...


Loaded = tuple[Tenancy, list[ShipmentLine]]
"""What `ShipmentRepo.load_shipments` found for one event."""


async def on_logistic_order_event(
    repo: ShipmentRepo,
    message_id: str,
    event: LogisticOrderStatusChanged,
    *,
    now: datetime,
    ids: Ids = RANDOM_IDS,
    sender: Sender | None = None,
    loaded: Loaded | None = None,
) -> OmsOutcome:
    """Record every OMS event with what it did (see `shipment_domain`). `loaded`: what a
    batch's `load_shipments` found for this event, when nothing before it in the batch can
    have changed that (`loaded_for_batch`)."""
    tenancy, found = loaded if loaded is not None else (await repo.load_shipments([event]))[0]
    decision = decide_shipment(event, tenancy, found, now=now, ids=ids)
    lease = sender.lease(now) if sender is not None and _due_now(decision, now) else None
    outcome = await repo.save_shipment(message_id, event, decision, lease=lease)
    created = decision.capture is not None and outcome.capture_id == decision.capture.capture.id
    if lease is not None and sender is not None and created:  # so leased by this statement
        assert decision.capture is not None
        sender.send_after_commit(first_claim(decision.capture.capture, lease))
    return outcome


async def loaded_for_batch(
    repo: ShipmentRepo, events: Sequence[LogisticOrderStatusChanged]
) -> list[Loaded | None]:
    """What a batch of OMS events needs, loaded in one query: for each event, what it found,
    or None when an earlier event of the batch is about the same line (it may capture it
    first: that one loads at its turn)."""
    loaded = await repo.load_shipments(events)
    seen: set[tuple[str, str, str]] = set()
    found: list[Loaded | None] = []
    for event, one in zip(events, loaded, strict=True):
        line = (event.tenant_id, event.order_id, event.logistic_order_id)
        found.append(None if line in seen else one)
        seen.add(line)
    return found


def _due_now(decision: ShipmentDecision, now: datetime) -> bool:
    capture = decision.capture.capture if decision.capture is not None else None
    return (
        capture is not None
        and capture.status is CaptureStatus.PENDING
        and capture.next_attempt_at is not None
        and capture.next_attempt_at <= now
    )
