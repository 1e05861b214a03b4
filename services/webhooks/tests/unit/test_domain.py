"""Parsing and normalising Adyen notification items; the HMAC key box."""

from __future__ import annotations

import base64
import secrets

import pytest
from cryptography.exceptions import InvalidTag

from webhooks.crypto import EncryptionKeyInvalid, KeyBox, parse_encryption_key
from webhooks.domain import (
    MalformedNotification,
    event_data,
    parse_batch,
    parse_item,
    without_cardholder_data,
)

ITEM = {
    "eventCode": "AUTHORISATION",
    "success": "false",
    "merchantAccountCode": "ShopECOM",
    "pspReference": "PSP1",
    "merchantReference": "pay_1",
    "amount": {"value": 1500, "currency": "EUR"},
    "reason": "Refused",
}


def test_an_item_is_normalised_for_the_event():
    # when
    item = parse_item(ITEM)
    data = event_data(item, notification_id="ntf_1", psp="adyen").model_dump(mode="json")
    # then
    assert data["success"] is False
    assert data["amount"] == {"value": 1500, "currency": "EUR"}
    assert data["original_reference"] is None
    assert data["reason"] == "Refused"


def test_an_item_without_amount_has_none():
    item = parse_item({k: v for k, v in ITEM.items() if k != "amount"})
    assert event_data(item, notification_id="n", psp="adyen").amount is None


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"pspReference": "A:B"}, "item.pspReference"),
        ({"originalReference": "A:B"}, "item.originalReference"),
        ({"merchantAccountCode": "A:B"}, "item.merchantAccountCode"),
        ({"success": True}, "item.success"),
        ({"amount": {"value": True, "currency": "EUR"}}, "item.amount"),
        ({"amount": {"value": -1, "currency": "EUR"}}, "item.amount"),
        ({"merchantReference": ""}, "item.merchantReference"),
        ({"reason": "x" * 501}, "item.reason"),
        ({"reason": "\ud800"}, "item.reason"),
    ],
)
def test_an_invalid_item_names_its_field(change, param):
    with pytest.raises(MalformedNotification) as raised:
        parse_item(ITEM | change)
    assert raised.value.param == param


def test_a_colon_in_the_merchant_reference_is_allowed():
    assert parse_item(ITEM | {"merchantReference": "a:b"}).merchant_reference == "a:b"


@pytest.mark.parametrize(
    "payload",
    [[], {"notificationItems": []}, {"notificationItems": [{}] * 101}, {"notificationItems": {}}],
)
def test_a_batch_that_is_not_one_is_malformed(payload):
    with pytest.raises(MalformedNotification):
        parse_batch(payload)


def test_the_key_box_round_trips_and_binds_the_row():
    # given
    box = KeyBox(secrets.token_bytes(32))
    sealed = box.seal("ab" * 32, "tenant|account|hk_1")
    # then
    assert box.open(sealed.nonce, sealed.ciphertext, "tenant|account|hk_1") == "ab" * 32
    with pytest.raises(InvalidTag):
        box.open(sealed.nonce, sealed.ciphertext, "tenant|account|hk_2")
    assert "ab" * 32 not in repr(box)


def test_the_encryption_key_is_hex_or_base64_of_32_bytes():
    raw = secrets.token_bytes(32)
    assert parse_encryption_key(raw.hex()) == raw
    assert parse_encryption_key(base64.b64encode(raw).decode()) == raw
    with pytest.raises(EncryptionKeyInvalid):
        parse_encryption_key("short")
    with pytest.raises(EncryptionKeyInvalid):
        parse_encryption_key(secrets.token_hex(16))


@pytest.mark.parametrize(
    ("reason", "kept"),
    [
        ("874574:1111:3/2030", "874574:1111"),
        ("874574:1111:03/30", "874574:1111"),
        ("Insufficient funds", "Insufficient funds"),
        ("card 4111111111111111 refused", "card [REDACTED] refused"),
        ("", ""),
    ],
)
def test_the_card_expiry_and_numbers_leave_a_verified_item(reason, kept):
    raw = {
        "eventCode": "AUTHORISATION",
        "success": "true",
        "merchantAccountCode": "Acme",
        "pspReference": "ABC",
        "merchantReference": "pay_1",
        "reason": reason,
        "additionalData": {
            "hmacSignature": "c2ln",
            "expiryDate": "3/2030",
            "cardHolderName": "J. Doe",
            "cardSummary": "1111",
            "note": "pan 4111 1111 1111 1111",
        },
    }
    item = without_cardholder_data(parse_item(raw))
    assert item.raw["reason"] == kept
    assert item.reason == (kept or None)
    assert item.raw["additionalData"] == {
        "hmacSignature": "c2ln",
        "cardSummary": "1111",
        "note": "pan [REDACTED]",
    }
    assert raw["additionalData"]["expiryDate"] == "3/2030"  # the received item is untouched
