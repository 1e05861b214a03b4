"""Creating captures: one per line that has none yet, whatever the trigger (authorisation,
schedule, SHIPPED, ADM-PAY-101), under the payment's row lock held by the caller."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from capture.clock import RANDOM_IDS
from capture.domain import Capture, CaptureChange, Line, Payment, Tenancy, Trigger, new_capture
from capture.metrics import CaptureMetrics
from capture.repository import CaptureSaves
from capture.shipment_domain import Ids
from common.logging import get_logger

log = get_logger("capture.service")


async def create_captures(
    repo: CaptureSaves,
    payment: Payment,
    lines: Sequence[Line],
    *,
    trigger: Trigger,
    now: datetime,
    tenancy: Tenancy | None = None,
    existing: Collection[str] | None = None,
    ids: Ids = RANDOM_IDS,
) -> list[Capture]:
    """Load (the tenancy replicas, the payment's captures unless `existing` names the lines
    that have one) → decide (`domain.new_capture` per line) → save. Returns the captures this
    call created."""
    if not lines:
        return []
    if existing is None:
        existing = (await repo.captures_of_payment(payment.tenant_id, payment.payment_id)).keys()
    fresh = [line for line in lines if line.logistic_order_id not in existing]
    if not fresh:
        return []
    if tenancy is None:
        tenancy = await repo.tenancy(payment.tenant_id, [x.supplier_id for x in fresh])
    new = [
        new_capture(
            payment,
            line,
            tenancy.prepare(payment, line),
            trigger=trigger,
            now=now,
            capture_id=ids.capture(),
            intervention_id=ids.intervention(),
        )
        for line in fresh
    ]
    return await repo.save_new_captures(new)


def observe(change: CaptureChange, metrics: CaptureMetrics | None) -> None:
    """Log and count what a saved change did (an anomaly is worth an operator's look)."""
    if change.anomaly is not None:
        log.warning("capture anomaly", capture_id=change.capture.id, reason=change.anomaly)
        if metrics:
            metrics.anomalies.inc()
    if metrics and change.status_changed:
        metrics.transitions.labels(change.capture.status.value).inc()
