"""Payouts' errors. API errors are `common.http.errors.ApiError`s with stable codes:

NotFound        404  payout_not_found, funding_transfer_not_found, account_not_found
                     (for this credential's tenant; a supplier: only its own)
Conflict        409  payout_not_executable, payout_not_retryable
Unprocessable   422  parameter_invalid          a bad filter (its name in `param`)

Not API errors:
TenantNotReplicated  the tenant's settings have not reached payouts yet: the message is
                     retried later (then dead-lettered), never guessed
"""

from __future__ import annotations

from collections.abc import Sequence

from common.http.errors import Conflict, NotFound, Unprocessable


class TenantNotReplicatedError(Exception):
    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"tenant {tenant_id} is not in the payouts tenancy replica yet")


def not_found(what: str) -> NotFound:
    return NotFound(f"no such {what.replace('_', ' ')}", code=f"{what}_not_found", param="id")


def parameter_invalid(param: str, message: str) -> Unprocessable:
    return Unprocessable(f"{param}: {message}", code="parameter_invalid", param=param)


def choice_invalid(param: str, allowed: Sequence[str]) -> Unprocessable:
    return parameter_invalid(param, "one of " + ", ".join(allowed))


def payout_conflict(code: str, message: str) -> Conflict:
    return Conflict(message, code=code, param="id")
