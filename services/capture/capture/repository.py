"""What the use cases need from storage, as Protocols: `capture.repo.PgRepo` implements them
on the caller's transaction (PostgreSQL), the fast use-case tests' in-memory repository on
dictionaries. Every load returns typed domain objects (`capture.domain`,
`capture.shipment_domain`); every save writes one decision and enqueues its events.

A use case names the narrowest Protocol it needs, so a test double implements only that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from capture.domain import (
    Capture,
    CaptureChange,
    DomainEvent,
    Lease,
    Line,
    NewCapture,
    Payment,
    Tenancy,
)
from capture.shipment_domain import (
    OmsOutcome,
    Resolution,
    ShipmentDecision,
    ShipmentLine,
    WaitingShipment,
)
from common.events import LogisticOrderStatusChanged


@dataclass(frozen=True)
class Intervention:
    id: str
    tenant_id: str
    capture_id: str
    payment_id: str
    logistic_order_id: str
    kind: str
    code: str
    reason: str
    status: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True)
class Schedule:
    tenant_id: str
    payment_id: str
    due_at: datetime


class CaptureSaves(Protocol):
    """Saving decisions about captures (with their events, in the caller's transaction)."""

    async def tenancy(self, tenant_id: str, supplier_ids: Sequence[str]) -> Tenancy: ...

    async def captures_of_payment(
        self, tenant_id: str, payment_id: str, *, lock: bool = False
    ) -> dict[str, Capture]:
        """The payment's captures by logistic order id."""
        ...

    async def save_new_captures(self, new: Sequence[NewCapture]) -> list[Capture]:
        """Insert the captures (with history, interventions) and enqueue their events."""
        ...

    async def save_change(self, change: CaptureChange) -> Capture:
        """Write one change of a capture and enqueue its events."""
        ...


class ShipmentRepo(CaptureSaves, Protocol):
    """What an OMS event needs."""

    async def load_shipments(
        self, events: Sequence[LogisticOrderStatusChanged]
    ) -> list[tuple[Tenancy, list[ShipmentLine]]]:
        """For each event, the tenancy replicas and, for a SHIPPED of a known tenant, every
        payment line of the logistic order with its payment (locked) and its capture."""
        ...

    async def save_shipment(
        self,
        message_id: str,
        event: LogisticOrderStatusChanged,
        decision: ShipmentDecision,
        *,
        lease: Lease | None = None,
    ) -> OmsOutcome:
        """The OMS event with what it did, and the capture it made (with its event; leased
        for its first attempt if `lease`). Should the line have its capture already after
        all, the capture is skipped and the event recorded as `capture_exists`; returns the
        outcome as recorded."""
        ...


class OperatorRepo(CaptureSaves, Protocol):
    """What ADM-PAY-101 and an intervention's retry need."""

    async def lock_payment(self, tenant_id: str, payment_id: str) -> Payment | None: ...

    async def lines_of(self, tenant_id: str, payment_id: str) -> list[Line]: ...

    async def capture(
        self, capture_id: str, *, tenant_id: str | None = None, lock: bool = False
    ) -> Capture | None: ...

    async def intervention(
        self, tenant_id: str, intervention_id: str, *, lock: bool = False
    ) -> Intervention | None: ...


class PaymentsRepo(CaptureSaves, Protocol):
    """What the payments replica needs (authorisation, cancellation, SHIPPED that came
    first, DELAYED schedules)."""

    async def insert_created_payment(self, payment: Payment, lines: Sequence[Line]) -> None: ...

    async def upsert_authorised_payment(
        self, payment: Payment, lines: Sequence[Line], authorised_at: datetime
    ) -> Payment | None:
        """The payment as authorised (locked), or None when it was closed already."""
        ...

    async def close_payment(self, payment: Payment) -> None: ...

    async def schedule(
        self, tenant_id: str, payment_id: str, due_at: datetime, event: DomainEvent
    ) -> bool:
        """The schedule and its event, unless the payment had one already."""
        ...

    async def shipments_waiting(self, tenant_id: str, order_id: str) -> list[WaitingShipment]: ...

    async def resolve_logistic_order_events(self, resolutions: Sequence[Resolution]) -> None: ...


class SchedulesRepo(CaptureSaves, Protocol):
    """What the DELAYED scheduler needs."""

    async def claim_due_schedules(self, now: datetime, limit: int) -> list[Schedule]: ...

    async def lock_payment(self, tenant_id: str, payment_id: str) -> Payment | None: ...

    async def lines_of(self, tenant_id: str, payment_id: str) -> list[Line]: ...

    async def finish_schedule(self, schedule: Schedule, status: str, outcome: str) -> None: ...
