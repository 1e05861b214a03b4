"""The event envelope and the catalogue of domain events (DESIGN §3).

Every event on `marketpay.events` is an `Envelope` whose `type` is a member of `EventType` and
whose `data` validates against the model registered for that type in `CATALOGUE`. A producer
bumps `version` when it changes a payload incompatibly; consumers accept the versions they know.
Event types whose payload is not defined yet are listed in `EventType` so the names are fixed,
and get their model in the issue that first publishes them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from common.money import CurrencyCode, Money, Rate

DOMAIN_EXCHANGE = "marketpay.events"
OMS_EXCHANGE = "oms.events"
OMS_STATUS_CHANGED = "logistic_order.status_changed"
"""The routing key of the OMS's logistic-order events on `oms.events` (not an envelope: see
`LogisticOrderStatusChanged`)."""


class EventType(StrEnum):
    TENANT_UPSERTED = "tenant.upserted"
    SUPPLIER_UPSERTED = "supplier.upserted"
    API_KEY_UPSERTED = "api_key.upserted"
    PAYMENT_CREATED = "payment.created"
    PAYMENT_AUTHORISED = "payment.authorised"
    PAYMENT_REFUSED = "payment.refused"
    PAYMENT_CANCELLED = "payment.cancelled"
    PAYMENT_STATUS_CHANGED = "payment.status_changed"
    PSP_NOTIFICATION_RECEIVED = "psp.notification.received"
    CAPTURE_SCHEDULED = "capture.scheduled"
    CAPTURE_REQUESTED = "capture.requested"
    CAPTURE_SUCCEEDED = "capture.succeeded"
    CAPTURE_FAILED = "capture.failed"
    CAPTURE_BLOCKED = "capture.blocked"
    REFUND_REQUESTED = "refund.requested"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    CHARGEBACK_RECEIVED = "chargeback.received"
    PAYOUT_COMPUTED = "payout.computed"
    PAYOUT_PENDING = "payout.pending"
    PAYOUT_SETTLED = "payout.settled"
    PAYOUT_FAILED = "payout.failed"
    FUNDING_TRANSFER_CREATED = "funding_transfer.created"
    FUNDING_TRANSFER_COMPLETED = "funding_transfer.completed"
    EXPORT_READY = "export.ready"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """What travels on the bus. AMQP `message_id` equals `id`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str = Field(min_length=1, max_length=100)
    version: int = Field(default=1, ge=1)
    occurred_at: datetime = Field(default_factory=utcnow)
    tenant_id: str | None = None
    correlation_id: str
    causation_id: str | None = None
    data: dict[str, Any]


class EventData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


CaptureMode = Literal["IMMEDIATE", "DELAYED", "ON_SHIPMENT", "MANUAL"]
BankingMode = Literal["DISABLED", "ENABLED"]
FundingPolicy = Literal["MARKETPLACE_COVERS", "REFUSE_REFUND"]
KycStatus = Literal[
    "created", "submitted", "information_needed", "enabled", "rejected", "disabled", "archived"
]
DueDateMode = Literal["SIMPLE", "END_OF_MONTH"]
Role = Literal["operator", "supplier", "storefront"]


class PayoutSchedule(EventData):
    frequency: Literal["MANUAL", "DAILY", "WEEKLY", "MONTHLY"] = "WEEKLY"
    day_of_week: int | None = Field(default=1, ge=1, le=7)
    day_of_month: int | None = Field(default=None, ge=1, le=28)
    hour_utc: int = Field(default=6, ge=0, le=23)
    retry_attempts: int = Field(default=3, ge=0, le=10)


class TenantUpserted(EventData):
    """Full state of a tenant; `revision` grows with every change (replicas keep the newest)."""

    tenant_id: str
    revision: int = Field(ge=1)
    name: str
    status: Literal["active", "disabled"]
    psp: str
    merchant_account: str
    currency: CurrencyCode
    default_rate: Rate | None
    capture_mode: CaptureMode
    capture_delay_hours: int
    allowed_logistic_statuses: list[str]
    marketplace_banking_mode: BankingMode
    funding_policy: FundingPolicy
    payout_schedule: PayoutSchedule


class SupplierUpserted(EventData):
    """Full state of a supplier, with its active marketplace commission rate (if any)."""

    tenant_id: str
    supplier_id: str
    revision: int = Field(ge=1)
    name: str
    kyc_status: KycStatus
    iban: str | None
    payment_due_date_delay: int
    payment_due_date_mode: DueDateMode
    commission_rate: Rate | None


class ApiKeyUpserted(EventData):
    """An API key as other services need it to authenticate: its hash, never the key."""

    tenant_id: str
    key_id: str
    revision: int = Field(ge=1)
    key_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: Role
    supplier_id: str | None
    revoked: bool


class PaymentLine(EventData):
    logistic_order_id: str
    supplier_id: str
    amount: int = Field(ge=0)


class PaymentCreated(EventData):
    """A checkout session created a payment (status `INIT_PAYMENT`)."""

    payment_id: str
    order_id: str
    payment_option: str
    amount: Money
    lines: list[PaymentLine]


class PaymentStatusChanged(EventData):
    """Any status change of a payment; `payment.authorised`, `.refused` and `.cancelled` carry
    the same payload plus the capture settings consumers need."""

    payment_id: str
    order_id: str
    status_from: str
    status: str
    amount: Money
    psp_reference: str | None


class PaymentOutcome(PaymentStatusChanged):
    payment_option: str
    capture_mode: CaptureMode | None


class Level3ItemData(EventData):
    """One Level 3 item as the session gave it. Fields are optional here so that a gap can
    never stop an authorisation from being published: capture checks completeness."""

    commodity_code: str | None = None
    description: str | None = None
    quantity: Decimal | None = None
    unit_of_measure: str | None = None
    unit_price: int | None = None
    discount: int = 0
    total: int | None = None


class Level3Data(EventData):
    customer_reference: str | None = None
    tax_total: int | None = None
    freight: int = 0
    duty: int = 0
    items: list[Level3ItemData] = Field(default_factory=list)


class PaymentAuthorised(PaymentOutcome):
    """`payment.authorised`: the outcome plus what capturing it needs (event-carried state, so
    the capture service never reads checkout's tables): the merchant account, the lines (one
    per logistic order) and the Level 2/3 data of a `PCARD_L3` payment."""

    merchant_account: str
    lines: list[PaymentLine] = Field(min_length=1)
    level3: Level3Data | None = None


# -- capture ---------------------------------------------------------------------------------

CaptureTrigger = Literal["IMMEDIATE", "DELAYED", "ON_SHIPMENT", "MANUAL"]
SplitParty = Literal["PLATFORM", "MARKETPLACE", "SUPPLIER"]


class SplitLineData(EventData):
    """One line of a capture's commission split; `rate` is the percentage it was computed
    with (frozen at capture), null for the supplier's remainder."""

    party: SplitParty
    amount: int = Field(ge=0)
    rate: Rate | None = None


class CaptureScheduled(EventData):
    """A `DELAYED` payment's capture is due at `due_at` (authorisation + the tenant's delay)."""

    payment_id: str
    order_id: str
    due_at: datetime
    capture_delay_hours: int = Field(ge=0)
    logistic_order_ids: list[str]


class CaptureEvent(EventData):
    """What every `capture.*` event of one capture (one logistic order) carries. `revision`
    grows with each change of the capture, so a consumer can refuse an older fact."""

    capture_id: str
    revision: int = Field(ge=1)
    payment_id: str
    order_id: str
    logistic_order_id: str
    supplier_id: str
    amount: Money
    trigger: CaptureTrigger


class CaptureRequested(CaptureEvent):
    """The capture is decided with a valid split and goes to the PSP."""

    splits: list[SplitLineData]
    platform_rate: Rate | None
    marketplace_rate: Rate | None


class CaptureSucceeded(CaptureEvent):
    """The PSP's CAPTURE notification confirmed it; the split lines are what was captured.
    `psp_reference` is null only for a zero-amount line (nothing to ask the PSP for)."""

    psp_reference: str | None
    splits: list[SplitLineData]
    platform_rate: Rate | None
    marketplace_rate: Rate | None


class CaptureFailed(CaptureEvent):
    """The capture did not happen (or its outcome stayed unknown when the retries ran out);
    an intervention waits for an operator."""

    code: str
    reason: str
    retries_exhausted: bool
    outcome_known: bool
    intervention_id: str | None


class CaptureBlocked(CaptureEvent):
    """The split or the Level 3 data is invalid: nothing was sent to the PSP."""

    code: str
    message: str
    intervention_id: str | None


# -- the OMS ---------------------------------------------------------------------------------


class LogisticOrderStatusChanged(BaseModel):
    """The OMS's `logistic_order.status_changed` on `oms.events` (DESIGN §3): a bare JSON
    body, not a Marketpay envelope. `id` identifies the event (a UUID, or any unique string up
    to 100 characters); fields the OMS adds later are ignored; `status` is open-ended
    (`WAITING_SHIPMENT`, `SHIPPED`, ...)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1, max_length=100)
    tenant_id: str = Field(min_length=1, max_length=64)
    order_id: str = Field(min_length=1, max_length=64)
    logistic_order_id: str = Field(min_length=1, max_length=64)
    supplier_id: str = Field(min_length=1, max_length=64)
    status: str = Field(pattern=r"^[A-Z][A-Z_]{0,39}$")
    occurred_at: AwareDatetime


class PspNotificationReceived(EventData):
    """A PSP notification, verified and stored by the webhooks service, in a normalised form.
    `merchant_reference` is our own reference (the payment id for a payment's events)."""

    notification_id: str
    psp: str
    merchant_account: str
    event_code: str
    success: bool
    psp_reference: str
    original_reference: str | None = None
    merchant_reference: str
    amount: Money | None = None
    reason: str | None = None
    event_date: str | None = None
    payment_method: str | None = None


CATALOGUE: dict[str, type[EventData]] = {
    EventType.TENANT_UPSERTED: TenantUpserted,
    EventType.SUPPLIER_UPSERTED: SupplierUpserted,
    EventType.API_KEY_UPSERTED: ApiKeyUpserted,
    EventType.PAYMENT_CREATED: PaymentCreated,
    EventType.PAYMENT_STATUS_CHANGED: PaymentStatusChanged,
    EventType.PAYMENT_AUTHORISED: PaymentAuthorised,
    EventType.PAYMENT_REFUSED: PaymentOutcome,
    EventType.PAYMENT_CANCELLED: PaymentOutcome,
    EventType.PSP_NOTIFICATION_RECEIVED: PspNotificationReceived,
    EventType.CAPTURE_SCHEDULED: CaptureScheduled,
    EventType.CAPTURE_REQUESTED: CaptureRequested,
    EventType.CAPTURE_SUCCEEDED: CaptureSucceeded,
    EventType.CAPTURE_FAILED: CaptureFailed,
    EventType.CAPTURE_BLOCKED: CaptureBlocked,
}


class UnknownEventError(ValueError):
    pass


def parse_data(envelope: Envelope) -> EventData:
    """Validate an envelope's payload against the catalogue."""
    model = CATALOGUE.get(envelope.type)
    if model is None:
        raise UnknownEventError(envelope.type)
    return model.model_validate(envelope.data)


def make_envelope(
    event_type: str,
    data: EventData | dict[str, Any],
    *,
    tenant_id: str | None,
    correlation_id: str,
    causation_id: str | None = None,
    version: int = 1,
) -> Envelope:
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    if event_type in CATALOGUE:
        try:
            validated = CATALOGUE[event_type].model_validate(payload)
        except ValidationError as exc:
            raise ValueError(f"{event_type} payload does not match the catalogue: {exc}") from exc
        # what consumers receive is the model's own JSON form (rates as strings, ...), whatever
        # form the producer passed
        payload = validated.model_dump(mode="json")
    return Envelope(
        type=event_type,
        version=version,
        tenant_id=tenant_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
        data=payload,
    )
