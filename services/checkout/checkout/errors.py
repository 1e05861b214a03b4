"""Checkout's errors, all `common.http.errors.ApiError`s:

NotFound          payment_not_found                   another tenant's or no payment
Unauthorized      client_token_invalid / _expired     the drop-in's token
Conflict          payment_not_payable                 a token already used, a final payment
Unprocessable     lines_amount_mismatch, supplier_unknown, level3_*, invalid_charge_amount
Conflict          tenant_not_ready                    tenancy replica not there yet
"""

from __future__ import annotations

from common.http.errors import Conflict, NotFound, Unauthorized


def payment_not_found() -> NotFound:
    return NotFound("no such payment", code="payment_not_found", param="id")


def client_token_invalid() -> Unauthorized:
    return Unauthorized(
        "the client token is not valid for this payment",
        code="client_token_invalid",
        param="Authorization",
    )


def client_token_expired() -> Unauthorized:
    return Unauthorized(
        "the client token has expired", code="client_token_expired", param="Authorization"
    )


def tenant_not_ready() -> Conflict:
    return Conflict(
        "the tenant's settings have not reached checkout yet; retry shortly",
        code="tenant_not_ready",
    )
