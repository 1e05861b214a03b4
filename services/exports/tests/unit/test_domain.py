"""Exports' pure decisions: projections of the catalogue events, filters, scopes, cells."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from common.events import EventType, ExportReady, PayoutEvent
from exports.domain import (
    COLUMNS,
    FundingTransferFilters,
    PayoutRow,
    Scope,
    TransactionFilters,
    TransactionRow,
    check_filters,
    csv_time,
    may_export,
    neutralise,
    project,
    ready_event,
    rows_in,
    storage_key,
)
from exports.testing import at, dataset

S1, S2 = "sup_a", "sup_b"


def projected() -> list[TransactionRow | PayoutRow | object]:
    out: list[TransactionRow | PayoutRow | object] = []
    for event_type, data, occurred_at in dataset(S1, S2):
        result = project(event_type, data, "ten_1", occurred_at)
        out.extend(result if isinstance(result, list) else [result])
    return out


def test_an_authorisation_is_one_row_per_logistic_order_without_commissions() -> None:
    rows = [r for r in projected() if isinstance(r, TransactionRow)][:2]
    assert [(r.logistic_order_id, r.supplier_id, r.amount) for r in rows] == [
        ("lo_1", S1, 10000),
        ("lo_2", S2, 999),
    ]
    assert all(r.direction == "NONE" and r.platform_amount is None for r in rows)


def test_a_capture_carries_its_split_and_frozen_rates() -> None:
    capture = next(
        r for r in projected() if isinstance(r, TransactionRow) and r.row_key == "CAPTURE:capture_2"
    )
    assert (capture.platform_amount, capture.marketplace_amount, capture.supplier_amount) == (
        25,
        125,
        849,
    )
    assert (capture.platform_rate, capture.marketplace_rate) == (Decimal("2.5"), Decimal("12.5"))
    assert capture.direction == "CREDIT"


def test_refund_and_chargeback_rows_sum_their_lines_per_party() -> None:
    rows = {r.row_key: r for r in projected() if isinstance(r, TransactionRow)}
    refund = rows["REFUND:refund_1:SUCCEEDED"]
    assert (refund.platform_amount, refund.marketplace_amount, refund.supplier_amount) == (
        13,
        63,
        424,
    )
    assert refund.direction == "DEBIT"
    failed = rows["REFUND:refund_2:FAILED"]
    assert (failed.status, failed.direction) == ("FAILED", "NONE")
    # a chargeback over two captures is two rows, one per logistic order and supplier
    chargeback = [r for k, r in rows.items() if k.startswith("CHARGEBACK:cb_1:")]
    assert [(r.supplier_id, r.amount) for r in chargeback] == [(S1, 10000), (S2, 499)]
    reversal = rows["CHARGEBACK_REVERSAL:cb_1:capture_1"]
    assert (reversal.direction, reversal.status, reversal.amount) == ("CREDIT", "REVERSED", 10000)
    # every amount is a non-negative count of minor units
    assert all(
        (value or 0) >= 0
        for r in rows.values()
        for value in (r.amount, r.platform_amount, r.marketplace_amount, r.supplier_amount)
    )


def test_payouts_keep_their_full_state() -> None:
    payout = project(
        EventType.PAYOUT_FAILED,
        PayoutEvent(
            payout_id="p",
            revision=4,
            kind="SUPPLIER",
            supplier_id=S1,
            status="FAILED",
            amount={"value": 5, "currency": "JPY"},
            code="x",
        ),
        "ten_1",
        at(0),
    )
    assert isinstance(payout, PayoutRow)
    assert (payout.revision, payout.status, payout.amount, payout.currency) == (
        4,
        "FAILED",
        5,
        "JPY",
    )


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ("=1+1", "'=1+1"),
        ("+33 6", "'+33 6"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=1", "a=1"),
        ("", ""),
        ("'quoted", "'quoted"),
    ],
)
def test_cells_a_spreadsheet_would_run_are_neutralised(cell: str, safe: str) -> None:
    assert neutralise(cell) == safe


def test_times_are_iso_8601_utc_to_the_second() -> None:
    moment = datetime(2026, 3, 29, 3, 4, 5, 999_999, tzinfo=UTC) + timedelta(hours=0)
    assert csv_time(moment) == "2026-03-29T03:04:05Z"


def test_backwards_ranges_are_named() -> None:
    filters = TransactionFilters(
        created_from=datetime(2026, 2, 1, tzinfo=UTC), created_to=datetime(2026, 1, 1, tzinfo=UTC)
    )
    problem = check_filters(filters)
    assert problem is not None
    assert problem.param == "filters.created_from"
    problem = check_filters(FundingTransferFilters(amount_min=10, amount_max=9))
    assert problem is not None
    assert problem.param == "filters.amount_min"
    assert check_filters(FundingTransferFilters(amount_min=10, amount_max=10)) is None


def test_unknown_statuses_and_filters_are_refused() -> None:
    with pytest.raises(ValidationError):
        TransactionFilters.model_validate({"statuses": ["PAID"]})
    with pytest.raises(ValidationError):
        FundingTransferFilters.model_validate({"types": ["CAPTURE"]})


def test_supplier_payouts_are_for_operators_only() -> None:
    supplier = Scope("ten_1", S1)
    operator = Scope("ten_1")
    assert not may_export("supplier_payouts", supplier)
    assert may_export("supplier_payouts", operator)
    assert may_export("transactions", supplier)
    assert may_export("funding_transfers", supplier)


def test_each_attempt_has_its_own_file_and_progress_counts_lines() -> None:
    assert storage_key("t", "e", 1) != storage_key("t", "e", 2)
    assert rows_in(b"a;b\n1;2\n3;") == 2
    assert set(COLUMNS) == {"transactions", "supplier_payouts", "funding_transfers"}


def test_ready_event_expires_after_the_retention() -> None:
    done = datetime(2026, 1, 1, tzinfo=UTC)
    event = ready_event("exp_1", "transactions", 7, done, timedelta(days=7))
    assert event == ExportReady(
        export_id="exp_1",
        export_type="transactions",
        rows=7,
        expires_at=datetime(2026, 1, 8, tzinfo=UTC),
    )
