"""Helpers for tests that send Adyen standard notifications to the webhooks service."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from common.psp.hmac import sign_item


@dataclass
class Tenant:
    id: str
    merchant_account: str
    operator_key: str
    hmac_key: str = ""


def item(
    tenant: Tenant,
    *,
    event_code: str = "AUTHORISATION",
    success: bool = True,
    psp_reference: str | None = None,
    merchant_reference: str | None = None,
    value: int = 1000,
    original_reference: str | None = None,
    reason: str = "",
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "eventCode": event_code,
        "success": "true" if success else "false",
        "eventDate": "2026-01-01T10:00:00+01:00",
        "merchantAccountCode": tenant.merchant_account,
        "pspReference": psp_reference or secrets.token_hex(8).upper(),
        "merchantReference": merchant_reference or f"pay_{secrets.token_hex(6)}",
        "amount": {"value": value, "currency": "EUR"},
        "reason": reason,
        "additionalData": {},
    }
    if original_reference is not None:
        raw["originalReference"] = original_reference
    return raw


def signed(raw: dict[str, Any], key: str) -> dict[str, Any]:
    """`raw` with its `additionalData.hmacSignature` made with `key`."""
    return sign_item(raw, key)


def batch(*items: dict[str, Any]) -> dict[str, Any]:
    return {"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in items]}
