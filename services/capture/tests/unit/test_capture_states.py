"""One capture's state machine: PSP answers, notifications and reopening, each a pure
function; duplicates, late and stale facts change nothing."""

from datetime import timedelta

import pytest

from capture.domain import (
    CaptureState,
    CaptureStatus,
    Confirmed,
    Ignored,
    Received,
    Refused,
    Rejected,
    Transition,
    Unknown,
    idempotency_key,
    on_notification,
    on_psp_answer,
    reopen,
)

DELAYS = [timedelta(seconds=1), timedelta(seconds=5)]


def state(status=CaptureStatus.PENDING, **changes):
    values = {
        "status": status,
        "generation": 1,
        "round_attempts": 1,
        "psp_reference": None,
        "outcome_known": None,
    }
    return CaptureState(**{**values, **changes})


def test_received_moves_a_pending_capture_to_sent():
    # when
    outcome = on_psp_answer(state(), Received("PSP1"), generation=1, retry_delays=DELAYS)
    # then
    assert isinstance(outcome, Transition)
    assert (outcome.state.status, outcome.state.psp_reference) == (CaptureStatus.SENT, "PSP1")
    assert outcome.emit is None  # capture.requested was published when it was decided


@pytest.mark.parametrize(("attempt", "delay"), [(1, 1), (2, 5)])
def test_no_answer_is_retried_later_under_the_same_generation(attempt, delay):
    # when
    outcome = on_psp_answer(
        state(round_attempts=attempt),
        Unknown("gateway_timeout_error", "no answer"),
        generation=1,
        retry_delays=DELAYS,
    )
    # then
    assert isinstance(outcome, Transition)
    assert outcome.state.status is CaptureStatus.PENDING
    assert outcome.state.generation == 1
    assert outcome.retry_in == timedelta(seconds=delay)
    assert outcome.emit is None


def test_when_the_retries_run_out_the_capture_fails_with_its_outcome_unknown():
    # when: the third attempt of three (two delays) gets no answer either
    outcome = on_psp_answer(
        state(round_attempts=3),
        Unknown("psp_unavailable", "500"),
        generation=1,
        retry_delays=DELAYS,
    )
    # then
    assert isinstance(outcome, Transition)
    assert outcome.state.status is CaptureStatus.FAILED
    assert outcome.state.outcome_known is False
    assert (outcome.emit, outcome.open_intervention) == ("failed", "retries_exhausted")
    assert outcome.retries_exhausted


def test_a_refusal_fails_the_capture_for_certain():
    # when
    outcome = on_psp_answer(
        state(), Refused("psp_request_invalid", "bad split"), generation=1, retry_delays=DELAYS
    )
    # then
    assert isinstance(outcome, Transition)
    assert (outcome.state.status, outcome.state.outcome_known) == (CaptureStatus.FAILED, True)
    assert (outcome.emit, outcome.open_intervention) == ("failed", "psp_refused")


def test_an_answer_after_the_webhook_changes_nothing_but_keeps_the_reference():
    # given: the CAPTURE webhook overtook the executor's answer
    confirmed = state(CaptureStatus.SUCCEEDED, psp_reference=None)
    # when
    outcome = on_psp_answer(confirmed, Received("PSP1"), generation=1, retry_delays=DELAYS)
    # then
    assert isinstance(outcome, Transition)
    assert outcome.state.status is CaptureStatus.SUCCEEDED
    assert outcome.state.psp_reference == "PSP1"
    assert outcome.emit is None


def test_an_answer_to_an_older_generation_is_ignored():
    # when
    outcome = on_psp_answer(
        state(generation=2), Received("PSP1"), generation=1, retry_delays=DELAYS
    )
    # then
    assert isinstance(outcome, Ignored)


def test_a_second_answer_for_a_sent_capture_is_ignored():
    # when: another replica re-sent it under the same key and got the replayed answer
    outcome = on_psp_answer(
        state(CaptureStatus.SENT, psp_reference="PSP1"),
        Received("PSP1"),
        generation=1,
        retry_delays=DELAYS,
    )
    # then
    assert isinstance(outcome, Ignored)


@pytest.mark.parametrize("status", [CaptureStatus.PENDING, CaptureStatus.SENT])
def test_the_capture_webhook_confirms_it_once(status):
    # when
    first = on_notification(state(status, psp_reference="PSP1"), Confirmed("PSP1"))
    # then
    assert isinstance(first, Transition)
    assert first.state.status is CaptureStatus.SUCCEEDED
    assert (first.emit, first.close_interventions) == ("succeeded", True)
    # and when it comes again
    again = on_notification(first.state, Confirmed("PSP1"))
    # then
    assert isinstance(again, Ignored)
    assert not again.anomaly


def test_a_capture_that_failed_for_lack_of_answer_succeeds_when_the_psp_did_capture():
    # given
    failed = state(CaptureStatus.FAILED, outcome_known=False)
    # when
    outcome = on_notification(failed, Confirmed("PSP1"))
    # then
    assert isinstance(outcome, Transition)
    assert outcome.state.status is CaptureStatus.SUCCEEDED
    assert outcome.close_interventions


def test_a_second_capture_with_another_reference_is_an_anomaly():
    # when
    outcome = on_notification(
        state(CaptureStatus.SUCCEEDED, psp_reference="PSP1"), Confirmed("PSP2")
    )
    # then
    assert isinstance(outcome, Ignored)
    assert outcome.anomaly


def test_capture_failed_fails_a_sent_capture_for_certain():
    # when
    outcome = on_notification(
        state(CaptureStatus.SENT, psp_reference="PSP1"), Rejected("PSP1", "Insufficient balance")
    )
    # then
    assert isinstance(outcome, Transition)
    assert (outcome.state.status, outcome.state.outcome_known) == (CaptureStatus.FAILED, True)
    assert (outcome.emit, outcome.open_intervention) == ("failed", "capture_failed")
    assert outcome.reason == "Insufficient balance"


@pytest.mark.parametrize(
    ("current", "anomaly"),
    [
        (state(CaptureStatus.SUCCEEDED, psp_reference="PSP1"), True),
        (state(CaptureStatus.FAILED, outcome_known=True), False),
        (state(CaptureStatus.SENT, psp_reference="PSP9"), False),  # not this request's
    ],
)
def test_a_late_or_stale_failure_changes_nothing(current, anomaly):
    # when
    outcome = on_notification(current, Rejected("PSP1", "late"))
    # then
    assert isinstance(outcome, Ignored)
    assert outcome.anomaly is anomaly


def test_reopening_after_a_certain_failure_takes_a_new_psp_key():
    # given
    failed = state(CaptureStatus.FAILED, outcome_known=True, psp_reference="PSP1", round_attempts=1)
    # when
    outcome = reopen(failed)
    # then
    assert isinstance(outcome, Transition)
    assert outcome.state == CaptureState(CaptureStatus.PENDING, 2, 0, None, None)
    assert outcome.emit == "requested"
    assert idempotency_key("cap_1", outcome.state.generation) == "capture:cap_1:2"


def test_reopening_after_an_unknown_outcome_keeps_the_psp_key():
    # given: the retries ran out without an answer; the PSP may have captured
    failed = state(CaptureStatus.FAILED, outcome_known=False, round_attempts=6)
    # when
    outcome = reopen(failed)
    # then
    assert isinstance(outcome, Transition)
    assert outcome.state.generation == 1
    assert outcome.state.round_attempts == 0


def test_reopening_a_blocked_capture_takes_a_new_key_and_a_live_one_cannot_be_reopened():
    # when
    blocked = reopen(state(CaptureStatus.BLOCKED, round_attempts=0))
    live = [reopen(state(s)) for s in (CaptureStatus.PENDING, CaptureStatus.SENT)]
    done = reopen(state(CaptureStatus.SUCCEEDED))
    # then
    assert isinstance(blocked, Transition)
    assert blocked.state.generation == 2
    assert all(isinstance(o, Ignored) for o in [*live, done])
