"""The decisions that used to sit in I/O code, now pure: the initial status of a capture,
what a transition writes (revision, next_attempt_at, succeeded_at, interventions, the event),
the PSP key, the operator's refusals, and what an OMS event does."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from capture.domain import (
    IDEMPOTENCY_KEY_FORMAT,
    Blocked,
    Capture,
    CaptureStatus,
    CommissionSplit,
    Confirmed,
    Ignored,
    Line,
    Payment,
    Prepared,
    Received,
    Rejected,
    SplitLine,
    Tenancy,
    Unknown,
    decide_change,
    decide_reopen,
    idempotency_key,
    initial_status,
    new_capture,
    on_notification,
    on_psp_answer,
    operator_capture_refusal,
    split,
)
from capture.shipment_domain import (
    Ids,
    ShipmentLine,
    WaitingShipment,
    decide_earlier_shipments,
    decide_shipment,
    shipment_refusal,
)
from common.events import (
    CaptureFailed,
    CaptureSucceeded,
    EventType,
    LogisticOrderStatusChanged,
    SplitLineData,
)
from common.testing.tenancy import supplier_upserted, tenant_upserted

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
DELAYS = [timedelta(seconds=1), timedelta(seconds=5)]
PAYMENT = Payment(
    tenant_id="ten_1",
    payment_id="pay_1",
    order_id="ord_1",
    payment_option="CREDIT_CARD",
    status="AUTHORISED",
    capture_mode=None,
    amount=10000,
    currency="EUR",
    psp_reference="PSP-AUTH",
    merchant_account="MA1",
    level3=None,
)
LINE = Line("lo_1", "sup_1", 10000)


def commission(amount, platform_rate, marketplace_rate) -> CommissionSplit:
    computed = split(amount, platform_rate, marketplace_rate)
    assert isinstance(computed, CommissionSplit)
    return computed


PREPARED = Prepared(commission(10000, Decimal("2.5"), Decimal("10")), None)


def pending(**changes) -> Capture:
    made = new_capture(
        PAYMENT,
        LINE,
        PREPARED,
        trigger="ON_SHIPMENT",
        now=NOW,
        capture_id="cap_1",
        intervention_id="int_unused",
    )
    return replace(made.capture, **changes)


def ids() -> Ids:
    return Ids(capture=lambda: "cap_new", intervention=lambda: "int_new")


# -- the initial status ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "prepared", "status"),
    [
        (10000, PREPARED, CaptureStatus.PENDING),
        (0, PREPARED, CaptureStatus.SUCCEEDED),
        (10000, Blocked("split_invalid", "no"), CaptureStatus.BLOCKED),
        (0, Blocked("supplier_unknown", "no"), CaptureStatus.BLOCKED),
    ],
)
def test_the_initial_status_of_a_capture(amount, prepared, status):
    assert initial_status(Line("lo_1", "sup_1", amount), prepared) is status


def test_a_zero_amount_capture_succeeds_at_once_without_the_psp():
    # when
    made = new_capture(
        PAYMENT,
        Line("lo_1", "sup_1", 0),
        Prepared(commission(0, Decimal("2.5"), None), None),
        trigger="IMMEDIATE",
        now=NOW,
        capture_id="cap_1",
        intervention_id="int_1",
    )
    # then
    assert (made.capture.status, made.capture.succeeded_at) == (CaptureStatus.SUCCEEDED, NOW)
    assert made.capture.next_attempt_at is None
    assert made.intervention is None
    [event] = made.events
    assert event.type is EventType.CAPTURE_SUCCEEDED
    assert isinstance(event.data, CaptureSucceeded)
    assert event.data.psp_reference is None
    assert made.history.source == "immediate"


# -- what a transition writes -------------------------------------------------------------------


def test_no_answer_sets_the_next_attempt_and_keeps_the_revision():
    # given
    capture = pending(round_attempts=2)
    outcome = on_psp_answer(
        capture.state, Unknown("timeout", "slow"), generation=1, retry_delays=DELAYS
    )
    # when
    change = decide_change(capture, outcome, source="psp_answer", now=NOW, new_intervention_id="i")
    # then
    assert change.capture.status is CaptureStatus.PENDING
    assert change.capture.next_attempt_at == NOW + timedelta(seconds=5)
    assert change.capture.revision == 1
    assert (change.capture.failure_code, change.history.detail["retry_in_s"]) == ("timeout", 5.0)
    assert change.events == ()
    assert not change.status_changed


def test_received_clears_the_next_attempt_and_grows_the_revision():
    # given
    capture = pending(round_attempts=1)
    outcome = on_psp_answer(capture.state, Received("PSP-CAP"), generation=1, retry_delays=DELAYS)
    # when
    change = decide_change(capture, outcome, source="psp_answer", now=NOW, new_intervention_id="i")
    # then
    assert (change.capture.status, change.capture.revision) == (CaptureStatus.SENT, 2)
    assert change.capture.next_attempt_at is None
    assert change.capture.succeeded_at is None
    assert change.events == ()


def test_the_confirmation_sets_succeeded_at_and_emits_the_split_once():
    # given
    sent = pending(status=CaptureStatus.SENT, revision=2, psp_reference="PSP-CAP")
    # when
    change = decide_change(
        sent,
        on_notification(sent.state, Confirmed("PSP-CAP")),
        source="psp_notification",
        now=NOW,
        new_intervention_id="i",
    )
    # then
    assert (change.capture.status, change.capture.revision) == (CaptureStatus.SUCCEEDED, 3)
    assert change.capture.succeeded_at == NOW
    [event] = change.events
    assert isinstance(event.data, CaptureSucceeded)
    assert event.data.splits == [
        SplitLineData(party="PLATFORM", amount=250, rate=Decimal("2.5")),
        SplitLineData(party="MARKETPLACE", amount=1000, rate=Decimal("10")),
        SplitLineData(party="SUPPLIER", amount=8750, rate=None),
    ]
    # and a repeated confirmation is history only
    again = decide_change(
        change.capture,
        on_notification(change.capture.state, Confirmed("PSP-CAP")),
        source="psp_notification",
        now=NOW,
        new_intervention_id="i",
    )
    assert (again.capture.revision, again.events, again.history.detail["ignored"]) == (
        3,
        (),
        "already succeeded",
    )


def test_a_failure_opens_an_intervention_named_in_its_event():
    # given
    sent = pending(status=CaptureStatus.SENT, revision=2, psp_reference="PSP-CAP")
    # when
    change = decide_change(
        sent,
        on_notification(sent.state, Rejected("PSP-CAP", "insufficient balance")),
        source="psp_notification",
        now=NOW,
        new_intervention_id="int_9",
    )
    # then
    assert change.intervention is not None
    assert (change.intervention.id, change.intervention.kind) == ("int_9", "capture_failed")
    assert change.capture.open_intervention_id == "int_9"
    [event] = change.events
    assert isinstance(event.data, CaptureFailed)
    assert (event.data.intervention_id, event.data.outcome_known) == ("int_9", True)


def test_a_failure_of_a_capture_with_an_open_intervention_names_that_one():
    # given a capture whose retries ran out once already (intervention int_1 still open)
    capture = pending(round_attempts=len(DELAYS) + 1, open_intervention_id="int_1")
    outcome = on_psp_answer(
        capture.state, Unknown("timeout", "slow"), generation=1, retry_delays=DELAYS
    )
    # when
    change = decide_change(capture, outcome, source="psp_answer", now=NOW, new_intervention_id="x")
    # then
    assert change.intervention is None
    assert isinstance(change.events[0].data, CaptureFailed)
    assert change.events[0].data.intervention_id == "int_1"


def test_a_late_confirmation_of_a_failed_capture_resolves_its_intervention():
    # given
    failed = pending(
        status=CaptureStatus.FAILED, revision=3, outcome_known=False, open_intervention_id="int_1"
    )
    # when
    change = decide_change(
        failed,
        on_notification(failed.state, Confirmed("PSP-CAP")),
        source="psp_notification",
        now=NOW,
        new_intervention_id="x",
    )
    # then
    assert change.capture.status is CaptureStatus.SUCCEEDED
    assert change.close_interventions == "RESOLVED"
    assert change.capture.open_intervention_id is None


@pytest.mark.parametrize(("outcome_known", "generation"), [(True, 2), (False, 1)])
def test_reopening_a_failed_capture_changes_the_key_only_when_the_psp_certainly_did_not_capture(
    outcome_known, generation
):
    # given
    failed = pending(
        status=CaptureStatus.FAILED,
        revision=3,
        outcome_known=outcome_known,
        failure_code="x",
        open_intervention_id="int_1",
    )
    # when
    change = decide_reopen(failed, None, source="adm_pay_101", now=NOW, new_intervention_id="i")
    # then
    assert (change.capture.status, change.capture.generation) == (
        CaptureStatus.PENDING,
        generation,
    )
    assert (change.capture.next_attempt_at, change.capture.failure_code) == (NOW, None)
    assert change.close_interventions == "RETRIED"
    assert [e.type for e in change.events] == [EventType.CAPTURE_REQUESTED]


def test_a_blocked_capture_still_blocked_changes_only_its_reason():
    # given
    blocked = pending(status=CaptureStatus.BLOCKED, block_code="supplier_unknown")
    # when
    change = decide_reopen(
        blocked,
        Blocked("split_invalid", "too much"),
        source="intervention_retry",
        now=NOW,
        new_intervention_id="i",
    )
    # then
    assert (change.capture.status, change.capture.block_code) == (
        CaptureStatus.BLOCKED,
        "split_invalid",
    )
    assert change.events == ()
    assert change.close_interventions is None
    assert change.history.detail["ignored"] == "still blocked: split_invalid"


def test_an_ignored_fact_keeps_everything_but_says_why():
    # when
    change = decide_change(
        pending(), Ignored("stale", anomaly=True), source="s", now=NOW, new_intervention_id="i"
    )
    # then
    assert change.capture == pending()
    assert change.anomaly == "stale"
    assert change.history.detail == {"ignored": "stale", "anomaly": True}


# -- the PSP key, the operator's refusals --------------------------------------------------------


def test_the_psp_key_has_one_definition_for_python_and_sql():
    assert idempotency_key("cap_1", 3) == "capture:cap_1:3"
    assert IDEMPOTENCY_KEY_FORMAT % ("cap_1", 3) == "capture:cap_1:3"
    assert IDEMPOTENCY_KEY_FORMAT.count("%s") == 2  # PostgreSQL's format() reads it the same


@pytest.mark.parametrize(
    ("option", "status", "refusal"),
    [
        ("CREDIT_CARD", "AUTHORISED", None),
        ("PCARD_L3", "AUTHORISED", None),
        ("CREDIT_CARD", "CREATED", "payment_not_yet_capturable"),
        ("CREDIT_CARD", "CANCELLED", "payment_not_capturable"),
        ("CREDIT_CARD", "REFUSED", "payment_not_capturable"),
        ("BANK_WIRE_ON_DUE_DATE", "CREATED", "payment_option_not_capturable"),
    ],
)
def test_what_an_operator_may_capture(option, status, refusal):
    assert operator_capture_refusal(option, status) == refusal


# -- OMS events ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line_supplier", "mode", "refusal"),
    [
        ("sup_1", "ON_SHIPMENT", None),
        ("sup_2", "ON_SHIPMENT", "supplier_mismatch"),
        ("sup_2", "MANUAL", "supplier_mismatch"),
        ("sup_1", "DELAYED", "capture_mode_not_on_shipment"),
    ],
)
def test_the_supplier_and_mode_checks_of_a_shipment(line_supplier, mode, refusal):
    assert (
        shipment_refusal(line_supplier_id=line_supplier, event_supplier_id="sup_1", mode=mode)
        == refusal
    )


TENANCY = Tenancy(
    tenant_upserted("ten_1", "MA1", capture_mode="ON_SHIPMENT"),
    {"sup_1": supplier_upserted("ten_1", "sup_1")},
)


def event(status="SHIPPED", tenant="ten_1") -> LogisticOrderStatusChanged:
    return LogisticOrderStatusChanged(
        id="e1",
        tenant_id=tenant,
        order_id="ord_1",
        logistic_order_id="lo_1",
        supplier_id="sup_1",
        status=status,
        occurred_at=NOW,
    )


def test_decide_shipment_creates_the_capture_of_an_authorised_line():
    # when
    decision = decide_shipment(
        event(), TENANCY, [ShipmentLine(PAYMENT, LINE, None)], now=NOW, ids=ids()
    )
    # then
    assert decision.outcome.outcome == "capture_created"
    assert decision.capture is not None
    assert decision.capture.capture.id == decision.outcome.capture_id == "cap_new"


def test_decide_shipment_with_two_authorised_payments_for_one_line_captures_neither():
    # given
    other = replace(PAYMENT, payment_id="pay_2")
    lines = [ShipmentLine(PAYMENT, LINE, None), ShipmentLine(other, LINE, None)]
    # when
    decision = decide_shipment(event(), TENANCY, lines, now=NOW, ids=ids())
    # then
    assert (decision.outcome.reason, decision.capture) == ("several_authorised_payments", None)


def test_decide_shipment_of_an_unknown_tenant_ignores_it():
    decision = decide_shipment(event(), Tenancy(None, {}), [], now=NOW, ids=ids())
    assert (decision.outcome.outcome, decision.outcome.reason) == ("ignored", "tenant_unknown")


def test_earlier_shipments_are_captured_once_per_line_and_mismatches_say_why():
    # given two SHIPPED of lo_1 and one of lo_2 from the wrong supplier, before authorisation
    lines = [LINE, Line("lo_2", "sup_1", 500)]
    waiting = [
        WaitingShipment("e1", "lo_1", "sup_1"),
        WaitingShipment("e2", "lo_1", "sup_1"),
        WaitingShipment("e3", "lo_2", "sup_9"),
        WaitingShipment("e4", "lo_other", "sup_1"),
    ]
    # when
    resolutions, created = decide_earlier_shipments(
        PAYMENT,
        lines,
        waiting,
        TENANCY,
        mode="ON_SHIPMENT",
        captured=frozenset(),
        now=NOW,
        ids=ids(),
    )
    # then
    assert [c.capture.logistic_order_id for c in created] == ["lo_1"]
    assert [
        (r.event_id, r.outcome.outcome, r.outcome.reason, r.outcome.capture_id) for r in resolutions
    ] == [
        ("e1", "capture_created", "shipped_before_authorisation", "cap_new"),
        ("e2", "capture_created", "shipped_before_authorisation", None),
        ("e3", "ignored", "supplier_mismatch", None),
    ]


def test_split_lines_of_a_new_capture_are_frozen_on_it():
    made = new_capture(
        PAYMENT, LINE, PREPARED, trigger="MANUAL", now=NOW, capture_id="c", intervention_id="i"
    )
    assert made.capture.splits == (
        SplitLine("PLATFORM", 250, Decimal("2.5")),
        SplitLine("MARKETPLACE", 1000, Decimal("10")),
        SplitLine("SUPPLIER", 8750, None),
    )
    assert (made.capture.platform_rate, made.capture.marketplace_rate) == (
        Decimal("2.5"),
        Decimal("10"),
    )
