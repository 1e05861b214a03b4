"""Bank transfer on due date, decided purely (DESIGN §10): the structured creditor reference,
the due date, and what an incoming transfer does to a payment.

Calendar rules of `due_date` (table-tested in tests/unit/test_bank_transfer_domain.py):
1. The shipment instant is read in the tenant's time zone (IANA name, default UTC): a parcel
   shipped at 23:30 UTC on 31 January in a UTC+2 tenant shipped on 1 February.
2. `SIMPLE`: that local calendar date plus `delay` calendar days (31 Jan + 30 days = 2 Mar, or
   1 Mar in a leap year). No business-day shifting is offered.
3. `END_OF_MONTH`: the date of rule 2, moved to the last day of its month (29 February in a
   leap year, 28 otherwise).
The due date is a calendar date: the payment is overdue from the next day on, in the tenant's
time zone.

Reconciliation (`apply_transfer`): transfers are summed per payment; the sum against the
amount due gives `PAID` (equal), `PARTIALLY_PAID` (less; the remainder is shown) or `OVER_PAID`
(more; the excess is recorded for refund). A transfer that cannot be matched (unknown
reference, another currency, a payment no longer waiting for money) is parked for an operator;
a non-positive amount is rejected. Neither is ever applied.
"""

from __future__ import annotations

import calendar
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stdnum import iso11649
from stdnum.iso7064 import mod_97_10

from common.events import BANK_WIRE_OPTIONS

TRANSFER_EVENT_CODE = "BANK_TRANSFER_RECEIVED"
"""The PSP notification's `eventCode` for money received on a transfer reference (the
sandbox's; `merchantReference` carries the RF reference, `pspReference` the transfer)."""

# the alphabet of the reference body: digits and upper-case letters, no look-alikes
_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


class DueDateMode(StrEnum):
    SIMPLE = "SIMPLE"
    END_OF_MONTH = "END_OF_MONTH"


class TransferStatus(StrEnum):
    """An incoming transfer: applied to its payment, parked (unmatched) for an operator,
    rejected (never applicable), assigned by an operator, or returned to the sender."""

    APPLIED = "APPLIED"
    UNMATCHED = "UNMATCHED"
    REJECTED = "REJECTED"
    ASSIGNED = "ASSIGNED"
    RETURNED = "RETURNED"


def creditor_reference(entropy: bytes | None = None) -> str:
    """A new ISO 11649 structured creditor reference, `RF` + two check digits + 16 characters
    (the check digits computed by python-stdnum's ISO 7064 mod 97-10)."""
    raw = entropy if entropy is not None else secrets.token_bytes(16)
    body = "".join(_ALPHABET[b % len(_ALPHABET)] for b in raw[:16])
    reference = "RF" + mod_97_10.calc_check_digits(body + "RF") + body
    return str(iso11649.validate(reference))


def normalise_reference(text: str) -> str | None:
    """A reference as a buyer may type it (spaces, lower case), compact; None if invalid."""
    try:
        return str(iso11649.validate(text))
    except Exception:  # stdnum raises its ValidationError subclasses
        return None


DEFAULT_BANK_WIRE_OPTION = "BANK_WIRE_ON_ACCEPTANCE"


def payment_option_refusal(requested: str, account_option: str | None) -> str | None:
    """Why a session may not use `requested` for a buyer account whose bank-wire option is
    `account_option` (None: never set, the default); None when it may. The two bank-wire
    options are exclusive per buyer account; card options are not concerned."""
    if requested not in BANK_WIRE_OPTIONS:
        return None
    allowed = account_option or DEFAULT_BANK_WIRE_OPTION
    if requested != allowed:
        return f"this buyer account pays by {allowed}, not {requested}"
    return None


def valid_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def due_date(shipped_at: datetime, delay_days: int, mode: str, time_zone: str = "UTC") -> date:
    """The due date of a payment whose order shipped at `shipped_at` (aware), under the
    supplier's terms, in the tenant's time zone (rules in the module docstring)."""
    if shipped_at.tzinfo is None:
        raise ValueError("shipped_at must be timezone-aware")
    if delay_days < 0:
        raise ValueError("delay_days must not be negative")
    local = shipped_at.astimezone(ZoneInfo(time_zone)).date()
    due = local + timedelta(days=delay_days)
    if DueDateMode(mode) is DueDateMode.END_OF_MONTH:
        due = due.replace(day=calendar.monthrange(due.year, due.month)[1])
    return due


@dataclass(frozen=True)
class StoredBankTransfer:
    """A bank-transfer payment's transfer instructions and what arrived, as the repo loads
    them (`currency` without char(3) padding)."""

    payment_id: str
    tenant_id: str
    reference: str
    iban: str
    amount: int
    currency: str
    received: int
    excess: int
    shipped_at: datetime | None
    time_zone: str
    due_date: date | None
    overdue_for: date | None
    paid_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class StoredIncomingTransfer:
    """An incoming transfer the PSP reported, as the repo loads it."""

    id: str
    tenant_id: str
    psp_reference: str
    notification_id: str
    reference: str
    amount: int
    currency: str
    status: str
    reason: str | None
    payment_id: str | None
    created_at: datetime
    resolved_at: datetime | None
    resolved_note: str | None


@dataclass(frozen=True)
class OverdueCandidate:
    """A bank-transfer payment claimed by the overdue scheduler, with `today` in its
    tenant's calendar."""

    payment_id: str
    tenant_id: str
    order_id: str
    buyer_account: str
    status: str
    amount: int
    currency: str
    received: int
    due_date: date
    today: date


@dataclass(frozen=True)
class BankTransferFacts:
    """A bank-transfer payment as reconciliation reads it."""

    payment_id: str
    status: str
    amount: int
    currency: str
    received: int


@dataclass(frozen=True)
class Applied:
    status: str  # PAID, PARTIALLY_PAID or OVER_PAID
    received: int
    remaining: int
    excess: int


@dataclass(frozen=True)
class NotApplied:
    status: TransferStatus  # UNMATCHED or REJECTED
    reason: str


Reconciliation = Applied | NotApplied

# payments that still wait for money: a transfer to any other (one already PAID or OVER_PAID,
# cancelled, ...) is parked for an operator rather than silently turned into an excess
OPEN_STATUSES = frozenset({"INIT_PAYMENT", "WAITING_PAYMENT", "PARTIALLY_PAID"})


def settle(amount: int, received: int) -> Applied:
    """The payment's state for `received` (minor units) against `amount` due."""
    if received == amount:
        return Applied("PAID", received, 0, 0)
    if received < amount:
        return Applied("PARTIALLY_PAID", received, amount - received, 0)
    return Applied("OVER_PAID", received, 0, received - amount)


def apply_transfer(
    payment: BankTransferFacts | None, *, value: int, currency: str
) -> Reconciliation:
    """What a transfer of `value` `currency` to a payment's reference does."""
    if value <= 0:
        return NotApplied(TransferStatus.REJECTED, "amount_not_positive")
    if payment is None:
        return NotApplied(TransferStatus.UNMATCHED, "unknown_reference")
    if currency != payment.currency:
        return NotApplied(TransferStatus.UNMATCHED, "currency_mismatch")
    if payment.status not in OPEN_STATUSES:
        return NotApplied(TransferStatus.UNMATCHED, f"payment_{payment.status.lower()}")
    return settle(payment.amount, payment.received + value)


def is_overdue(due: date | None, today: date, status: str) -> bool:
    """Past its due date (in the tenant's calendar) and not fully paid."""
    return due is not None and today > due and status in ("WAITING_PAYMENT", "PARTIALLY_PAID")
