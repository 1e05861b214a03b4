"""The payouts service's decisions, pure (no I/O): the ledger entries that events cause, the
funding answer to a refund, what a chargeback does to a short supplier, and what a supplier's
payout is.

Sign convention: a posting's amount is signed; a positive balance of `PLATFORM`,
`MARKETPLACE` or a `SUPPLIER` account is what Marketpay owes that party. `PSP_CLEARING` holds
the other side of money taken through the PSP (a capture credits the parties and debits
`PSP_CLEARING`), `BANK_CLEARING` the other side of money paid out to bank accounts. Every
entry sums to zero, so every tenant-currency does too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from stdnum import iban as stdnum_iban

from common.events import (
    BankingMode,
    CaptureSucceeded,
    FundingPolicy,
    ReturnLine,
)
from common.money import Money

AccountKind = Literal["PLATFORM", "MARKETPLACE", "SUPPLIER", "PSP_CLEARING", "BANK_CLEARING"]
ACCOUNT_KINDS: tuple[AccountKind, ...] = (
    "PLATFORM",
    "MARKETPLACE",
    "SUPPLIER",
    "PSP_CLEARING",
    "BANK_CLEARING",
)
INSUFFICIENT_SUPPLIER_BALANCE = "insufficient_supplier_balance"


class InvalidEventError(ValueError):
    """An event no retry can make acceptable (its lines do not add up, another currency than
    the tenant's, ...): it goes to the dead-letter queue with this reason."""


@dataclass(frozen=True)
class Posting:
    account: AccountKind
    amount: int
    supplier_id: str | None = None

    def __post_init__(self) -> None:
        if (self.account == "SUPPLIER") != (self.supplier_id is not None):
            raise ValueError("a SUPPLIER posting names its supplier, no other does")


@dataclass(frozen=True)
class Entry:
    """One ledger transaction to post. `key` is derived from the event that causes it."""

    tenant_id: str
    currency: str
    key: str
    kind: str
    postings: tuple[Posting, ...]
    supplier_id: str | None = None
    logistic_order_id: str | None = None
    capture_id: str | None = None
    ref_type: str | None = None
    ref_id: str | None = None

    def __post_init__(self) -> None:
        if any(p.amount == 0 for p in self.postings):
            raise ValueError(f"entry {self.key} has a zero posting")
        if sum(p.amount for p in self.postings) != 0:
            raise ValueError(f"entry {self.key} does not balance")

    @property
    def content_hash(self) -> str:
        """What makes two entries of one key the same: kind, currency and the postings."""
        canonical = json.dumps(
            [
                self.kind,
                self.currency,
                sorted((p.account, p.supplier_id or "", p.amount) for p in self.postings),
            ]
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "currency": self.currency,
            "key": self.key,
            "kind": self.kind,
            "hash": self.content_hash,
            "supplier_id": self.supplier_id,
            "logistic_order_id": self.logistic_order_id,
            "capture_id": self.capture_id,
            "ref_type": self.ref_type,
            "ref_id": self.ref_id,
            "postings": [
                {"type": p.account, "supplier_id": p.supplier_id, "amount": p.amount}
                for p in self.postings
            ],
        }


def _compact(postings: Iterable[Posting]) -> tuple[Posting, ...]:
    """Merge postings to one account and drop zeros (the database refuses zero postings)."""
    totals: dict[tuple[AccountKind, str | None], int] = {}
    for p in postings:
        totals[(p.account, p.supplier_id)] = totals.get((p.account, p.supplier_id), 0) + p.amount
    return tuple(Posting(a, amount, s) for (a, s), amount in totals.items() if amount != 0)


def check_currency(tenant_currency: str, amount: Money, what: str) -> None:
    if amount.currency != tenant_currency:
        raise InvalidEventError(
            f"{what} is in {amount.currency}, the tenant's ledger is in {tenant_currency}"
        )


def capture_entry(tenant_id: str, event: CaptureSucceeded) -> Entry:
    """`capture.succeeded`: the PSP holds the amount; each split line is owed to its party."""
    total = sum(s.amount for s in event.splits)
    if total != event.amount.value:
        raise InvalidEventError(
            f"capture {event.capture_id}: split lines sum to {total}, not {event.amount.value}"
        )
    postings = [Posting("PSP_CLEARING", -event.amount.value)]
    for line in event.splits:
        if line.party == "SUPPLIER":
            postings.append(Posting("SUPPLIER", line.amount, event.supplier_id))
        else:
            postings.append(Posting(line.party, line.amount))
    return Entry(
        tenant_id=tenant_id,
        currency=event.amount.currency,
        key=f"capture:{event.capture_id}",
        kind="CAPTURE",
        postings=_compact(postings),
        supplier_id=event.supplier_id,
        logistic_order_id=event.logistic_order_id,
        capture_id=event.capture_id,
        ref_type="CAPTURE",
        ref_id=event.capture_id,
    )


def check_return_lines(what: str, amount: Money, lines: Sequence[ReturnLine]) -> None:
    total = sum(line.amount for line in lines)
    if total != amount.value:
        raise InvalidEventError(f"{what}: lines sum to {total}, not {amount.value}")


def return_entries(
    tenant_id: str,
    *,
    key: str,
    kind: str,
    currency: str,
    lines: Sequence[ReturnLine],
    ref_type: str,
    ref_id: str,
    sign: int,
) -> list[Entry]:
    """A refund or chargeback (`sign` -1: each party gives its line back to the PSP) or a
    chargeback reversal (`sign` +1), one entry per capture the lines touch (payout eligibility
    follows logistic orders, so an entry belongs to one)."""
    by_capture: dict[str, list[ReturnLine]] = {}
    for line in lines:
        by_capture.setdefault(line.capture_id, []).append(line)
    entries = []
    for capture_id, capture_lines in by_capture.items():
        postings = [Posting("PSP_CLEARING", -sign * sum(x.amount for x in capture_lines))]
        for line in capture_lines:
            if line.party == "SUPPLIER":
                postings.append(Posting("SUPPLIER", sign * line.amount, line.supplier_id))
            else:
                postings.append(Posting(line.party, sign * line.amount))
        compact = _compact(postings)
        if not compact:
            continue
        first = capture_lines[0]
        entries.append(
            Entry(
                tenant_id=tenant_id,
                currency=currency,
                key=f"{key}:{capture_id}" if len(by_capture) > 1 else key,
                kind=kind,
                postings=compact,
                supplier_id=first.supplier_id,
                logistic_order_id=first.logistic_order_id,
                capture_id=capture_id,
                ref_type=ref_type,
                ref_id=ref_id,
            )
        )
    return entries


def supplier_shares(lines: Sequence[ReturnLine]) -> dict[str, int]:
    shares: dict[str, int] = {}
    for line in lines:
        if line.party == "SUPPLIER":
            shares[line.supplier_id] = shares.get(line.supplier_id, 0) + line.amount
    return shares


def funding_entry(
    tenant_id: str,
    *,
    transfer_id: str,
    currency: str,
    supplier_id: str,
    amount: int,
    linked_type: str,
    linked_id: str,
    recover: bool = False,
) -> Entry:
    """A funding transfer MARKETPLACE → SUPPLIER (or, `recover`, its recovery back)."""
    if amount <= 0:
        raise ValueError("a funding transfer moves a positive amount")
    sign = -1 if recover else 1
    return Entry(
        tenant_id=tenant_id,
        currency=currency,
        key=f"funding:{transfer_id}" + (":recovery" if recover else ""),
        kind="FUNDING_RECOVERY" if recover else "FUNDING",
        postings=(
            Posting("MARKETPLACE", -sign * amount),
            Posting("SUPPLIER", sign * amount, supplier_id),
        ),
        supplier_id=supplier_id,
        ref_type=linked_type,
        ref_id=linked_id,
    )


def payout_entry(
    tenant_id: str,
    *,
    payout_id: str,
    currency: str,
    account: AccountKind,
    supplier_id: str | None,
    amount: int,
) -> Entry:
    """A settled payout: the balance leaves for the bank account."""
    return Entry(
        tenant_id=tenant_id,
        currency=currency,
        key=f"payout:{payout_id}",
        kind="PAYOUT",
        postings=(
            Posting(account, -amount, supplier_id),
            Posting("BANK_CLEARING", amount),
        ),
        supplier_id=supplier_id,
        ref_type="PAYOUT",
        ref_id=payout_id,
    )


# -- the funding answer to refunds and chargebacks ------------------------------------------


@dataclass(frozen=True)
class FundsDecision:
    reserved: bool
    hold: int  # the supplier's share set aside until refund.succeeded / refund.failed
    funding: int  # MARKETPLACE → SUPPLIER advance needed first (0: none)
    code: str | None = None


def decide_refund_funds(*, share: int, available: int, funds_check: bool) -> FundsDecision:
    """`refund.requested`: the supplier's share must be covered by its available balance
    (balance − holds). With `funds_check` (policy REFUSE_REFUND) a short supplier refuses the
    refund; without it (MARKETPLACE_COVERS) the marketplace advances the shortfall."""
    if share == 0 or share <= available:
        return FundsDecision(reserved=True, hold=share, funding=0)
    if funds_check:
        return FundsDecision(reserved=False, hold=0, funding=0, code=INSUFFICIENT_SUPPLIER_BALANCE)
    return FundsDecision(reserved=True, hold=share, funding=share - max(available, 0))


def chargeback_funding(*, share: int, available: int, policy: FundingPolicy) -> int:
    """A chargeback cannot be refused: under MARKETPLACE_COVERS the marketplace advances what
    the supplier lacks; otherwise the supplier's balance goes negative and later captures
    recover it (the payout computation nets it)."""
    if policy != "MARKETPLACE_COVERS" or share <= available:
        return 0
    return share - max(available, 0)


# -- supplier payouts -----------------------------------------------------------------------


def iban_valid(iban: str | None) -> bool:
    return iban is not None and bool(stdnum_iban.is_valid(iban))


@dataclass(frozen=True)
class OrderAmount:
    logistic_order_id: str
    amount: int  # net credit of the supplier's account for this order


@dataclass(frozen=True)
class SupplierPayoutDecision:
    status: Literal["COMPUTED", "SKIPPED", "INSUFFICIENT_FUNDS"]
    amount: int  # what is sent to the supplier's bank account
    gross: int  # the net of the eligible orders
    recovered: int = 0  # advances of the marketplace taken back first
    funding: int = 0  # the marketplace's advance needed (banking mode ENABLED)
    code: str | None = None
    message: str | None = None
    lines: tuple[OrderAmount, ...] = field(default=())


def decide_supplier_payout(
    *,
    kyc_status: str | None,
    iban: str | None,
    orders: Sequence[OrderAmount],
    available: int,
    outstanding_advances: int,
    banking_mode: BankingMode,
) -> SupplierPayoutDecision:
    """One supplier's payout for a period (DESIGN §8).

    The gross is the net of the eligible orders (captures less their refunds and
    chargebacks). What the supplier owes beyond them (refunds or chargebacks of orders already
    paid out, advances of the marketplace) is recovered from it:
    - advances are taken back from the available balance first (ENABLED: only from what the
      payout leaves);
    - DISABLED: the marketplace never advances; the payout is the gross capped by what is
      available, so debts are netted; nothing available at all is INSUFFICIENT_FUNDS (the
      orders stay eligible);
    - ENABLED: the supplier gets the gross; the marketplace advances what is missing (a
      funding transfer linked to the payout, recovered from later payouts).
    """
    lines = tuple(orders)
    gross = sum(o.amount for o in lines)
    if kyc_status != "enabled":
        return SupplierPayoutDecision(
            "SKIPPED",
            0,
            gross,
            code="supplier_kyc_not_enabled",
            message=f"the supplier's KYC status is {kyc_status or 'unknown'}, not enabled",
            lines=lines,
        )
    if not iban_valid(iban):
        return SupplierPayoutDecision(
            "SKIPPED",
            0,
            gross,
            code="supplier_iban_invalid",
            message="the supplier has no valid IBAN",
            lines=lines,
        )
    if gross <= 0:
        return SupplierPayoutDecision(
            "SKIPPED", 0, gross, code="nothing_to_pay", message="no positive amount", lines=lines
        )
    if banking_mode == "ENABLED":
        recovered = min(outstanding_advances, max(available - gross, 0))
        left = available - recovered
        return SupplierPayoutDecision(
            "COMPUTED",
            gross,
            gross,
            recovered=recovered,
            funding=max(gross - max(left, 0), 0),
            lines=lines,
        )
    recovered = min(outstanding_advances, max(available, 0))
    amount = min(gross, available - recovered)
    if amount <= 0:
        return SupplierPayoutDecision(
            "INSUFFICIENT_FUNDS",
            0,
            gross,
            recovered=recovered,
            code="insufficient_supplier_balance",
            message=f"nothing available (available {available}, advances {outstanding_advances})",
            lines=lines,
        )
    return SupplierPayoutDecision(
        "COMPUTED",
        amount,
        gross,
        recovered=recovered,
        message=None if amount == gross else f"{gross - amount} netted against earlier debits",
        lines=lines,
    )


# -- schedules ------------------------------------------------------------------------------


def latest_slot(
    frequency: str,
    *,
    hour_utc: int,
    day_of_week: int | None,
    day_of_month: int | None,
    now: datetime,
) -> datetime | None:
    """The latest instant at or before `now` when the schedule was due (None: MANUAL).
    `day_of_week` 1 = Monday; `day_of_month` 1..28."""
    today = now.replace(hour=hour_utc, minute=0, second=0, microsecond=0)
    if frequency == "DAILY":
        return today if today <= now else today - timedelta(days=1)
    if frequency == "WEEKLY":
        back = (now.isoweekday() - (day_of_week or 1)) % 7
        slot = today - timedelta(days=back)
        return slot if slot <= now else slot - timedelta(days=7)
    if frequency == "MONTHLY":
        slot = today.replace(day=day_of_month or 1)
        if slot <= now:
            return slot
        previous = (slot.replace(day=1) - timedelta(days=1)).replace(day=day_of_month or 1)
        return previous
    return None
