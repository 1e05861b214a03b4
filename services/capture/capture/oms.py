"""OMS logistic-order events: load (the tenancy replicas, the shipped line with its payment,
locked, and its capture: one query for a consumer batch of events) → decide
(`shipment_domain.decide_shipment`) → save (the OMS event with what it did, the capture it
made and the capture's event: one statement; for a consumer batch, `ShipmentBatch`, the
batch's statements in one round trip per statement at the end).

A capture due at once is leased in that statement when a `Sender` can send it right after the
commit (an executor on this replica, inside a consumer's transaction): the PSP request leaves
without waiting for an executor to claim it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from capture.clock import RANDOM_IDS
from capture.domain import CaptureStatus, Claim, Lease, Tenancy, first_claim
from capture.repo import PgRepo
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
) -> OmsOutcome:
    """Record every OMS event with what it did (see `shipment_domain`)."""
    decision, lease = _decided(event, (await repo.load_shipments([event]))[0], now, ids, sender)
    outcome = await repo.save_shipment(message_id, event, decision, lease=lease)
    _send_if_leased(decision, lease, outcome, sender)
    return outcome


def _decided(
    event: LogisticOrderStatusChanged,
    loaded: Loaded,
    now: datetime,
    ids: Ids,
    sender: Sender | None,
) -> tuple[ShipmentDecision, Lease | None]:
    """The decision about `event`, and a lease if its capture is due now and can be sent
    right after the commit."""
    decision = decide_shipment(event, *loaded, now=now, ids=ids)
    lease = sender.lease(now) if sender is not None and _due_now(decision, now) else None
    return decision, lease


def _send_if_leased(
    decision: ShipmentDecision, lease: Lease | None, outcome: OmsOutcome, sender: Sender | None
) -> None:
    """The capture leased as it was made goes to the sender once the transaction commits."""
    made = decision.capture
    if lease is None or sender is None or made is None:
        return
    if outcome.capture_id == made.capture.id:  # so made, and leased, by this save
        sender.send_after_commit(first_claim(made.capture, lease))


class ShipmentBatch:
    """`on_logistic_order_event` for a consumer batch: what its events need loaded in one
    query (`load`), each event decided in turn (`decide`, in delivery order), and all saved
    at the end in one round trip per statement (`save`). An event about a line that an
    earlier one of the batch is about saves those first and loads at its turn."""

    def __init__(
        self,
        repo: PgRepo,
        loaded: Sequence[Loaded | None],
        *,
        now: Callable[[], datetime],
        ids: Ids,
        sender: Sender | None,
    ) -> None:
        self._repo = repo
        self._loaded = iter(loaded)
        self._now = now
        self._ids = ids
        self._sender = sender
        self._decided: list[tuple[ShipmentDecision, Lease | None]] = []
        self._outcomes: list[OmsOutcome] = []

    @classmethod
    async def load(
        cls,
        repo: PgRepo,
        events: Sequence[LogisticOrderStatusChanged],
        *,
        now: Callable[[], datetime],
        ids: Ids = RANDOM_IDS,
        sender: Sender | None = None,
    ) -> ShipmentBatch:
        return cls(repo, await loaded_for_batch(repo, events), now=now, ids=ids, sender=sender)

    async def decide(self, message_id: str, event: LogisticOrderStatusChanged) -> None:
        """The next event of the batch (the events given to `load`, in their order)."""
        found = next(self._loaded)
        if found is None:
            await self._save()
            found = (await self._repo.load_shipments([event]))[0]
        decision, lease = _decided(event, found, self._now(), self._ids, self._sender)
        self._repo.defer_shipment(message_id, event, decision, lease=lease)
        self._decided.append((decision, lease))

    async def save(self) -> list[OmsOutcome]:
        """Save what was decided; each event's outcome as recorded, in order."""
        await self._save()
        return self._outcomes

    async def _save(self) -> None:
        outcomes = await self._repo.save_deferred_shipments()
        for (decision, lease), outcome in zip(self._decided, outcomes, strict=True):
            _send_if_leased(decision, lease, outcome, self._sender)
        self._decided = []
        self._outcomes += outcomes


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
