import pytest
from hypothesis import given
from hypothesis import strategies as st

from checkout import domain
from checkout.domain import (
    FINAL,
    CaptureFact,
    Fact,
    Illegal,
    LineCapture,
    Moved,
    Status,
    Unchanged,
    apply,
    capture_fact,
    notification_fact,
)


@pytest.mark.parametrize(
    ("current", "fact", "expected"),
    [
        (Status.INIT_PAYMENT, Fact.AUTHORISATION_REQUESTED, Status.AUTHORIZATION_PENDING),
        (Status.AUTHORIZATION_PENDING, Fact.AUTHORISED, Status.AUTHORIZED),
        (Status.AUTHORIZATION_PENDING, Fact.REFUSED, Status.REFUSED),
        (Status.AUTHORIZATION_PENDING, Fact.FAILED, Status.ERROR),
        (Status.AUTHORIZED, Fact.CANCELLED, Status.CANCELLED),
        (Status.AUTHORIZED, Fact.CAPTURE_REQUESTED, Status.CAPTURE_PENDING),
        (Status.CAPTURE_PENDING, Fact.PARTIALLY_CAPTURED, Status.PARTIALLY_PAID),
        (Status.PARTIALLY_PAID, Fact.CAPTURE_REQUESTED, Status.CAPTURE_PENDING),
        (Status.CAPTURE_PENDING, Fact.FULLY_CAPTURED, Status.PAID),
        (Status.PAID, Fact.REFUND_REQUESTED, Status.WAITING_REFUND),
        (Status.WAITING_REFUND, Fact.PARTIALLY_REFUNDED, Status.PARTIALLY_REFUNDED),
        (Status.PARTIALLY_REFUNDED, Fact.FULLY_REFUNDED, Status.REFUNDED),
        (Status.PAID, Fact.CHARGEBACK, Status.CHARGEBACK),
    ],
)
def test_the_lifecycle_moves_forward(current, fact, expected):
    # when
    outcome = apply(current, fact)
    # then
    assert outcome == Moved(expected)


def test_a_late_authorisation_after_capture_changes_nothing():
    # given a payment already paid
    # when the AUTHORISATION webhook arrives late
    outcome = apply(Status.PAID, Fact.AUTHORISED)
    # then
    assert isinstance(outcome, Unchanged)


def test_a_repeated_fact_changes_nothing():
    assert isinstance(apply(Status.AUTHORIZED, Fact.AUTHORISED), Unchanged)
    assert isinstance(apply(Status.REFUSED, Fact.REFUSED), Unchanged)


def test_contradicting_facts_are_illegal():
    assert isinstance(apply(Status.REFUSED, Fact.CAPTURE_REQUESTED), Illegal)
    assert isinstance(apply(Status.INIT_PAYMENT, Fact.FULLY_CAPTURED), Illegal)
    assert isinstance(apply(Status.CANCELLED, Fact.CAPTURE_REQUESTED), Illegal)


def test_capture_failure_returns_to_what_was_captured_before():
    assert apply(Status.CAPTURE_PENDING, Fact.CAPTURE_FAILED) == Moved(Status.AUTHORIZED)
    assert apply(Status.CAPTURE_PENDING, Fact.CAPTURE_FAILED, remaining_capture=True) == Moved(
        Status.PARTIALLY_PAID
    )


def test_chargeback_reversal_restores_the_previous_status():
    assert apply(
        Status.CHARGEBACK, Fact.CHARGEBACK_REVERSED, previous=Status.PARTIALLY_REFUNDED
    ) == (Moved(Status.PARTIALLY_REFUNDED))


@given(st.sampled_from(list(Status)), st.lists(st.sampled_from(list(Fact)), max_size=12))
def test_a_final_payment_never_leaves_its_final_status_by_replayed_facts(start, facts):
    # given any sequence of facts applied through the machine
    status = start
    for fact in facts:
        outcome = apply(status, fact)
        if isinstance(outcome, Moved):
            # then nothing moves a refused or cancelled payment to money-moving states
            if status in (Status.REFUSED, Status.CANCELLED):
                pytest.fail(f"{fact} moved a {status} payment to {outcome.to}")
            status = outcome.to
    assert status in set(Status)
    assert set(Status) >= FINAL


@pytest.mark.parametrize(
    ("event_code", "success", "fact"),
    [
        ("AUTHORISATION", True, Fact.AUTHORISED),
        ("AUTHORISATION", False, Fact.REFUSED),
        ("CANCELLATION", True, Fact.CANCELLED),
        ("CANCELLATION", False, None),
        ("CAPTURE", True, None),
    ],
)
def test_a_notification_maps_to_its_fact(event_code, success, fact):
    assert notification_fact(event_code, success) is fact


L = LineCapture


@pytest.mark.parametrize(
    ("lines", "failed", "expected"),
    [
        ([L.CAPTURE_PENDING], False, CaptureFact(Fact.CAPTURE_REQUESTED)),
        ([L.CAPTURED], False, CaptureFact(Fact.FULLY_CAPTURED)),
        ([L.CAPTURED, L.CAPTURED], False, CaptureFact(Fact.FULLY_CAPTURED)),
        ([L.CAPTURED, L.CAPTURE_PENDING], False, CaptureFact(Fact.CAPTURE_REQUESTED)),
        ([L.CAPTURED, L.PENDING], False, CaptureFact(Fact.PARTIALLY_CAPTURED)),
        ([L.CAPTURE_FAILED], True, CaptureFact(Fact.CAPTURE_FAILED, remaining_capture=False)),
        ([L.CAPTURED, L.CAPTURE_FAILED], True, CaptureFact(Fact.CAPTURE_FAILED, True)),
        ([L.CAPTURE_BLOCKED, L.CAPTURE_PENDING], True, CaptureFact(Fact.CAPTURE_REQUESTED)),
        ([L.PENDING, L.PENDING], False, None),
    ],
)
def test_what_the_lines_capture_statuses_mean_for_the_payment(lines, failed, expected):
    # when / then
    assert capture_fact(lines, failed=failed) == expected


@pytest.mark.parametrize(
    ("step", "final"),
    [
        # one line: requested, then captured
        ((Status.AUTHORIZED, [L.CAPTURE_PENDING], False), Status.CAPTURE_PENDING),
        ((Status.CAPTURE_PENDING, [L.CAPTURED], False), Status.PAID),
        # two lines: the first captured while the second waits for its shipment
        ((Status.CAPTURE_PENDING, [L.CAPTURED, L.PENDING], False), Status.PARTIALLY_PAID),
        ((Status.PARTIALLY_PAID, [L.CAPTURED, L.CAPTURE_PENDING], False), Status.CAPTURE_PENDING),
        ((Status.CAPTURE_PENDING, [L.CAPTURED, L.CAPTURED], False), Status.PAID),
        # a failure goes back to where the other lines leave the payment
        ((Status.CAPTURE_PENDING, [L.CAPTURE_FAILED], True), Status.AUTHORIZED),
        ((Status.CAPTURE_PENDING, [L.CAPTURED, L.CAPTURE_FAILED], True), Status.PARTIALLY_PAID),
    ],
)
def test_capture_facts_move_the_payment_as_design_6_says(step, final):
    # given
    current, lines, failed = step
    # when
    decided = capture_fact(lines, failed=failed)
    outcome = apply(current, decided.fact, remaining_capture=decided.remaining_capture)
    # then
    assert outcome == Moved(final)


def test_a_capture_event_changes_its_line_only_when_newer_than_what_the_line_applied() -> None:
    line = domain.CaptureLine(
        payment_id="pay_1",
        logistic_order_id="lo_1",
        supplier_id="sup_1",
        amount=6000,
        status="CAPTURE_PENDING",
        capture_id="cap_1",
        capture_revision=2,
    )
    captured = domain.LineCapture.CAPTURED
    # a newer revision moves the line and records the revision and the capture
    assert domain.apply_line_capture(line, captured, "cap_2", 3) == domain.CaptureLine(
        payment_id="pay_1",
        logistic_order_id="lo_1",
        supplier_id="sup_1",
        amount=6000,
        status="CAPTURED",
        capture_id="cap_2",
        capture_revision=3,
    )
    # the same or an older revision, or an event without a line status, changes nothing
    assert domain.apply_line_capture(line, captured, "cap_1", 2) is None
    assert domain.apply_line_capture(line, captured, "cap_1", 1) is None
    assert domain.apply_line_capture(line, None, "cap_1", 9) is None
