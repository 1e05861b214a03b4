from __future__ import annotations

import pytest

from common.psp.adyen import _error, decline_code, idempotency_key
from common.psp.port import (
    PspAuthenticationError,
    PspGatewayError,
    PspIdempotencyError,
    PspUnavailable,
    PspValidationError,
)


def test_short_idempotency_keys_are_kept() -> None:
    assert idempotency_key("authorise:pay_123") == "authorise:pay_123"


def test_long_idempotency_keys_are_hashed_deterministically_to_64_chars() -> None:
    long = "capture:" + "x" * 100
    assert idempotency_key(long) == idempotency_key(long)
    assert len(idempotency_key(long)) == 64
    assert idempotency_key(long) != idempotency_key(long + "y")


@pytest.mark.parametrize(
    ("result_code", "reason_code", "raw", "expected"),
    [
        ("Refused", "2", "05 : Do not honor", "card_declined"),
        ("Refused", "12", None, "insufficient_funds"),
        ("Refused", "5", "41 : Lost card", "lost_card"),
        ("Refused", "5", "43 : Stolen card", "stolen_card"),
        ("Refused", "5", None, "card_declined"),
        ("Refused", "6", None, "expired_card"),
        ("Refused", "24", None, "invalid_cvc"),
        ("Refused", "4", None, "gateway_error"),
        ("Refused", "11", None, "not_authenticated"),
        ("Refused", "999", None, "card_declined"),
        ("Error", None, None, "gateway_error"),
        ("Authorised", None, None, None),
    ],
)
def test_decline_codes(
    result_code: str, reason_code: str | None, raw: str | None, expected: str | None
) -> None:
    assert decline_code(result_code, reason_code, raw) == expected


def test_errors_map_to_stable_codes() -> None:
    invalid = _error(422, {"errorCode": "101", "message": "Invalid card number"})
    assert isinstance(invalid, PspValidationError)
    assert invalid.code == "card_number_invalid"
    assert not invalid.retryable
    assert isinstance(_error(401, {"errorCode": "000"}), PspAuthenticationError)
    assert _error(401, {}).code == "gateway_authentication_error"
    assert isinstance(_error(422, {"errorCode": "704"}), PspIdempotencyError)
    unavailable = _error(503, {})
    assert isinstance(unavailable, PspUnavailable)
    assert unavailable.retryable
    assert unavailable.code == "psp_unavailable"
    assert _error(429, {}).retryable
    assert isinstance(_error(404, {}), PspGatewayError)
    assert _error(422, {"errorCode": "100"}).code == "amount_required"
