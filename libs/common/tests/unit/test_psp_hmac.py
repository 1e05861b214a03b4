from __future__ import annotations

import base64
import hashlib
import hmac as std_hmac
from typing import Any

import pytest

from common.psp.hmac import (
    InvalidHmacKeyError,
    compute_signature,
    sign_item,
    signing_string,
    verify_signature,
)

KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
OTHER_KEY = "11" * 32


def item(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "pspReference": "7914073381342284",
        "originalReference": "",
        "merchantAccountCode": "TestMerchant",
        "merchantReference": "TestPayment-1407325143704",
        "amount": {"value": 1130, "currency": "EUR"},
        "eventCode": "AUTHORISATION",
        "success": "true",
        "additionalData": {},
    }
    return base | overrides


def test_signing_string_follows_adyens_field_order_with_empty_absent_fields() -> None:
    # given
    notification = item()
    del notification["originalReference"]
    # when / then
    assert signing_string(notification) == (
        "7914073381342284::TestMerchant:TestPayment-1407325143704:1130:EUR:AUTHORISATION:true"
    )


def test_signature_is_base64_hmac_sha256_with_the_hex_decoded_key() -> None:
    expected = base64.b64encode(
        std_hmac.new(bytes.fromhex(KEY), signing_string(item()).encode(), hashlib.sha256).digest()
    ).decode()
    assert compute_signature(item(), KEY) == expected


def test_a_signed_item_verifies_and_a_tampered_one_does_not() -> None:
    signed = sign_item(item(), KEY)
    assert verify_signature(signed, [KEY])
    tampered = signed | {"amount": {"value": 1, "currency": "EUR"}}
    assert not verify_signature(tampered, [KEY])


def test_any_active_key_verifies_during_rotation() -> None:
    signed = sign_item(item(), KEY)
    assert verify_signature(signed, [OTHER_KEY, KEY])
    assert not verify_signature(signed, [OTHER_KEY])
    assert not verify_signature(signed, [])


def test_missing_signature_is_invalid() -> None:
    assert not verify_signature(item(), [KEY])
    assert not verify_signature(item(additionalData=None), [KEY])


def test_key_must_be_hex() -> None:
    with pytest.raises(InvalidHmacKeyError):
        compute_signature(item(), "not-hex")
