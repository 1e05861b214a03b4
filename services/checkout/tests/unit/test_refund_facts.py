"""Which status fact a capture service's refund or chargeback event is."""

import pytest

from checkout.domain import Fact, Moved, Status, apply, refund_fact


@pytest.mark.parametrize(
    ("event_type", "refunded", "fact", "previous"),
    [
        ("refund.requested", None, Fact.REFUND_REQUESTED, None),
        ("refund.succeeded", 3000, Fact.PARTIALLY_REFUNDED, None),
        ("refund.succeeded", 10000, Fact.FULLY_REFUNDED, None),
        ("refund.succeeded", None, Fact.PARTIALLY_REFUNDED, None),
        ("refund.failed", 0, Fact.REFUND_FAILED, Status.PAID),
        ("refund.failed", 3000, Fact.REFUND_FAILED, Status.PARTIALLY_REFUNDED),
        ("chargeback.received", None, Fact.CHARGEBACK, None),
        ("chargeback.reversed", None, Fact.CHARGEBACK_REVERSED, Status.PAID),
    ],
)
def test_refund_facts(event_type, refunded, fact, previous):
    decided = refund_fact(event_type, 10000, refunded)
    assert decided is not None
    assert (decided.fact, decided.previous) == (fact, previous)


def test_a_failed_refund_goes_back_where_the_payment_was():
    decided = refund_fact("refund.failed", 10000, 3000)
    assert decided is not None
    outcome = apply(Status.WAITING_REFUND, decided.fact, previous=decided.previous)
    assert outcome == Moved(Status.PARTIALLY_REFUNDED)


def test_an_unknown_event_is_no_fact():
    assert refund_fact("refund.funds_reserved", 10000, None) is None
