"""Bank transfer decisions without I/O: due dates (calendar table), creditor references,
reconciliation outcomes."""

from datetime import UTC, date, datetime

import pytest
from stdnum import iso11649

from checkout.bank_transfer_domain import (
    Applied,
    BankTransferFacts,
    NotApplied,
    TransferStatus,
    apply_transfer,
    creditor_reference,
    due_date,
    is_overdue,
    normalise_reference,
    payment_option_refusal,
)


@pytest.mark.parametrize(
    ("shipped_at", "delay", "mode", "tz", "expected"),
    [
        # 31 Jan + 30 days: into March (February has 28 days in 2026, 29 in 2028)
        (datetime(2026, 1, 31, 12, 0, tzinfo=UTC), 30, "SIMPLE", "UTC", date(2026, 3, 2)),
        (datetime(2028, 1, 31, 12, 0, tzinfo=UTC), 30, "SIMPLE", "UTC", date(2028, 3, 1)),
        # END_OF_MONTH: the end of the month the simple date falls in
        (datetime(2028, 1, 31, 12, 0, tzinfo=UTC), 29, "END_OF_MONTH", "UTC", date(2028, 2, 29)),
        (datetime(2027, 1, 31, 12, 0, tzinfo=UTC), 28, "END_OF_MONTH", "UTC", date(2027, 2, 28)),
        (datetime(2026, 1, 10, 12, 0, tzinfo=UTC), 45, "END_OF_MONTH", "UTC", date(2026, 2, 28)),
        (datetime(2026, 12, 15, 12, 0, tzinfo=UTC), 30, "END_OF_MONTH", "UTC", date(2027, 1, 31)),
        # a shipment at 23:30 UTC in a UTC+2 tenant is the next day there
        (
            datetime(2026, 1, 31, 23, 30, tzinfo=UTC),
            30,
            "SIMPLE",
            "Europe/Athens",
            date(2026, 3, 3),
        ),
        (
            datetime(2026, 1, 31, 23, 30, tzinfo=UTC),
            0,
            "END_OF_MONTH",
            "Europe/Athens",
            date(2026, 2, 28),
        ),
        # ... and the same instant is still the 31st in UTC and to the west
        (datetime(2026, 1, 31, 23, 30, tzinfo=UTC), 0, "SIMPLE", "UTC", date(2026, 1, 31)),
        (
            datetime(2026, 2, 1, 3, 0, tzinfo=UTC),
            0,
            "SIMPLE",
            "America/New_York",
            date(2026, 1, 31),
        ),
        # zero delay: the shipment day itself
        (datetime(2026, 6, 15, 8, 0, tzinfo=UTC), 0, "SIMPLE", "UTC", date(2026, 6, 15)),
    ],
)
def test_due_date_calendar(shipped_at, delay, mode, tz, expected):
    assert due_date(shipped_at, delay, mode, tz) == expected


def test_due_date_refuses_a_naive_instant_and_a_negative_delay():
    with pytest.raises(ValueError, match="timezone-aware"):
        due_date(datetime(2026, 1, 1), 30, "SIMPLE")
    with pytest.raises(ValueError, match="negative"):
        due_date(datetime(2026, 1, 1, tzinfo=UTC), -1, "SIMPLE")


def test_creditor_references_are_valid_iso_11649_and_unique():
    references = {creditor_reference() for _ in range(1000)}
    assert len(references) == 1000
    for reference in references:
        assert reference.startswith("RF")
        assert iso11649.is_valid(reference)


def test_a_reference_typed_with_spaces_and_lower_case_is_recognised_and_a_typo_is_not():
    reference = creditor_reference(bytes(range(16)))
    typed = " ".join(reference[i : i + 4] for i in range(0, len(reference), 4)).lower()
    assert normalise_reference(typed) == reference
    typo = reference[:-1] + ("0" if reference[-1] != "0" else "1")
    assert normalise_reference(typo) is None


def _payment(received=0, status="WAITING_PAYMENT"):
    return BankTransferFacts("pay_1", status, 10000, "EUR", received)


@pytest.mark.parametrize(
    ("received", "value", "expected"),
    [
        (0, 10000, Applied("PAID", 10000, 0, 0)),
        (0, 4000, Applied("PARTIALLY_PAID", 4000, 6000, 0)),
        (4000, 6000, Applied("PAID", 10000, 0, 0)),
        (4000, 7000, Applied("OVER_PAID", 11000, 0, 1000)),
        (0, 10001, Applied("OVER_PAID", 10001, 0, 1)),
    ],
)
def test_reconciliation_outcomes(received, value, expected):
    status = "PARTIALLY_PAID" if received else "WAITING_PAYMENT"
    assert apply_transfer(_payment(received, status), value=value, currency="EUR") == expected


@pytest.mark.parametrize(
    ("payment", "value", "currency", "expected"),
    [
        (None, 100, "EUR", NotApplied(TransferStatus.UNMATCHED, "unknown_reference")),
        (_payment(), 100, "USD", NotApplied(TransferStatus.UNMATCHED, "currency_mismatch")),
        (_payment(), -100, "EUR", NotApplied(TransferStatus.REJECTED, "amount_not_positive")),
        (_payment(), 0, "EUR", NotApplied(TransferStatus.REJECTED, "amount_not_positive")),
        (
            _payment(10000, "PAID"),
            100,
            "EUR",
            NotApplied(TransferStatus.UNMATCHED, "payment_paid"),
        ),
        (
            _payment(11000, "OVER_PAID"),
            100,
            "EUR",
            NotApplied(TransferStatus.UNMATCHED, "payment_over_paid"),
        ),
    ],
)
def test_transfers_that_are_never_applied(payment, value, currency, expected):
    assert apply_transfer(payment, value=value, currency=currency) == expected


def test_overdue_only_after_the_due_date_and_while_money_is_missing():
    due = date(2026, 3, 2)
    assert not is_overdue(due, date(2026, 3, 2), "WAITING_PAYMENT")
    assert is_overdue(due, date(2026, 3, 3), "WAITING_PAYMENT")
    assert is_overdue(due, date(2026, 3, 3), "PARTIALLY_PAID")
    assert not is_overdue(due, date(2026, 3, 3), "PAID")
    assert not is_overdue(None, date(2026, 3, 3), "WAITING_PAYMENT")


@pytest.mark.parametrize(
    ("requested", "account", "refused"),
    [
        ("BANK_WIRE_ON_ACCEPTANCE", None, False),  # the default
        ("BANK_WIRE_ON_DUE_DATE", None, True),
        ("BANK_WIRE_ON_DUE_DATE", "BANK_WIRE_ON_DUE_DATE", False),
        ("BANK_WIRE_ON_ACCEPTANCE", "BANK_WIRE_ON_DUE_DATE", True),  # exclusive
        ("CREDIT_CARD", "BANK_WIRE_ON_DUE_DATE", False),  # cards are not concerned
    ],
)
def test_the_buyer_accounts_bank_wire_option_is_exclusive(requested, account, refused):
    assert (payment_option_refusal(requested, account) is not None) is refused
