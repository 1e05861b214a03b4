"""Refund and chargeback decisions, pure and synchronous (DESIGN §7).

The money rule. A capture of `A` took `captured` from each party (platform, marketplace,
supplier) with the rates frozen at capture. What a party has given back so far (refunds
confirmed or still waiting, chargebacks) is `returned`; what it keeps is `kept = captured -
returned`. A refund `R` takes from each commission `kept - commission(A - F - R)` (`F` = what
the capture has given back so far), so that after it each party keeps exactly the commission
due on what is still captured; the supplier gives the rest. When, at a rounding boundary, the
commission lines would exceed `R`, they are reduced (marketplace first) until the supplier's
line is 0, and the next refund catches up: it works from `kept`, not from a formula on `F`.

A refund's life:

    AWAITING_FUNDS ──refund.funds_reserved──▶ WAITING_REFUND ──REFUND──▶ REFUNDED
         │                                        │   ▲                     │
         └──refund.funds_refused──▶ FAILED ◀──────┘   └ PSP: no answer,     │
                                      ▲   REFUND (success false),           │
                                      │   REFUND_FAILED, PSP refused (4xx)  │
                                      └────────── REFUND_FAILED ────────────┘

`AWAITING_FUNDS` and `WAITING_REFUND` hold their amount against what is refundable;
`FAILED` releases it. A REFUND_FAILED after a REFUND is the PSP's last word (Adyen sends it
when a refund it confirmed bounced), so it fails the refund; a REFUND after a REFUND_FAILED is
recorded and ignored.

A dispute follows Adyen's dispute notifications, each stage ranked; a notification whose
rank is not above the dispute's is recorded and ignored:

    NOTIFICATION_OF_CHARGEBACK (0) → CHARGEBACK (1) → CHARGEBACK_REVERSED (2)
        → SECOND_CHARGEBACK (3) → PREARBITRATION_WON | PREARBITRATION_LOST (4)

CHARGEBACK, SECOND_CHARGEBACK and PREARBITRATION_LOST debit (when the money is not already
debited), CHARGEBACK_REVERSED and PREARBITRATION_WON credit back what was debited. A debit
takes, per capture, at most what is left after refunds (waiting ones included), by the
same arithmetic as a refund.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from common.events import BANK_WIRE_OPTIONS
from common.money import percent_of

Party = Literal["PLATFORM", "MARKETPLACE", "SUPPLIER"]
PARTIES: tuple[Party, ...] = ("PLATFORM", "MARKETPLACE", "SUPPLIER")
REASONS = ("duplicate", "fraudulent", "customer_request", "order_cancelled", "goods_returned")


# -- the money rule ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shares:
    """An amount per party, in minor units."""

    platform: int = 0
    marketplace: int = 0
    supplier: int = 0

    @property
    def total(self) -> int:
        return self.platform + self.marketplace + self.supplier

    def of(self, party: Party) -> int:
        return {"PLATFORM": self.platform, "MARKETPLACE": self.marketplace}.get(
            party, self.supplier
        )

    def __add__(self, other: Shares) -> Shares:
        return Shares(
            self.platform + other.platform,
            self.marketplace + other.marketplace,
            self.supplier + other.supplier,
        )

    def __sub__(self, other: Shares) -> Shares:
        return Shares(
            self.platform - other.platform,
            self.marketplace - other.marketplace,
            self.supplier - other.supplier,
        )

    @classmethod
    def from_lines(cls, lines: Sequence[tuple[str, int]]) -> Shares:
        by: dict[str, int] = dict.fromkeys(PARTIES, 0)
        for party, amount in lines:
            by[party] = by.get(party, 0) + amount
        return cls(by["PLATFORM"], by["MARKETPLACE"], by["SUPPLIER"])

    def lines(self) -> list[tuple[Party, int]]:
        return [(p, self.of(p)) for p in PARTIES]


@dataclass(frozen=True)
class CaptureBook:
    """One succeeded capture and what its parties have given back so far (confirmed refunds,
    refunds still waiting, chargebacks)."""

    capture_id: str
    logistic_order_id: str
    supplier_id: str
    amount: int
    platform_rate: Decimal | None
    marketplace_rate: Decimal | None
    captured: Shares
    returned: Shares = field(default_factory=Shares)

    @property
    def refundable(self) -> int:
        return self.amount - self.returned.total

    def after(self, lines: Shares) -> CaptureBook:
        return replace(self, returned=self.returned + lines)


def _commission(amount: int, rate: Decimal | None) -> int:
    return 0 if rate is None else percent_of(amount, rate)


def return_lines(book: CaptureBook, amount: int) -> Shares:
    """What each party gives back for `amount` taken from the capture (DESIGN §7)."""
    if not 0 <= amount <= book.refundable:
        raise ValueError(f"{amount} is not within 0..{book.refundable}")
    kept = book.captured - book.returned
    left = book.amount - book.returned.total - amount
    platform = max(0, kept.platform - _commission(left, book.platform_rate))
    marketplace = max(0, kept.marketplace - _commission(left, book.marketplace_rate))
    # every line ≥ 0, the lines sum to the amount: cut the marketplace first, then the platform
    excess = platform + marketplace - amount
    if excess > 0:
        cut = min(excess, marketplace)
        marketplace -= cut
        platform -= excess - cut
    lines = Shares(platform, marketplace, amount - platform - marketplace)
    if lines.supplier > kept.supplier:  # only reachable with inconsistent input
        raise ValueError("the supplier would give back more than it kept")
    return lines


# -- refund requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A refund request refused: nothing reserved, nothing sent to the PSP."""

    status: int
    code: str
    message: str
    param: str | None = None


@dataclass(frozen=True)
class RefundAsk:
    amount: int | None
    currency: str | None
    logistic_order_id: str | None
    reason: str


@dataclass(frozen=True)
class PaymentView:
    status: str  # capture's replica: CREATED, AUTHORISED, CANCELLED, REFUSED (PAID: bank transfer)
    currency: str
    line_ids: frozenset[str]
    payment_option: str
    dispute: DisputeStage | None = None
    charged_back: bool = False


@dataclass(frozen=True)
class RefundPlan:
    capture_id: str
    amount: int
    lines: Shares


def plan_refund(
    payment: PaymentView, books: Sequence[CaptureBook], ask: RefundAsk
) -> list[RefundPlan] | Refusal:
    """The refunds a request makes (one per capture), or why it is refused. `books` are the
    payment's succeeded captures, with every refund and chargeback so far counted."""
    refused = _refusal_of_payment(payment) or _refusal_of_ask(payment, ask)
    if refused is not None:
        return refused
    chosen = _books_asked_for(payment, books, ask.logistic_order_id)
    if isinstance(chosen, Refusal):
        return chosen
    open_books = [b for b in chosen if b.refundable > 0]
    if not open_books:
        return Refusal(409, "payment_fully_refunded", "nothing is left to refund", "id")
    if ask.amount is None:
        return [
            RefundPlan(b.capture_id, b.refundable, return_lines(b, b.refundable))
            for b in open_books
        ]
    return _plan_amount(open_books, ask.amount)


def _refusal_of_payment(payment: PaymentView) -> Refusal | None:
    """Why the payment itself can't be refunded now, if it can't."""
    if payment.payment_option in BANK_WIRE_OPTIONS:
        # the PSP received a bank transfer, not a card payment it could refund
        return Refusal(
            409,
            "payment_not_refundable",
            "a bank-transfer payment has no card payment at the PSP to refund",
            "id",
        )
    if payment.status in ("CANCELLED", "REFUSED"):
        word = payment.status.lower()
        return Refusal(409, "payment_not_refundable", f"the payment was {word}", "id")
    if payment.status != "AUTHORISED":
        return Refusal(409, "payment_not_refundable", "the payment is not authorised", "id")
    return None


def _refusal_of_ask(payment: PaymentView, ask: RefundAsk) -> Refusal | None:
    """Why the request is refused before any capture is looked at: its reason, the payment's
    chargeback or open dispute, its currency, its amount (checked in that order)."""
    if ask.reason not in REASONS:
        return Refusal(
            422,
            "refund_reason_invalid",
            f"reason must be one of {', '.join(REASONS)}",
            "reason",
        )
    if payment.charged_back:
        return Refusal(409, "payment_charged_back", "the payment was charged back", "id")
    if payment.dispute is not None:
        return Refusal(
            409, "payment_disputed", "a dispute on this payment is open: no refund now", "id"
        )
    if ask.currency is not None and ask.currency != payment.currency:
        return Refusal(
            422,
            "currency_mismatch",
            f"the payment is in {payment.currency}, not {ask.currency}",
            "amount.currency",
        )
    if ask.amount is not None and ask.amount <= 0:
        return Refusal(422, "amount_invalid", "the amount must be positive", "amount.value")
    return None


def _books_asked_for(
    payment: PaymentView, books: Sequence[CaptureBook], logistic_order_id: str | None
) -> Sequence[CaptureBook] | Refusal:
    """The captures the request is about: those of the named logistic order, else all."""
    if logistic_order_id is not None:
        if logistic_order_id not in payment.line_ids:
            return Refusal(
                404,
                "logistic_order_unknown",
                "the payment has no line for this logistic order",
                "logistic_order_id",
            )
        books = [b for b in books if b.logistic_order_id == logistic_order_id]
        if not books:
            return Refusal(
                409,
                "payment_not_captured",
                "this logistic order is not captured: nothing to refund",
                "logistic_order_id",
            )
    if not books:
        return Refusal(409, "payment_not_captured", "nothing is captured: nothing to refund", "id")
    return books


def _plan_amount(open_books: Sequence[CaptureBook], amount: int) -> list[RefundPlan] | Refusal:
    """A given amount is refunded from one capture, the only one with something left."""
    if len(open_books) > 1:
        return Refusal(
            422,
            "logistic_order_id_required",
            "several logistic orders have something to refund: name one",
            "logistic_order_id",
        )
    book = open_books[0]
    if amount > book.refundable:
        return Refusal(
            422,
            "refund_exceeds_amount_available",
            f"at most {book.refundable} is left to refund",
            "amount.value",
        )
    return [RefundPlan(book.capture_id, amount, return_lines(book, amount))]


# -- a refund's state machine --------------------------------------------------------------------


class RefundStatus(StrEnum):
    AWAITING_FUNDS = "AWAITING_FUNDS"
    WAITING_REFUND = "WAITING_REFUND"
    REFUNDED = "REFUNDED"
    FAILED = "FAILED"


HOLDING = frozenset({RefundStatus.AWAITING_FUNDS, RefundStatus.WAITING_REFUND})


class SendState(StrEnum):
    """Where the PSP request of a WAITING_REFUND is: NOT_DUE (awaiting funds), DUE (to be
    sent), RECEIVED (the PSP took it), UNKNOWN (no answer after the retries: a person looks)."""

    NOT_DUE = "NOT_DUE"
    DUE = "DUE"
    RECEIVED = "RECEIVED"
    UNKNOWN = "UNKNOWN"
    DONE = "DONE"


@dataclass(frozen=True)
class RefundState:
    status: RefundStatus
    send: SendState
    attempts: int = 0
    psp_reference: str | None = None


RefundEmit = Literal["succeeded", "failed"]


@dataclass(frozen=True)
class RefundChange:
    state: RefundState
    emit: RefundEmit | None = None
    code: str | None = None
    message: str | None = None
    retry_in: timedelta | None = None
    open_intervention: str | None = None


@dataclass(frozen=True)
class NoChange:
    reason: str
    anomaly: bool = False


RefundOutcome = RefundChange | NoChange


def initial_state(funds_check: bool) -> RefundState:
    if funds_check:
        return RefundState(RefundStatus.AWAITING_FUNDS, SendState.NOT_DUE)
    return RefundState(RefundStatus.WAITING_REFUND, SendState.DUE)


def on_funds_decision(state: RefundState, reserved: bool, code: str | None) -> RefundOutcome:
    if state.status is not RefundStatus.AWAITING_FUNDS:
        return NoChange(f"the refund is {state.status}, not awaiting funds")
    if reserved:
        return RefundChange(replace(state, status=RefundStatus.WAITING_REFUND, send=SendState.DUE))
    return RefundChange(
        replace(state, status=RefundStatus.FAILED, send=SendState.DONE),
        emit="failed",
        code=code or "insufficient_funds",
        message="the payouts service refused the funds for this refund",
    )


@dataclass(frozen=True)
class Accepted:
    psp_reference: str


@dataclass(frozen=True)
class NoAnswer:
    code: str
    message: str


@dataclass(frozen=True)
class Rejected:
    code: str
    message: str


SendAnswer = Accepted | NoAnswer | Rejected


def on_send_answer(
    state: RefundState, answer: SendAnswer, retry_delays: Sequence[timedelta]
) -> RefundOutcome:
    """The PSP's answer to a refund request. No answer: again later with the same key; when
    the delays are spent the refund stays WAITING_REFUND with its outcome UNKNOWN and an
    intervention, never failed by guess."""
    if state.send is not SendState.DUE:
        if isinstance(answer, Accepted) and state.psp_reference is None:
            return RefundChange(replace(state, psp_reference=answer.psp_reference))
        return NoChange(f"the refund's request is {state.send}")
    attempts = state.attempts + 1
    if isinstance(answer, Accepted):
        return RefundChange(
            replace(
                state,
                send=SendState.RECEIVED,
                attempts=attempts,
                psp_reference=answer.psp_reference,
            )
        )
    if isinstance(answer, Rejected):
        return RefundChange(
            replace(state, status=RefundStatus.FAILED, send=SendState.DONE, attempts=attempts),
            emit="failed",
            code=answer.code,
            message=answer.message,
        )
    if attempts <= len(retry_delays):
        return RefundChange(
            replace(state, attempts=attempts),
            retry_in=retry_delays[attempts - 1],
            code=answer.code,
            message=answer.message,
        )
    return RefundChange(
        replace(state, send=SendState.UNKNOWN, attempts=attempts),
        code=answer.code,
        message=answer.message,
        open_intervention="refund_unknown",
    )


def on_chargeback(state: RefundState) -> RefundOutcome:
    """A chargeback debits the payment: a refund still awaiting funds is never sent (the buyer
    has the money back through the chargeback); its amount goes to the chargeback."""
    if state.status is not RefundStatus.AWAITING_FUNDS:
        return NoChange(f"the refund is {state.status}")
    return RefundChange(
        replace(state, status=RefundStatus.FAILED, send=SendState.DONE),
        emit="failed",
        code="payment_charged_back",
        message="the payment was charged back before the refund was sent",
    )


def top_up(book: CaptureBook, released: int) -> CaptureDebit | None:
    """A refund that held `released` of a capture when the chargeback took what was left has
    failed: the chargeback (which took the whole amount at the PSP) takes that part too."""
    amount = min(released, book.refundable)
    if amount <= 0:
        return None
    return CaptureDebit(book.capture_id, return_lines(book, amount))


def merge_debits(debits: Sequence[CaptureDebit], more: CaptureDebit) -> tuple[CaptureDebit, ...]:
    out = [d for d in debits if d.capture_id != more.capture_id]
    before = next((d.lines for d in debits if d.capture_id == more.capture_id), Shares())
    return (*out, CaptureDebit(more.capture_id, before + more.lines))


def on_refund_notification(
    state: RefundState, event_code: str, success: bool, psp_reference: str, reason: str
) -> RefundOutcome:
    """REFUND (success true or false) or REFUND_FAILED about this refund."""
    confirmed = event_code == "REFUND" and success
    if state.status is RefundStatus.AWAITING_FUNDS:
        return NoChange("a PSP notification for a refund never sent", anomaly=True)
    if confirmed:
        if state.status is RefundStatus.REFUNDED:
            return NoChange("already refunded")
        if state.status is RefundStatus.FAILED:
            return NoChange("REFUND after the refund failed: the failure stands", anomaly=True)
        return RefundChange(
            replace(
                state,
                status=RefundStatus.REFUNDED,
                send=SendState.DONE,
                psp_reference=state.psp_reference or psp_reference,
            ),
            emit="succeeded",
        )
    if state.status is RefundStatus.FAILED:
        return NoChange("already failed")
    code = "refund_failed" if event_code == "REFUND_FAILED" else "refund_refused"
    return RefundChange(
        replace(state, status=RefundStatus.FAILED, send=SendState.DONE),
        emit="failed",
        code=code,
        message=reason or f"the PSP answered {event_code} (success {str(success).lower()})",
    )


# -- disputes ------------------------------------------------------------------------------------


class DisputeStage(StrEnum):
    NOTIFICATION_OF_CHARGEBACK = "NOTIFICATION_OF_CHARGEBACK"
    CHARGEBACK = "CHARGEBACK"
    CHARGEBACK_REVERSED = "CHARGEBACK_REVERSED"
    SECOND_CHARGEBACK = "SECOND_CHARGEBACK"
    PREARBITRATION_WON = "PREARBITRATION_WON"
    PREARBITRATION_LOST = "PREARBITRATION_LOST"


RANK: Mapping[DisputeStage, int] = {
    DisputeStage.NOTIFICATION_OF_CHARGEBACK: 0,
    DisputeStage.CHARGEBACK: 1,
    DisputeStage.CHARGEBACK_REVERSED: 2,
    DisputeStage.SECOND_CHARGEBACK: 3,
    DisputeStage.PREARBITRATION_WON: 4,
    DisputeStage.PREARBITRATION_LOST: 4,
}
DEBITS = frozenset(
    {DisputeStage.CHARGEBACK, DisputeStage.SECOND_CHARGEBACK, DisputeStage.PREARBITRATION_LOST}
)
CREDITS = frozenset({DisputeStage.CHARGEBACK_REVERSED, DisputeStage.PREARBITRATION_WON})
DISPUTE_CODES = frozenset(s.value for s in DisputeStage)


def blocks_refunds(stage: DisputeStage | None, debited: bool) -> tuple[bool, bool]:
    """(open, charged back): an open dispute (notified, not decided) or money debited."""
    if stage is None:
        return False, False
    if debited:
        return False, True
    return stage is DisputeStage.NOTIFICATION_OF_CHARGEBACK, False


@dataclass(frozen=True)
class DisputeState:
    stage: DisputeStage | None  # None: no dispute yet
    debited: bool = False


@dataclass(frozen=True)
class CaptureDebit:
    capture_id: str
    lines: Shares


@dataclass(frozen=True)
class DisputeChange:
    state: DisputeState
    emit: Literal["received", "reversed"] | None
    debits: tuple[CaptureDebit, ...] = ()


def allocate(amount: int, books: Sequence[CaptureBook]) -> list[tuple[CaptureBook, int]]:
    """Spread `amount` over the captures in proportion to what each still holds (capped at
    the total), the last cent to the one that holds most."""
    holding = [b for b in books if b.refundable > 0]
    total = sum(b.refundable for b in holding)
    amount = min(max(amount, 0), total)
    if not holding or amount == 0:
        return []
    shares = [(b, amount * b.refundable // total) for b in holding]
    rest = amount - sum(s for _, s in shares)
    ordered = sorted(range(len(shares)), key=lambda i: -shares[i][0].refundable)
    for i in ordered:
        if rest == 0:
            break
        book, share = shares[i]
        add = min(rest, book.refundable - share)
        shares[i] = (book, share + add)
        rest -= add
    return [(b, s) for b, s in shares if s > 0]


def on_dispute_notification(
    state: DisputeState,
    stage: DisputeStage,
    amount: int | None,
    books: Sequence[CaptureBook],
    last_debits: Sequence[CaptureDebit],
) -> DisputeChange | NoChange:
    """One dispute notification. `amount` is the notification's (absent: all that is left);
    `last_debits` are the lines of the debit a credit gives back."""
    if state.stage is not None and RANK[stage] <= RANK[state.stage]:
        return NoChange(f"{stage} after {state.stage}: the dispute does not move back")
    new = DisputeState(stage, state.debited)
    if stage in DEBITS and not state.debited:
        left = sum(b.refundable for b in books)
        take = left if amount is None else min(amount, left)
        debits = tuple(
            CaptureDebit(book.capture_id, return_lines(book, share))
            for book, share in allocate(take, books)
        )
        return DisputeChange(replace(new, debited=True), "received", debits)
    if stage in CREDITS and state.debited:
        return DisputeChange(replace(new, debited=False), "reversed", tuple(last_debits))
    return DisputeChange(new, None)
