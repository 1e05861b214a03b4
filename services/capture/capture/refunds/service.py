"""Refund and dispute use cases: load (typed rows) → decide (`refunds.domain`, pure) → save
(one repo call per row, with its history and its events in the caller's transaction). The PSP
is called only by `send`, outside any transaction, under the key `refund:<id>`; a retry after
a crash or a timeout sends the same key, so the PSP refunds once.

Never past the captured amount: `request_refund` and `on_dispute_notification` lock the
payment row first, then read what every capture has given back (waiting refunds included)
and reserve in the same transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from capture.domain import SplitLine, psp_splits
from capture.domain import idempotency_key as capture_key
from capture.refunds import domain, repo
from capture.refunds.domain import (
    Accepted,
    DisputeStage,
    NoAnswer,
    NoChange,
    RefundAsk,
    RefundStatus,
    Refusal,
    Rejected,
    SendAnswer,
    SendState,
    Shares,
)
from capture.refunds.repo import LockedPayment, NewRefund, Refund
from common.broker import publish_events
from common.db.types import Conn
from common.events import (
    ChargebackEvent,
    EventData,
    EventType,
    PspNotificationReceived,
    RefundFailed,
    RefundFundsDecision,
    RefundRequested,
    RefundSucceeded,
    ReturnLine,
)
from common.http.errors import ApiError
from common.logging import get_logger
from common.money import Money, parse_rate
from common.psp.port import (
    CaptureRequest,
    ModificationResult,
    PspAuthenticationError,
    PspError,
    PspPort,
    PspValidationError,
    RefundRequest,
)

log = get_logger("capture.refunds")
REFUND_CODES = frozenset({"REFUND", "REFUND_FAILED"})


class RefundRefused(ApiError):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message, code=refusal.code, param=refusal.param)
        self.status = refusal.status


def new_refund_id() -> str:
    return f"rfd_{secrets.token_hex(12)}"


def new_refund_intervention_id() -> str:
    return f"{repo.REFUND_INTERVENTION_PREFIX}{secrets.token_hex(12)}"


def idempotency_key(refund_id: str) -> str:
    return f"refund:{refund_id}"


# -- events ----------------------------------------------------------------------------------


def _return_lines(capture_id: str, lo: str, supplier: str, lines: Shares) -> list[ReturnLine]:
    return [
        ReturnLine(
            capture_id=capture_id,
            logistic_order_id=lo,
            supplier_id=supplier,
            party=party,
            amount=amount,
        )
        for party, amount in lines.lines()
        if amount > 0
    ]


def _refund_fields(r: Refund) -> dict[str, Any]:
    return {
        "refund_id": r.id,
        "revision": r.revision,
        "payment_id": r.payment_id,
        "order_id": r.order_id,
        "capture_id": r.capture_id,
        "logistic_order_id": r.logistic_order_id,
        "supplier_id": r.supplier_id,
        "amount": Money(value=r.amount, currency=r.currency),
        "reason": r.reason,
        "lines": _return_lines(r.capture_id, r.logistic_order_id, r.supplier_id, r.lines),
    }


async def _emit(conn: Conn, r: Refund, events: Sequence[tuple[EventType, EventData]]) -> None:
    await publish_events(conn, list(events), tenant_id=r.tenant_id, aggregate_id=r.id)


# -- requesting a refund ---------------------------------------------------------------------


@dataclass(frozen=True)
class RefundInput:
    amount: int | None
    currency: str | None
    logistic_order_id: str | None
    reason: str
    description: str | None


async def request_refund(
    conn: Conn,
    tenant_id: str,
    payment_id: str,
    given: RefundInput,
    *,
    now: datetime,
) -> list[Refund]:
    """Reserve and record the refunds a request makes, or raise its refusal (404 for a payment
    this tenant does not have)."""
    payment = await repo.lock_payment(conn, tenant_id, payment_id)
    if payment is None:
        raise RefundRefused(Refusal(404, "payment_not_found", "no such payment", "id"))
    dispute = await repo.dispute(conn, tenant_id, payment_id)
    books = await repo.books(conn, tenant_id, payment_id, dispute)
    open_, charged_back = domain.blocks_refunds(
        dispute.stage if dispute else None, dispute.debited if dispute else False
    )
    view = domain.PaymentView(
        status=payment.status,
        payment_option=payment.payment_option,
        currency=payment.currency,
        line_ids=payment.line_ids,
        dispute=dispute.stage if open_ and dispute else None,
        charged_back=charged_back,
    )
    plans = domain.plan_refund(
        view,
        books,
        RefundAsk(given.amount, given.currency, given.logistic_order_id, given.reason),
    )
    if isinstance(plans, Refusal):
        raise RefundRefused(plans)
    funds_check = payment.funding_policy == "REFUSE_REFUND"
    by_capture = {b.capture_id: b for b in books}
    new = [
        NewRefund(
            id=new_refund_id(),
            capture_id=p.capture_id,
            logistic_order_id=by_capture[p.capture_id].logistic_order_id,
            supplier_id=by_capture[p.capture_id].supplier_id,
            amount=p.amount,
            lines=p.lines,
            state=domain.initial_state(funds_check),
            funds_check=funds_check,
        )
        for p in plans
    ]
    rows: list[Refund] = await repo.insert_refunds(
        conn, payment, new, reason=given.reason, description=given.description, now=now
    )
    for r in rows:
        await _emit(
            conn,
            r,
            [
                (
                    EventType.REFUND_REQUESTED,
                    RefundRequested(**_refund_fields(r), funds_check=funds_check),
                )
            ],
        )
    return rows


# -- applying a change -----------------------------------------------------------------------


async def apply(
    conn: Conn,
    r: Refund,
    outcome: domain.RefundOutcome,
    *,
    source: str,
    detail: dict[str, Any],
    now: datetime,
    extra: dict[str, Any] | None = None,
) -> Refund:
    if isinstance(outcome, NoChange):
        if outcome.anomaly:
            log.warning("refund anomaly", refund_id=r.id, reason=outcome.reason)
        return await repo.update_refund(
            conn,
            r,
            dict(extra or {}),
            source=source,
            detail={**detail, "ignored": outcome.reason, "anomaly": outcome.anomaly},
            now=now,
        )
    s = outcome.state
    values: dict[str, Any] = {
        "status": s.status.value,
        "send_state": s.send.value,
        "attempts": s.attempts,
        "psp_reference": s.psp_reference,
        **(extra or {}),
    }
    if s.status is not r.status:
        values["revision"] = r.revision + 1
    if s.send is SendState.DUE:
        values["next_attempt_at"] = now + (outcome.retry_in or timedelta(0))
        values["lease_until"] = None
    else:
        values["next_attempt_at"] = None
    if outcome.code is not None:
        values["failure_code"] = outcome.code
        values["failure_message"] = outcome.message
        detail = {**detail, "code": outcome.code, "message": outcome.message}
    if s.status is RefundStatus.REFUNDED and r.status is not RefundStatus.REFUNDED:
        values["refunded_at"] = now
    updated = await repo.update_refund(conn, r, values, source=source, detail=detail, now=now)
    if s.status not in domain.HOLDING:
        await repo.close_refund_interventions(conn, r.id, now)
    if outcome.open_intervention is not None:
        await repo.open_refund_intervention(
            conn,
            updated,
            id_=new_refund_intervention_id(),
            kind=outcome.open_intervention,
            code=outcome.code or "refund_unknown",
            reason=outcome.message or "",
        )
    if outcome.emit == "succeeded":
        captured, refunded = await repo.totals(conn, r.tenant_id, r.payment_id)
        event: EventData = RefundSucceeded(
            **_refund_fields(updated),
            psp_reference=updated.psp_reference,
            payment_captured=Money(value=captured, currency=r.currency),
            payment_refunded=Money(value=refunded, currency=r.currency),
        )
        await _emit(conn, updated, [(EventType.REFUND_SUCCEEDED, event)])
    elif outcome.emit == "failed":
        _, refunded = await repo.totals(conn, r.tenant_id, r.payment_id)
        event = RefundFailed(
            **_refund_fields(updated),
            code=outcome.code or "refund_failed",
            message=outcome.message or "",
            payment_refunded=Money(value=refunded, currency=r.currency),
        )
        await _emit(conn, updated, [(EventType.REFUND_FAILED, event)])
        if r.status in domain.HOLDING:
            await _top_up_chargeback(conn, updated, now)
    return updated


async def _lock_refund(conn: Conn, refund_id: str, tenant_id: str | None) -> Refund | None:
    """The refund, locked after its payment (the lock order of every use case: payment →
    capture → refund), so a refund's change and a dispute notification never deadlock."""
    found = await repo.refund(conn, refund_id, tenant_id=tenant_id)
    if found is None:
        return None
    await repo.lock_payment(conn, found.tenant_id, found.payment_id)
    return await repo.refund(conn, refund_id, lock=True)


async def _top_up_chargeback(conn: Conn, failed: Refund, now: datetime) -> None:
    """A refund that held its amount when a chargeback took what was left has failed: the
    chargeback takes that amount too (the PSP debited the whole disputed amount)."""
    dispute = await repo.dispute(conn, failed.tenant_id, failed.payment_id, lock=True)
    if dispute is None or not dispute.debited:
        return
    books = await repo.books(conn, failed.tenant_id, failed.payment_id, dispute)
    book = next((b for b in books if b.capture_id == failed.capture_id), None)
    if book is None:
        return
    more = domain.top_up(book, failed.amount)
    if more is None:
        return
    debits = domain.merge_debits(dispute.debits, more)
    revision = await repo.save_dispute(
        conn,
        id_=dispute.id,
        tenant_id=failed.tenant_id,
        payment_id=failed.payment_id,
        psp_reference="",
        stage=dispute.stage,
        debited=True,
        debits=debits,
        reason=None,
        now=now,
    )
    payment = await repo.lock_payment(conn, failed.tenant_id, failed.payment_id)
    assert payment is not None
    data = ChargebackEvent(
        chargeback_id=dispute.id,
        revision=revision,
        payment_id=failed.payment_id,
        order_id=failed.order_id,
        psp_reference=payment.psp_reference or "",
        stage=dispute.stage.value,
        amount=Money(value=more.lines.total, currency=failed.currency),
        reason=f"the refund {failed.id} held this amount and failed",
        lines=_return_lines(book.capture_id, book.logistic_order_id, book.supplier_id, more.lines),
    )
    await publish_events(
        conn,
        [(EventType.CHARGEBACK_RECEIVED, data)],
        tenant_id=failed.tenant_id,
        aggregate_id=dispute.id,
    )


# -- the payouts service's funds decision ----------------------------------------------------


async def on_funds_decision(
    conn: Conn,
    tenant_id: str,
    event: RefundFundsDecision,
    *,
    reserved: bool,
    now: datetime,
) -> Refund | None:
    r = await _lock_refund(conn, event.refund_id, tenant_id)
    if r is None:
        log.warning("funds decision for an unknown refund", refund_id=event.refund_id)
        return None
    outcome = domain.on_funds_decision(r.state, reserved, event.code)
    return await apply(
        conn,
        r,
        outcome,
        source="funds_reserved" if reserved else "funds_refused",
        detail={"code": event.code, "supplier_share_paid_out": event.supplier_share_paid_out},
        now=now,
        extra={
            "supplier_share_paid_out": event.supplier_share_paid_out,
            "funding_transfer_id": event.funding_transfer_id,
        },
    )


# -- the sender's steps ----------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    refund: Refund
    request: RefundRequest

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.refund.id)


def _psp_request(r: Refund, psp_reference: str, merchant_account: str) -> RefundRequest:
    lines = [SplitLine(party, amount, None) for party, amount in r.lines.lines()]
    splits = psp_splits(
        lines, tenant_id=r.tenant_id, supplier_id=r.supplier_id, capture_id=r.capture_id
    )
    # the refund's own references (`<refund id>-<party>`), the capture's accounts
    splits = [
        s.model_copy(update={"reference": (s.reference or "").replace(r.capture_id, r.id, 1)})
        for s in splits
    ]
    return RefundRequest(
        psp_reference=psp_reference,
        amount=Money(value=r.amount, currency=r.currency),
        reference=r.id,
        splits=splits or None,
        merchant_account=merchant_account,
    )


async def claim(conn: Conn, *, now: datetime, lease: timedelta, limit: int) -> list[Claim]:
    rows = await repo.claim_due(conn, now=now, lease_until=now + lease, limit=limit)
    return [Claim(r, _psp_request(r, ref, account)) for r, ref, account in rows]


async def send(psp: PspPort, c: Claim) -> SendAnswer:
    call = psp.refund(c.request, idempotency_key=c.idempotency_key)
    return await _answer_of(call, refund_id=c.refund.id)


async def _answer_of(call: Awaitable[ModificationResult], **about: str) -> SendAnswer:
    """The PSP's answer to a refund or a capture sent again: refused, accepted, or unknown
    (no answer, or a surprise: a bug or a transport error is never taken for an outcome)."""
    try:
        result = await call
    except (PspValidationError, PspAuthenticationError) as exc:
        return Rejected(exc.code, exc.message)
    except PspError as exc:
        return NoAnswer(exc.code, exc.message)
    except Exception as exc:  # never lose a refund or a capture to a surprise
        log.exception("unexpected error calling the PSP", **about)
        return NoAnswer("psp_call_error", f"{type(exc).__name__}: {exc}")
    return Accepted(result.psp_reference)


async def record_answer(
    conn: Conn,
    c: Claim,
    answer: SendAnswer,
    *,
    now: datetime,
    retry_delays: Sequence[timedelta],
) -> Refund | None:
    r = await _lock_refund(conn, c.refund.id, None)
    if r is None:
        return None
    outcome = domain.on_send_answer(r.state, answer, retry_delays)
    detail: dict[str, Any] = {"idempotency_key": c.idempotency_key, "answer": type(answer).__name__}
    return await apply(conn, r, outcome, source="psp_answer", detail=detail, now=now)


# -- the PSP's notifications -----------------------------------------------------------------


async def on_psp_notification(
    conn: Conn,
    tenant_id: str,
    event: PspNotificationReceived,
    *,
    now: datetime,
) -> None:
    if event.event_code in REFUND_CODES:
        await on_refund_notification(conn, tenant_id, event, now=now)
    elif event.event_code in domain.DISPUTE_CODES:
        await on_dispute_notification(conn, tenant_id, event, now=now)


async def on_refund_notification(
    conn: Conn, tenant_id: str, event: PspNotificationReceived, *, now: datetime
) -> Refund | None:
    """REFUND / REFUND_FAILED: the merchant reference is the refund id we sent."""
    r = None
    if event.merchant_reference.startswith("rfd_"):
        r = await _lock_refund(conn, event.merchant_reference, tenant_id)
    if r is None:
        log.info(
            "refund notification not about a refund of ours",
            notification_id=event.notification_id,
            merchant_reference=event.merchant_reference,
        )
        return None
    detail = {
        "notification_id": event.notification_id,
        "event_code": event.event_code,
        "success": event.success,
        "psp_reference": event.psp_reference,
        "reason": event.reason,
    }
    if event.amount is not None and (event.amount.value, event.amount.currency) != (
        r.amount,
        r.currency,
    ):
        outcome: domain.RefundOutcome = NoChange(
            "the notification's amount is not the refund's", anomaly=True
        )
    else:
        outcome = domain.on_refund_notification(
            r.state, event.event_code, event.success, event.psp_reference, event.reason or ""
        )
    return await apply(conn, r, outcome, source="psp_notification", detail=detail, now=now)


async def on_dispute_notification(
    conn: Conn, tenant_id: str, event: PspNotificationReceived, *, now: datetime
) -> None:
    """A dispute notification about one of our payments (found by the payment's PSP
    reference: `originalReference`, else `pspReference`)."""
    payment_id = None
    for ref in (event.original_reference, event.psp_reference):
        if ref:
            payment_id = await repo.payment_by_psp_reference(conn, tenant_id, ref)
            if payment_id:
                break
    if payment_id is None:
        log.info("dispute notification for no payment of ours", notification=event.notification_id)
        return
    payment = await repo.lock_payment(conn, tenant_id, payment_id)
    assert payment is not None
    stage = DisputeStage(event.event_code)
    current = await repo.dispute(conn, tenant_id, payment_id, lock=True)
    moves = current is None or domain.RANK[stage] > domain.RANK[current.stage]
    if moves and stage in domain.DEBITS and not (current and current.debited):
        # refunds still awaiting funds are never sent now: their amount goes to the chargeback
        for held in await repo.refunds_of_payment(conn, tenant_id, payment_id):
            if held.status is RefundStatus.AWAITING_FUNDS:
                locked = await repo.refund(conn, held.id, lock=True)
                assert locked is not None
                await apply(
                    conn,
                    locked,
                    domain.on_chargeback(locked.state),
                    source="chargeback",
                    detail={"notification_id": event.notification_id, "stage": stage.value},
                    now=now,
                )
    books = await repo.books(conn, tenant_id, payment_id, current)
    change = domain.on_dispute_notification(
        current.state if current else domain.DisputeState(None),
        stage,
        event.amount.value if event.amount else None,
        books,
        current.debits if current else (),
    )
    dispute_id = current.id if current else f"dsp_{secrets.token_hex(12)}"
    if isinstance(change, NoChange):
        if current is None:  # cannot happen: a first notification always applies
            return
        await _record_dispute_notification(
            conn, dispute_id, event, applied=False, detail=change.reason
        )
        log.info("dispute notification ignored", payment_id=payment_id, reason=change.reason)
        return
    kept_debits = (
        change.debits
        if change.emit == "received"
        else (() if change.emit == "reversed" else (current.debits if current else ()))
    )
    revision = await repo.save_dispute(
        conn,
        id_=dispute_id,
        tenant_id=tenant_id,
        payment_id=payment_id,
        psp_reference=event.original_reference or event.psp_reference,
        stage=change.state.stage or stage,
        debited=change.state.debited,
        debits=kept_debits,
        reason=event.reason,
        now=now,
    )
    await _record_dispute_notification(conn, dispute_id, event, applied=True, detail=change.emit)
    if change.emit is None:
        return
    await _emit_chargeback(conn, payment, dispute_id, revision, event, change, books)


async def _record_dispute_notification(
    conn: Conn,
    dispute_id: str,
    event: PspNotificationReceived,
    *,
    applied: bool,
    detail: str | None,
) -> None:
    """What the dispute made of one notification: applied, or ignored and why."""
    await repo.record_dispute_notification(
        conn,
        dispute_id,
        notification_id=event.notification_id,
        event_code=event.event_code,
        amount=event.amount.value if event.amount else None,
        currency=event.amount.currency if event.amount else None,
        applied=applied,
        detail=detail,
    )


async def _emit_chargeback(
    conn: Conn,
    payment: LockedPayment,
    dispute_id: str,
    revision: int,
    event: PspNotificationReceived,
    change: domain.DisputeChange,
    books: Sequence[domain.CaptureBook],
) -> None:
    by_capture = {b.capture_id: b for b in books}
    lines: list[ReturnLine] = []
    for d in change.debits:
        b = by_capture.get(d.capture_id)
        lo, sup = (b.logistic_order_id, b.supplier_id) if b else ("", "")
        lines.extend(_return_lines(d.capture_id, lo, sup, d.lines))
    total = sum(line.amount for line in lines)
    data = ChargebackEvent(
        chargeback_id=dispute_id,
        revision=revision,
        payment_id=payment.payment_id,
        order_id=payment.order_id,
        psp_reference=event.psp_reference,
        stage=event.event_code,
        amount=Money(value=total, currency=payment.currency),
        reason=event.reason,
        lines=lines,
    )
    kind = (
        EventType.CHARGEBACK_RECEIVED
        if change.emit == "received"
        else (EventType.CHARGEBACK_REVERSED)
    )
    await publish_events(conn, [(kind, data)], tenant_id=payment.tenant_id, aggregate_id=dispute_id)


# -- nothing stays unknown without someone knowing -------------------------------------------


async def flag_unconfirmed(conn: Conn, *, now: datetime, after: timedelta, limit: int = 100) -> int:
    """Open an `unconfirmed` intervention for every capture (SENT) and refund (awaiting funds
    or waiting for the PSP) unchanged for `after`. Nothing is failed."""
    older_than = now - after
    await repo.close_settled_capture_interventions(conn, now)
    flagged = 0
    for capture_id, tenant_id in await repo.stale_captures(
        conn, older_than=older_than, limit=limit
    ):
        if await repo.open_capture_intervention(
            conn,
            id_=f"int_{secrets.token_hex(12)}",
            tenant_id=tenant_id,
            capture_id=capture_id,
            code="capture_unconfirmed",
            reason=f"the PSP took the capture and has not confirmed it for {after}",
        ):
            flagged += 1
    for r in await repo.stale_refunds(conn, older_than=older_than, limit=limit):
        waiting = "funds from payouts" if r.status is RefundStatus.AWAITING_FUNDS else "the PSP"
        if await repo.open_refund_intervention(
            conn,
            r,
            id_=new_refund_intervention_id(),
            kind="unconfirmed",
            code="refund_unconfirmed",
            reason=f"the refund has waited for {waiting} for {after}",
        ):
            flagged += 1
    return flagged


async def retry_refund(
    conn: Conn, tenant_id: str, intervention_id: str, *, now: datetime
) -> repo.Intervention:
    """An operator's retry of a refund intervention: the refund is sent again under its same
    PSP key (the PSP answers a refund it already took with its first answer)."""
    found = await repo.intervention(conn, tenant_id, intervention_id, lock=True)
    if found is None or found.refund_id is None:
        raise RefundRefused(Refusal(404, "intervention_not_found", "no such intervention", "id"))
    if found.status != "OPEN":
        raise RefundRefused(Refusal(409, "intervention_not_open", f"it is {found.status}", "id"))
    r = await repo.refund(conn, found.refund_id, lock=True)
    assert r is not None
    if r.status is RefundStatus.WAITING_REFUND:
        await repo.update_refund(
            conn,
            r,
            {"send_state": "DUE", "next_attempt_at": now, "lease_until": None, "attempts": 0},
            source="operator_retry",
            detail={"intervention_id": intervention_id, "idempotency_key": idempotency_key(r.id)},
            now=now,
        )
    return await repo.close_intervention(conn, found, "RETRIED", None, now)


async def resolve_intervention(
    conn: Conn, tenant_id: str, intervention_id: str, note: str, *, now: datetime
) -> repo.Intervention:
    found = await repo.intervention(conn, tenant_id, intervention_id, lock=True)
    if found is None:
        raise RefundRefused(Refusal(404, "intervention_not_found", "no such intervention", "id"))
    if found.status != "OPEN":
        raise RefundRefused(Refusal(409, "intervention_not_open", f"it is {found.status}", "id"))
    return await repo.close_intervention(conn, found, "RESOLVED", note, now)


# -- an unconfirmed capture, sent again under its same PSP key -------------------------------


@dataclass(frozen=True)
class CaptureResend:
    intervention: repo.Intervention
    capture_id: str
    idempotency_key: str
    request: CaptureRequest


async def prepare_capture_resend(conn: Conn, tenant_id: str, intervention_id: str) -> CaptureResend:
    """Load an open `unconfirmed` capture intervention and the request its capture was sent
    with (same amount, split and PSP key `capture:<id>:<generation>`)."""
    found = await repo.intervention(conn, tenant_id, intervention_id)
    if found is None or found.refund_id is not None:
        raise RefundRefused(Refusal(404, "intervention_not_found", "no such intervention", "id"))
    if found.status != "OPEN" or found.kind != "unconfirmed":
        raise RefundRefused(
            Refusal(
                409,
                "intervention_not_open",
                f"only an open unconfirmed capture is sent again (this one: {found.kind},"
                f" {found.status}); other capture interventions: POST .../retry",
                "id",
            )
        )
    row = await conn.fetchrow(
        "SELECT id, tenant_id, supplier_id, amount, currency, splits, additional_data,"
        " payment_psp_reference, merchant_account, generation, status FROM captures"
        " WHERE id = $1",
        found.capture_id,
    )
    assert row is not None
    lines = [
        SplitLine(s["party"], int(s["amount"]), parse_rate(s["rate"]) if s["rate"] else None)
        for s in row["splits"]
    ]
    splits = psp_splits(
        lines, tenant_id=row["tenant_id"], supplier_id=row["supplier_id"], capture_id=row["id"]
    )
    request = CaptureRequest(
        psp_reference=row["payment_psp_reference"],
        amount=Money(value=row["amount"], currency=row["currency"]),
        reference=row["id"],
        splits=splits or None,
        additional_data=row["additional_data"],
        merchant_account=row["merchant_account"],
    )
    return CaptureResend(found, row["id"], capture_key(row["id"], row["generation"]), request)


async def send_capture_again(psp: PspPort, resend: CaptureResend) -> SendAnswer:
    call = psp.capture(resend.request, idempotency_key=resend.idempotency_key)
    return await _answer_of(call, capture_id=resend.capture_id)


async def record_capture_resend(
    conn: Conn, resend: CaptureResend, answer: SendAnswer, *, now: datetime
) -> repo.Intervention:
    """The answer goes to the capture's history; the intervention is RETRIED (the webhook,
    when it comes, settles the capture; the watch opens a new intervention if it does not)."""
    detail: dict[str, Any] = {
        "intervention_id": resend.intervention.id,
        "idempotency_key": resend.idempotency_key,
        "answer": type(answer).__name__,
    }
    if not isinstance(answer, Accepted):
        detail.update(code=answer.code, message=answer.message[:500])
    await conn.execute(
        "INSERT INTO capture_history (capture_id, occurred_at, status_from, status_to, source,"
        " detail) SELECT id, $2, status, status, 'operator_resend', $3 FROM captures"
        " WHERE id = $1",
        resend.capture_id,
        now,
        detail,
    )
    await conn.execute(
        "UPDATE captures SET updated_at = $2 WHERE id = $1 AND status = 'SENT'",
        resend.capture_id,
        now,
    )
    current = await repo.intervention(conn, resend.intervention.tenant_id, resend.intervention.id)
    assert current is not None
    if current.status != "OPEN":
        return current
    return await repo.close_intervention(conn, current, "RETRIED", None, now)
