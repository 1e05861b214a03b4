"""Capture's errors. API errors are `common.http.errors.ApiError`s with stable codes:

NotFound        404  payment_not_found           no authorised-or-known payment of that id
                     capture_not_found           (for this credential's tenant; a supplier:
                     intervention_not_found       only its own captures)
                     logistic_order_unknown      ADM-PAY-101 names a line the payment lacks
Conflict        409  payment_not_yet_capturable  capture knows the payment but not its
                                                 authorisation yet (checkout may already show
                                                 it AUTHORIZED): `Retry-After`, ask again;
                                                 never kept for idempotent replay
                     payment_not_capturable      cancelled or refused: never capturable
                     payment_option_not_capturable  not a card payment
                     nothing_to_capture          every line captured or being captured
                     intervention_not_open       already retried or resolved
Unprocessable   422  split_invalid, supplier_unknown, level3_missing, level3_incomplete,
                     level3_inconsistent, level3_partial_capture
                                                 the captures this request made are blocked
                     parameter_invalid           a bad filter

Not API errors:
TenantNotReplicated  the tenant's settings have not reached capture yet: the consumer's
                     message is retried later (then dead-lettered), never guessed
"""

from __future__ import annotations

from common.http.errors import Conflict, NotFound, Unprocessable


class TenantNotReplicated(Exception):
    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"tenant {tenant_id} is not in capture's tenancy replica yet")


def payment_not_found() -> NotFound:
    return NotFound("no such payment", code="payment_not_found", param="id")


def capture_not_found() -> NotFound:
    return NotFound("no such capture", code="capture_not_found", param="id")


def intervention_not_found() -> NotFound:
    return NotFound("no such intervention", code="intervention_not_found", param="id")


def logistic_order_unknown() -> NotFound:
    return NotFound(
        "the payment has no line for this logistic order",
        code="logistic_order_unknown",
        param="logistic_order_id",
    )


RETRY_AFTER_S = 1
"""How long a client should wait before asking again when capture has not heard of the
authorisation yet: the replica usually lags by milliseconds, seconds under load."""


def payment_not_yet_capturable() -> Conflict:
    return Conflict(
        "capture has not heard of this payment's authorisation yet (it follows checkout within"
        " moments): retry after the Retry-After delay with the same Idempotency-Key",
        code="payment_not_yet_capturable",
        param="id",
        retry_after=RETRY_AFTER_S,
    )


def payment_not_capturable(status: str) -> Conflict:
    reason = {
        "CANCELLED": "was cancelled",
        "REFUSED": "was refused",
    }.get(status, f"is {status}")
    return Conflict(
        f"only an authorised payment can be captured; this one {reason}",
        code="payment_not_capturable",
        param="id",
    )


def payment_option_not_capturable(option: str) -> Conflict:
    return Conflict(
        f"only card payments (CREDIT_CARD, PCARD_L3) are captured; this one is {option}",
        code="payment_option_not_capturable",
        param="id",
    )


def nothing_to_capture(existing: list[tuple[str, str]], param: str | None) -> Conflict:
    shown = ", ".join(f"{capture_id} ({status})" for capture_id, status in existing)
    return Conflict(
        f"nothing left to capture: every line is captured or being captured: {shown}",
        code="nothing_to_capture",
        param=param,
    )


def intervention_not_open(status: str) -> Conflict:
    return Conflict(
        f"this intervention is {status}; only an open one can be retried",
        code="intervention_not_open",
        param="id",
    )


def blocked(code: str, message: str) -> Unprocessable:
    return Unprocessable(f"the capture is blocked: {message}", code=code)


def filter_invalid(name: str, allowed: list[str]) -> Unprocessable:
    return Unprocessable(
        f"{name} must be one of {', '.join(allowed)}", code="parameter_invalid", param=name
    )
