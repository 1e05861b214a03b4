"""The PSP's synchronous answer mapped to a fact of the status machine, without I/O."""

import pytest

from checkout.domain import Fact, settlement


def answer(result_code: str, **more):
    return settlement(
        result_code=result_code,
        psp_reference=more.get("psp_reference", "psp_1"),
        is_commercial_card=more.get("is_commercial_card"),
        refusal_reason=more.get("refusal_reason"),
        refusal_reason_code=more.get("refusal_reason_code"),
    )


def test_authorised_sets_the_business_card_flag():
    # when
    decided = answer("Authorised", is_commercial_card=True)
    # then
    assert decided.fact is Fact.AUTHORISED
    assert decided.updates == {
        "result_code": "Authorised",
        "psp_reference": "psp_1",
        "business_card": True,
    }


def test_refused_keeps_the_reason():
    # when
    decided = answer("Refused", refusal_reason="Not enough balance", refusal_reason_code="12")
    # then
    assert decided.fact is Fact.REFUSED
    assert decided.updates["refusal_reason"] == "Not enough balance"
    assert decided.updates["refusal_reason_code"] == "12"


@pytest.mark.parametrize("code", ["Error", "Cancelled"])
def test_errors_and_cancellations_fail_the_payment(code):
    assert answer(code).fact is Fact.FAILED


@pytest.mark.parametrize("code", ["RedirectShopper", "IdentifyShopper", "Pending", "Received"])
def test_a_challenge_or_a_pending_answer_moves_nothing(code):
    # when
    decided = answer(code, psp_reference=None)
    # then
    assert decided.fact is None
    assert decided.updates == {"result_code": code}
