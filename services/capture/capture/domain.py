"""Capture decisions, pure and synchronous (DESIGN §6, §10): the commission split, whether a
payment line may be captured, the Level 3 check, the PSP split lines, and the state machine of
one capture.

A capture is one logistic order of an authorised card payment, captured once, in full:

    (created) ──▶ PENDING ──PSP "received"──▶ SENT ──CAPTURE webhook──▶ SUCCEEDED
        │            │  ▲                      │
        │            │  └─ PSP unavailable / timeout: retried later, same PSP key
        │            ├─ retries spent, or the PSP refused it ──▶ FAILED ──reopen──▶ PENDING
        │            └─ CAPTURE_FAILED webhook ───────────────▶ FAILED
        └─ invalid split or Level 3 data ──▶ BLOCKED (never sent) ──reopen──▶ PENDING

Every change returns a `Transition` (the new state plus what the caller must do: publish an
event, open or close an intervention) or an `Ignored` with the reason, so a duplicate, late or
stale answer or notification is a no-op by construction.

The PSP idempotency key of a capture is `capture:<id>:<generation>`. The generation changes
only when the PSP has certainly not captured (a refusal, a CAPTURE_FAILED, a blocked split):
then an operator's retry is a new request. When the outcome is unknown (timeouts, 5xx, the
retries spent), the retry keeps the key, so a capture the PSP did take is answered again
rather than made twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from common.events import (
    CaptureBlocked,
    CaptureFailed,
    CaptureRequested,
    CaptureScheduled,
    CaptureSucceeded,
    EventData,
    EventType,
    Level3Data,
    SplitLineData,
    SupplierUpserted,
    TenantUpserted,
)
from common.level3 import Level3, Level3Item, check_level3, level3_additional_data
from common.money import Money, percent_of
from common.psp.port import CaptureRequest, Split

Party = Literal["PLATFORM", "MARKETPLACE", "SUPPLIER"]
Trigger = Literal["IMMEDIATE", "DELAYED", "ON_SHIPMENT", "MANUAL", "BANK_TRANSFER"]
CARD_OPTIONS = frozenset({"CREDIT_CARD", "PCARD_L3"})


class CaptureStatus(StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    BLOCKED = "BLOCKED"


@dataclass(frozen=True)
class Blocked:
    """Why a capture may not be sent; `code` is stable (API errors, `capture.blocked`)."""

    code: str
    message: str


# --- the split ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitLine:
    party: Party
    amount: int
    rate: Decimal | None


@dataclass(frozen=True)
class CommissionSplit:
    """The split of one capture, with the rates it was computed with (frozen at capture)."""

    lines: tuple[SplitLine, ...]
    platform_rate: Decimal | None
    marketplace_rate: Decimal | None


def split(
    amount: int, platform_rate: Decimal | None, marketplace_rate: Decimal | None
) -> CommissionSplit | Blocked:
    """The product's "Commission Split Calculation": each commission is
    `round_half_up(amount × rate / 100)` (no line when its rate is absent), the supplier gets
    the rest (so the cent correction lands on the supplier). Valid only when every line is
    ≥ 0 and the lines sum to the amount; otherwise the capture is blocked."""
    if amount < 0:
        return Blocked("split_invalid", f"the amount {amount} is negative")
    lines: list[SplitLine] = []
    commissions: tuple[tuple[Party, Decimal | None], ...] = (
        ("PLATFORM", platform_rate),
        ("MARKETPLACE", marketplace_rate),
    )
    for party, rate in commissions:
        if rate is None:
            continue
        if not Decimal(0) <= rate <= Decimal(100):
            return Blocked("split_invalid", f"the {party.lower()} rate {rate} is not 0 to 100")
        lines.append(SplitLine(party, percent_of(amount, rate), rate))
    supplier = amount - sum(line.amount for line in lines)
    lines.append(SplitLine("SUPPLIER", supplier, None))
    if any(line.amount < 0 for line in lines) or sum(line.amount for line in lines) != amount:
        shown = ", ".join(f"{line.party.lower()} {line.amount}" for line in lines)
        return Blocked(
            "split_invalid",
            f"the commissions exceed the amount {amount}: {shown}",
        )
    return CommissionSplit(tuple(lines), platform_rate, marketplace_rate)


def psp_splits(
    lines: Sequence[SplitLine], *, tenant_id: str, supplier_id: str, capture_id: str
) -> list[Split]:
    """The split instructions sent to the PSP (Adyen's `splits[]`), zero lines left out:
    - platform commission → `Commission` (the platform's own liable account, no `account`);
    - marketplace commission → `BalanceAccount` `MKT-<tenant id>`;
    - supplier share → `BalanceAccount` `SUP-<supplier id>`.
    Each `reference` is `<capture id>-<party>`, unique per split line as Adyen asks."""
    out: list[Split] = []
    for line in lines:
        if line.amount == 0:
            continue
        reference = f"{capture_id}-{line.party.lower()}"
        if line.party == "PLATFORM":
            out.append(Split(amount=line.amount, type="Commission", reference=reference))
        elif line.party == "MARKETPLACE":
            out.append(
                Split(
                    amount=line.amount,
                    type="BalanceAccount",
                    account=f"MKT-{tenant_id}",
                    reference=reference,
                )
            )
        else:
            out.append(
                Split(
                    amount=line.amount,
                    type="BalanceAccount",
                    account=f"SUP-{supplier_id}",
                    reference=reference,
                )
            )
    return out


# --- what may be captured ----------------------------------------------------------------------


def effective_mode(session_mode: str | None, tenant_mode: str) -> str:
    """The session's capture mode overrides the tenant's."""
    return session_mode or tenant_mode


PaymentStatus = Literal["CREATED", "AUTHORISED", "CANCELLED", "REFUSED"]
CaptureRefusal = Literal[
    "payment_option_not_capturable", "payment_not_yet_capturable", "payment_not_capturable"
]


def operator_capture_refusal(payment_option: str, status: str) -> CaptureRefusal | None:
    """Why an operator may not capture this payment now (ADM-PAY-101, an intervention's
    retry), or None. `CREATED` is "not yet": capture has not heard of the authorisation,
    which checkout may already show; the client asks again. Cancelled or refused is final."""
    if payment_option not in CARD_OPTIONS:
        return "payment_option_not_capturable"
    if status == "CREATED":
        return "payment_not_yet_capturable"
    if status != "AUTHORISED":
        return "payment_not_capturable"
    return None


def capture_due_at(authorised_at: datetime, delay_hours: int) -> datetime:
    return authorised_at + timedelta(hours=delay_hours)


def level3_for_capture(
    data: Level3Data | None, *, capture_amount: int, payment_amount: int
) -> Level3 | Blocked:
    """A `PCARD_L3` capture carries the payment's Level 3 data, which must be complete and
    whose item totals plus tax, freight and duty must equal the captured amount.

    The Level 3 data of a session describes the whole payment. A payment of several logistic
    orders is captured one logistic order at a time, and no per-order share of a payment-wide
    Level 3 record would be true to the card schemes, so such a capture is blocked
    (`level3_partial_capture`): a PCARD_L3 order with several logistic orders needs one
    session (payment) per logistic order."""
    if data is None:
        return Blocked("level3_missing", "a PCARD_L3 capture needs the payment's Level 3 data")
    complete = _complete(data)
    if isinstance(complete, Blocked):
        return complete
    if capture_amount != payment_amount:
        return Blocked(
            "level3_partial_capture",
            f"the Level 3 data covers the whole payment ({payment_amount}); this capture is"
            f" one logistic order ({capture_amount}). Capture PCARD_L3 payments per payment"
            " (one logistic order per session)",
        )
    problem = check_level3(capture_amount, complete)
    if problem is not None:
        return Blocked("level3_inconsistent", f"{problem.param}: {problem.message}")
    return complete


def _complete(data: Level3Data) -> Level3 | Blocked:
    if not data.customer_reference or data.tax_total is None:
        return Blocked("level3_incomplete", "Level 3 data needs customer_reference and tax_total")
    if not data.items:
        return Blocked("level3_incomplete", "Level 3 data needs at least one item")
    items: list[Level3Item] = []
    for n, item in enumerate(data.items):
        if (
            not item.commodity_code
            or not item.description
            or item.quantity is None
            or item.quantity <= 0
            or not item.unit_of_measure
            or item.unit_price is None
            or item.total is None
        ):
            return Blocked(
                "level3_incomplete",
                f"items.{n}: commodity_code, description, a positive quantity,"
                " unit_of_measure, unit_price and total are required",
            )
        items.append(
            Level3Item(
                commodity_code=item.commodity_code,
                description=item.description,
                quantity=item.quantity,
                unit_of_measure=item.unit_of_measure,
                unit_price=item.unit_price,
                discount=item.discount,
                total=item.total,
            )
        )
    return Level3(
        customer_reference=data.customer_reference,
        tax_total=data.tax_total,
        freight=data.freight,
        duty=data.duty,
        items=tuple(items),
    )


@dataclass(frozen=True)
class Prepared:
    """A capture that may be sent: its split and, for PCARD_L3, its Level 3 data."""

    split: CommissionSplit
    level3: Level3 | None


def prepare(
    *,
    amount: int,
    payment_option: str,
    payment_amount: int,
    level3: Level3Data | None,
    platform_rate: Decimal | None,
    marketplace_rate: Decimal | None,
    supplier_known: bool,
) -> Prepared | Blocked:
    """Everything checked before a capture may go to the PSP. A supplier unknown to the
    replica blocks the capture rather than being captured without its commission."""
    if payment_option not in CARD_OPTIONS:
        return Blocked(
            "payment_option_not_capturable", f"{payment_option} payments are not captured"
        )
    if not supplier_known:
        return Blocked(
            "supplier_unknown",
            "the supplier is not known to capture (yet): its commission rate cannot be read",
        )
    commission = split(amount, platform_rate, marketplace_rate)
    if isinstance(commission, Blocked):
        return commission
    if payment_option != "PCARD_L3":
        return Prepared(commission, None)
    checked = level3_for_capture(level3, capture_amount=amount, payment_amount=payment_amount)
    if isinstance(checked, Blocked):
        return checked
    return Prepared(commission, checked)


# --- one capture's state machine ---------------------------------------------------------------


IDEMPOTENCY_KEY_FORMAT = "capture:%s:%s"
"""The PSP idempotency key of a capture: `capture:<id>:<generation>` (see the module
docstring). The one definition: `idempotency_key` formats it in Python, and the claim
statement with PostgreSQL's `format()`, which reads `%s` the same way."""


def idempotency_key(capture_id: str, generation: int) -> str:
    """The PSP idempotency key of a capture's current generation."""
    return IDEMPOTENCY_KEY_FORMAT % (capture_id, generation)


@dataclass(frozen=True)
class CaptureState:
    status: CaptureStatus
    generation: int
    round_attempts: int  # PSP attempts since the capture was (re)opened
    psp_reference: str | None
    outcome_known: bool | None  # FAILED: True when the PSP certainly did not capture


Emit = Literal["requested", "succeeded", "failed", "blocked"]
InterventionKind = Literal["retries_exhausted", "psp_refused", "capture_failed", "blocked"]


@dataclass(frozen=True)
class Transition:
    state: CaptureState
    emit: Emit | None = None
    retry_in: timedelta | None = None  # PENDING again after a retryable error
    open_intervention: InterventionKind | None = None
    close_interventions: bool = False
    retries_exhausted: bool = False
    code: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Ignored:
    reason: str
    anomaly: bool = False  # worth an operator's look (a second capture, a contradiction)


Outcome = Transition | Ignored


@dataclass(frozen=True)
class Received:
    """The PSP took the capture (`status: received`); the webhook will confirm it."""

    psp_reference: str


@dataclass(frozen=True)
class Unknown:
    """No usable answer (timeout, 5xx, request in progress elsewhere): retry, same key."""

    code: str
    message: str


@dataclass(frozen=True)
class Refused:
    """The PSP refused the request (4xx): it certainly did not capture."""

    code: str
    message: str


PspAnswer = Received | Unknown | Refused


def on_psp_answer(
    state: CaptureState,
    answer: PspAnswer,
    *,
    generation: int,
    retry_delays: Sequence[timedelta],
) -> Outcome:
    """What the answer to a capture request (of `generation`) does to the capture."""
    if generation != state.generation:
        return Ignored(f"an answer to generation {generation}, now {state.generation}")
    if state.status is not CaptureStatus.PENDING:
        if isinstance(answer, Received) and state.psp_reference is None:
            return Transition(replace(state, psp_reference=answer.psp_reference))
        return Ignored(f"the capture is {state.status} already")
    if isinstance(answer, Received):
        return Transition(
            replace(state, status=CaptureStatus.SENT, psp_reference=answer.psp_reference)
        )
    if isinstance(answer, Unknown):
        if 1 <= state.round_attempts <= len(retry_delays):
            delay = retry_delays[state.round_attempts - 1]
            return Transition(state, retry_in=delay, code=answer.code, reason=answer.message)
        return Transition(
            replace(state, status=CaptureStatus.FAILED, outcome_known=False),
            emit="failed",
            open_intervention="retries_exhausted",
            retries_exhausted=True,
            code=answer.code,
            reason=f"no answer from the PSP after {state.round_attempts} attempts:"
            f" {answer.message}",
        )
    return Transition(
        replace(state, status=CaptureStatus.FAILED, outcome_known=True),
        emit="failed",
        open_intervention="psp_refused",
        code=answer.code,
        reason=answer.message,
    )


@dataclass(frozen=True)
class Confirmed:
    """A CAPTURE notification with success true."""

    psp_reference: str


@dataclass(frozen=True)
class Rejected:
    """CAPTURE_FAILED, or a CAPTURE notification with success false."""

    psp_reference: str
    reason: str


Notification = Confirmed | Rejected


def on_notification(state: CaptureState, notification: Notification) -> Outcome:
    """What the PSP's CAPTURE / CAPTURE_FAILED notification does to the capture."""
    if isinstance(notification, Confirmed):
        if state.status is CaptureStatus.SUCCEEDED:
            if state.psp_reference not in (None, notification.psp_reference):
                return Ignored(
                    f"a second CAPTURE ({notification.psp_reference}) for a capture confirmed"
                    f" as {state.psp_reference}",
                    anomaly=True,
                )
            return Ignored("already succeeded")
        if state.status is CaptureStatus.BLOCKED:
            return Ignored("a CAPTURE for a capture that was never sent", anomaly=True)
        # PENDING or SENT; or FAILED, when the PSP did capture after all: the PSP is the truth
        return Transition(
            replace(
                state,
                status=CaptureStatus.SUCCEEDED,
                psp_reference=notification.psp_reference,
                outcome_known=None,
            ),
            emit="succeeded",
            close_interventions=True,
        )
    if state.status is CaptureStatus.SUCCEEDED:
        return Ignored(
            f"a failure notification ({notification.reason}) after the capture succeeded",
            anomaly=True,
        )
    if state.status in (CaptureStatus.FAILED, CaptureStatus.BLOCKED):
        return Ignored(f"the capture is {state.status} already")
    if state.psp_reference is not None and state.psp_reference != notification.psp_reference:
        return Ignored(
            f"a failure of {notification.psp_reference}, not of this capture's request"
            f" {state.psp_reference}"
        )
    return Transition(
        replace(
            state,
            status=CaptureStatus.FAILED,
            outcome_known=True,
            psp_reference=notification.psp_reference,
        ),
        emit="failed",
        open_intervention="capture_failed",
        code="capture_failed",
        reason=notification.reason or "the PSP reported CAPTURE_FAILED",
    )


def reopen(state: CaptureState) -> Outcome:
    """An operator's retry (ADM-PAY-101 or an intervention) of a FAILED or BLOCKED capture.
    A new PSP key only when the PSP certainly did not capture (see the module docstring)."""
    if state.status not in (CaptureStatus.FAILED, CaptureStatus.BLOCKED):
        return Ignored(f"the capture is {state.status}")
    certain = state.status is CaptureStatus.BLOCKED or bool(state.outcome_known)
    return Transition(
        CaptureState(
            status=CaptureStatus.PENDING,
            generation=state.generation + 1 if certain else state.generation,
            round_attempts=0,
            psp_reference=None if certain else state.psp_reference,
            outcome_known=None,
        ),
        emit="requested",
    )


# --- what a use case loads ---------------------------------------------------------------------


@dataclass(frozen=True)
class Payment:
    """A payment as checkout reported it (capture's replica)."""

    tenant_id: str
    payment_id: str
    order_id: str
    payment_option: str
    status: str  # CREATED, AUTHORISED, CANCELLED, REFUSED
    capture_mode: str | None  # the session's override; None: the tenant's
    amount: int
    currency: str
    psp_reference: str | None
    merchant_account: str | None
    level3: Level3Data | None


@dataclass(frozen=True)
class Line:
    """One logistic order of a payment: what one capture captures, in full."""

    logistic_order_id: str
    supplier_id: str
    amount: int


@dataclass(frozen=True)
class Tenancy:
    """The replicas a capture's split is computed from, read once for all its lines."""

    tenant: TenantUpserted | None
    suppliers: Mapping[str, SupplierUpserted]

    def prepare(self, payment: Payment, line: Line) -> Prepared | Blocked:
        """The split (rates as the replicas hold them now) and the Level 3 data."""
        supplier = self.suppliers.get(line.supplier_id)
        return prepare(
            amount=line.amount,
            payment_option=payment.payment_option,
            payment_amount=payment.amount,
            level3=payment.level3,
            platform_rate=self.tenant.default_rate if self.tenant else None,
            marketplace_rate=supplier.commission_rate if supplier else None,
            supplier_known=supplier is not None,
        )


@dataclass(frozen=True)
class Capture:
    """One capture as stored, with the id of its open intervention (if any)."""

    id: str
    tenant_id: str
    payment_id: str
    order_id: str
    logistic_order_id: str
    supplier_id: str
    amount: int
    currency: str
    trigger: Trigger
    status: CaptureStatus
    revision: int
    platform_rate: Decimal | None
    marketplace_rate: Decimal | None
    splits: tuple[SplitLine, ...]
    additional_data: Mapping[str, str] | None
    payment_psp_reference: str
    merchant_account: str
    block_code: str | None
    block_message: str | None
    failure_code: str | None
    failure_reason: str | None
    outcome_known: bool | None
    generation: int
    attempts: int
    round_attempts: int
    next_attempt_at: datetime | None
    psp_reference: str | None
    succeeded_at: datetime | None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    open_intervention_id: str | None = None

    @property
    def state(self) -> CaptureState:
        return CaptureState(
            status=self.status,
            generation=self.generation,
            round_attempts=self.round_attempts,
            psp_reference=self.psp_reference,
            outcome_known=self.outcome_known,
        )


# --- what a use case saves ---------------------------------------------------------------------


@dataclass(frozen=True)
class DomainEvent:
    """An event to enqueue with the decision: its catalogue type and model."""

    type: EventType
    data: EventData
    tenant_id: str
    aggregate_id: str


@dataclass(frozen=True)
class HistoryEntry:
    status_from: CaptureStatus | None  # None: the capture was created
    source: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class NewIntervention:
    id: str
    kind: InterventionKind
    code: str
    reason: str


AttemptOutcome = Literal["received", "unknown", "refused"]


@dataclass(frozen=True)
class FinishedAttempt:
    """The PSP attempt an answer finishes; the lease is released only if this claim still
    holds it (a late answer of an expired claim must not free the lease of a later one)."""

    attempt: int
    now: datetime
    outcome: AttemptOutcome
    code: str | None
    detail: str | None
    psp_reference: str | None
    lease_token: uuid.UUID


@dataclass(frozen=True)
class NewCapture:
    """A capture decided for a line that had none: its row, history, intervention, event."""

    capture: Capture
    history: HistoryEntry
    intervention: NewIntervention | None
    events: tuple[DomainEvent, ...]


@dataclass(frozen=True)
class CaptureChange:
    """What a transition (or an ignored fact) does to a locked capture: its new row, its
    history entry, the attempt it finishes, the interventions it closes or opens, its event."""

    capture: Capture
    status_from: CaptureStatus
    history: HistoryEntry
    attempt: FinishedAttempt | None = None
    close_interventions: Literal["RESOLVED", "RETRIED"] | None = None
    intervention: NewIntervention | None = None
    events: tuple[DomainEvent, ...] = ()
    anomaly: str | None = None

    @property
    def status_changed(self) -> bool:
        return self.capture.status is not self.status_from


# --- deciding a new capture --------------------------------------------------------------------


def initial_status(line: Line, prepared: Prepared | Blocked) -> CaptureStatus:
    """BLOCKED when the split or Level 3 data is invalid (never sent); SUCCEEDED at once for a
    zero-amount line (nothing to ask the PSP for); else PENDING, due now."""
    if isinstance(prepared, Blocked):
        return CaptureStatus.BLOCKED
    if line.amount == 0:
        return CaptureStatus.SUCCEEDED
    return CaptureStatus.PENDING


def _split_columns(prepared: Prepared) -> dict[str, Any]:
    return {
        "platform_rate": prepared.split.platform_rate,
        "marketplace_rate": prepared.split.marketplace_rate,
        "splits": prepared.split.lines,
        "additional_data": level3_additional_data(prepared.level3) if prepared.level3 else None,
        "block_code": None,
        "block_message": None,
    }


def new_capture(
    payment: Payment,
    line: Line,
    prepared: Prepared | Blocked,
    *,
    trigger: Trigger,
    now: datetime,
    capture_id: str,
    intervention_id: str,
    source: str | None = None,
) -> NewCapture:
    """The capture of one line that has none yet (the payment locked by the caller):
    PENDING with its frozen split and `capture.requested`, BLOCKED with `capture.blocked`
    and an intervention, or SUCCEEDED with `capture.succeeded` for a zero amount."""
    status = initial_status(line, prepared)
    if payment.psp_reference is None or payment.merchant_account is None:
        raise ValueError("only an authorised payment (PSP reference, merchant account) is captured")
    common: dict[str, Any] = {
        "id": capture_id,
        "tenant_id": payment.tenant_id,
        "payment_id": payment.payment_id,
        "order_id": payment.order_id,
        "logistic_order_id": line.logistic_order_id,
        "supplier_id": line.supplier_id,
        "amount": line.amount,
        "currency": payment.currency,
        "trigger": trigger,
        "status": status,
        "revision": 1,
        "payment_psp_reference": payment.psp_reference,
        "merchant_account": payment.merchant_account,
        "failure_code": None,
        "failure_reason": None,
        "outcome_known": None,
        "generation": 1,
        "attempts": 0,
        "round_attempts": 0,
        "next_attempt_at": now if status is CaptureStatus.PENDING else None,
        "psp_reference": None,
        "succeeded_at": now if status is CaptureStatus.SUCCEEDED else None,
    }
    if isinstance(prepared, Blocked):
        capture = Capture(
            **common,
            platform_rate=None,
            marketplace_rate=None,
            splits=(),
            additional_data=None,
            block_code=prepared.code,
            block_message=prepared.message,
            open_intervention_id=intervention_id,
        )
        intervention = NewIntervention(intervention_id, "blocked", prepared.code, prepared.message)
        return NewCapture(
            capture,
            HistoryEntry(None, source or trigger.lower(), {"block_code": prepared.code}),
            intervention,
            (capture_event(capture, "blocked", intervention_id=intervention_id),),
        )
    capture = Capture(**common, **_split_columns(prepared))
    kind: Emit = "succeeded" if status is CaptureStatus.SUCCEEDED else "requested"
    return NewCapture(
        capture,
        HistoryEntry(None, source or trigger.lower(), {}),
        None,
        (capture_event(capture, kind),),
    )


# --- deciding a change of a capture -----------------------------------------------------------


def decide_change(
    capture: Capture,
    outcome: Outcome,
    *,
    source: str,
    now: datetime,
    new_intervention_id: str,
    detail: Mapping[str, Any] | None = None,
    attempt: FinishedAttempt | None = None,
    updates: Mapping[str, Any] | None = None,
) -> CaptureChange:
    """What `outcome` does to the (locked) capture: its new columns (`revision` grows with
    each change of status, `next_attempt_at` is set by a retry or a reopening and cleared
    once the capture leaves PENDING, `succeeded_at` set by the one transition to SUCCEEDED),
    its history entry, its interventions and its event. `updates` are columns the caller
    recomputed (a reopened capture's split)."""
    entry = dict(detail or {})
    base = replace(capture, **dict(updates or {}))
    if isinstance(outcome, Ignored):
        entry.update(ignored=outcome.reason, anomaly=outcome.anomaly)
        return CaptureChange(
            base,
            capture.status,
            HistoryEntry(capture.status, source, entry),
            attempt,
            anomaly=outcome.reason if outcome.anomaly else None,
        )
    new = outcome.state
    changed = new.status is not capture.status
    values: dict[str, Any] = {
        "status": new.status,
        "generation": new.generation,
        "round_attempts": new.round_attempts,
        "psp_reference": new.psp_reference,
        "outcome_known": new.outcome_known,
        "revision": capture.revision + 1 if changed else capture.revision,
    }
    if outcome.retry_in is not None:
        values["next_attempt_at"] = now + outcome.retry_in
        entry["retry_in_s"] = outcome.retry_in.total_seconds()
    if new.status is CaptureStatus.PENDING and changed:
        values["next_attempt_at"] = now
    if outcome.code is not None:
        values["failure_code"] = outcome.code
        values["failure_reason"] = outcome.reason
        entry.setdefault("code", outcome.code)
        entry.setdefault("reason", outcome.reason)
    if new.status is CaptureStatus.SUCCEEDED and changed:
        values["succeeded_at"] = now
    if new.status is not CaptureStatus.PENDING:
        values["next_attempt_at"] = None
    close: Literal["RESOLVED"] | None = None
    open_id = base.open_intervention_id
    if outcome.close_interventions and capture.status in (
        CaptureStatus.FAILED,
        CaptureStatus.BLOCKED,
    ):  # only a FAILED or BLOCKED capture has an open intervention
        close, open_id = "RESOLVED", None
    intervention = None
    if outcome.open_intervention is not None and open_id is None:
        open_id = new_intervention_id
        intervention = NewIntervention(
            new_intervention_id,
            outcome.open_intervention,
            outcome.code or "capture_failed",
            outcome.reason or "",
        )
    updated = replace(base, **values, open_intervention_id=open_id)
    events: tuple[DomainEvent, ...] = ()
    if outcome.emit is not None:
        events = (
            capture_event(
                updated,
                outcome.emit,
                retries_exhausted=outcome.retries_exhausted,
                intervention_id=open_id if outcome.open_intervention is not None else None,
            ),
        )
    return CaptureChange(
        updated,
        capture.status,
        HistoryEntry(capture.status, source, entry),
        attempt,
        close,
        intervention,
        events,
    )


def decide_reopen(
    capture: Capture,
    prepared: Prepared | Blocked | None,
    *,
    source: str,
    now: datetime,
    new_intervention_id: str,
) -> CaptureChange:
    """An operator sends a FAILED or BLOCKED capture again (payment and capture locked). A
    blocked one comes with its split and Level 3 data computed again (`prepared`: the rates
    or the data may have been fixed); still invalid, it stays BLOCKED with the new reason."""
    if isinstance(prepared, Blocked):
        return decide_change(
            capture,
            Ignored(f"still blocked: {prepared.code}"),
            source=source,
            now=now,
            new_intervention_id=new_intervention_id,
            detail={"block_code": prepared.code},
            updates={"block_code": prepared.code, "block_message": prepared.message},
        )
    updates: dict[str, Any] = {"failure_code": None, "failure_reason": None}
    if prepared is not None and capture.status is CaptureStatus.BLOCKED:
        updates.update(_split_columns(prepared))
    outcome = reopen(capture.state)
    change = decide_change(
        capture,
        outcome,
        source=source,
        now=now,
        new_intervention_id=new_intervention_id,
        updates=updates,
    )
    if isinstance(outcome, Transition):
        return replace(
            change,
            close_interventions="RETRIED",
            capture=replace(change.capture, open_intervention_id=None),
        )
    return change


# --- events ------------------------------------------------------------------------------------


def _split_data(capture: Capture) -> dict[str, Any]:
    return {
        "splits": [
            SplitLineData(party=line.party, amount=line.amount, rate=line.rate)
            for line in capture.splits
        ],
        "platform_rate": capture.platform_rate,
        "marketplace_rate": capture.marketplace_rate,
    }


def capture_event(
    capture: Capture,
    kind: Emit,
    *,
    retries_exhausted: bool = False,
    intervention_id: str | None = None,
) -> DomainEvent:
    """The `capture.*` event of the capture as it now is (catalogue models)."""
    base: dict[str, Any] = {
        "capture_id": capture.id,
        "revision": capture.revision,
        "payment_id": capture.payment_id,
        "order_id": capture.order_id,
        "logistic_order_id": capture.logistic_order_id,
        "supplier_id": capture.supplier_id,
        "amount": Money(value=capture.amount, currency=capture.currency),
        "trigger": capture.trigger,
    }
    event_type: EventType
    data: EventData
    if kind == "requested":
        event_type, data = (
            EventType.CAPTURE_REQUESTED,
            CaptureRequested(**base, **_split_data(capture)),
        )
    elif kind == "succeeded":
        event_type, data = (
            EventType.CAPTURE_SUCCEEDED,
            CaptureSucceeded(**base, **_split_data(capture), psp_reference=capture.psp_reference),
        )
    elif kind == "failed":
        event_type, data = (
            EventType.CAPTURE_FAILED,
            CaptureFailed(
                **base,
                code=capture.failure_code or "capture_failed",
                reason=capture.failure_reason or "",
                retries_exhausted=retries_exhausted,
                outcome_known=bool(capture.outcome_known),
                intervention_id=intervention_id,
            ),
        )
    else:
        event_type, data = (
            EventType.CAPTURE_BLOCKED,
            CaptureBlocked(
                **base,
                code=capture.block_code or "blocked",
                message=capture.block_message or "",
                intervention_id=intervention_id,
            ),
        )
    return DomainEvent(event_type, data, capture.tenant_id, capture.id)


# --- the PSP request ---------------------------------------------------------------------------


def psp_capture_request(capture: Capture) -> CaptureRequest:
    """What is sent to the PSP for this capture (its frozen split, its Level 3 data)."""
    splits = psp_splits(
        capture.splits,
        tenant_id=capture.tenant_id,
        supplier_id=capture.supplier_id,
        capture_id=capture.id,
    )
    return CaptureRequest(
        psp_reference=capture.payment_psp_reference,
        amount=Money(value=capture.amount, currency=capture.currency),
        reference=capture.id,
        splits=splits or None,
        additional_data=dict(capture.additional_data) if capture.additional_data else None,
        merchant_account=capture.merchant_account,
    )


@dataclass(frozen=True)
class Lease:
    """A lease taken in the statement that creates a capture, by the replica that will send
    it right after the commit (its first attempt, started at `started_at`)."""

    token: uuid.UUID
    until: datetime
    started_at: datetime


@dataclass(frozen=True)
class Claim:
    """A capture leased by this replica for one PSP attempt."""

    capture_id: str
    tenant_id: str
    attempt: int
    generation: int
    lease_token: uuid.UUID
    request: CaptureRequest = field(compare=False)

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.capture_id, self.generation)


def first_claim(capture: Capture, lease: Lease) -> Claim:
    """The claim of a capture created with `lease`: its first attempt."""
    return Claim(
        capture_id=capture.id,
        tenant_id=capture.tenant_id,
        attempt=1,
        generation=capture.generation,
        lease_token=lease.token,
        request=psp_capture_request(capture),
    )


def attempt_of(claim: Claim, answer: PspAnswer, now: datetime) -> FinishedAttempt:
    """The attempt row an answer finishes."""
    if isinstance(answer, Received):
        return FinishedAttempt(
            claim.attempt, now, "received", None, None, answer.psp_reference, claim.lease_token
        )
    outcome: AttemptOutcome = "unknown" if isinstance(answer, Unknown) else "refused"
    return FinishedAttempt(
        claim.attempt, now, outcome, answer.code, answer.message[:500], None, claim.lease_token
    )


# --- an operator's capture (ADM-PAY-101) -------------------------------------------------------


@dataclass(frozen=True)
class ManualCapture:
    """What ADM-PAY-101 does to the lines it names: new captures for lines without one, a
    reopening for FAILED and BLOCKED ones; nothing for lines captured or being captured."""

    new: tuple[NewCapture, ...]
    reopened: tuple[CaptureChange, ...]

    @property
    def nothing(self) -> bool:
        return not self.new and not self.reopened


def reopenable(capture: Capture) -> bool:
    return capture.status in (CaptureStatus.FAILED, CaptureStatus.BLOCKED)


def decide_manual_capture(
    payment: Payment,
    lines: Sequence[Line],
    existing: Mapping[str, Capture],
    tenancy: Tenancy,
    *,
    now: datetime,
    source: str,
    capture_ids: Callable[[], str],
    intervention_ids: Callable[[], str],
) -> ManualCapture:
    """Capture every line named that has no capture; reopen those whose capture FAILED or
    was BLOCKED (a blocked one with its split computed again from `tenancy`)."""
    new: list[NewCapture] = []
    reopened: list[CaptureChange] = []
    for line in lines:
        capture = existing.get(line.logistic_order_id)
        if capture is None:
            new.append(
                new_capture(
                    payment,
                    line,
                    tenancy.prepare(payment, line),
                    trigger="MANUAL",
                    now=now,
                    capture_id=capture_ids(),
                    intervention_id=intervention_ids(),
                    source=source,
                )
            )
    for line in lines:
        capture = existing.get(line.logistic_order_id)
        if capture is not None and reopenable(capture):
            prepared = (
                tenancy.prepare(payment, line) if capture.status is CaptureStatus.BLOCKED else None
            )
            reopened.append(
                decide_reopen(
                    capture,
                    prepared,
                    source=source,
                    now=now,
                    new_intervention_id=intervention_ids(),
                )
            )
    return ManualCapture(tuple(new), tuple(reopened))


# --- DELAYED -----------------------------------------------------------------------------------


def schedule_capture(
    payment: Payment, lines: Sequence[Line], *, delay_hours: int, authorised_at: datetime
) -> tuple[datetime, DomainEvent]:
    """When a DELAYED payment's capture is due, and its `capture.scheduled` event."""
    due_at = capture_due_at(authorised_at, delay_hours)
    event = CaptureScheduled(
        payment_id=payment.payment_id,
        order_id=payment.order_id,
        due_at=due_at,
        capture_delay_hours=delay_hours,
        logistic_order_ids=[line.logistic_order_id for line in lines],
    )
    return due_at, DomainEvent(
        EventType.CAPTURE_SCHEDULED, event, payment.tenant_id, payment.payment_id
    )
