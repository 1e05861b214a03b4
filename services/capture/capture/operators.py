"""Operators' actions: ADM-PAY-101 (capture a payment's lines now) and the retry of an
intervention. Load (the payment locked, its lines, its captures locked, the tenancy
replicas) → decide (`domain.decide_manual_capture`, `domain.decide_reopen`) → save."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from capture import errors
from capture.clock import RANDOM_IDS
from capture.domain import (
    Capture,
    CaptureStatus,
    Line,
    Payment,
    decide_manual_capture,
    decide_reopen,
    operator_capture_refusal,
    reopenable,
)
from capture.repository import Intervention, OperatorRepo
from capture.shipment_domain import Ids

SOURCE_ADM_PAY_101 = "adm_pay_101"


@dataclass(frozen=True)
class Captured:
    """What an operator's capture request did: the captures it created or reopened."""

    payment_id: str
    captures: list[Capture]

    def all_blocked(self) -> Capture | None:
        """The first capture, when every one of them is blocked (the request achieved nothing)."""
        if self.captures and all(c.status is CaptureStatus.BLOCKED for c in self.captures):
            return self.captures[0]
        return None


@dataclass(frozen=True)
class Retried:
    intervention: Intervention
    capture: Capture


def _capturable(payment: Payment) -> None:
    refusal = operator_capture_refusal(payment.payment_option, payment.status)
    if refusal == "payment_option_not_capturable":
        raise errors.payment_option_not_capturable(payment.payment_option)
    if refusal == "payment_not_yet_capturable":
        raise errors.payment_not_yet_capturable()
    if refusal is not None:
        raise errors.payment_not_capturable(payment.status)


async def manual_capture(
    repo: OperatorRepo,
    tenant_id: str,
    payment_id: str,
    logistic_order_id: str | None,
    *,
    now: datetime,
    ids: Ids = RANDOM_IDS,
) -> Captured:
    """ADM-PAY-101: capture every line of the payment still authorised and uncaptured (or the
    one named). A line whose capture FAILED or was BLOCKED is reopened; a line captured or
    being captured is left alone; when nothing is left: 409 `nothing_to_capture`."""
    payment = await repo.lock_payment(tenant_id, payment_id)
    if payment is None:
        raise errors.payment_not_found()
    _capturable(payment)
    lines = await repo.lines_of(tenant_id, payment_id)
    if logistic_order_id is not None:
        lines = [line for line in lines if line.logistic_order_id == logistic_order_id]
        if not lines:
            raise errors.logistic_order_unknown()
    existing = await repo.captures_of_payment(tenant_id, payment_id, lock=True)
    touched = [
        line
        for line in lines
        if line.logistic_order_id not in existing or reopenable(existing[line.logistic_order_id])
    ]
    if not touched:
        named = {line.logistic_order_id for line in lines}
        raise errors.nothing_to_capture(
            [(c.id, c.status.value) for key, c in existing.items() if key in named],
            "logistic_order_id" if logistic_order_id is not None else None,
        )
    tenancy = await repo.tenancy(tenant_id, sorted({line.supplier_id for line in touched}))
    decision = decide_manual_capture(
        payment,
        lines,
        existing,
        tenancy,
        now=now,
        source=SOURCE_ADM_PAY_101,
        capture_ids=ids.capture,
        intervention_ids=ids.intervention,
    )
    created = await repo.save_new_captures(decision.new)
    reopened = [await repo.save_change(change) for change in decision.reopened]
    return Captured(payment_id, [*created, *reopened])


async def retry_intervention(
    repo: OperatorRepo,
    tenant_id: str,
    intervention_id: str,
    *,
    now: datetime,
    ids: Ids = RANDOM_IDS,
) -> Retried:
    """An operator's retry of an intervention: its capture is sent again (a blocked one with
    its split computed again; see `domain.decide_reopen`)."""
    found = await repo.intervention(tenant_id, intervention_id)
    if found is None:
        raise errors.intervention_not_found()
    payment = await repo.lock_payment(tenant_id, found.payment_id)
    capture = await repo.capture(found.capture_id, lock=True)
    current = await repo.intervention(tenant_id, intervention_id, lock=True)
    if payment is None or capture is None or current is None:
        raise LookupError(f"intervention {intervention_id} lost its payment or capture")
    if current.status != "OPEN":
        raise errors.intervention_not_open(current.status)
    _capturable(payment)
    prepared = None
    if capture.status is CaptureStatus.BLOCKED:
        tenancy = await repo.tenancy(tenant_id, [capture.supplier_id])
        line = Line(capture.logistic_order_id, capture.supplier_id, capture.amount)
        prepared = tenancy.prepare(payment, line)
    change = decide_reopen(
        capture,
        prepared,
        source="intervention_retry",
        now=now,
        new_intervention_id=ids.intervention(),
    )
    saved = await repo.save_change(change)
    updated = await repo.intervention(tenant_id, intervention_id)
    if updated is None:
        raise LookupError(f"intervention {intervention_id} vanished")
    return Retried(updated, saved)
