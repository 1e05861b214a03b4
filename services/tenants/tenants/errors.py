"""The tenants service's errors, all `common.http.errors.ApiError`s:

NotFound        tenant_not_found, supplier_not_found,   nothing of that id for this key's tenant
                commission_not_found, api_key_not_found (another tenant's ids included: never 403)
Conflict        merchant_account_taken                  the merchant account has a tenant already
Conflict        last_operator_key                       revoking would leave no operator key
Unprocessable   supplier_unknown, role_invalid, capture_delay_hours_required, ...  (rules)
"""

from __future__ import annotations

from common.http.errors import ApiError, Conflict, NotFound, Unprocessable
from tenants.domain import RuleViolation


def rule_violated(exc: RuleViolation) -> ApiError:
    if exc.conflict:
        return Conflict(exc.message, code=exc.code, param=exc.param)
    return Unprocessable(exc.message, code=exc.code, param=exc.param)


def tenant_not_found() -> NotFound:
    return NotFound("no such tenant", code="tenant_not_found")


def supplier_not_found(param: str = "id") -> NotFound:
    return NotFound("no such supplier", code="supplier_not_found", param=param)


def commission_not_found() -> NotFound:
    return NotFound(
        "this supplier has no active commission line",
        code="commission_not_found",
        param="supplier_id",
    )


def api_key_not_found() -> NotFound:
    return NotFound("no such API key", code="api_key_not_found", param="id")


def merchant_account_taken() -> Conflict:
    return Conflict(
        "a tenant with this merchant account exists already",
        code="merchant_account_taken",
        param="merchant_account",
    )


def supplier_unknown() -> Unprocessable:
    return Unprocessable("no such supplier in this tenant", code="supplier_unknown", param="role")
