"""The tenants service's decisions, pure and synchronous: settings rules, key roles, IBANs, and
the full-state events built from stored rows (what replicas in other services receive)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from common.events import (
    ApiKeyUpserted,
    BankingMode,
    CaptureMode,
    DueDateMode,
    FundingPolicy,
    KycStatus,
    PayoutSchedule,
    Role,
    SupplierUpserted,
    TenantUpserted,
)
from common.row import Row

LOGISTIC_STATUSES: Final = (
    "WAITING_SHIPMENT",
    "PARTIALLY_SHIPPED",
    "SHIPPED",
    "COMPLETED",
    "CANCELED",
    "DECLINED_BY_SUPPLIER",
)
LogisticStatus = Literal[
    "WAITING_SHIPMENT",
    "PARTIALLY_SHIPPED",
    "SHIPPED",
    "COMPLETED",
    "CANCELED",
    "DECLINED_BY_SUPPLIER",
]
KYC_STATUSES: Final[tuple[str, ...]] = get_args(KycStatus)
KEY_PREFIX_LENGTH: Final = 12
MAX_CAPTURE_DELAY_HOURS: Final = 720


class RuleViolation(Exception):
    """A request that is well-formed but breaks a rule; `conflict` when the current state
    (not the input alone) forbids it."""

    def __init__(
        self, code: str, message: str, *, param: str | None = None, conflict: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.conflict = conflict


@dataclass(frozen=True)
class TenantSettings:
    """What an operator may change on its tenant (`PATCH /v1/admin/tenant/settings`)."""

    merchant_account: str
    default_rate: Decimal | None = None
    capture_mode: CaptureMode = "ON_SHIPMENT"
    capture_delay_hours: int = 0
    allowed_logistic_statuses: tuple[str, ...] = ("SHIPPED",)
    marketplace_banking_mode: BankingMode = "DISABLED"
    funding_policy: FundingPolicy = "REFUSE_REFUND"
    payout_schedule: PayoutSchedule = field(default_factory=PayoutSchedule)
    time_zone: str = "UTC"  # IANA; the calendar of bank-transfer due dates
    bank_transfer_iban: str | None = None  # where buyers' bank transfers go


@dataclass(frozen=True)
class SupplierState:
    name: str
    kyc_status: KycStatus = "created"
    iban: str | None = None
    payment_due_date_delay: int = 30
    payment_due_date_mode: DueDateMode = "SIMPLE"


def check_settings(settings: TenantSettings) -> TenantSettings:
    try:
        ZoneInfo(settings.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleViolation(
            "parameter_invalid",
            f"unknown time zone {settings.time_zone!r} (an IANA name such as Europe/Paris)",
            param="time_zone",
        ) from None
    if settings.capture_mode == "DELAYED" and settings.capture_delay_hours <= 0:
        raise RuleViolation(
            "capture_delay_hours_required",
            "capture_mode DELAYED needs capture_delay_hours between 1 and "
            f"{MAX_CAPTURE_DELAY_HOURS}",
            param="capture_delay_hours",
        )
    if not settings.allowed_logistic_statuses:
        raise RuleViolation(
            "parameter_invalid",
            "at least one logistic status is needed",
            param="allowed_logistic_statuses",
        )
    unknown = [s for s in settings.allowed_logistic_statuses if s not in LOGISTIC_STATUSES]
    if unknown:
        raise RuleViolation(
            "parameter_invalid",
            f"unknown logistic status {unknown[0]!r}",
            param="allowed_logistic_statuses",
        )
    return settings


def dedupe(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def apply_settings(current: TenantSettings, changes: Mapping[str, Any]) -> TenantSettings:
    """The settings after a partial update, checked as a whole (a rule may span fields)."""
    updated = replace(current, **changes)
    updated = replace(updated, allowed_logistic_statuses=dedupe(updated.allowed_logistic_statuses))
    return check_settings(updated)


def apply_supplier_changes(current: SupplierState, changes: Mapping[str, Any]) -> SupplierState:
    return replace(current, **changes)


def normalise_iban(value: str) -> str:
    """The IBAN in its compact upper-case form, or `iban_invalid`."""
    try:
        return str(IBAN(value).compact)
    except (SchwiftyException, ValueError):
        raise RuleViolation("iban_invalid", "not a valid IBAN", param="iban") from None


@dataclass(frozen=True)
class KeyRole:
    role: Role
    supplier_id: str | None = None

    def __str__(self) -> str:
        return f"supplier:{self.supplier_id}" if self.role == "supplier" else self.role


def parse_role(value: str) -> KeyRole:
    """`operator`, `storefront` or `supplier:<supplier id>`."""
    if value in ("operator", "storefront"):
        return KeyRole(role="operator" if value == "operator" else "storefront")
    kind, sep, supplier_id = value.partition(":")
    if kind == "supplier" and sep and supplier_id.startswith("sup_") and len(supplier_id) < 64:
        return KeyRole(role="supplier", supplier_id=supplier_id)
    raise RuleViolation(
        "role_invalid",
        "role is operator, storefront or supplier:<supplier id>",
        param="role",
    )


def key_prefix(key: str) -> str:
    """What is kept of a key to recognise it in lists (the environment and a few characters)."""
    return key[:KEY_PREFIX_LENGTH]


def check_revocation(*, key_role: str, already_revoked: bool, other_active_operators: int) -> bool:
    """Whether revoking changes anything. A tenant always keeps one active operator key:
    without it nobody could manage the tenant any more (a key may revoke itself otherwise)."""
    if already_revoked:
        return False
    if key_role == "operator" and other_active_operators == 0:
        raise RuleViolation(
            "last_operator_key",
            "this is the tenant's last active operator key; create another one first",
            param="id",
            conflict=True,
        )
    return True


def settings_from_row(row: Row) -> TenantSettings:
    return TenantSettings(
        merchant_account=row["merchant_account"],
        default_rate=row["default_rate"],
        capture_mode=row["capture_mode"],
        capture_delay_hours=row["capture_delay_hours"],
        allowed_logistic_statuses=tuple(row["allowed_logistic_statuses"]),
        marketplace_banking_mode=row["marketplace_banking_mode"],
        funding_policy=row["funding_policy"],
        payout_schedule=PayoutSchedule.model_validate(row["payout_schedule"]),
        time_zone=row["time_zone"],
        bank_transfer_iban=row["bank_transfer_iban"],
    )


def supplier_from_row(row: Row) -> SupplierState:
    return SupplierState(
        name=row["name"],
        kyc_status=row["kyc_status"],
        iban=row["iban"],
        payment_due_date_delay=row["payment_due_date_delay"],
        payment_due_date_mode=row["payment_due_date_mode"],
    )


def tenant_event(row: Row) -> TenantUpserted:
    settings = settings_from_row(row)
    return TenantUpserted(
        tenant_id=row["id"],
        revision=row["revision"],
        name=row["name"],
        status=row["status"],
        psp=row["psp"],
        merchant_account=settings.merchant_account,
        currency=row["currency"],
        default_rate=settings.default_rate,
        capture_mode=settings.capture_mode,
        capture_delay_hours=settings.capture_delay_hours,
        allowed_logistic_statuses=list(settings.allowed_logistic_statuses),
        marketplace_banking_mode=settings.marketplace_banking_mode,
        funding_policy=settings.funding_policy,
        payout_schedule=settings.payout_schedule,
        time_zone=settings.time_zone,
        bank_transfer_iban=settings.bank_transfer_iban,
    )


def supplier_event(row: Row, commission_rate: Decimal | None) -> SupplierUpserted:
    state = supplier_from_row(row)
    return SupplierUpserted(
        tenant_id=row["tenant_id"],
        supplier_id=row["id"],
        revision=row["revision"],
        name=state.name,
        kyc_status=state.kyc_status,
        iban=state.iban,
        payment_due_date_delay=state.payment_due_date_delay,
        payment_due_date_mode=state.payment_due_date_mode,
        commission_rate=commission_rate,
    )


@dataclass(frozen=True)
class ApiKeyState:
    """An API key as stored: its hash and prefix, never the key."""

    id: str
    tenant_id: str
    revision: int
    key_hash: str
    prefix: str
    role: Role
    supplier_id: str | None
    name: str | None
    created_at: datetime
    revoked_at: datetime | None


def api_key_event(key: ApiKeyState) -> ApiKeyUpserted:
    return ApiKeyUpserted(
        tenant_id=key.tenant_id,
        key_id=key.id,
        revision=key.revision,
        key_hash=key.key_hash,
        role=key.role,
        supplier_id=key.supplier_id,
        revoked=key.revoked_at is not None,
    )
