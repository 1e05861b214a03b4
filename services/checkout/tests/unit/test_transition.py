"""A payment's transition decided without I/O: what is recorded, set and published."""

from checkout.domain import Fact, PaymentFacts, Status, authorises, decide_transition
from common.events import EventType, PaymentAuthorised, PaymentLine, PaymentStatusChanged

LINE = PaymentLine(logistic_order_id="lo_1", supplier_id="sup_1", amount=15000)


def payment(status: Status = Status.AUTHORIZATION_PENDING) -> PaymentFacts:
    return PaymentFacts(
        id="pay_1",
        tenant_id="ten_1",
        order_id="ord_1",
        status=status,
        amount=15000,
        currency="EUR",
        psp_reference=None,
        payment_option="CREDIT_CARD",
        capture_mode="MANUAL",
        merchant_account="AcmeECOM",
        level3=None,
    )


def test_an_authorisation_moves_the_payment_and_publishes_both_events():
    # when
    decided = decide_transition(
        payment(),
        Fact.AUTHORISED,
        source="psp_response",
        updates={"psp_reference": "PSP1"},
        lines=[LINE],
    )
    # then
    assert decided.status is Status.AUTHORIZED
    assert decided.columns == {"status": "AUTHORIZED", "psp_reference": "PSP1"}
    assert decided.entry.status_from is Status.AUTHORIZATION_PENDING
    assert decided.entry.detail == {"fact": "authorised", "source": "psp_response"}
    (changed_type, changed), (authorised_type, authorised) = decided.events
    assert changed_type is EventType.PAYMENT_STATUS_CHANGED
    assert isinstance(changed, PaymentStatusChanged)
    assert changed.psp_reference == "PSP1"
    assert authorised_type is EventType.PAYMENT_AUTHORISED
    assert isinstance(authorised, PaymentAuthorised)
    assert authorised.lines == [LINE]
    assert authorised.merchant_account == "AcmeECOM"


def test_an_older_fact_is_noted_without_moving_or_publishing():
    # when
    decided = decide_transition(payment(Status.PAID), Fact.AUTHORISED, source="psp_notification")
    # then
    assert decided.status is Status.PAID
    assert not decided.moved
    assert decided.events == []
    assert decided.entry.status_to is Status.PAID
    assert "older" in decided.entry.detail["reason"]


def test_an_illegal_fact_is_refused_and_recorded():
    # when
    decided = decide_transition(payment(Status.REFUSED), Fact.CANCELLED, source="api")
    # then
    assert decided.refused is not None
    assert decided.entry.kind == "refused_transition"
    assert decided.entry.status_to is None
    assert decided.events == []


def test_a_failed_last_capture_authorises_again_and_needs_the_lines():
    assert authorises(Status.CAPTURE_PENDING, Fact.CAPTURE_FAILED, remaining_capture=False)
    assert not authorises(Status.CAPTURE_PENDING, Fact.CAPTURE_FAILED, remaining_capture=True)
    assert not authorises(Status.INIT_PAYMENT, Fact.CANCELLED)
