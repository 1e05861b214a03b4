"""The pure decisions: ledger entries of events, the funding answer, supplier payouts."""

from __future__ import annotations

import pytest

from common.money import Money
from payouts.domain import (
    Entry,
    InvalidEventError,
    OrderAmount,
    Posting,
    capture_entry,
    chargeback_funding,
    decide_refund_funds,
    decide_supplier_payout,
    return_entries,
)
from payouts.testing import VALID_IBAN, capture_succeeded, return_lines


def test_a_capture_credits_each_split_line_against_the_psp() -> None:
    event = capture_succeeded(supplier_id="sup_a", amount=999, marketplace_rate="12.5")
    entry = capture_entry("ten", event)
    assert set(entry.postings) == {
        Posting("PSP_CLEARING", -999),
        Posting("PLATFORM", 25),
        Posting("MARKETPLACE", 125),
        Posting("SUPPLIER", 849, "sup_a"),
    }
    assert entry.key == f"capture:{event.capture_id}"


def test_zero_lines_are_not_posted() -> None:
    event = capture_succeeded(
        supplier_id="sup_a", amount=1, platform_rate="30", marketplace_rate="30"
    )
    assert set(capture_entry("ten", event).postings) == {
        Posting("PSP_CLEARING", -1),
        Posting("SUPPLIER", 1, "sup_a"),
    }


def test_an_entry_that_does_not_balance_cannot_exist() -> None:
    with pytest.raises(ValueError, match="does not balance"):
        Entry("ten", "EUR", "k", "X", (Posting("PLATFORM", 1), Posting("MARKETPLACE", -2)))


def test_split_lines_that_do_not_add_up_are_an_invalid_event() -> None:
    event = capture_succeeded(supplier_id="sup_a", amount=1000)
    broken = event.model_copy(update={"amount": Money(value=1001, currency="EUR")})
    with pytest.raises(InvalidEventError, match="sum to 1000, not 1001"):
        capture_entry("ten", broken)


def test_same_content_same_hash_other_content_other_hash() -> None:
    event = capture_succeeded(supplier_id="sup_a", amount=1000)
    assert capture_entry("t", event).content_hash == capture_entry("t", event).content_hash
    other = event.model_copy(update={"supplier_id": "sup_b"})
    assert capture_entry("t", event).content_hash != capture_entry("t", other).content_hash


def test_a_refund_gives_each_line_back_and_a_reversal_credits_it_again() -> None:
    event = capture_succeeded(supplier_id="sup_a", amount=999, marketplace_rate="12.5")
    lines = return_lines(event, 13, 63, 424)
    [debit] = return_entries(
        "t",
        key="refund:r",
        kind="REFUND",
        currency="EUR",
        lines=lines,
        ref_type="REFUND",
        ref_id="r",
        sign=-1,
    )
    assert set(debit.postings) == {
        Posting("PSP_CLEARING", 500),
        Posting("PLATFORM", -13),
        Posting("MARKETPLACE", -63),
        Posting("SUPPLIER", -424, "sup_a"),
    }
    [credit] = return_entries(
        "t",
        key="x",
        kind="X",
        currency="EUR",
        lines=lines,
        ref_type="CHARGEBACK",
        ref_id="c",
        sign=1,
    )
    assert {p.amount for p in credit.postings} == {-500, 13, 63, 424}


@pytest.mark.parametrize(
    ("share", "available", "funds_check", "reserved", "hold", "funding", "code"),
    [
        (400, 1000, True, True, 400, 0, None),
        (1000, 1000, True, True, 1000, 0, None),
        (1001, 1000, True, False, 0, 0, "insufficient_supplier_balance"),
        (1001, 1000, False, True, 1001, 1, None),
        (500, -200, False, True, 500, 500, None),  # a negative balance is not covered twice
        (0, -200, True, True, 0, 0, None),
    ],
)
def test_the_funding_answer_to_a_refund(
    share: int,
    available: int,
    funds_check: bool,
    reserved: bool,
    hold: int,
    funding: int,
    code: str | None,
) -> None:
    decision = decide_refund_funds(share=share, available=available, funds_check=funds_check)
    assert (decision.reserved, decision.hold, decision.funding, decision.code) == (
        reserved,
        hold,
        funding,
        code,
    )


def test_a_chargeback_is_funded_only_under_marketplace_covers() -> None:
    assert chargeback_funding(share=800, available=300, policy="MARKETPLACE_COVERS") == 500
    assert chargeback_funding(share=800, available=-100, policy="MARKETPLACE_COVERS") == 800
    assert chargeback_funding(share=800, available=300, policy="REFUSE_REFUND") == 0
    assert chargeback_funding(share=200, available=300, policy="MARKETPLACE_COVERS") == 0


ORDERS = [OrderAmount("lo_1", 700), OrderAmount("lo_2", -100)]


@pytest.mark.parametrize(
    ("kyc", "iban", "orders", "available", "advances", "mode", "expected"),
    [
        ("enabled", VALID_IBAN, ORDERS, 600, 0, "DISABLED", ("COMPUTED", 600, 0, 0, None)),
        (
            "submitted",
            VALID_IBAN,
            ORDERS,
            600,
            0,
            "DISABLED",
            ("SKIPPED", 0, 0, 0, "supplier_kyc_not_enabled"),
        ),
        (
            "enabled",
            None,
            ORDERS,
            600,
            0,
            "DISABLED",
            ("SKIPPED", 0, 0, 0, "supplier_iban_invalid"),
        ),
        (
            "enabled",
            "DE00370400440532013000",
            ORDERS,
            600,
            0,
            "DISABLED",
            ("SKIPPED", 0, 0, 0, "supplier_iban_invalid"),
        ),
        (
            "enabled",
            VALID_IBAN,
            [OrderAmount("lo_1", -5)],
            600,
            0,
            "DISABLED",
            ("SKIPPED", 0, 0, 0, "nothing_to_pay"),
        ),
        # a debit of an order paid out before is netted; nothing available at all: refused
        ("enabled", VALID_IBAN, ORDERS, 400, 0, "DISABLED", ("COMPUTED", 400, 0, 0, None)),
        (
            "enabled",
            VALID_IBAN,
            ORDERS,
            -50,
            0,
            "DISABLED",
            ("INSUFFICIENT_FUNDS", 0, 0, 0, "insufficient_supplier_balance"),
        ),
        # an advance is recovered first
        ("enabled", VALID_IBAN, ORDERS, 900, 500, "DISABLED", ("COMPUTED", 400, 500, 0, None)),
        # ENABLED: the gross is paid, the marketplace advances what is missing
        ("enabled", VALID_IBAN, ORDERS, 400, 0, "ENABLED", ("COMPUTED", 600, 0, 200, None)),
        ("enabled", VALID_IBAN, ORDERS, -50, 0, "ENABLED", ("COMPUTED", 600, 0, 600, None)),
        ("enabled", VALID_IBAN, ORDERS, 900, 500, "ENABLED", ("COMPUTED", 600, 300, 0, None)),
    ],
)
def test_a_supplier_payout(
    kyc: str,
    iban: str | None,
    orders: list[OrderAmount],
    available: int,
    advances: int,
    mode: str,
    expected: tuple[str, int, int, int, str | None],
) -> None:
    decision = decide_supplier_payout(
        kyc_status=kyc,
        iban=iban,
        orders=orders,
        available=available,
        outstanding_advances=advances,
        banking_mode=mode,
    )
    assert (
        decision.status,
        decision.amount,
        decision.recovered,
        decision.funding,
        decision.code,
    ) == expected


def test_the_latest_due_slot_of_a_schedule() -> None:
    from datetime import UTC, datetime

    from payouts.domain import latest_slot

    now = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)  # a Tuesday
    assert latest_slot("MANUAL", hour_utc=6, day_of_week=1, day_of_month=None, now=now) is None
    assert latest_slot("DAILY", hour_utc=6, day_of_week=None, day_of_month=None, now=now) == (
        datetime(2026, 12, 1, 6, tzinfo=UTC)
    )
    assert latest_slot("DAILY", hour_utc=12, day_of_week=None, day_of_month=None, now=now) == (
        datetime(2026, 11, 30, 12, tzinfo=UTC)
    )
    # weekly, Monday 06:00 (the marketplace default)
    assert latest_slot("WEEKLY", hour_utc=6, day_of_week=1, day_of_month=None, now=now) == (
        datetime(2026, 11, 30, 6, tzinfo=UTC)
    )
    # weekly on Tuesday at 12:00, not yet today: last week's
    assert latest_slot("WEEKLY", hour_utc=12, day_of_week=2, day_of_month=None, now=now) == (
        datetime(2026, 11, 24, 12, tzinfo=UTC)
    )
    assert latest_slot("MONTHLY", hour_utc=6, day_of_week=None, day_of_month=1, now=now) == (
        datetime(2026, 12, 1, 6, tzinfo=UTC)
    )
    assert latest_slot("MONTHLY", hour_utc=6, day_of_week=None, day_of_month=15, now=now) == (
        datetime(2026, 11, 15, 6, tzinfo=UTC)
    )
    january = datetime(2026, 1, 3, tzinfo=UTC)
    assert latest_slot("MONTHLY", hour_utc=6, day_of_week=None, day_of_month=5, now=january) == (
        datetime(2025, 12, 5, 6, tzinfo=UTC)
    )
