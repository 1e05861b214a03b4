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

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from common.events import Level3Data
from common.level3 import Level3, Level3Item, check_level3
from common.money import percent_of
from common.psp.port import Split

Party = Literal["PLATFORM", "MARKETPLACE", "SUPPLIER"]
Trigger = Literal["IMMEDIATE", "DELAYED", "ON_SHIPMENT", "MANUAL"]
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


def idempotency_key(capture_id: str, generation: int) -> str:
    """The PSP idempotency key of a capture's current generation (see the module docstring)."""
    return f"capture:{capture_id}:{generation}"


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
