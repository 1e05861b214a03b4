"""Checkout decisions, pure and synchronous: the payment status machine and the validation of
a checkout session's amount, lines and Level 2/3 data (DESIGN §5, §10).

The status machine is one function, `apply`, from (current status, what happened) to an
outcome. Redelivered and late facts are not errors: an AUTHORISATION that arrives after the
CAPTURE leaves the payment where it is (`Unchanged`); only a fact that contradicts the state
(`Illegal`) is refused, logged by the caller and never applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from common.cardholder import contains_card_number
from common.events import (
    EventData,
    EventType,
    Level3Data,
    PaymentAuthorised,
    PaymentLine,
    PaymentOutcome,
    PaymentStatusChanged,
)
from common.level3 import Level3 as Level3
from common.level3 import Level3Item as Level3Item
from common.level3 import Problem as Problem
from common.level3 import check_level3 as check_level3
from common.level3 import level3_additional_data as level3_additional_data
from common.money import Money


class Status(StrEnum):
    INIT_PAYMENT = "INIT_PAYMENT"
    AUTHORIZATION_PENDING = "AUTHORIZATION_PENDING"
    AUTHORIZED = "AUTHORIZED"
    REFUSED = "REFUSED"
    CAPTURE_PENDING = "CAPTURE_PENDING"
    PARTIALLY_PAID = "PARTIALLY_PAID"
    PAID = "PAID"
    WAITING_PAYMENT = "WAITING_PAYMENT"
    OVER_PAID = "OVER_PAID"
    WAITING_REFUND = "WAITING_REFUND"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    CANCELLED = "CANCELLED"
    ERROR = "ERROR"
    CHARGEBACK = "CHARGEBACK"


class Fact(StrEnum):
    """What happened to a payment, whoever reported it (API, PSP response, webhook, capture)."""

    AUTHORISATION_REQUESTED = "authorisation_requested"
    CHALLENGE_REQUESTED = "challenge_requested"
    AUTHORISED = "authorised"
    REFUSED = "refused"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CAPTURE_REQUESTED = "capture_requested"
    PARTIALLY_CAPTURED = "partially_captured"
    FULLY_CAPTURED = "fully_captured"
    CAPTURE_FAILED = "capture_failed"
    REFUND_REQUESTED = "refund_requested"
    PARTIALLY_REFUNDED = "partially_refunded"
    FULLY_REFUNDED = "fully_refunded"
    REFUND_FAILED = "refund_failed"
    CHARGEBACK = "chargeback"
    CHARGEBACK_REVERSED = "chargeback_reversed"


FINAL = frozenset({Status.REFUSED, Status.CANCELLED, Status.ERROR, Status.REFUNDED})

# Where each fact may move a payment from, and to. A fact reported again where the payment
# already is, or a fact older than the payment's state, is `Unchanged`.
_TRANSITIONS: dict[Fact, tuple[frozenset[Status], Status]] = {
    Fact.AUTHORISATION_REQUESTED: (frozenset({Status.INIT_PAYMENT}), Status.AUTHORIZATION_PENDING),
    Fact.CHALLENGE_REQUESTED: (
        frozenset({Status.INIT_PAYMENT, Status.AUTHORIZATION_PENDING}),
        Status.AUTHORIZATION_PENDING,
    ),
    Fact.AUTHORISED: (
        frozenset({Status.INIT_PAYMENT, Status.AUTHORIZATION_PENDING, Status.ERROR}),
        Status.AUTHORIZED,
    ),
    Fact.REFUSED: (
        frozenset({Status.INIT_PAYMENT, Status.AUTHORIZATION_PENDING}),
        Status.REFUSED,
    ),
    Fact.FAILED: (frozenset({Status.INIT_PAYMENT, Status.AUTHORIZATION_PENDING}), Status.ERROR),
    Fact.CANCELLED: (
        frozenset({Status.INIT_PAYMENT, Status.AUTHORIZATION_PENDING, Status.AUTHORIZED}),
        Status.CANCELLED,
    ),
    Fact.CAPTURE_REQUESTED: (
        frozenset({Status.AUTHORIZED, Status.PARTIALLY_PAID}),
        Status.CAPTURE_PENDING,
    ),
    Fact.PARTIALLY_CAPTURED: (
        frozenset({Status.AUTHORIZED, Status.CAPTURE_PENDING}),
        Status.PARTIALLY_PAID,
    ),
    Fact.FULLY_CAPTURED: (
        frozenset({Status.AUTHORIZED, Status.CAPTURE_PENDING, Status.PARTIALLY_PAID}),
        Status.PAID,
    ),
    Fact.REFUND_REQUESTED: (
        frozenset({Status.PAID, Status.PARTIALLY_PAID, Status.PARTIALLY_REFUNDED}),
        Status.WAITING_REFUND,
    ),
    Fact.PARTIALLY_REFUNDED: (
        frozenset({Status.WAITING_REFUND, Status.PAID, Status.PARTIALLY_PAID}),
        Status.PARTIALLY_REFUNDED,
    ),
    Fact.FULLY_REFUNDED: (
        frozenset(
            {Status.WAITING_REFUND, Status.PAID, Status.PARTIALLY_PAID, Status.PARTIALLY_REFUNDED}
        ),
        Status.REFUNDED,
    ),
    Fact.CHARGEBACK: (
        frozenset(
            {Status.PAID, Status.PARTIALLY_PAID, Status.PARTIALLY_REFUNDED, Status.WAITING_REFUND}
        ),
        Status.CHARGEBACK,
    ),
}

# How far along its life a payment is: a fact that would move it backwards is stale.
_STAGE: dict[Status, int] = {
    Status.INIT_PAYMENT: 0,
    Status.AUTHORIZATION_PENDING: 1,
    Status.ERROR: 1,
    Status.AUTHORIZED: 2,
    Status.REFUSED: 2,
    Status.CANCELLED: 3,
    Status.CAPTURE_PENDING: 3,
    Status.PARTIALLY_PAID: 4,
    Status.PAID: 5,
    Status.WAITING_PAYMENT: 1,
    Status.OVER_PAID: 5,
    Status.WAITING_REFUND: 6,
    Status.PARTIALLY_REFUNDED: 7,
    Status.REFUNDED: 8,
    Status.CHARGEBACK: 9,
}


@dataclass(frozen=True)
class Moved:
    to: Status


@dataclass(frozen=True)
class Unchanged:
    reason: str


@dataclass(frozen=True)
class Illegal:
    reason: str


Outcome = Moved | Unchanged | Illegal


def apply(
    current: Status,
    fact: Fact,
    *,
    previous: Status | None = None,
    remaining_capture: bool = False,
) -> Outcome:
    """The one transition function of a payment.

    `previous` is the status before a chargeback (for its reversal); `remaining_capture` says
    whether, after a failed capture, other lines are already captured (back to
    `PARTIALLY_PAID`) or none is (back to `AUTHORIZED`).
    """
    if fact is Fact.CHARGEBACK_REVERSED:
        if current is not Status.CHARGEBACK:
            return Unchanged("no chargeback to reverse")
        return Moved(previous or Status.PAID)
    if fact is Fact.CAPTURE_FAILED:
        if current is not Status.CAPTURE_PENDING:
            return Unchanged(f"no capture pending in {current}")
        return Moved(Status.PARTIALLY_PAID if remaining_capture else Status.AUTHORIZED)
    if fact is Fact.REFUND_FAILED:
        if current is not Status.WAITING_REFUND:
            return Unchanged(f"no refund pending in {current}")
        return Moved(previous or Status.PAID)
    if current is Status.OVER_PAID and fact is Fact.FULLY_CAPTURED:
        # a bank-transfer payment paid in excess: its lines' BANK_TRANSFER captures leave it so
        return Unchanged("over-paid: the excess is still owed back")
    sources, target = _TRANSITIONS[fact]
    if current is target:
        return Unchanged(f"already {current}")
    if current in sources:
        return Moved(target)
    if _STAGE[current] > _STAGE[target]:
        return Unchanged(f"{fact} is older than {current}")
    return Illegal(f"{fact} cannot apply to a payment in {current}")


@dataclass(frozen=True)
class StoredPayment:
    """A payment as the repo loads it (its row, without the client token's hash)."""

    id: str
    tenant_id: str
    order_id: str
    buyer_account: str
    payment_option: str
    capture_mode: str | None
    amount: int
    currency: str
    country_code: str | None
    status: str
    merchant_account: str
    return_url: str | None
    psp_reference: str | None
    result_code: str | None
    refusal_reason: str | None
    refusal_reason_code: str | None
    level3: dict[str, Any] | None
    business_card: bool | None
    client_token_expires_at: datetime
    revision: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StoredLine:
    """One of a payment's lines, with the state of its capture."""

    payment_id: str
    logistic_order_id: str
    supplier_id: str
    amount: int
    status: str
    capture_id: str | None


@dataclass(frozen=True)
class CaptureLine(StoredLine):
    """A line with the revision of the capture event it last applied."""

    capture_revision: int


@dataclass(frozen=True)
class StoredTimelineEntry:
    occurred_at: datetime
    kind: str
    status_from: str | None
    status_to: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class PaymentFacts:
    """What deciding a payment's transition reads (the repo loads it from the payment row)."""

    id: str
    tenant_id: str
    order_id: str
    status: Status
    amount: int
    currency: str
    psp_reference: str | None
    payment_option: str
    capture_mode: str | None
    merchant_account: str
    level3: dict[str, Any] | None


@dataclass(frozen=True)
class TimelineEntry:
    kind: str
    status_from: Status
    status_to: Status | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class Transition:
    """The decision about one fact: the timeline entry always; when the payment moves, the
    columns it sets and the events it publishes (catalogue models, in order)."""

    status: Status
    entry: TimelineEntry
    columns: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[EventType, EventData]] = field(default_factory=list)
    refused: str | None = None  # an illegal transition's reason

    @property
    def moved(self) -> bool:
        return bool(self.columns)


def authorises(current: Status, fact: Fact, *, remaining_capture: bool = False) -> bool:
    """Whether `fact` moves the payment to AUTHORIZED (then its lines are published)."""
    outcome = apply(current, fact, remaining_capture=remaining_capture)
    return isinstance(outcome, Moved) and outcome.to is Status.AUTHORIZED


def decide_transition(
    payment: PaymentFacts,
    fact: Fact,
    *,
    source: str,
    detail: Mapping[str, Any] | None = None,
    updates: Mapping[str, Any] | None = None,
    remaining_capture: bool = False,
    previous: Status | None = None,
    lines: Sequence[PaymentLine] = (),
) -> Transition:
    """Apply `fact` to the payment: what to record, what to set, what to publish. `lines` are
    the payment's lines (`payment.authorised` carries them for the capture service)."""
    current = payment.status
    outcome = apply(current, fact, remaining_capture=remaining_capture, previous=previous)
    entry = {"fact": fact.value, "source": source, **(detail or {})}
    if isinstance(outcome, Illegal):
        refused = {**entry, "reason": outcome.reason}
        return Transition(
            current,
            TimelineEntry("refused_transition", current, None, refused),
            refused=outcome.reason,
        )
    if isinstance(outcome, Unchanged):
        noted = {**entry, "reason": outcome.reason}
        return Transition(current, TimelineEntry(source, current, current, noted))
    columns = {"status": outcome.to.value, **(updates or {})}
    changed = PaymentStatusChanged(
        payment_id=payment.id,
        order_id=payment.order_id,
        status_from=current.value,
        status=outcome.to.value,
        amount=Money(value=payment.amount, currency=payment.currency),
        psp_reference=columns.get("psp_reference", payment.psp_reference),
    )
    events: list[tuple[EventType, EventData]] = [(EventType.PAYMENT_STATUS_CHANGED, changed)]
    settled = PaymentOutcome(
        **changed.model_dump(),
        payment_option=payment.payment_option,
        capture_mode=payment.capture_mode,
    )
    if outcome.to is Status.AUTHORIZED:
        authorised = PaymentAuthorised(
            **settled.model_dump(),
            merchant_account=payment.merchant_account,
            lines=list(lines),
            level3=Level3Data.model_validate(payment.level3) if payment.level3 else None,
        )
        events.append((EventType.PAYMENT_AUTHORISED, authorised))
    elif outcome.to is Status.REFUSED:
        events.append((EventType.PAYMENT_REFUSED, settled))
    elif outcome.to is Status.CANCELLED:
        events.append((EventType.PAYMENT_CANCELLED, settled))
    return Transition(
        outcome.to, TimelineEntry(source, current, outcome.to, entry), columns, events
    )


class LineCapture(StrEnum):
    """A line's capture status (each logistic order is captured once, in full)."""

    PENDING = "PENDING"  # not captured
    CAPTURE_PENDING = "CAPTURE_PENDING"
    CAPTURED = "CAPTURED"
    CAPTURE_FAILED = "CAPTURE_FAILED"
    CAPTURE_BLOCKED = "CAPTURE_BLOCKED"


_LINE_CAPTURE_OF_EVENT = {
    "capture.requested": LineCapture.CAPTURE_PENDING,
    "capture.succeeded": LineCapture.CAPTURED,
    "capture.failed": LineCapture.CAPTURE_FAILED,
    "capture.blocked": LineCapture.CAPTURE_BLOCKED,
}


def line_capture_of(event_type: str) -> LineCapture | None:
    """The line status a capture event reports (None: `capture.scheduled`, no line change)."""
    return _LINE_CAPTURE_OF_EVENT.get(event_type)


def apply_line_capture(
    line: CaptureLine, status: LineCapture | None, capture_id: str, revision: int
) -> CaptureLine | None:
    """The line once a capture event reporting `status` at `revision` is applied to it; None
    when the event changes nothing: no status (`capture.scheduled`), or a revision no newer
    than the one applied (an older event, or a copy)."""
    if status is None or revision <= line.capture_revision:
        return None
    return dataclasses.replace(
        line, status=status.value, capture_id=capture_id, capture_revision=revision
    )


@dataclass(frozen=True)
class CaptureFact:
    fact: Fact
    remaining_capture: bool = False


def capture_fact(lines: Sequence[LineCapture], *, failed: bool) -> CaptureFact | None:
    """What a payment's line statuses mean for the payment once a capture event is applied
    (DESIGN §6): PAID when every line is captured; CAPTURE_PENDING while a capture awaits the
    PSP; PARTIALLY_PAID while some lines are captured and none awaits the PSP. A failed or
    blocked capture goes back as `Fact.CAPTURE_FAILED` says (to PARTIALLY_PAID when other
    lines are captured, else AUTHORIZED)."""
    captured = sum(line is LineCapture.CAPTURED for line in lines)
    if lines and captured == len(lines):
        return CaptureFact(Fact.FULLY_CAPTURED)
    if any(line is LineCapture.CAPTURE_PENDING for line in lines):
        return CaptureFact(Fact.CAPTURE_REQUESTED)
    if failed:
        return CaptureFact(Fact.CAPTURE_FAILED, remaining_capture=captured > 0)
    if captured:
        return CaptureFact(Fact.PARTIALLY_CAPTURED)
    return None


# What a PSP notification reports, as a fact of the status machine. Capture, refund and
# chargeback notifications are the capture service's (they need the split state); checkout
# records them in the timeline without moving the payment.
_NOTIFICATION_FACTS: dict[tuple[str, bool], Fact] = {
    ("AUTHORISATION", True): Fact.AUTHORISED,
    ("AUTHORISATION", False): Fact.REFUSED,
    ("CANCELLATION", True): Fact.CANCELLED,
}


def notification_fact(event_code: str, success: bool) -> Fact | None:
    return _NOTIFICATION_FACTS.get((event_code, success))


@dataclass(frozen=True)
class Settlement:
    """What a PSP's synchronous answer (PAY-101/102) means for the payment: the fact to apply
    (None: still waiting, a challenge or a pending answer) and the columns it sets."""

    fact: Fact | None
    updates: dict[str, Any]


def settlement(
    *,
    result_code: str,
    psp_reference: str | None,
    is_commercial_card: bool | None,
    refusal_reason: str | None,
    refusal_reason_code: str | None,
) -> Settlement:
    updates: dict[str, Any] = {"result_code": result_code}
    if psp_reference:
        updates["psp_reference"] = psp_reference
    if result_code == "Authorised":
        return Settlement(Fact.AUTHORISED, {**updates, "business_card": is_commercial_card})
    if result_code == "Refused":
        refusal = {"refusal_reason": refusal_reason, "refusal_reason_code": refusal_reason_code}
        return Settlement(Fact.REFUSED, {**updates, **refusal})
    if result_code in ("Error", "Cancelled"):
        return Settlement(Fact.FAILED, updates)
    return Settlement(None, updates)


@dataclass(frozen=True)
class MoneyFact:
    fact: Fact
    previous: Status | None = None  # where a failed refund or a reversal goes back to


def refund_fact(event_type: str, amount: int, refunded: int | None) -> MoneyFact | None:
    """The fact of a capture service's `refund.*` / `chargeback.*` event. `amount` is the
    payment's; `refunded` is its refunded total after the event (when the event carries it).
    A refund that failed, or a chargeback reversed, takes the payment back to
    PARTIALLY_REFUNDED when something was refunded before, else to PAID."""
    back = Status.PARTIALLY_REFUNDED if refunded else Status.PAID
    if event_type == "refund.requested":
        return MoneyFact(Fact.REFUND_REQUESTED)
    if event_type == "refund.succeeded":
        full = refunded is not None and refunded >= amount
        return MoneyFact(Fact.FULLY_REFUNDED if full else Fact.PARTIALLY_REFUNDED)
    if event_type == "refund.failed":
        return MoneyFact(Fact.REFUND_FAILED, back)
    if event_type == "chargeback.received":
        return MoneyFact(Fact.CHARGEBACK)
    if event_type == "chargeback.reversed":
        return MoneyFact(Fact.CHARGEBACK_REVERSED, back)
    return None


# --- checkout session validation -------------------------------------------------------------


class PaymentOption(StrEnum):
    CREDIT_CARD = "CREDIT_CARD"
    PCARD_L3 = "PCARD_L3"
    BANK_WIRE_ON_DUE_DATE = "BANK_WIRE_ON_DUE_DATE"
    BANK_WIRE_ON_ACCEPTANCE = "BANK_WIRE_ON_ACCEPTANCE"


CARD_OPTIONS = frozenset({PaymentOption.CREDIT_CARD, PaymentOption.PCARD_L3})


@dataclass(frozen=True)
class Line:
    logistic_order_id: str
    supplier_id: str
    amount: int


def check_lines(amount: int, lines: Sequence[Line], known_suppliers: set[str]) -> Problem | None:
    """Lines: one per logistic order, of the tenant's suppliers, summing to the amount."""
    if not lines:
        return Problem("parameter_missing", "at least one line is required", "lines")
    seen: set[str] = set()
    for i, line in enumerate(lines):
        if line.logistic_order_id in seen:
            return Problem(
                "duplicate_logistic_order",
                "each logistic order appears once",
                f"lines.{i}.logistic_order_id",
            )
        seen.add(line.logistic_order_id)
        if line.supplier_id not in known_suppliers:
            return Problem(
                "supplier_unknown",
                "no such supplier for this tenant",
                f"lines.{i}.supplier_id",
            )
    if sum(line.amount for line in lines) != amount:
        return Problem("lines_amount_mismatch", "the lines must sum to the amount", "lines")
    return None


# --- what the drop-in may send ---------------------------------------------------------------

RAW_CARD_FIELDS = frozenset(
    {"number", "cardNumber", "cvc", "cvv", "securityCode", "expiryMonth", "expiryYear", "pan"}
)


def raw_card_data(payment_method: object, path: str = "payment_method") -> str | None:
    """The path of the first raw cardholder field or card-number-shaped value, if any.

    Only the PSP's encrypted or tokenised fields may pass through checkout (invariant 7).
    """
    if isinstance(payment_method, dict):
        for key, value in payment_method.items():
            if str(key) in RAW_CARD_FIELDS:
                return f"{path}.{key}"
            found = raw_card_data(value, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(payment_method, list):
        for i, value in enumerate(payment_method):
            found = raw_card_data(value, f"{path}.{i}")
            if found is not None:
                return found
    elif isinstance(payment_method, str) and contains_card_number(payment_method):
        return path
    return None
