"""DELAYED captures: due schedules become captures (claimed with FOR UPDATE SKIP LOCKED, so
replicas share them), in the caller's transaction."""

from __future__ import annotations

from datetime import datetime

from capture.clock import RANDOM_IDS
from capture.creation import create_captures
from capture.repository import SchedulesRepo
from capture.shipment_domain import Ids


async def run_due_schedules(
    repo: SchedulesRepo, *, now: datetime, limit: int, ids: Ids = RANDOM_IDS
) -> int:
    """Create the captures of due schedules; return how many schedules were due."""
    due = await repo.claim_due_schedules(now, limit)
    for schedule in due:
        payment = await repo.lock_payment(schedule.tenant_id, schedule.payment_id)
        if payment is None or payment.status != "AUTHORISED":
            status = payment.status if payment is not None else "unknown"
            await repo.finish_schedule(schedule, "SKIPPED", f"payment {status}")
            continue
        lines = await repo.lines_of(schedule.tenant_id, schedule.payment_id)
        made = await create_captures(repo, payment, lines, trigger="DELAYED", now=now, ids=ids)
        await repo.finish_schedule(schedule, "DONE", f"{len(made)} capture(s) created")
    return len(due)
