"""Adyen's HMAC signature of a standard webhook's NotificationRequestItem.

The signed string is `pspReference:originalReference:merchantAccountCode:merchantReference:
value:currency:eventCode:success` (absent fields as empty strings); the signature is the
base64 of HMAC-SHA256 over it, keyed with the hex-decoded HMAC key. Several keys may be
active at once (key rotation): a notification is valid when any of them verifies it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac as _hmac
from collections.abc import Iterable, Mapping
from typing import Any

SIGNED_FIELDS = (
    "pspReference",
    "originalReference",
    "merchantAccountCode",
    "merchantReference",
    "value",
    "currency",
    "eventCode",
    "success",
)


class InvalidHmacKeyError(ValueError):
    """The HMAC key is not an even-length hex string."""


def signing_string(item: Mapping[str, Any]) -> str:
    amount = item.get("amount") or {}
    values = {
        **{name: item.get(name) for name in SIGNED_FIELDS},
        "value": amount.get("value") if isinstance(amount, Mapping) else None,
        "currency": amount.get("currency") if isinstance(amount, Mapping) else None,
    }
    return ":".join("" if values[name] is None else str(values[name]) for name in SIGNED_FIELDS)


def decode_key(hex_key: str) -> bytes:
    try:
        key = binascii.unhexlify(hex_key.strip())
    except (binascii.Error, ValueError):
        raise InvalidHmacKeyError("the HMAC key must be a hex string") from None
    if not key:
        raise InvalidHmacKeyError("the HMAC key is empty")
    return key


def compute_signature(item: Mapping[str, Any], hex_key: str) -> str:
    digest = _hmac.new(
        decode_key(hex_key), signing_string(item).encode("utf-8"), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(item: Mapping[str, Any], hex_keys: Iterable[str]) -> bool:
    """True when `additionalData.hmacSignature` matches the item under one of the keys.

    Every key is tried (no early exit), and each comparison runs in constant time."""
    additional = item.get("additionalData")
    given = additional.get("hmacSignature") if isinstance(additional, Mapping) else None
    if not isinstance(given, str) or not given:
        return False
    given_bytes = given.encode("ascii", errors="replace")
    valid = False
    for hex_key in hex_keys:
        expected = compute_signature(item, hex_key).encode("ascii")
        valid |= _hmac.compare_digest(expected, given_bytes)
    return valid


def sign_item(item: dict[str, Any], hex_key: str) -> dict[str, Any]:
    """Return a copy of `item` with `additionalData.hmacSignature` set."""
    signed = dict(item)
    additional = dict(signed.get("additionalData") or {})
    additional.pop("hmacSignature", None)
    signed["additionalData"] = {**additional, "hmacSignature": compute_signature(item, hex_key)}
    return signed
