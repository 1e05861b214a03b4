"""The webhooks service's errors, all `common.http.errors.ApiError`s:

BadRequest     invalid_json, invalid_notification   the PSP's body cannot be read as a batch
Unauthorized   hmac_signature_invalid               a missing or wrong signature (logged)
NotFound       merchant_account_unknown             no tenant has this merchant account (logged)
NotFound       hmac_key_not_found, notification_not_found   (another tenant's ids included)
Conflict       hmac_key_limit                       two keys are active already: revoke one
Unprocessable  merchant_account_invalid, replay_range_too_large, ...   the operator's request
                                                    breaks a rule
"""

from __future__ import annotations

from common.http.errors import Conflict, NotFound, Unauthorized, Unprocessable


def signature_invalid() -> Unauthorized:
    return Unauthorized(
        "the notification's HMAC signature is missing or invalid",
        code="hmac_signature_invalid",
        param="additionalData.hmacSignature",
    )


def merchant_account_unknown() -> NotFound:
    return NotFound(
        "no tenant has this merchant account",
        code="merchant_account_unknown",
        param="merchantAccountCode",
    )


def hmac_key_not_found() -> NotFound:
    return NotFound("no such HMAC key", code="hmac_key_not_found", param="id")


def notification_not_found() -> NotFound:
    return NotFound("no such notification", code="notification_not_found", param="id")


def hmac_key_limit() -> Conflict:
    return Conflict(
        "this merchant account has two active HMAC keys: revoke one first",
        code="hmac_key_limit",
        param="merchant_account",
    )


def merchant_account_not_yours() -> Unprocessable:
    return Unprocessable(
        "this is not your tenant's merchant account",
        code="merchant_account_invalid",
        param="merchant_account",
    )


def replay_range_too_large(limit: int) -> Unprocessable:
    return Unprocessable(
        f"more than {limit} notifications in this range: replay a narrower one",
        code="replay_range_too_large",
        param="received_to",
    )
