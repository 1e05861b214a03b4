"""Capture use cases. Each takes its connection (and the clock) as arguments and runs inside
the caller's transaction; a capture's state change, its history, its interventions and its
`capture.*` events commit together. The PSP is called only by `send`, outside any transaction.

Exactly once, by construction: a capture is one row per (tenant, payment, logistic order),
created with INSERT ... ON CONFLICT DO NOTHING by whichever trigger comes first (authorisation,
schedule, SHIPPED, ADM-PAY-101) in that trigger's own transaction, under the payment's row
lock. Only the executor sends it, after claiming it with a lease, under the deterministic PSP
key `capture:<id>:<generation>`; a replica that dies after the PSP call leaves a lease that
expires, and the next claim sends the same key again, which the PSP answers with its first
answer. The PSP's CAPTURE notification moves the capture to SUCCEEDED once (the state machine
makes a repeated or late one a no-op), and `capture.succeeded` is written in that transaction.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from capture import domain, errors, repo
from capture.domain import (
    Blocked,
    CaptureState,
    CaptureStatus,
    Ignored,
    Outcome,
    PspAnswer,
    Received,
    Refused,
    Transition,
    Unknown,
)
from capture.metrics import CaptureMetrics
from common.broker import PoisonMessageError, publish_event
from common.events import (
    EventType,
    Level3Data,
    LogisticOrderStatusChanged,
    PaymentAuthorised,
    PaymentCreated,
    PaymentOutcome,
    PspNotificationReceived,
    SupplierUpserted,
    TenantUpserted,
)
from common.level3 import level3_additional_data
from common.logging import get_logger
from common.money import Money, parse_rate
from common.psp.port import (
    CaptureRequest,
    PspAuthenticationError,
    PspError,
    PspPort,
    PspValidationError,
    Split,
)

log = get_logger("capture.service")

Clock = Callable[[], datetime]
"""Where the capture service reads the time (tests move it: DELAYED captures)."""


def new_capture_id() -> str:
    return f"cap_{secrets.token_hex(12)}"


def new_intervention_id() -> str:
    return f"int_{secrets.token_hex(12)}"


# -- payments as checkout reports them -------------------------------------------------------


async def record_payment_created(
    conn: asyncpg.Connection, tenant_id: str, event: PaymentCreated
) -> None:
    """Remember the payment and its lines, so that a SHIPPED before the authorisation is
    recognised as one (and captured when the authorisation arrives)."""
    await repo.insert_created_payment(conn, tenant_id, event)


async def record_payment_authorised(
    conn: asyncpg.Connection,
    tenant_id: str,
    event: PaymentAuthorised,
    *,
    authorised_at: datetime,
    now: datetime,
) -> list[asyncpg.Record]:
    """Store the authorised payment, then act on its capture mode (the session's, else the
    tenant's): IMMEDIATE captures every line now, DELAYED schedules the capture, ON_SHIPMENT
    captures the lines whose SHIPPED arrived already, MANUAL waits for ADM-PAY-101."""
    if event.psp_reference is None:
        raise PoisonMessageError("payment.authorised without a psp_reference cannot be captured")
    tenancy = await Tenancy.load(conn, tenant_id, [x.supplier_id for x in event.lines])
    if tenancy.tenant is None:
        raise errors.TenantNotReplicated(tenant_id)
    payment = await repo.upsert_authorised_payment(
        conn,
        tenant_id,
        {
            "payment_id": event.payment_id,
            "order_id": event.order_id,
            "payment_option": event.payment_option,
            "capture_mode": event.capture_mode,
            "amount": event.amount.value,
            "currency": event.amount.currency,
            "psp_reference": event.psp_reference,
            "merchant_account": event.merchant_account,
            "level3": event.level3.model_dump(mode="json") if event.level3 else None,
            "authorised_at": authorised_at,
        },
    )
    if payment is None:
        log.info("authorisation of a closed payment ignored", payment_id=event.payment_id)
        return []
    await repo.insert_lines(
        conn,
        tenant_id,
        event.payment_id,
        event.order_id,
        [(x.logistic_order_id, x.supplier_id, x.amount) for x in event.lines],
    )
    if event.payment_option not in domain.CARD_OPTIONS:
        return []
    mode = domain.effective_mode(event.capture_mode, tenancy.tenant.capture_mode)
    lines = [Line(x.logistic_order_id, x.supplier_id, x.amount) for x in event.lines]
    if mode == "IMMEDIATE":
        return await create_captures(
            conn, payment, lines, tenancy=tenancy, trigger="IMMEDIATE", now=now
        )
    if mode == "DELAYED":
        delay = tenancy.tenant.capture_delay_hours
        await _schedule(conn, payment, lines, delay, authorised_at)
    return await _captures_for_earlier_shipments(conn, payment, lines, tenancy, mode, now)


async def _schedule(
    conn: asyncpg.Connection,
    payment: asyncpg.Record,
    lines: Sequence[Line],
    delay_hours: int,
    authorised_at: datetime,
) -> None:
    due_at = domain.capture_due_at(authorised_at, delay_hours)
    if await repo.schedule(conn, payment["tenant_id"], payment["payment_id"], due_at):
        await publish_event(
            conn,
            EventType.CAPTURE_SCHEDULED,
            {
                "payment_id": payment["payment_id"],
                "order_id": payment["order_id"],
                "due_at": due_at.isoformat(),
                "capture_delay_hours": delay_hours,
                "logistic_order_ids": [line.logistic_order_id for line in lines],
            },
            tenant_id=payment["tenant_id"],
            aggregate_id=payment["payment_id"],
        )


async def _captures_for_earlier_shipments(
    conn: asyncpg.Connection,
    payment: asyncpg.Record,
    lines: Sequence[Line],
    tenancy: Tenancy,
    mode: str,
    now: datetime,
) -> list[asyncpg.Record]:
    """SHIPPED events that came before the authorisation: captured now in ON_SHIPMENT mode;
    in any other mode marked as ignored, with the reason."""
    waiting = await repo.shipments_waiting(conn, payment["tenant_id"], payment["order_id"])
    by_order = {line.logistic_order_id: line for line in lines}
    created: list[asyncpg.Record] = []
    for shipment in waiting:
        line = by_order.get(shipment["logistic_order_id"])
        if line is None:
            continue  # another payment's logistic order
        outcome, reason, capture_id = "ignored", "capture_mode_not_on_shipment", None
        if line.supplier_id != shipment["supplier_id"]:
            reason = "supplier_mismatch"
        elif mode == "ON_SHIPMENT":
            made = await create_captures(
                conn, payment, [line], tenancy=tenancy, trigger="ON_SHIPMENT", now=now
            )
            created.extend(made)
            outcome, reason = "capture_created", "shipped_before_authorisation"
            capture_id = made[0]["id"] if made else None
        await repo.resolve_logistic_order_event(
            conn,
            shipment["id"],
            outcome=outcome,
            reason=reason,
            payment_id=payment["payment_id"],
            capture_id=capture_id,
        )
    return created


async def record_payment_closed(
    conn: asyncpg.Connection, tenant_id: str, event: PaymentOutcome, status: str
) -> None:
    """A cancelled or refused payment: nothing of it is captured any more (a due schedule
    finds it closed and is skipped)."""
    await repo.close_payment(
        conn,
        tenant_id,
        event.payment_id,
        status,
        {
            "order_id": event.order_id,
            "payment_option": event.payment_option,
            "amount": event.amount.value,
            "currency": event.amount.currency,
            "psp_reference": event.psp_reference,
        },
    )


# -- creating captures -----------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    logistic_order_id: str
    supplier_id: str
    amount: int

    @classmethod
    def of(cls, row: asyncpg.Record) -> Line:
        return cls(row["logistic_order_id"], row["supplier_id"], row["amount"])


@dataclass(frozen=True)
class Tenancy:
    """The replicas a capture's split is computed from, read once for all its lines."""

    tenant: TenantUpserted | None
    suppliers: dict[str, SupplierUpserted]

    @classmethod
    async def load(
        cls, conn: asyncpg.Connection, tenant_id: str, supplier_ids: Sequence[str]
    ) -> Tenancy:
        return cls(*await repo.tenancy(conn, tenant_id, supplier_ids))

    def prepare(self, payment: asyncpg.Record, line: Line) -> domain.Prepared | Blocked:
        """The split (rates as the replicas hold them now) and the Level 3 data."""
        supplier = self.suppliers.get(line.supplier_id)
        level3 = payment["level3"]
        return domain.prepare(
            amount=line.amount,
            payment_option=payment["payment_option"],
            payment_amount=payment["amount"],
            level3=Level3Data.model_validate(level3) if level3 is not None else None,
            platform_rate=self.tenant.default_rate if self.tenant else None,
            marketplace_rate=supplier.commission_rate if supplier else None,
            supplier_known=supplier is not None,
        )


def _prepared_columns(prepared: domain.Prepared | Blocked) -> dict[str, Any]:
    if isinstance(prepared, Blocked):
        return {
            "platform_rate": None,
            "marketplace_rate": None,
            "splits": [],
            "additional_data": None,
            "block_code": prepared.code,
            "block_message": prepared.message,
        }
    return {
        "platform_rate": prepared.split.platform_rate,
        "marketplace_rate": prepared.split.marketplace_rate,
        "splits": [
            {
                "party": line.party,
                "amount": line.amount,
                "rate": format(line.rate, "f") if line.rate is not None else None,
            }
            for line in prepared.split.lines
        ],
        "additional_data": level3_additional_data(prepared.level3) if prepared.level3 else None,
        "block_code": None,
        "block_message": None,
    }


async def create_captures(
    conn: asyncpg.Connection,
    payment: asyncpg.Record,
    lines: Sequence[Line],
    *,
    trigger: domain.Trigger,
    now: datetime,
    tenancy: Tenancy | None = None,
    source: str | None = None,
) -> list[asyncpg.Record]:
    """One capture per line that has none yet (the payment row is locked by the caller):
    PENDING with its frozen split and `capture.requested`, or BLOCKED with
    `capture.blocked` and an intervention; a zero-amount line is SUCCEEDED at once (there is
    nothing to ask the PSP for). Returns the captures this call created."""
    if not lines:
        return []
    if tenancy is None:
        tenancy = await Tenancy.load(conn, payment["tenant_id"], [x.supplier_id for x in lines])
    created = []
    for line in lines:
        prepared = tenancy.prepare(payment, line)
        zero = line.amount == 0 and not isinstance(prepared, Blocked)
        status = (
            CaptureStatus.BLOCKED
            if isinstance(prepared, Blocked)
            else CaptureStatus.SUCCEEDED
            if zero
            else CaptureStatus.PENDING
        )
        row = await repo.insert_capture(
            conn,
            {
                "id": new_capture_id(),
                "tenant_id": payment["tenant_id"],
                "payment_id": payment["payment_id"],
                "order_id": payment["order_id"],
                "logistic_order_id": line.logistic_order_id,
                "supplier_id": line.supplier_id,
                "amount": line.amount,
                "currency": payment["currency"],
                "trigger": trigger,
                "status": status.value,
                "payment_psp_reference": payment["psp_reference"],
                "merchant_account": payment["merchant_account"],
                "next_attempt_at": now if status is CaptureStatus.PENDING else None,
                "succeeded_at": now if zero else None,
                **_prepared_columns(prepared),
            },
            source=source or trigger.lower(),
            detail={"block_code": prepared.code} if isinstance(prepared, Blocked) else {},
        )
        if row is None:
            continue  # the line has its capture already: exactly one per logistic order
        if isinstance(prepared, Blocked):
            intervention_id = await repo.open_intervention(
                conn,
                id_=new_intervention_id(),
                tenant_id=row["tenant_id"],
                capture_id=row["id"],
                kind="blocked",
                code=prepared.code,
                reason=prepared.message,
            )
            await _emit(conn, row, "blocked", intervention_id=intervention_id)
        elif zero:
            await _emit(conn, row, "succeeded")
        else:
            await _emit(conn, row, "requested")
        created.append(row)
    return created


# -- events ----------------------------------------------------------------------------------


def _base(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "capture_id": row["id"],
        "revision": row["revision"],
        "payment_id": row["payment_id"],
        "order_id": row["order_id"],
        "logistic_order_id": row["logistic_order_id"],
        "supplier_id": row["supplier_id"],
        "amount": {"value": row["amount"], "currency": row["currency"]},
        "trigger": row["trigger"],
    }


def _split_fields(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "splits": row["splits"],
        "platform_rate": row["platform_rate"],
        "marketplace_rate": row["marketplace_rate"],
    }


async def _emit(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    kind: domain.Emit,
    *,
    retries_exhausted: bool = False,
    intervention_id: str | None = None,
) -> None:
    data = _base(row)
    if kind == "requested":
        data.update(_split_fields(row))
    elif kind == "succeeded":
        data.update(_split_fields(row), psp_reference=row["psp_reference"])
    elif kind == "failed":
        data.update(
            code=row["failure_code"] or "capture_failed",
            reason=row["failure_reason"] or "",
            retries_exhausted=retries_exhausted,
            outcome_known=bool(row["outcome_known"]),
            intervention_id=intervention_id,
        )
    else:
        data.update(
            code=row["block_code"], message=row["block_message"], intervention_id=intervention_id
        )
    await publish_event(
        conn, f"capture.{kind}", data, tenant_id=row["tenant_id"], aggregate_id=row["id"]
    )


# -- applying a transition -------------------------------------------------------------------


def state_of(row: asyncpg.Record) -> CaptureState:
    return CaptureState(
        status=CaptureStatus(row["status"]),
        generation=row["generation"],
        round_attempts=row["round_attempts"],
        psp_reference=row["psp_reference"],
        outcome_known=row["outcome_known"],
    )


async def apply(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    outcome: Outcome,
    *,
    source: str,
    now: datetime,
    detail: dict[str, Any] | None = None,
    metrics: CaptureMetrics | None = None,
    extra: dict[str, Any] | None = None,
    attempt: repo.FinishedAttempt | None = None,
) -> asyncpg.Record:
    """Write what `outcome` says about the (locked) capture `row`, with its history, its
    interventions and its event (and the PSP attempt it answers); return the row as it now
    is."""
    detail = dict(detail or {})
    if isinstance(outcome, Ignored):
        if outcome.anomaly:
            log.warning("capture anomaly", capture_id=row["id"], reason=outcome.reason)
            if metrics:
                metrics.anomalies.inc()
        detail.update(ignored=outcome.reason, anomaly=outcome.anomaly)
        return await repo.update_capture(
            conn,
            row["id"],
            dict(extra or {}),
            history=repo.History(row["status"], source, detail),
            attempt=attempt,
        )
    new = outcome.state
    changed = new.status.value != row["status"]
    values: dict[str, Any] = {
        "status": new.status.value,
        "generation": new.generation,
        "round_attempts": new.round_attempts,
        "psp_reference": new.psp_reference,
        "outcome_known": new.outcome_known,
        **(extra or {}),
    }
    if changed:
        values["revision"] = row["revision"] + 1
    if outcome.retry_in is not None:
        values["next_attempt_at"] = now + outcome.retry_in
        detail["retry_in_s"] = outcome.retry_in.total_seconds()
    if new.status is CaptureStatus.PENDING and changed:
        values["next_attempt_at"] = now
    if outcome.code is not None:
        values["failure_code"] = outcome.code
        values["failure_reason"] = outcome.reason
        detail.setdefault("code", outcome.code)
        detail.setdefault("reason", outcome.reason)
    if new.status is CaptureStatus.SUCCEEDED and changed:
        values["succeeded_at"] = now
    if new.status is not CaptureStatus.PENDING:
        values["next_attempt_at"] = None
    updated = await repo.update_capture(
        conn,
        row["id"],
        values,
        history=repo.History(row["status"], source, detail),
        attempt=attempt,
    )
    intervention_id = None
    if outcome.close_interventions and row["status"] in (
        CaptureStatus.FAILED,
        CaptureStatus.BLOCKED,
    ):  # only a FAILED or BLOCKED capture has an open intervention
        await repo.close_interventions(conn, row["id"], "RESOLVED")
    if outcome.open_intervention is not None:
        intervention_id = await repo.open_intervention(
            conn,
            id_=new_intervention_id(),
            tenant_id=row["tenant_id"],
            capture_id=row["id"],
            kind=outcome.open_intervention,
            code=outcome.code or "capture_failed",
            reason=outcome.reason or "",
        )
    if outcome.emit is not None:
        await _emit(
            conn,
            updated,
            outcome.emit,
            retries_exhausted=outcome.retries_exhausted,
            intervention_id=intervention_id,
        )
    if metrics and changed:
        metrics.transitions.labels(updated["status"]).inc()
    return updated


# -- the executor's three steps --------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    capture_id: str
    tenant_id: str
    attempt: int
    generation: int
    lease_token: uuid.UUID
    request: CaptureRequest

    @property
    def idempotency_key(self) -> str:
        return domain.idempotency_key(self.capture_id, self.generation)


def _psp_request(row: asyncpg.Record) -> CaptureRequest:
    lines = [
        domain.SplitLine(
            s["party"], int(s["amount"]), parse_rate(s["rate"]) if s["rate"] is not None else None
        )
        for s in row["splits"]
    ]
    splits: list[Split] = domain.psp_splits(
        lines,
        tenant_id=row["tenant_id"],
        supplier_id=row["supplier_id"],
        capture_id=row["id"],
    )
    return CaptureRequest(
        psp_reference=row["payment_psp_reference"],
        amount=Money(value=row["amount"], currency=row["currency"]),
        reference=row["id"],
        splits=splits or None,
        additional_data=row["additional_data"],
        merchant_account=row["merchant_account"],
    )


async def claim(
    conn: asyncpg.Connection, *, now: datetime, lease: timedelta, limit: int
) -> list[Claim]:
    """Lease due captures for this replica (one statement, its own transaction)."""
    rows = await repo.claim_due(conn, now=now, lease_until=now + lease, limit=limit)
    return [
        Claim(
            capture_id=row["id"],
            tenant_id=row["tenant_id"],
            attempt=row["attempts"],
            generation=row["generation"],
            lease_token=row["lease_token"],
            request=_psp_request(row),
        )
        for row in rows
    ]


async def send(psp: PspPort, claim: Claim) -> PspAnswer:
    """The PSP call, outside any transaction. A refusal (4xx) is definitive; anything else
    that is not an answer (timeout, 5xx, a request with this key still in progress at the
    PSP, an unexpected answer) leaves the outcome unknown: retried under the same key."""
    try:
        result = await psp.capture(claim.request, idempotency_key=claim.idempotency_key)
    except (PspValidationError, PspAuthenticationError) as exc:
        return Refused(exc.code, exc.message)
    except PspError as exc:
        return Unknown(exc.code, exc.message)
    except Exception as exc:  # a bug or a transport surprise: never lose the capture
        log.exception("unexpected error calling the PSP", capture_id=claim.capture_id)
        return Unknown("psp_call_error", f"{type(exc).__name__}: {exc}")
    return Received(result.psp_reference)


async def record_answer(
    conn: asyncpg.Connection,
    claim: Claim,
    answer: PspAnswer,
    *,
    now: datetime,
    retry_delays: Sequence[timedelta],
    metrics: CaptureMetrics | None = None,
) -> asyncpg.Record | None:
    row = await repo.capture(conn, claim.capture_id, lock=True)
    if row is None:
        return None
    outcome = domain.on_psp_answer(
        state_of(row), answer, generation=claim.generation, retry_delays=retry_delays
    )
    received = isinstance(answer, Received)
    return await apply(
        conn,
        row,
        outcome,
        source="psp_answer",
        now=now,
        detail={"attempt": claim.attempt, "idempotency_key": claim.idempotency_key},
        metrics=metrics,
        attempt=repo.FinishedAttempt(
            attempt=claim.attempt,
            now=now,
            outcome={Received: "received", Unknown: "unknown", Refused: "refused"}[type(answer)],
            code=None if isinstance(answer, Received) else answer.code,
            detail=None if isinstance(answer, Received) else answer.message[:500],
            psp_reference=answer.psp_reference if received else None,
            lease_token=claim.lease_token,
        ),
    )


# -- the PSP's notifications -----------------------------------------------------------------


async def on_psp_notification(
    conn: asyncpg.Connection,
    tenant_id: str,
    event: PspNotificationReceived,
    *,
    now: datetime,
    metrics: CaptureMetrics | None = None,
) -> asyncpg.Record | None:
    """CAPTURE / CAPTURE_FAILED about one of our captures: its merchant reference is the
    capture id (what we send as `reference`), or, failing that, the payment's PSP reference
    and the amount name exactly one capture waiting for the PSP. Anything else is not about a
    capture of ours and is ignored."""
    if event.event_code not in ("CAPTURE", "CAPTURE_FAILED"):
        return None
    row = None
    if event.merchant_reference.startswith("cap_"):
        row = await repo.capture(conn, event.merchant_reference, tenant_id=tenant_id, lock=True)
    if row is None and event.original_reference and event.amount is not None:
        waiting = await repo.waiting_captures_for_psp_reference(
            conn, tenant_id, event.original_reference, event.amount.value
        )
        row = waiting[0] if len(waiting) == 1 else None
    if row is None:
        log.info(
            "capture notification not about a capture of ours",
            notification_id=event.notification_id,
            merchant_reference=event.merchant_reference,
        )
        if metrics:
            metrics.unmatched_notifications.inc()
        return None
    detail = {
        "notification_id": event.notification_id,
        "event_code": event.event_code,
        "success": event.success,
        "psp_reference": event.psp_reference,
        "reason": event.reason,
    }
    if event.amount is not None and (event.amount.value, event.amount.currency) != (
        row["amount"],
        row["currency"],
    ):
        return await apply(
            conn,
            row,
            Ignored(f"the notification's amount {event.amount.value} is not the capture's", True),
            source="psp_notification",
            now=now,
            detail=detail,
            metrics=metrics,
        )
    notification: domain.Notification = (
        domain.Confirmed(event.psp_reference)
        if event.event_code == "CAPTURE" and event.success
        else domain.Rejected(event.psp_reference, event.reason or "")
    )
    outcome = domain.on_notification(state_of(row), notification)
    return await apply(
        conn, row, outcome, source="psp_notification", now=now, detail=detail, metrics=metrics
    )


# -- operators: ADM-PAY-101 and intervention retries -----------------------------------------


@dataclass(frozen=True)
class Captured:
    """What an operator's capture request did: the captures it created or reopened."""

    payment_id: str
    captures: list[asyncpg.Record]

    def all_blocked(self) -> asyncpg.Record | None:
        """The first capture, when every one of them is blocked (the request achieved nothing)."""
        if self.captures and all(c["status"] == CaptureStatus.BLOCKED for c in self.captures):
            return self.captures[0]
        return None


def _capturable(payment: asyncpg.Record) -> None:
    refusal = domain.operator_capture_refusal(payment["payment_option"], payment["status"])
    if refusal == "payment_option_not_capturable":
        raise errors.payment_option_not_capturable(payment["payment_option"])
    if refusal == "payment_not_yet_capturable":
        raise errors.payment_not_yet_capturable()
    if refusal is not None:
        raise errors.payment_not_capturable(payment["status"])


async def manual_capture(
    conn: asyncpg.Connection,
    tenant_id: str,
    payment_id: str,
    logistic_order_id: str | None,
    *,
    now: datetime,
) -> Captured:
    """ADM-PAY-101: capture every line of the payment still authorised and uncaptured (or the
    one named). A line whose capture FAILED or was BLOCKED is reopened; a line captured or
    being captured is left alone; when nothing is left: 409 `nothing_to_capture`."""
    payment = await repo.lock_payment(conn, tenant_id, payment_id)
    if payment is None:
        raise errors.payment_not_found()
    _capturable(payment)
    lines = [Line.of(row) for row in await repo.lines_of(conn, tenant_id, payment_id)]
    if logistic_order_id is not None:
        lines = [line for line in lines if line.logistic_order_id == logistic_order_id]
        if not lines:
            raise errors.logistic_order_unknown()
    existing = await repo.captures_of_payment(conn, tenant_id, payment_id, for_update=True)
    fresh = [line for line in lines if line.logistic_order_id not in existing]
    touched = await create_captures(
        conn, payment, fresh, trigger="MANUAL", now=now, source="adm_pay_101"
    )
    for line in lines:
        row = existing.get(line.logistic_order_id)
        if row is not None and row["status"] in (CaptureStatus.FAILED, CaptureStatus.BLOCKED):
            touched.append(await reopen(conn, payment, row, source="adm_pay_101", now=now))
    if not touched:
        named = {line.logistic_order_id for line in lines}
        raise errors.nothing_to_capture(
            [(r["id"], r["status"]) for key, r in existing.items() if key in named],
            "logistic_order_id" if logistic_order_id is not None else None,
        )
    return Captured(payment_id, touched)


async def reopen(
    conn: asyncpg.Connection,
    payment: asyncpg.Record,
    row: asyncpg.Record,
    *,
    source: str,
    now: datetime,
) -> asyncpg.Record:
    """Send a FAILED or BLOCKED capture again (payment and capture locked by the caller). A
    blocked one gets its split and Level 3 data computed again (the rates or the data may
    have been fixed); if still invalid it stays BLOCKED with the new reason."""
    extra: dict[str, Any] = {"failure_code": None, "failure_reason": None}
    if row["status"] == CaptureStatus.BLOCKED:
        line = Line.of(row)
        tenancy = await Tenancy.load(conn, payment["tenant_id"], [line.supplier_id])
        prepared = tenancy.prepare(payment, line)
        if isinstance(prepared, Blocked):
            row = await repo.update_capture(
                conn, row["id"], {"block_code": prepared.code, "block_message": prepared.message}
            )
            return await apply(
                conn,
                row,
                Ignored(f"still blocked: {prepared.code}"),
                source=source,
                now=now,
                detail={"block_code": prepared.code},
            )
        extra.update(_prepared_columns(prepared))
    outcome = domain.reopen(state_of(row))
    if isinstance(outcome, Transition):
        await repo.close_interventions(conn, row["id"], "RETRIED")
    return await apply(conn, row, outcome, source=source, now=now, extra=extra)


async def retry_intervention(
    conn: asyncpg.Connection, tenant_id: str, intervention_id: str, *, now: datetime
) -> asyncpg.Record:
    """An operator's retry of an intervention: its capture is sent again (see `reopen`)."""
    found = await repo.intervention(conn, tenant_id, intervention_id)
    if found is None:
        raise errors.intervention_not_found()
    payment = await repo.lock_payment(conn, tenant_id, found["payment_id"])
    assert payment is not None
    row = await repo.capture(conn, found["capture_id"], lock=True)
    assert row is not None
    current = await repo.intervention(conn, tenant_id, intervention_id, lock=True)
    assert current is not None
    if current["status"] != "OPEN":
        raise errors.intervention_not_open(current["status"])
    _capturable(payment)
    await reopen(conn, payment, row, source="intervention_retry", now=now)
    updated = await repo.intervention(conn, tenant_id, intervention_id)
    assert updated is not None
    return updated


# -- DELAYED ---------------------------------------------------------------------------------


async def run_due_schedules(conn: asyncpg.Connection, *, now: datetime, limit: int) -> int:
    """Create the captures of due DELAYED schedules (claimed with FOR UPDATE SKIP LOCKED, so
    replicas share them) in the caller's transaction; return how many schedules were due."""
    due = await repo.claim_due_schedules(conn, now, limit)
    for schedule in due:
        payment = await repo.lock_payment(conn, schedule["tenant_id"], schedule["payment_id"])
        if payment is None or payment["status"] != "AUTHORISED":
            status = payment["status"] if payment is not None else "unknown"
            await repo.finish_schedule(
                conn,
                schedule["tenant_id"],
                schedule["payment_id"],
                "SKIPPED",
                f"payment {status}",
            )
            continue
        lines = [
            Line.of(row)
            for row in await repo.lines_of(conn, schedule["tenant_id"], schedule["payment_id"])
        ]
        made = await create_captures(conn, payment, lines, trigger="DELAYED", now=now)
        await repo.finish_schedule(
            conn,
            schedule["tenant_id"],
            schedule["payment_id"],
            "DONE",
            f"{len(made)} capture(s) created",
        )
    return len(due)


# -- the OMS ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OmsOutcome:
    outcome: str
    reason: str | None = None
    payment_id: str | None = None
    capture_id: str | None = None


async def on_logistic_order_event(
    conn: asyncpg.Connection,
    message_id: str,
    event: LogisticOrderStatusChanged,
    *,
    now: datetime,
) -> OmsOutcome:
    """Record every OMS event with what it did. Only `SHIPPED` of a logistic order of an
    authorised card payment in ON_SHIPMENT mode creates a capture; a SHIPPED whose payment is
    not authorised yet waits for the authorisation; everything else is ignored with the
    reason, and never captured."""
    result = await _decide_shipment(conn, event, now)
    await repo.record_logistic_order_event(
        conn,
        message_id,
        event,
        outcome=result.outcome,
        reason=result.reason,
        payment_id=result.payment_id,
        capture_id=result.capture_id,
    )
    return result


async def _decide_shipment(
    conn: asyncpg.Connection, event: LogisticOrderStatusChanged, now: datetime
) -> OmsOutcome:
    tenancy = await Tenancy.load(conn, event.tenant_id, [event.supplier_id])
    if tenancy.tenant is None:
        return OmsOutcome("ignored", "tenant_unknown")
    if event.status != "SHIPPED":
        return OmsOutcome("recorded")
    found = await repo.shipment_lines(
        conn, event.tenant_id, event.order_id, event.logistic_order_id
    )
    if not found:
        return OmsOutcome("ignored", "logistic_order_unknown")
    lines = [line for line in found if line["payment_option"] in domain.CARD_OPTIONS]
    if not lines:
        return OmsOutcome("ignored", "payment_option_not_capturable", found[0]["payment_id"])
    authorised = [line for line in lines if line["status"] == "AUTHORISED"]
    if not authorised:
        if any(line["status"] == "CREATED" for line in lines):
            return OmsOutcome("awaiting_authorisation", "payment_not_authorised_yet")
        return OmsOutcome("ignored", "payment_not_authorised", lines[0]["payment_id"])
    if len(authorised) > 1:
        return OmsOutcome("ignored", "several_authorised_payments")
    payment = authorised[0]  # the payment's columns and its line's, payment locked
    payment_id = payment["payment_id"]
    if payment["line_supplier_id"] != event.supplier_id:
        return OmsOutcome("ignored", "supplier_mismatch", payment_id)
    if payment["capture_id"] is not None:
        return OmsOutcome("ignored", "capture_exists", payment_id, payment["capture_id"])
    mode = domain.effective_mode(payment["capture_mode"], tenancy.tenant.capture_mode)
    if mode != "ON_SHIPMENT":
        return OmsOutcome("ignored", "capture_mode_not_on_shipment", payment_id)
    line = Line(event.logistic_order_id, payment["line_supplier_id"], payment["line_amount"])
    made = await create_captures(
        conn, payment, [line], tenancy=tenancy, trigger="ON_SHIPMENT", now=now
    )
    if not made:  # cannot happen under the payment's lock; said rather than assumed
        return OmsOutcome("ignored", "capture_exists", payment_id)
    return OmsOutcome("capture_created", None, payment_id, made[0]["id"])
