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


def supplier_state_from_row(row: Row) -> SupplierState:
    return SupplierState(
        name=row["name"],
        kyc_status=row["kyc_status"],
        iban=row["iban"],
        payment_due_date_delay=row["payment_due_date_delay"],
        payment_due_date_mode=row["payment_due_date_mode"],
    )


# --- the aggregates as stored, and the decisions about them -----------------------------------


@dataclass(frozen=True)
class Tenant:
    id: str
    revision: int
    name: str
    status: Literal["active", "disabled"]
    psp: str
    currency: str
    settings: TenantSettings
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Supplier:
    id: str
    tenant_id: str
    revision: int
    state: SupplierState
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Commission:
    id: str
    tenant_id: str
    supplier_id: str
    rate: Decimal
    active: bool
    created_at: datetime
    deactivated_at: datetime | None


def tenant_from_row(row: Row) -> Tenant:
    return Tenant(
        id=row["id"],
        revision=row["revision"],
        name=row["name"],
        status=row["status"],
        psp=row["psp"],
        currency=row["currency"],
        settings=settings_from_row(row),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def supplier_from_row(row: Row) -> Supplier:
    return Supplier(
        id=row["id"],
        tenant_id=row["tenant_id"],
        revision=row["revision"],
        state=supplier_state_from_row(row),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def commission_from_row(row: Row) -> Commission:
    return Commission(
        id=row["id"],
        tenant_id=row["tenant_id"],
        supplier_id=row["supplier_id"],
        rate=row["rate"],
        active=row["active"],
        created_at=row["created_at"],
        deactivated_at=row["deactivated_at"],
    )


@dataclass(frozen=True)
class TenantDecision:
    """A tenant's state to write (revision included) and its full-state event."""

    tenant_id: str
    revision: int
    name: str
    psp: str
    currency: str
    settings: TenantSettings
    event: TenantUpserted


@dataclass(frozen=True)
class SupplierDecision:
    """A supplier's state to write (revision included) and its full-state event."""

    supplier_id: str
    tenant_id: str
    revision: int
    state: SupplierState
    event: SupplierUpserted


@dataclass(frozen=True)
class CommissionDecision:
    """A new commission line (the active one, if any, becomes inactive history) and the
    supplier's new revision, whose event carries the rate now active."""

    commission_id: str
    tenant_id: str
    supplier_id: str
    rate: Decimal
    active: bool
    supplier: SupplierDecision


def _tenant_decision(
    *,
    tenant_id: str,
    revision: int,
    name: str,
    status: Literal["active", "disabled"],
    psp: str,
    currency: str,
    settings: TenantSettings,
) -> TenantDecision:
    event = TenantUpserted(
        tenant_id=tenant_id,
        revision=revision,
        name=name,
        status=status,
        psp=psp,
        merchant_account=settings.merchant_account,
        currency=currency,
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
    return TenantDecision(
        tenant_id=tenant_id,
        revision=revision,
        name=name,
        psp=psp,
        currency=currency,
        settings=settings,
        event=event,
    )


def new_tenant(
    *,
    tenant_id: str,
    name: str,
    psp: str,
    currency: str,
    merchant_account: str,
    settings_changes: Mapping[str, Any] | None,
) -> TenantDecision:
    """A new tenant (revision 1): the product's default settings with the requested ones;
    a broken rule is reported under `settings.<field>`."""
    settings = TenantSettings(merchant_account=merchant_account)
    if settings_changes is not None:
        try:
            settings = apply_settings(settings, settings_changes)
        except RuleViolation as exc:
            exc.param = f"settings.{exc.param}" if exc.param else "settings"
            raise
    return _tenant_decision(
        tenant_id=tenant_id,
        revision=1,
        name=name,
        status="active",
        psp=psp,
        currency=currency,
        settings=settings,
    )


def decide_settings(current: Tenant, changes: Mapping[str, Any]) -> TenantDecision | None:
    """The tenant after a settings PATCH (checked as a whole), or None when nothing changes."""
    updated = apply_settings(current.settings, changes)
    if updated == current.settings:
        return None
    return _tenant_decision(
        tenant_id=current.id,
        revision=current.revision + 1,
        name=current.name,
        status=current.status,
        psp=current.psp,
        currency=current.currency,
        settings=updated,
    )


def tenant_event(tenant: Tenant) -> TenantUpserted:
    """The full-state event of a stored tenant (republishing: same revision)."""
    return _tenant_decision(
        tenant_id=tenant.id,
        revision=tenant.revision,
        name=tenant.name,
        status=tenant.status,
        psp=tenant.psp,
        currency=tenant.currency,
        settings=tenant.settings,
    ).event


def _supplier_decision(
    *,
    supplier_id: str,
    tenant_id: str,
    revision: int,
    state: SupplierState,
    commission_rate: Decimal | None,
) -> SupplierDecision:
    event = SupplierUpserted(
        tenant_id=tenant_id,
        supplier_id=supplier_id,
        revision=revision,
        name=state.name,
        kyc_status=state.kyc_status,
        iban=state.iban,
        payment_due_date_delay=state.payment_due_date_delay,
        payment_due_date_mode=state.payment_due_date_mode,
        commission_rate=commission_rate,
    )
    return SupplierDecision(
        supplier_id=supplier_id, tenant_id=tenant_id, revision=revision, state=state, event=event
    )


def new_supplier(*, supplier_id: str, tenant_id: str, state: SupplierState) -> SupplierDecision:
    """A new supplier: revision 1, no commission line yet."""
    return _supplier_decision(
        supplier_id=supplier_id,
        tenant_id=tenant_id,
        revision=1,
        state=state,
        commission_rate=None,
    )


def decide_supplier_change(
    current: Supplier, changes: Mapping[str, Any], commission_rate: Decimal | None
) -> SupplierDecision | None:
    """The supplier after a PATCH, or None when nothing changes; its event carries the
    active commission rate (`commission_rate`)."""
    updated = apply_supplier_changes(current.state, changes)
    if updated == current.state:
        return None
    return _supplier_decision(
        supplier_id=current.id,
        tenant_id=current.tenant_id,
        revision=current.revision + 1,
        state=updated,
        commission_rate=commission_rate,
    )


def supplier_event(supplier: Supplier, commission_rate: Decimal | None) -> SupplierUpserted:
    """The full-state event of a stored supplier (republishing: same revision)."""
    return _supplier_decision(
        supplier_id=supplier.id,
        tenant_id=supplier.tenant_id,
        revision=supplier.revision,
        state=supplier.state,
        commission_rate=commission_rate,
    ).event


def decide_commission(
    supplier: Supplier,
    current: Commission | None,
    *,
    commission_id: str,
    rate: Decimal,
    active: bool,
) -> CommissionDecision | None:
    """A new commission line for the supplier, or None when `rate` is already the active one
    (putting it again changes nothing). The supplier's revision grows, and its event carries
    the new rate, or none when the line is recorded inactive."""
    if active and current is not None and current.rate == rate:
        return None
    return CommissionDecision(
        commission_id=commission_id,
        tenant_id=supplier.tenant_id,
        supplier_id=supplier.id,
        rate=rate,
        active=active,
        supplier=_supplier_decision(
            supplier_id=supplier.id,
            tenant_id=supplier.tenant_id,
            revision=supplier.revision + 1,
            state=supplier.state,
            commission_rate=rate if active else None,
        ),
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
