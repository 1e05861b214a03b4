"""An in-memory repository for the fast tier of use-case tests: it implements the same
Protocols as `capture.repo.PgRepo` (`capture.repository.ShipmentRepo`, `OperatorRepo`) on
dictionaries, so the shipment and manual-capture use cases run in milliseconds with no
server. It keeps what PostgreSQL guarantees that the use cases rely on: one capture per
(tenant, payment, logistic order), at most one open intervention per capture, the events of
a saved decision in order. Locks are no-ops: one test drives one use case at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from capture.domain import (
    Capture,
    CaptureChange,
    DomainEvent,
    HistoryEntry,
    Lease,
    Line,
    NewCapture,
    Payment,
    Tenancy,
)
from capture.repository import Intervention
from capture.shipment_domain import OmsOutcome, ShipmentDecision, ShipmentLine
from common.events import LogisticOrderStatusChanged, SupplierUpserted, TenantUpserted

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class InMemoryRepo:
    tenants: dict[str, TenantUpserted] = field(default_factory=dict)
    suppliers: dict[tuple[str, str], SupplierUpserted] = field(default_factory=dict)
    payments: dict[tuple[str, str], Payment] = field(default_factory=dict)
    lines: dict[tuple[str, str], list[Line]] = field(default_factory=dict)
    captures: dict[str, Capture] = field(default_factory=dict)
    interventions: dict[str, Intervention] = field(default_factory=dict)
    history: list[tuple[str, HistoryEntry]] = field(default_factory=list)
    events: list[DomainEvent] = field(default_factory=list)
    oms_events: dict[str, tuple[LogisticOrderStatusChanged, OmsOutcome]] = field(
        default_factory=dict
    )
    now: datetime = EPOCH

    # -- what tests set up ---------------------------------------------------------------

    def add_tenant(self, tenant: TenantUpserted) -> None:
        self.tenants[tenant.tenant_id] = tenant

    def add_supplier(self, supplier: SupplierUpserted) -> None:
        self.suppliers[(supplier.tenant_id, supplier.supplier_id)] = supplier

    def add_payment(self, payment: Payment, lines: Sequence[Line]) -> None:
        key = (payment.tenant_id, payment.payment_id)
        self.payments[key] = payment
        self.lines[key] = sorted(lines, key=lambda x: x.logistic_order_id)

    # -- CaptureSaves --------------------------------------------------------------------

    async def tenancy(self, tenant_id: str, supplier_ids: Sequence[str]) -> Tenancy:
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            return Tenancy(None, {})
        known = {
            s: self.suppliers[(tenant_id, s)]
            for s in supplier_ids
            if (tenant_id, s) in self.suppliers
        }
        return Tenancy(tenant, known)

    def _open_intervention(self, capture_id: str) -> str | None:
        return next(
            (
                i.id
                for i in self.interventions.values()
                if i.capture_id == capture_id and i.status == "OPEN"
            ),
            None,
        )

    def _loaded(self, capture: Capture) -> Capture:
        return replace(capture, open_intervention_id=self._open_intervention(capture.id))

    async def captures_of_payment(
        self, tenant_id: str, payment_id: str, *, lock: bool = False
    ) -> dict[str, Capture]:
        return {
            c.logistic_order_id: self._loaded(c)
            for c in sorted(self.captures.values(), key=lambda c: c.id)
            if (c.tenant_id, c.payment_id) == (tenant_id, payment_id)
        }

    def _has_capture(self, capture: Capture) -> bool:
        return any(
            (c.tenant_id, c.payment_id, c.logistic_order_id)
            == (capture.tenant_id, capture.payment_id, capture.logistic_order_id)
            for c in self.captures.values()
        )

    def _open(self, capture: Capture, kind: str, code: str, reason: str, id_: str) -> None:
        if self._open_intervention(capture.id) is not None:
            raise AssertionError(f"a second open intervention for {capture.id}")
        self.interventions[id_] = Intervention(
            id=id_,
            tenant_id=capture.tenant_id,
            capture_id=capture.id,
            payment_id=capture.payment_id,
            logistic_order_id=capture.logistic_order_id,
            kind=kind,
            code=code,
            reason=reason,
            status="OPEN",
            created_at=self.now,
            updated_at=self.now,
            closed_at=None,
        )

    async def save_new_captures(self, new: Sequence[NewCapture]) -> list[Capture]:
        created = []
        for n in new:
            if self._has_capture(n.capture):
                continue  # ON CONFLICT DO NOTHING, with its history, intervention and events
            capture = replace(n.capture, created_at=self.now, updated_at=self.now)
            self.captures[capture.id] = capture
            self.history.append((capture.id, n.history))
            if n.intervention is not None:
                new_one = n.intervention
                self._open(capture, new_one.kind, new_one.code, new_one.reason, new_one.id)
            self.events.extend(n.events)
            created.append(capture)
        return created

    async def save_change(self, change: CaptureChange) -> Capture:
        stored = self.captures[change.capture.id]
        capture = replace(change.capture, created_at=stored.created_at, updated_at=self.now)
        self.captures[capture.id] = capture
        self.history.append((capture.id, change.history))
        if change.close_interventions is not None:
            for i in list(self.interventions.values()):
                if i.capture_id == capture.id and i.status == "OPEN":
                    self.interventions[i.id] = replace(
                        i, status=change.close_interventions, closed_at=self.now
                    )
        if change.intervention is not None:
            opened = change.intervention
            self._open(capture, opened.kind, opened.code, opened.reason, opened.id)
        self.events.extend(change.events)
        return capture

    # -- ShipmentRepo --------------------------------------------------------------------

    async def load_shipments(
        self, events: Sequence[LogisticOrderStatusChanged]
    ) -> list[tuple[Tenancy, list[ShipmentLine]]]:
        return [await self._load_shipment(event) for event in events]

    async def _load_shipment(
        self, event: LogisticOrderStatusChanged
    ) -> tuple[Tenancy, list[ShipmentLine]]:
        tenancy = await self.tenancy(event.tenant_id, [event.supplier_id])
        if tenancy.tenant is None or event.status != "SHIPPED":
            return tenancy, []
        return tenancy, await self._shipment_lines(
            event.tenant_id, event.order_id, event.logistic_order_id
        )

    async def _shipment_lines(
        self, tenant_id: str, order_id: str, logistic_order_id: str
    ) -> list[ShipmentLine]:
        found = []
        for (tenant, payment_id), payment in sorted(self.payments.items()):
            if tenant != tenant_id or payment.order_id != order_id:
                continue
            for line in self.lines[(tenant, payment_id)]:
                if line.logistic_order_id == logistic_order_id:
                    capture = next(
                        (
                            c.id
                            for c in self.captures.values()
                            if (c.tenant_id, c.payment_id, c.logistic_order_id)
                            == (tenant, payment_id, logistic_order_id)
                        ),
                        None,
                    )
                    found.append(ShipmentLine(payment, line, capture))
        return found

    async def save_shipment(
        self,
        message_id: str,
        event: LogisticOrderStatusChanged,
        decision: ShipmentDecision,
        *,
        lease: Lease | None = None,
    ) -> OmsOutcome:
        outcome = decision.outcome
        new = decision.capture
        if new is not None and lease is not None:  # its first attempt is under way
            new = replace(new, capture=replace(new.capture, attempts=1, round_attempts=1))
        if new is not None and not await self.save_new_captures([new]):
            outcome = replace(outcome, outcome="ignored", reason="capture_exists", capture_id=None)
        self.oms_events.setdefault(message_id, (event, outcome))
        return outcome

    # -- OperatorRepo --------------------------------------------------------------------

    async def lock_payment(self, tenant_id: str, payment_id: str) -> Payment | None:
        return self.payments.get((tenant_id, payment_id))

    async def lines_of(self, tenant_id: str, payment_id: str) -> list[Line]:
        return list(self.lines.get((tenant_id, payment_id), []))

    async def capture(
        self, capture_id: str, *, tenant_id: str | None = None, lock: bool = False
    ) -> Capture | None:
        capture = self.captures.get(capture_id)
        if capture is None or (tenant_id is not None and capture.tenant_id != tenant_id):
            return None
        return self._loaded(capture)

    async def intervention(
        self, tenant_id: str, intervention_id: str, *, lock: bool = False
    ) -> Intervention | None:
        found = self.interventions.get(intervention_id)
        return found if found is not None and found.tenant_id == tenant_id else None
