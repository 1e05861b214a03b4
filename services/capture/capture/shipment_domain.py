"""What an OMS logistic-order event does, decided purely (DESIGN §6, `docs/oms-contract.md`).

Only `SHIPPED` of a logistic order of an authorised card payment in ON_SHIPMENT mode creates
a capture; a SHIPPED whose payment is not authorised yet waits for the authorisation (which
then decides it with `decide_earlier_shipments`); everything else is recorded with the reason,
and never captured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from capture.domain import (
    CARD_OPTIONS,
    Line,
    NewCapture,
    Payment,
    Tenancy,
    effective_mode,
    new_capture,
)
from common.events import LogisticOrderStatusChanged

OmsOutcomeKind = Literal["capture_created", "recorded", "awaiting_authorisation", "ignored"]


@dataclass(frozen=True)
class Ids:
    """Where new ids come from (random in production, a counter in tests)."""

    capture: Callable[[], str]
    intervention: Callable[[], str]


@dataclass(frozen=True)
class OmsOutcome:
    outcome: OmsOutcomeKind
    reason: str | None = None
    payment_id: str | None = None
    capture_id: str | None = None


@dataclass(frozen=True)
class ShipmentLine:
    """A payment line of the shipped logistic order, with its payment (locked by the load)
    and the id of the line's capture if it has one."""

    payment: Payment
    line: Line
    capture_id: str | None


@dataclass(frozen=True)
class ShipmentDecision:
    outcome: OmsOutcome
    capture: NewCapture | None = None


def shipment_refusal(*, line_supplier_id: str, event_supplier_id: str, mode: str) -> str | None:
    """Why a SHIPPED of an authorised line captures nothing (or None: it captures). The one
    place for the supplier and capture-mode checks, for a SHIPPED that finds its payment
    authorised and for one the authorisation finds waiting."""
    if line_supplier_id != event_supplier_id:
        return "supplier_mismatch"
    if mode != "ON_SHIPMENT":
        return "capture_mode_not_on_shipment"
    return None


def decide_shipment(
    event: LogisticOrderStatusChanged,
    tenancy: Tenancy,
    found: Sequence[ShipmentLine],
    *,
    now: datetime,
    ids: Ids,
) -> ShipmentDecision:
    """What one OMS event does, from the tenancy replica and the payment lines of its
    logistic order (with their payments and captures)."""
    if tenancy.tenant is None:
        return ShipmentDecision(OmsOutcome("ignored", "tenant_unknown"))
    if event.status != "SHIPPED":
        return ShipmentDecision(OmsOutcome("recorded"))
    if not found:
        return ShipmentDecision(OmsOutcome("ignored", "logistic_order_unknown"))
    cards = [x for x in found if x.payment.payment_option in CARD_OPTIONS]
    if not cards:
        return ShipmentDecision(
            OmsOutcome("ignored", "payment_option_not_capturable", found[0].payment.payment_id)
        )
    authorised = [x for x in cards if x.payment.status == "AUTHORISED"]
    if not authorised:
        if any(x.payment.status == "CREATED" for x in cards):
            return ShipmentDecision(
                OmsOutcome("awaiting_authorisation", "payment_not_authorised_yet")
            )
        return ShipmentDecision(
            OmsOutcome("ignored", "payment_not_authorised", cards[0].payment.payment_id)
        )
    if len(authorised) > 1:
        return ShipmentDecision(OmsOutcome("ignored", "several_authorised_payments"))
    [shipped] = authorised
    payment = shipped.payment
    payment_id = payment.payment_id
    mode = effective_mode(payment.capture_mode, tenancy.tenant.capture_mode)
    refusal = shipment_refusal(
        line_supplier_id=shipped.line.supplier_id, event_supplier_id=event.supplier_id, mode=mode
    )
    if refusal == "supplier_mismatch":  # said before "capture_exists"
        return ShipmentDecision(OmsOutcome("ignored", refusal, payment_id))
    if shipped.capture_id is not None:
        return ShipmentDecision(
            OmsOutcome("ignored", "capture_exists", payment_id, shipped.capture_id)
        )
    if refusal is not None:
        return ShipmentDecision(OmsOutcome("ignored", refusal, payment_id))
    made = new_capture(
        payment,
        shipped.line,
        tenancy.prepare(payment, shipped.line),
        trigger="ON_SHIPMENT",
        now=now,
        capture_id=ids.capture(),
        intervention_id=ids.intervention(),
    )
    return ShipmentDecision(OmsOutcome("capture_created", None, payment_id, made.capture.id), made)


@dataclass(frozen=True)
class WaitingShipment:
    """A SHIPPED that came before its payment's authorisation (or found no line)."""

    id: str
    logistic_order_id: str
    supplier_id: str


@dataclass(frozen=True)
class Resolution:
    """What the authorisation decided for a waiting SHIPPED."""

    event_id: str
    outcome: OmsOutcome


def decide_earlier_shipments(
    payment: Payment,
    lines: Sequence[Line],
    waiting: Sequence[WaitingShipment],
    tenancy: Tenancy,
    *,
    mode: str,
    captured: frozenset[str],
    now: datetime,
    ids: Ids,
) -> tuple[list[Resolution], list[NewCapture]]:
    """SHIPPED events that came before the authorisation: captured now in ON_SHIPMENT mode
    (a line of `captured` has its capture already); in any other mode, or for another
    supplier, marked as ignored with the reason. Another payment's logistic orders are left
    waiting."""
    by_order = {line.logistic_order_id: line for line in lines}
    done = set(captured)
    resolutions: list[Resolution] = []
    created: list[NewCapture] = []
    for shipment in waiting:
        line = by_order.get(shipment.logistic_order_id)
        if line is None:
            continue  # another payment's logistic order
        refusal = shipment_refusal(
            line_supplier_id=line.supplier_id, event_supplier_id=shipment.supplier_id, mode=mode
        )
        if refusal is not None:
            outcome = OmsOutcome("ignored", refusal, payment.payment_id)
        else:
            capture_id = None
            if line.logistic_order_id not in done:
                made = new_capture(
                    payment,
                    line,
                    tenancy.prepare(payment, line),
                    trigger="ON_SHIPMENT",
                    now=now,
                    capture_id=ids.capture(),
                    intervention_id=ids.intervention(),
                )
                created.append(made)
                done.add(line.logistic_order_id)
                capture_id = made.capture.id
            outcome = OmsOutcome(
                "capture_created", "shipped_before_authorisation", payment.payment_id, capture_id
            )
        resolutions.append(Resolution(shipment.id, outcome))
    return resolutions, created
