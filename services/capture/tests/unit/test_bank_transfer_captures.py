"""A paid bank-transfer order's captures, decided without I/O: split like card money,
SUCCEEDED at once with `capture.succeeded`; an invalid split blocks; a line with a capture
already is skipped."""

from datetime import UTC, datetime

from capture.bank_transfer_domain import bank_transfer_captures
from capture.domain import CaptureStatus, Line, Payment, Tenancy
from common.events import CaptureSucceeded, EventType
from common.testing.tenancy import supplier_upserted, tenant_upserted

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _payment() -> Payment:
    return Payment(
        tenant_id="ten_1",
        payment_id="pay_1",
        order_id="ord_1",
        payment_option="BANK_WIRE_ON_DUE_DATE",
        status="PAID",
        capture_mode=None,
        amount=10100,
        currency="EUR",
        psp_reference="RF18539007547034",
        merchant_account="AcmeECOM",
        level3=None,
    )


def _tenancy(platform: str | None, commission: str | None) -> Tenancy:
    return Tenancy(
        tenant_upserted("ten_1", "AcmeECOM", default_rate=platform),
        {"sup_1": supplier_upserted("ten_1", "sup_1", commission_rate=commission)},
    )


def _decide(tenancy: Tenancy, existing: frozenset[str] = frozenset()):
    lines = [Line("lo_1", "sup_1", 10000), Line("lo_2", "sup_1", 100)]
    return bank_transfer_captures(
        _payment(),
        lines,
        tenancy,
        existing,
        now=NOW,
        capture_ids=["cap_1", "cap_2"],
        intervention_ids=["int_1", "int_2"],
    )


def test_each_line_is_split_and_succeeded_without_a_psp_call():
    # when
    decided = _decide(_tenancy("2.5", "10"))
    # then
    first = decided[0]
    assert first.capture.status is CaptureStatus.SUCCEEDED
    assert first.capture.trigger == "BANK_TRANSFER"
    assert first.capture.psp_reference is None
    assert first.capture.succeeded_at == NOW
    assert first.capture.next_attempt_at is None
    assert first.intervention is None
    (event,) = first.events
    assert event.type is EventType.CAPTURE_SUCCEEDED
    assert isinstance(event.data, CaptureSucceeded)
    assert event.data.psp_reference is None
    assert {s.party: s.amount for s in event.data.splits} == {
        "PLATFORM": 250,
        "MARKETPLACE": 1000,
        "SUPPLIER": 8750,
    }
    assert [d.capture.logistic_order_id for d in decided] == ["lo_1", "lo_2"]


def test_an_invalid_split_blocks_the_capture_as_for_cards():
    # when (60 % + 50 %: the commissions exceed the amount)
    decided = _decide(_tenancy("60", "50"))
    # then
    assert {d.capture.status for d in decided} == {CaptureStatus.BLOCKED}
    assert decided[0].intervention is not None
    assert decided[0].events[0].type is EventType.CAPTURE_BLOCKED


def test_a_line_captured_already_is_skipped():
    decided = _decide(_tenancy("2.5", "10"), frozenset({"lo_1"}))
    assert [d.capture.logistic_order_id for d in decided] == ["lo_2"]
    assert decided[0].capture.id == "cap_1"
