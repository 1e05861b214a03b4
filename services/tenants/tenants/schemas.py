"""Requests and responses of the tenants API. Requests forbid unknown fields; a PATCH field
that is sent as `null` clears it only where null means something (`default_rate`, `iban`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
)
from pydantic_core import PydanticCustomError

from common.events import (
    BankingMode,
    CaptureMode,
    DueDateMode,
    FundingPolicy,
    KycStatus,
    PayoutSchedule,
    Role,
)
from common.money import CurrencyCode, Rate, is_known_currency
from tenants import domain


def _currency(value: Any) -> Any:
    if not isinstance(value, str) or not is_known_currency(value):
        raise PydanticCustomError("currency_invalid", "not an active ISO 4217 currency code")
    return value


def _iban(value: str) -> str:
    try:
        return domain.normalise_iban(value)
    except domain.RuleViolation as exc:
        raise PydanticCustomError("iban_invalid", exc.message) from None


def _not_blank(value: str) -> str:
    value = value.strip()
    if not value:
        raise PydanticCustomError("parameter_invalid", "must not be blank")
    return value


Currency = Annotated[CurrencyCode, BeforeValidator(_currency)]
Iban = Annotated[str, Field(max_length=64), AfterValidator(_iban)]
Name = Annotated[str, Field(max_length=200), AfterValidator(_not_blank)]
MerchantAccount = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,79}$")]
CaptureDelayHours = Annotated[StrictInt, Field(ge=1, le=domain.MAX_CAPTURE_DELAY_HOURS)]
DueDateDelay = Annotated[StrictInt, Field(ge=0, le=365)]
LogisticStatuses = Annotated[list[domain.LogisticStatus], Field(min_length=1, max_length=20)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Patch(Request):
    """Only the fields sent are changed; `null` is refused where a field cannot be empty."""

    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _no_null(cls, value: Any, info: Any) -> Any:
        if value is None and info.field_name not in cls.NULLABLE:
            raise PydanticCustomError("parameter_invalid", "must not be null")
        return value

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


# --- tenant -----------------------------------------------------------------------------------


class SettingsInput(Patch):
    NULLABLE: ClassVar[frozenset[str]] = frozenset({"default_rate", "bank_transfer_iban"})

    default_rate: Rate | None = None
    capture_mode: CaptureMode | None = None
    capture_delay_hours: CaptureDelayHours | None = None
    allowed_logistic_statuses: LogisticStatuses | None = None
    marketplace_banking_mode: BankingMode | None = None
    funding_policy: FundingPolicy | None = None
    payout_schedule: PayoutSchedule | None = None
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    bank_transfer_iban: Iban | None = None

    def changes(self) -> dict[str, Any]:
        changes = super().changes()
        if "allowed_logistic_statuses" in changes:
            changes["allowed_logistic_statuses"] = tuple(changes["allowed_logistic_statuses"])
        return changes


class SettingsPatch(SettingsInput):
    merchant_account: MerchantAccount | None = None


class TenantCreate(Request):
    name: Name
    merchant_account: MerchantAccount
    psp: Literal["adyen"] = "adyen"
    currency: Currency
    settings: SettingsInput | None = None


class TenantSettingsOut(BaseModel):
    default_rate: Rate | None
    capture_mode: CaptureMode
    capture_delay_hours: int
    allowed_logistic_statuses: list[str]
    marketplace_banking_mode: BankingMode
    funding_policy: FundingPolicy
    payout_schedule: PayoutSchedule
    time_zone: str
    bank_transfer_iban: str | None


class Tenant(BaseModel):
    id: str
    name: str
    status: Literal["active", "disabled"]
    psp: str
    merchant_account: str
    currency: str
    settings: TenantSettingsOut
    revision: int
    created_at: datetime
    updated_at: datetime


class TenantCreated(Tenant):
    api_key: str = Field(description="the tenant's first operator key; shown only this once")
    api_key_id: str


# --- suppliers --------------------------------------------------------------------------------


class SupplierCreate(Request):
    name: Name
    kyc_status: KycStatus = "created"
    iban: Iban | None = None
    payment_due_date_delay: DueDateDelay = 30
    payment_due_date_mode: DueDateMode = "SIMPLE"


class SupplierPatch(Patch):
    NULLABLE: ClassVar[frozenset[str]] = frozenset({"iban"})

    name: Name | None = None
    kyc_status: KycStatus | None = None
    iban: Iban | None = None
    payment_due_date_delay: DueDateDelay | None = None
    payment_due_date_mode: DueDateMode | None = None


class Supplier(BaseModel):
    id: str
    name: str
    kyc_status: KycStatus
    iban: str | None
    payment_due_date_delay: int
    payment_due_date_mode: DueDateMode
    revision: int
    created_at: datetime
    updated_at: datetime


# --- commissions ------------------------------------------------------------------------------


class CommissionPut(Request):
    rate: Rate
    active: StrictBool = True


class Commission(BaseModel):
    id: str
    supplier_id: str
    rate: Rate
    active: bool
    created_at: datetime
    deactivated_at: datetime | None


# --- API keys ---------------------------------------------------------------------------------


class ApiKeyCreate(Request):
    role: Annotated[str, Field(min_length=1, max_length=80)]
    name: Annotated[str, Field(max_length=200)] | None = None


class ApiKey(BaseModel):
    id: str
    role: str = Field(description="operator, storefront or supplier:<supplier id>")
    supplier_id: str | None
    name: str | None
    prefix: str = Field(description="the key's first characters, to recognise it")
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="the API key; shown only this once")


def role_label(role: Role, supplier_id: str | None) -> str:
    return str(domain.KeyRole(role=role, supplier_id=supplier_id))


class Republished(BaseModel):
    tenants: int
    suppliers: int
    api_keys: int
    buyer_accounts: int = 0
