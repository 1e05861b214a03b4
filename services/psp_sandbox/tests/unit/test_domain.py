from __future__ import annotations

from datetime import date

import pytest

from psp_sandbox import domain

TODAY = date(2026, 6, 15)


def card(
    number: str, month: str = "03", year: str = "2030", cvc: str | None = "737"
) -> domain.Card:
    return domain.Card(number=number, expiry_month=month, expiry_year=year, cvc=cvc)


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("4000056655665556", "visa"),
        ("5555555555554444", "mc"),
        ("2223003122003222", "mc"),
        ("5200828282828210", "mc"),
        ("5105105105105100", "mc"),
        ("378282246310005", "amex"),
        ("371449635398431", "amex"),
        ("6011000990139424", "discover"),
        ("3056930009020004", "diners"),
        ("36227206271667", "diners"),
        ("3566002020360505", "jcb"),
        ("6200000000000005", "cup"),
    ],
)
def test_success_cards_are_authorised_with_their_brand(number: str, brand: str) -> None:
    # given
    cvc = "7373" if brand == "amex" else "737"
    # when
    decision = domain.decide(card(number, cvc=cvc), TODAY)
    # then
    assert isinstance(decision, domain.Authorised)
    assert decision.card.brand == brand


@pytest.mark.parametrize(
    ("number", "code", "reason"),
    [
        ("4000000000000002", "2", "Refused"),
        ("4000000000009995", "12", "Not enough balance"),
        ("4000000000009987", "5", "Blocked Card"),
        ("4000000000009979", "5", "Blocked Card"),
        ("4000000000000069", "6", "Expired Card"),
        ("4000000000000127", "24", "CVC Declined"),
        ("4000000000000119", "4", "Acquirer Error"),
        ("4000000000000341", "2", "Refused"),
    ],
)
def test_decline_cards_are_refused_with_adyen_reasons(number: str, code: str, reason: str) -> None:
    decision = domain.decide(card(number), TODAY)
    assert isinstance(decision, domain.Refused)
    assert (decision.refusal.code, decision.refusal.reason) == (code, reason)


def test_lost_and_stolen_differ_in_the_raw_issuer_answer() -> None:
    lost = domain.decide(card("4000000000009987"), TODAY)
    stolen = domain.decide(card("4000000000009979"), TODAY)
    assert isinstance(lost, domain.Refused)
    assert isinstance(stolen, domain.Refused)
    assert lost.refusal.raw.startswith("41")
    assert stolen.refusal.raw.startswith("43")


def test_a_past_expiry_date_is_refused_as_expired() -> None:
    decision = domain.decide(card("4242424242424242", month="05", year="2026"), TODAY)
    assert isinstance(decision, domain.Refused)
    assert decision.refusal == domain.EXPIRED_CARD


def test_the_expiry_month_itself_is_still_valid() -> None:
    decision = domain.decide(card("4242424242424242", month="06", year="2026"), TODAY)
    assert isinstance(decision, domain.Authorised)


def test_luhn_failure_is_invalid_card_number() -> None:
    decision = domain.decide(card("4242424242424241"), TODAY)
    assert decision == domain.Invalid("101", "Invalid card number")


def test_cvc_check_card_fails_only_with_a_cvc() -> None:
    assert isinstance(domain.decide(card("4000000000000101"), TODAY), domain.Refused)
    assert isinstance(domain.decide(card("4000000000000101", cvc=None), TODAY), domain.Authorised)


def test_wrong_cvc_length_is_invalid() -> None:
    assert domain.decide(card("378282246310005", cvc="737"), TODAY) == domain.Invalid(
        "103", "CVC is not the right length"
    )


def test_three_ds_cards_ask_for_a_challenge() -> None:
    ok = domain.decide(card("4000000000003220"), TODAY)
    failing = domain.decide(card("4000008400001629"), TODAY)
    assert ok == domain.Challenge(ok.card, fails=False)  # type: ignore[union-attr]
    assert isinstance(failing, domain.Challenge)
    assert failing.fails


def test_challenge_outcome() -> None:
    authenticated = domain.encode_three_ds_result("tx", authenticated=True)
    not_authenticated = domain.encode_three_ds_result("tx", authenticated=False)
    assert domain.challenge_outcome(False, authenticated) is None
    assert domain.challenge_outcome(False, not_authenticated) == domain.NOT_AUTHENTICATED
    assert domain.challenge_outcome(True, authenticated) == domain.NOT_AUTHENTICATED
    assert domain.challenge_outcome(False, "not base64 json!") == domain.NOT_AUTHENTICATED


def test_commercial_card_is_flagged() -> None:
    decision = domain.decide(card("4000000000004004"), TODAY)
    assert isinstance(decision, domain.Authorised)
    assert decision.card.commercial


def test_every_test_card_number_is_luhn_valid() -> None:
    assert all(domain.luhn_valid(c.number) for c in domain.TEST_CARDS)


def test_modification_rules() -> None:
    balance = domain.Balance(authorised=1000, captured=600, refunded=100, cancelled=False)
    assert domain.capture_allowed(balance, 400)
    assert not domain.capture_allowed(balance, 401)
    assert domain.refund_allowed(balance, 500)
    assert not domain.refund_allowed(balance, 501)
    assert not domain.cancel_allowed(balance)
    assert domain.cancel_allowed(domain.Balance(1000, 0, 0, False))


def test_split_instructions_must_sum_to_the_amount() -> None:
    # given
    def line(value: int, **more: object) -> dict[str, object]:
        return {"amount": {"value": value, "currency": "EUR"}, "type": "BalanceAccount", **more}

    # when / then
    assert domain.split_problem(1000, "EUR", [line(250), line(750)]) is None
    assert domain.split_problem(1000, "EUR", [line(250), line(700)]) == (
        "the split amounts sum to 950, not to the amount 1000"
    )
    assert domain.split_problem(1000, "EUR", []) == "splits must be a non-empty list"
    assert domain.split_problem(1000, "EUR", [line(-1), line(1001)]) == (
        "splits.0.amount.value must be a non-negative integer"
    )
    assert domain.split_problem(1000, "EUR", [{"amount": {"value": 1000, "currency": "USD"}}]) == (
        "splits.0.amount.currency must be EUR"
    )
    assert (
        domain.split_problem(1000, "EUR", [{"amount": {"value": 1000}}])
        == "splits.0.type is required"
    )
