"""The new screens' pure parts: the chart's daily sums (from ledger postings, signed per
account), its axis, the refund form's amounts, the export form's filters."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from multidict import MultiDict

from backoffice.chart import (
    OPERATOR_SOURCES,
    SUPPLIER_SOURCES,
    Day,
    daily_totals,
    nice_ceiling,
    svg_layout,
)
from backoffice.exports import export_filters
from backoffice.refunds import minor_units


def posting(kind: str, signed: int, at: str, currency: str = "EUR") -> dict[str, Any]:
    return {
        "kind": kind,
        "signed_amount": signed,
        "amount": {"value": abs(signed), "currency": currency},
        "posted_at": at,
    }


def test_operator_days_sum_the_clearing_accounts_postings() -> None:
    postings = [
        ("PSP_CLEARING", posting("CAPTURE", -15000, "2026-11-30T10:00:00+00:00")),
        ("PSP_CLEARING", posting("CAPTURE", -2000, "2026-11-30T23:59:59+00:00")),
        # 00:30 in Paris on Dec 1st is still Nov 30th in UTC
        ("PSP_CLEARING", posting("REFUND", 4000, "2026-12-01T00:30:00+01:00")),
        ("PSP_CLEARING", posting("CHARGEBACK", 999, "2026-12-01T08:00:00+00:00")),
        ("BANK_CLEARING", posting("PAYOUT", 14625, "2026-12-01T09:00:00+00:00")),
        ("PSP_CLEARING", posting("CAPTURE", -7, "2026-11-01T09:00:00+00:00")),  # too old
        ("PSP_CLEARING", posting("CAPTURE", -500, "2026-12-01T09:00:00+00:00", "JPY")),
    ]
    found = daily_totals(postings, OPERATOR_SOURCES, date(2026, 11, 29), date(2026, 12, 1))
    assert found["EUR"] == [
        Day(date(2026, 11, 29), 0, 0, 0),
        Day(date(2026, 11, 30), 17000, 4000, 0),
        Day(date(2026, 12, 1), 0, 0, 14625),
    ]
    assert [d.captured for d in found["JPY"]] == [0, 0, 500]


def test_a_supplier_reads_its_own_account_with_its_signs() -> None:
    postings = [
        ("SUPPLIER", posting("CAPTURE", 14625, "2026-12-01T10:00:00+00:00")),
        ("SUPPLIER", posting("REFUND", -3900, "2026-12-01T11:00:00+00:00")),
        ("SUPPLIER", posting("PAYOUT", -10725, "2026-12-01T12:00:00+00:00")),
        ("PSP_CLEARING", posting("CAPTURE", -15000, "2026-12-01T10:00:00+00:00")),
    ]
    found = daily_totals(postings, SUPPLIER_SOURCES, date(2026, 12, 1), date(2026, 12, 1))
    assert found == {"EUR": [Day(date(2026, 12, 1), 14625, 3900, 10725)]}


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1), (1, 1), (7, 10), (30000, 50000), (17001, 20000), (100, 100)]
)
def test_the_axis_ends_on_a_round_number(value: int, top: int) -> None:
    assert nice_ceiling(value) == top


def test_bars_are_proportional_to_the_amounts() -> None:
    days = [Day(date(2026, 12, 1), 30000, 4000, 0), Day(date(2026, 12, 2), 15000, 0, 14625)]
    layout = svg_layout(days, "EUR", width=500, height=240)
    heights = {(b.label.split()[0], b.series): b.height for b in layout["bars"]}
    plot = 240 - 12 - 40
    assert heights[("2026-12-01", "captured")] == round(plot * 30000 / 50000, 2)
    assert heights[("2026-12-02", "captured")] == round(plot * 15000 / 50000, 2)
    assert heights[("2026-12-02", "refunded")] == 0
    assert "EUR 146.25" in next(
        b.label for b in layout["bars"] if b.series == "paid_out" and b.height
    )
    assert layout["grid"][-1][1] == "EUR 500.00"


@pytest.mark.parametrize(
    ("text", "currency", "value"),
    [
        ("10", "EUR", 1000),
        ("10.5", "EUR", 1050),
        ("0,01", "EUR", 1),
        ("1500", "JPY", 1500),
        ("1.234", "KWD", 1234),
        ("10.001", "EUR", None),
        ("1.5", "JPY", None),
        ("-5", "EUR", None),
        ("0", "EUR", None),
        ("NaN", "EUR", None),
        ("Infinity", "EUR", None),
        ("ten", "EUR", None),
    ],
)
def test_refund_amounts_in_minor_units(text: str, currency: str, value: int | None) -> None:
    assert minor_units(text, currency) == value


def test_export_filters_from_the_form() -> None:
    form: MultiDict[str] = MultiDict(
        [
            ("type", "transactions"),
            ("created_from", "2026-11-01"),
            ("created_to", "2026-11-30"),
            ("types", "CAPTURE"),
            ("types", "REFUND"),
            ("types", "NOT_A_TYPE"),
            ("payment_id", " pay_1 "),
        ]
    )
    assert export_filters(form) == {
        "created_from": "2026-11-01T00:00:00Z",
        "created_to": "2026-11-30T23:59:59.999999Z",
        "types": ["CAPTURE", "REFUND"],
        "payment_id": "pay_1",
    }
    other: MultiDict[str] = MultiDict([("type", "funding_transfers"), ("types", "CAPTURE")])
    assert export_filters(other) == {}
