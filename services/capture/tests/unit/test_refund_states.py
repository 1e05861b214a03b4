"""A refund's state machine: funds decisions, PSP answers and notifications in any order."""

from datetime import timedelta

from capture.refunds.domain import (
    Accepted,
    NoAnswer,
    NoChange,
    RefundChange,
    RefundState,
    RefundStatus,
    Rejected,
    SendState,
    initial_state,
    on_funds_decision,
    on_refund_notification,
    on_send_answer,
)

DELAYS = [timedelta(seconds=1), timedelta(seconds=5)]
SENT = RefundState(RefundStatus.WAITING_REFUND, SendState.RECEIVED, 1, "PSP1")


def test_a_funds_check_waits_then_goes_to_the_psp_or_fails():
    waiting = initial_state(funds_check=True)
    assert (waiting.status, waiting.send) == (RefundStatus.AWAITING_FUNDS, SendState.NOT_DUE)
    reserved = on_funds_decision(waiting, True, None)
    assert isinstance(reserved, RefundChange)
    assert (reserved.state.status, reserved.state.send) == (
        RefundStatus.WAITING_REFUND,
        SendState.DUE,
    )
    refused = on_funds_decision(waiting, False, "insufficient_supplier_balance")
    assert isinstance(refused, RefundChange)
    assert refused.state.status is RefundStatus.FAILED
    assert (refused.emit, refused.code) == ("failed", "insufficient_supplier_balance")
    # a second decision changes nothing
    assert isinstance(on_funds_decision(reserved.state, False, None), NoChange)


def test_no_answer_retries_under_the_same_key_then_stays_unknown_never_failed():
    state = initial_state(funds_check=False)
    outcomes = []
    for _ in range(3):
        outcome = on_send_answer(state, NoAnswer("timeout", "no answer"), DELAYS)
        assert isinstance(outcome, RefundChange)
        outcomes.append(outcome)
        state = outcome.state
    assert [o.retry_in for o in outcomes] == [*DELAYS, None]
    assert state.status is RefundStatus.WAITING_REFUND
    assert state.send is SendState.UNKNOWN
    assert outcomes[-1].open_intervention == "refund_unknown"


def test_a_refusal_fails_and_an_acceptance_waits_for_the_webhook():
    due = initial_state(funds_check=False)
    refused = on_send_answer(due, Rejected("validation", "bad split"), DELAYS)
    assert isinstance(refused, RefundChange)
    assert refused.state.status is RefundStatus.FAILED
    accepted = on_send_answer(due, Accepted("PSP1"), DELAYS)
    assert isinstance(accepted, RefundChange)
    assert accepted.state == SENT


def test_refund_then_refund_failed_fails_and_the_reverse_order_ends_failed_too():
    # REFUND then REFUND_FAILED (the PSP's last word): failed, reservation released
    done = on_refund_notification(SENT, "REFUND", True, "R1", "")
    assert isinstance(done, RefundChange)
    assert done.emit == "succeeded"
    bounced = on_refund_notification(done.state, "REFUND_FAILED", True, "R1", "bounced")
    assert isinstance(bounced, RefundChange)
    assert (bounced.state.status, bounced.emit) == (RefundStatus.FAILED, "failed")
    # REFUND_FAILED then a late REFUND: the failure stands, recorded as an anomaly
    failed = on_refund_notification(SENT, "REFUND_FAILED", True, "R1", "bounced")
    assert isinstance(failed, RefundChange)
    late = on_refund_notification(failed.state, "REFUND", True, "R1", "")
    assert isinstance(late, NoChange)
    assert late.anomaly


def test_duplicates_change_nothing_and_refund_success_false_fails():
    done = on_refund_notification(SENT, "REFUND", True, "R1", "")
    assert isinstance(done, RefundChange)
    assert isinstance(on_refund_notification(done.state, "REFUND", True, "R1", ""), NoChange)
    refused = on_refund_notification(SENT, "REFUND", False, "R1", "Insufficient funds")
    assert isinstance(refused, RefundChange)
    assert (refused.state.status, refused.code) == (RefundStatus.FAILED, "refund_refused")
    # the webhook may overtake the record of the PSP's answer: confirmed while still DUE
    due = initial_state(funds_check=False)
    early = on_refund_notification(due, "REFUND", True, "R1", "")
    assert isinstance(early, RefundChange)
    assert early.state.status is RefundStatus.REFUNDED
    answer = on_send_answer(early.state, Accepted("R1"), DELAYS)
    assert isinstance(answer, NoChange | RefundChange)
    if isinstance(answer, RefundChange):
        assert answer.state.status is RefundStatus.REFUNDED
