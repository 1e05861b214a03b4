"""A known data set for suites that drive the exports service: the catalogue events checkout,
capture and payouts publish for one tenant with two suppliers, at fixed times, with cells a
spreadsheet would run (which the files must neutralise)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from common.events import (
    CaptureSucceeded,
    ChargebackEvent,
    EventData,
    EventType,
    FundingTransferEvent,
    PaymentAuthorised,
    PayoutEvent,
    RefundFailed,
    RefundSucceeded,
)

BASE = datetime(2026, 11, 2, 9, 30, 0, 500_000, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return BASE + timedelta(minutes=minutes)


def money(value: int) -> dict[str, object]:
    return {"value": value, "currency": "EUR"}


def dataset(s1: str, s2: str) -> list[tuple[str, EventData, datetime]]:
    """(event type, payload, occurred_at) in publishing order. Payment pay_1 covers lo_1
    (supplier s1, 10000 at 2.5 % / 10 %) and lo_2 (s2, 999 at 2.5 % / 12.5 %); lo_2 is partly
    refunded, a refund of lo_1 fails, then a chargeback takes what is left and is reversed.
    Payouts: one per supplier (the first reported out of order) and a marketplace payout;
    funding transfers: one completed, one failed."""
    ret = "capture_1"
    return [
        (
            EventType.PAYMENT_AUTHORISED,
            PaymentAuthorised(
                payment_id="pay_1",
                order_id="ord_1",
                status_from="AUTHORIZATION_PENDING",
                status="AUTHORIZED",
                amount=money(10999),
                psp_reference="PSP-AUTH-1",
                payment_option="CREDIT_CARD",
                capture_mode="MANUAL",
                merchant_account="DemoECOM",
                lines=[
                    {"logistic_order_id": "lo_1", "supplier_id": s1, "amount": 10000},
                    {"logistic_order_id": "lo_2", "supplier_id": s2, "amount": 999},
                ],
            ),
            at(0),
        ),
        (
            EventType.CAPTURE_SUCCEEDED,
            CaptureSucceeded(
                capture_id=ret,
                revision=3,
                payment_id="pay_1",
                order_id="ord_1",
                logistic_order_id="lo_1",
                supplier_id=s1,
                amount=money(10000),
                trigger="MANUAL",
                psp_reference="PSP-CAP-1",
                splits=[
                    {"party": "PLATFORM", "amount": 250, "rate": "2.5"},
                    {"party": "MARKETPLACE", "amount": 1000, "rate": "10"},
                    {"party": "SUPPLIER", "amount": 8750},
                ],
                platform_rate="2.5",
                marketplace_rate="10",
            ),
            at(10),
        ),
        (
            EventType.CAPTURE_SUCCEEDED,
            CaptureSucceeded(
                capture_id="capture_2",
                revision=3,
                payment_id="pay_1",
                order_id="ord_1",
                logistic_order_id="lo_2",
                supplier_id=s2,
                amount=money(999),
                trigger="ON_SHIPMENT",
                psp_reference="=PSP-CAP-2",
                splits=[
                    {"party": "PLATFORM", "amount": 25, "rate": "2.5"},
                    {"party": "MARKETPLACE", "amount": 125, "rate": "12.5"},
                    {"party": "SUPPLIER", "amount": 849},
                ],
                platform_rate="2.5",
                marketplace_rate="12.5",
            ),
            at(11),
        ),
        (
            EventType.REFUND_SUCCEEDED,
            RefundSucceeded(
                refund_id="refund_1",
                revision=2,
                payment_id="pay_1",
                order_id="ord_1",
                capture_id="capture_2",
                logistic_order_id="lo_2",
                supplier_id=s2,
                amount=money(500),
                reason='=HYPERLINK("http://evil.example","click")',
                lines=_lines("capture_2", "lo_2", s2, 13, 63, 424),
                psp_reference="PSP-REF-1",
            ),
            at(20),
        ),
        (
            EventType.REFUND_FAILED,
            RefundFailed(
                refund_id="refund_2",
                revision=2,
                payment_id="pay_1",
                order_id="ord_1",
                capture_id=ret,
                logistic_order_id="lo_1",
                supplier_id=s1,
                amount=money(100),
                reason="damaged",
                lines=_lines(ret, "lo_1", s1, 3, 10, 87),
                code="refund_declined",
                message="-1; refused by the PSP\nsecond line",
            ),
            at(21),
        ),
        (
            EventType.CHARGEBACK_RECEIVED,
            ChargebackEvent(
                chargeback_id="cb_1",
                revision=1,
                payment_id="pay_1",
                order_id="ord_1",
                psp_reference="PSP-CB-1",
                stage="CHARGEBACK",
                amount=money(10499),
                reason="@SUM(A1:A9)",
                lines=[
                    *_lines(ret, "lo_1", s1, 250, 1000, 8750),
                    *_lines("capture_2", "lo_2", s2, 12, 62, 425),
                ],
            ),
            at(30),
        ),
        (
            EventType.CHARGEBACK_REVERSED,
            ChargebackEvent(
                chargeback_id="cb_1",
                revision=2,
                payment_id="pay_1",
                order_id="ord_1",
                psp_reference="PSP-CB-1",
                stage="CHARGEBACK_REVERSED",
                amount=money(10000),
                reason=None,
                lines=_lines(ret, "lo_1", s1, 250, 1000, 8750),
            ),
            at(40),
        ),
        # payout_1 reported newest first: the read model keeps revision 2's state and the
        # earliest time as created_at
        (EventType.PAYOUT_SETTLED, _payout("payout_1", 2, s1, "SETTLED", 8750), at(55)),
        (EventType.PAYOUT_COMPUTED, _payout("payout_1", 1, s1, "COMPUTED", 8750), at(50)),
        (
            EventType.PAYOUT_FAILED,
            _payout("payout_2", 1, s2, "FAILED", 425, code="+iban_closed", message="closed"),
            at(51),
        ),
        (
            EventType.PAYOUT_COMPUTED,
            PayoutEvent(
                payout_id="payout_m",
                revision=1,
                kind="MARKETPLACE",
                supplier_id=None,
                status="COMPUTED",
                amount=money(1125),
            ),
            at(52),
        ),
        (EventType.FUNDING_TRANSFER_CREATED, _transfer("ft_1", 1, s2, "PENDING", None), at(60)),
        (
            EventType.FUNDING_TRANSFER_COMPLETED,
            _transfer("ft_1", 2, s2, "COMPLETED", None),
            at(61),
        ),
        (
            EventType.FUNDING_TRANSFER_FAILED,
            _transfer("ft_2", 1, s1, "FAILED", "\tinsufficient", amount=300),
            at(62),
        ),
    ]


def _payout(
    payout_id: str,
    revision: int,
    supplier_id: str,
    status: str,
    amount: int,
    *,
    code: str | None = None,
    message: str | None = None,
) -> PayoutEvent:
    return PayoutEvent.model_validate(
        {
            "payout_id": payout_id,
            "revision": revision,
            "kind": "SUPPLIER",
            "supplier_id": supplier_id,
            "status": status,
            "amount": money(amount),
            "period_start": at(-60 * 24 * 7),
            "period_end": at(-60),
            "logistic_order_ids": ["lo_1"] if amount == 8750 else ["lo_2", "lo_9"],
            "provider_reference": f"PRV-{payout_id}" if status == "SETTLED" else None,
            "code": code,
            "message": message,
        }
    )


def _transfer(
    transfer_id: str,
    revision: int,
    supplier_id: str,
    status: str,
    reason: str | None,
    amount: int = 424,
) -> FundingTransferEvent:
    return FundingTransferEvent.model_validate(
        {
            "funding_transfer_id": transfer_id,
            "revision": revision,
            "status": status,
            "amount": money(amount),
            "source_account_type": "MARKETPLACE",
            "target_account_type": "SUPPLIER",
            "supplier_id": supplier_id,
            "linked_type": "REFUND",
            "linked_id": "refund_1",
            "reason": reason,
        }
    )


def _lines(
    capture_id: str,
    logistic_order_id: str,
    supplier_id: str,
    platform: int,
    marketplace: int,
    supplier: int,
) -> list[dict[str, object]]:
    """The split lines (PLATFORM, MARKETPLACE, SUPPLIER) a refund or chargeback takes back."""
    return [
        {
            "capture_id": capture_id,
            "logistic_order_id": logistic_order_id,
            "supplier_id": supplier_id,
            "party": party,
            "amount": amount,
        }
        for party, amount in (
            ("PLATFORM", platform),
            ("MARKETPLACE", marketplace),
            ("SUPPLIER", supplier),
        )
    ]


def parse_csv(raw: bytes) -> list[list[str]]:
    """A file as a spreadsheet's CSV import reads it: UTF-8, `;`, quoted cells."""
    return list(csv.reader(io.StringIO(raw.decode("utf-8"), newline=""), delimiter=";"))
