"""A consumer batch's changes to its payments, gathered before its one statement: each
payment's last status and its number of moves, every timeline entry and event in order."""

import pytest

from checkout.domain import Fact, PaymentFacts, Status, decide_transition
from checkout.repo import PaymentChanges


def facts(status: Status) -> PaymentFacts:
    return PaymentFacts(
        id="pay_1",
        tenant_id="ten_1",
        order_id="ord_1",
        status=status,
        amount=15000,
        currency="EUR",
        psp_reference="PSP1",
        payment_option="CREDIT_CARD",
        capture_mode="ON_SHIPMENT",
        merchant_account="AcmeECOM",
        level3=None,
    )


def test_two_moves_of_one_payment_keep_the_last_status_count_both_and_publish_both():
    # given
    changes = PaymentChanges()
    # when a payment moves twice in one batch, with an older fact between
    for status, fact in (
        (Status.AUTHORIZED, Fact.CAPTURE_REQUESTED),
        (Status.CAPTURE_PENDING, Fact.AUTHORISED),
        (Status.CAPTURE_PENDING, Fact.FULLY_CAPTURED),
    ):
        changes.transition(facts(status), decide_transition(facts(status), fact, source="t"))
    # then
    assert changes.statuses == {"pay_1": "PAID"}
    assert changes.moves == {"pay_1": 2}
    assert [(e[2], e[3]) for e in changes.timeline] == [
        ("AUTHORIZED", "CAPTURE_PENDING"),
        ("CAPTURE_PENDING", "CAPTURE_PENDING"),
        ("CAPTURE_PENDING", "PAID"),
    ]
    assert [(e.data["status_from"], e.data["status"]) for e, _ in changes.events] == [
        ("AUTHORIZED", "CAPTURE_PENDING"),
        ("CAPTURE_PENDING", "PAID"),
    ]
    assert {aggregate for _, aggregate in changes.events} == {"pay_1"}


def test_a_move_that_sets_more_than_the_status_is_refused():
    # given
    changes = PaymentChanges()
    pending = facts(Status.AUTHORIZATION_PENDING)
    transition = decide_transition(
        pending, Fact.REFUSED, source="t", updates={"refusal_reason": "Not enough balance"}
    )
    # then
    with pytest.raises(ValueError, match="only the status"):
        changes.transition(pending, transition)
    assert (changes.timeline, changes.statuses, changes.events) == ([], {}, [])
