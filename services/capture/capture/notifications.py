"""The PSP's CAPTURE / CAPTURE_FAILED notifications: load (the capture they are about,
locked; for a consumer batch, those named by their merchant reference in one statement:
`captures_named`) → decide (`domain.on_notification`, `domain.decide_change`) → save (for a
consumer batch, every change in one round trip at the end)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from capture.clock import RANDOM_IDS
from capture.creation import observe
from capture.domain import (
    Capture,
    Confirmed,
    Ignored,
    Notification,
    Outcome,
    Rejected,
    decide_change,
    on_notification,
)
from capture.metrics import CaptureMetrics
from capture.repo import PgRepo
from capture.shipment_domain import Ids
from common.events import PspNotificationReceived
from common.logging import get_logger

log = get_logger("capture.service")

CAPTURE_CODES = ("CAPTURE", "CAPTURE_FAILED")


async def captures_named(
    repo: PgRepo, events: Sequence[PspNotificationReceived]
) -> dict[str, Capture]:
    """The captures that a batch of notifications name by their merchant reference, locked
    in id order, in one statement (`on_psp_notification`'s `loaded`)."""
    named = {capture_id for e in events if (capture_id := _named_capture(e)) is not None}
    return await repo.lock_captures(sorted(named)) if named else {}


def _named_capture(event: PspNotificationReceived) -> str | None:
    """The id of the capture a CAPTURE / CAPTURE_FAILED names by its merchant reference (what
    we send as `reference`), if it names one."""
    if event.event_code in CAPTURE_CODES and event.merchant_reference.startswith("cap_"):
        return event.merchant_reference
    return None


async def on_psp_notification(
    repo: PgRepo,
    tenant_id: str,
    event: PspNotificationReceived,
    *,
    now: datetime,
    metrics: CaptureMetrics | None = None,
    ids: Ids = RANDOM_IDS,
    loaded: dict[str, Capture] | None = None,
    defer: bool = False,
) -> Capture | None:
    """CAPTURE / CAPTURE_FAILED about one of our captures: its merchant reference is the
    capture id (what we send as `reference`), or, failing that, the payment's PSP reference
    and the amount name exactly one capture waiting for the PSP. Anything else is not about a
    capture of ours and is ignored. `loaded`: captures a batch loaded and locked beforehand
    (`captures_named`); the one used is taken out, so that a later notification of the batch
    about it loads it as this one left it. `defer`: the change is saved with the batch's others
    (`PgRepo.defer_change`; the batch ends with `save_deferred`); those deferred before are
    saved first if this one must load a capture, which may be one of theirs."""
    if event.event_code not in CAPTURE_CODES:
        return None
    capture = None
    if (capture_id := _named_capture(event)) is not None:
        capture = (loaded or {}).pop(capture_id, None)
        if capture is None or capture.tenant_id != tenant_id:
            await repo.save_deferred()
            capture = await repo.capture(capture_id, tenant_id=tenant_id, lock=True)
    if capture is None and event.original_reference and event.amount is not None:
        await repo.save_deferred()
        waiting = await repo.waiting_captures_for_psp_reference(
            tenant_id, event.original_reference, event.amount.value
        )
        capture = waiting[0] if len(waiting) == 1 else None
    if capture is None:
        log.info(
            "capture notification not about a capture of ours",
            notification_id=event.notification_id,
            merchant_reference=event.merchant_reference,
        )
        if metrics:
            metrics.unmatched_notifications.inc()
        return None
    outcome: Outcome
    if event.amount is not None and (event.amount.value, event.amount.currency) != (
        capture.amount,
        capture.currency,
    ):
        outcome = Ignored(
            f"the notification's amount {event.amount.value} is not the capture's", True
        )
    else:
        notification: Notification = (
            Confirmed(event.psp_reference)
            if event.event_code == "CAPTURE" and event.success
            else Rejected(event.psp_reference, event.reason or "")
        )
        outcome = on_notification(capture.state, notification)
    change = decide_change(
        capture,
        outcome,
        source="psp_notification",
        now=now,
        new_intervention_id=ids.intervention(),
        detail={
            "notification_id": event.notification_id,
            "event_code": event.event_code,
            "success": event.success,
            "psp_reference": event.psp_reference,
            "reason": event.reason,
        },
    )
    observe(change, metrics)
    if defer:
        repo.defer_change(change)
        return change.capture
    return await repo.save_change(change)
