"""Which payments are captured, and the Level 3 check of a PCARD_L3 capture."""

from decimal import Decimal

from capture.domain import Blocked, Prepared, level3_for_capture, prepare
from common.events import Level3Data
from common.level3 import Level3


def level3(**changes):
    data = {
        "customer_reference": "PO-1",
        "tax_total": 200,
        "freight": 300,
        "duty": 0,
        "items": [
            {
                "commodity_code": "44121",
                "description": "Bolts",
                "quantity": "2",
                "unit_of_measure": "EA",
                "unit_price": 5000,
                "discount": 500,
                "total": 9500,
            }
        ],
    }
    return Level3Data.model_validate({**data, **changes})


def test_complete_and_consistent_level3_data_is_sent_with_the_capture():
    # when: 9500 + tax 200 + freight 300 = 10000
    checked = level3_for_capture(level3(), capture_amount=10000, payment_amount=10000)
    # then
    assert isinstance(checked, Level3)
    assert checked.items[0].quantity == Decimal("2")


def test_missing_level3_data_blocks_the_capture():
    # when
    checked = level3_for_capture(None, capture_amount=10000, payment_amount=10000)
    # then
    assert isinstance(checked, Blocked)
    assert checked.code == "level3_missing"


def test_incomplete_level3_data_blocks_the_capture():
    # when
    no_reference = level3_for_capture(
        level3(customer_reference=None), capture_amount=10000, payment_amount=10000
    )
    no_items = level3_for_capture(level3(items=[]), capture_amount=10000, payment_amount=10000)
    item_without_total = level3_for_capture(
        level3(items=[{"commodity_code": "1", "description": "x", "quantity": "1"}]),
        capture_amount=10000,
        payment_amount=10000,
    )
    # then
    assert [c.code for c in (no_reference, no_items, item_without_total)] == [
        "level3_incomplete"
    ] * 3


def test_level3_totals_that_do_not_make_the_amount_block_the_capture():
    # when: the item's quantity × unit price − discount is 9500, not 9000
    wrong_item = level3(
        items=[
            {
                "commodity_code": "44121",
                "description": "Bolts",
                "quantity": "2",
                "unit_of_measure": "EA",
                "unit_price": 5000,
                "discount": 500,
                "total": 9000,
            }
        ]
    )
    item = level3_for_capture(wrong_item, capture_amount=10000, payment_amount=10000)
    total = level3_for_capture(level3(freight=400), capture_amount=10000, payment_amount=10000)
    # then
    assert isinstance(item, Blocked)
    assert isinstance(total, Blocked)
    assert (item.code, total.code) == ("level3_inconsistent", "level3_inconsistent")
    assert "items plus tax, freight and duty come to 10100, not 10000" in total.message


def test_a_capture_of_one_logistic_order_cannot_carry_payment_wide_level3_data():
    # when: the payment is 10000 in two logistic orders; this capture is one of them
    checked = level3_for_capture(level3(), capture_amount=6000, payment_amount=10000)
    # then
    assert isinstance(checked, Blocked)
    assert checked.code == "level3_partial_capture"


def test_only_card_payments_are_captured_and_an_unknown_supplier_blocks():
    # when
    wire = prepare(
        amount=100,
        payment_option="BANK_WIRE_ON_DUE_DATE",
        payment_amount=100,
        level3=None,
        platform_rate=None,
        marketplace_rate=None,
        supplier_known=True,
    )
    unknown = prepare(
        amount=100,
        payment_option="CREDIT_CARD",
        payment_amount=100,
        level3=None,
        platform_rate=Decimal("2.5"),
        marketplace_rate=None,
        supplier_known=False,
    )
    card = prepare(
        amount=100,
        payment_option="CREDIT_CARD",
        payment_amount=100,
        level3=None,
        platform_rate=Decimal("2.5"),
        marketplace_rate=None,
        supplier_known=True,
    )
    # then
    assert isinstance(wire, Blocked)
    assert wire.code == "payment_option_not_capturable"
    assert isinstance(unknown, Blocked)
    assert unknown.code == "supplier_unknown"
    assert isinstance(card, Prepared)
    assert card.level3 is None


def test_a_pcard_capture_is_prepared_with_its_level3_data():
    # when
    prepared = prepare(
        amount=10000,
        payment_option="PCARD_L3",
        payment_amount=10000,
        level3=level3(),
        platform_rate=Decimal("2.5"),
        marketplace_rate=Decimal("10"),
        supplier_known=True,
    )
    blocked = prepare(
        amount=10000,
        payment_option="PCARD_L3",
        payment_amount=10000,
        level3=None,
        platform_rate=Decimal("2.5"),
        marketplace_rate=Decimal("10"),
        supplier_known=True,
    )
    # then
    assert isinstance(prepared, Prepared)
    assert prepared.level3 is not None
    assert isinstance(blocked, Blocked)
    assert blocked.code == "level3_missing"
