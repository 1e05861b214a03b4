"""The event envelope and the catalogue of domain events (DESIGN §3).

Every event on `marketpay.events` is an `Envelope` whose `type` is a member of `EventType` and
whose `data` validates against the model registered for that type in `CATALOGUE`. A producer
bumps `version` when it changes a payload incompatibly; consumers accept the versions they know.
Event types whose payload is not defined yet are listed in `EventType` so the names are fixed,
and get their model in the issue that first publishes them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal, TypeVar, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

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
    REFUND_FUNDS_RESERVED = "refund.funds_reserved"
    REFUND_FUNDS_REFUSED = "refund.funds_refused"
    CHARGEBACK_RECEIVED = "chargeback.received"
    CHARGEBACK_REVERSED = "chargeback.reversed"
    PAYOUT_COMPUTED = "payout.computed"
    PAYOUT_PENDING = "payout.pending"
    PAYOUT_SETTLED = "payout.settled"
    PAYOUT_FAILED = "payout.failed"
    PAYOUT_UNKNOWN = "payout.unknown"
    FUNDING_TRANSFER_CREATED = "funding_transfer.created"
    FUNDING_TRANSFER_COMPLETED = "funding_transfer.completed"
    FUNDING_TRANSFER_FAILED = "funding_transfer.failed"
    EXPORT_READY = "export.ready"
    PAYMENT_OVERDUE = "payment.overdue"
    BUYER_ACCOUNT_UPSERTED = "buyer_account.upserted"
    PAYMENT_BANK_TRANSFER_PAID = "payment.bank_transfer_paid"


_ROUTABLE_CODE = re.compile(r"[A-Z0-9_]{1,64}")


def routing_key(event_type: str, data: Mapping[str, Any]) -> str:
    """The routing key an event is published under on `marketpay.events`: its type, and for a
    PSP notification also its event code (`psp.notification.received.CAPTURE`), so that each
    queue binds the codes its service acts on (`notification_bindings`) and the broker never
    delivers the others. A code that is not a plain word (`[A-Z0-9_]{1,64}`) keeps the bare
    type, which every notification queue still binds: it reaches them all, as before."""
    if event_type == EventType.PSP_NOTIFICATION_RECEIVED:
        code = data.get("event_code")
        if isinstance(code, str) and _ROUTABLE_CODE.fullmatch(code):
            return f"{event_type}.{code}"
    return event_type


def notification_bindings(*codes: str) -> list[tuple[str, str]]:
    """The bindings of a queue of PSP notifications that acts on `codes`: one per code, and the
    bare `psp.notification.received`, under which notifications were published before they
    named their code (rows of that era may still be in an outbox when a service is upgraded)
    and those whose code is not a plain word still are. What comes under the bare key is
    filtered by the queue's `accepts` (`common.broker.consumer.event_codes`)."""
    for code in codes:
        if not _ROUTABLE_CODE.fullmatch(code):
            raise ValueError(f"not a routable event code: {code!r}")
    legacy = (DOMAIN_EXCHANGE, str(EventType.PSP_NOTIFICATION_RECEIVED))
    return [
        legacy,
        *((DOMAIN_EXCHANGE, f"{EventType.PSP_NOTIFICATION_RECEIVED}.{c}") for c in codes),
    ]


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
    time_zone: str = "UTC"  # IANA; the calendar of bank-transfer due dates
    bank_transfer_iban: str | None = None  # where buyers' bank transfers go (None: checkout's)


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


BankWireOption = Literal["BANK_WIRE_ON_DUE_DATE", "BANK_WIRE_ON_ACCEPTANCE"]
BANK_WIRE_OPTIONS: frozenset[str] = frozenset(get_args(BankWireOption))


class BuyerAccountUpserted(EventData):
    """A buyer account's bank-wire payment option (exclusive; the default, for an account
    never set, is `BANK_WIRE_ON_ACCEPTANCE`), set by the tenant's operators."""

    tenant_id: str
    buyer_account: str
    revision: int = Field(ge=1)
    payment_option: BankWireOption


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


class BankTransferPaid(EventData):
    """`payment.bank_transfer_paid`: a bank-transfer payment received at least its amount
    (`PAID` or `OVER_PAID`). Nothing is captured at a PSP: the capture service splits `lines`
    as it splits a card capture and records each as captured (trigger `BANK_TRANSFER`). The
    excess of an over-payment is not part of the split (it is owed back to the buyer)."""

    payment_id: str
    order_id: str
    payment_option: str
    merchant_account: str
    reference: str
    amount: Money
    received: Money
    lines: list[PaymentLine] = Field(min_length=1)
    paid_at: datetime


class PaymentOverdue(EventData):
    """`payment.overdue`: a bank-transfer payment is past its due date (a calendar date in the
    tenant's time zone) and not fully paid; published once per payment and due date."""

    payment_id: str
    order_id: str
    buyer_account: str
    due_date: date
    amount: Money
    remaining: Money


# -- capture ---------------------------------------------------------------------------------

CaptureTrigger = Literal["IMMEDIATE", "DELAYED", "ON_SHIPMENT", "MANUAL", "BANK_TRANSFER"]
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


# -- refunds and chargebacks (capture) -------------------------------------------------------


class ReturnLine(EventData):
    """What one balance account gives back for one capture (a refund, a chargeback), or gets
    back (a chargeback reversed). The lines of one event sum to its amount."""

    capture_id: str
    logistic_order_id: str
    supplier_id: str
    party: SplitParty
    amount: int = Field(ge=0)


class RefundEvent(EventData):
    """What every `refund.*` event of one refund carries. A refund takes back money of one
    capture (one logistic order, one supplier); `revision` grows with each change."""

    refund_id: str
    revision: int = Field(ge=1)
    payment_id: str
    order_id: str
    capture_id: str
    logistic_order_id: str
    supplier_id: str
    amount: Money
    reason: str
    lines: list[ReturnLine] = Field(min_length=1)


class RefundRequested(RefundEvent):
    """The amount is reserved against what is refundable. With `funds_check` (the tenant's
    funding policy is `REFUSE_REFUND`) the refund waits for the payouts service's
    `refund.funds_reserved` or `refund.funds_refused` before it goes to the PSP; without it,
    it goes to the PSP at once and payouts funds a short supplier balance from the
    marketplace's account."""

    funds_check: bool


class RefundSucceeded(RefundEvent):
    """The PSP's REFUND notification confirmed it. `payment_captured` and `payment_refunded`
    (optional, added for checkout's status machine) are the payment's totals after it."""

    psp_reference: str | None
    payment_captured: Money | None = None
    payment_refunded: Money | None = None


class RefundFailed(RefundEvent):
    """The refund did not happen; its reservation is released. `payment_refunded` (optional,
    added for checkout's status machine) is the payment's refunded total after it."""

    code: str
    message: str
    payment_refunded: Money | None = None


class RefundFundsDecision(EventData):
    """The payouts service's answer to `refund.requested` (`refund.funds_reserved` or
    `refund.funds_refused`): whether the supplier's share is covered, and whether that share
    had already been paid out to the supplier."""

    refund_id: str
    payment_id: str
    supplier_id: str
    supplier_amount: Money
    supplier_share_paid_out: bool
    funding_transfer_id: str | None = None
    code: str | None = None


class ChargebackEvent(EventData):
    """A chargeback debits (`chargeback.received`) or a reversal credits back
    (`chargeback.reversed`) each party of each capture of the payment by the split frozen at
    capture; after partial refunds it takes only what is left."""

    chargeback_id: str
    revision: int = Field(ge=1)
    payment_id: str
    order_id: str
    psp_reference: str
    stage: str
    amount: Money
    reason: str | None = None
    lines: list[ReturnLine]


# -- payouts, ledger and funding transfers (payouts) -----------------------------------------

PayoutKind = Literal["SUPPLIER", "MARKETPLACE"]
PayoutStatus = Literal[
    "COMPUTED", "SKIPPED", "PENDING", "SETTLED", "FAILED", "INSUFFICIENT_FUNDS", "UNKNOWN"
]
AccountType = Literal["PLATFORM", "MARKETPLACE", "SUPPLIER"]


class PayoutEvent(EventData):
    """The full state of a payout at each `payout.*` event; `revision` grows with each
    change, so a read model keeps the newest."""

    payout_id: str
    revision: int = Field(ge=1)
    kind: PayoutKind
    supplier_id: str | None
    status: PayoutStatus
    amount: Money
    period_start: datetime | None = None
    period_end: datetime | None = None
    logistic_order_ids: list[str] = Field(default_factory=list)
    provider_reference: str | None = None
    code: str | None = None
    message: str | None = None


class FundingTransferEvent(EventData):
    """The full state of a funding transfer between the marketplace's and a supplier's
    balance accounts, linked to the payout or refund (or chargeback) that caused it."""

    funding_transfer_id: str
    revision: int = Field(ge=1)
    status: Literal["PENDING", "COMPLETED", "FAILED"]
    amount: Money
    source_account_type: AccountType
    target_account_type: AccountType
    supplier_id: str
    linked_type: Literal["PAYOUT", "REFUND", "CHARGEBACK"]
    linked_id: str
    reason: str | None = None


# -- exports ---------------------------------------------------------------------------------


class ExportReady(EventData):
    export_id: str
    export_type: Literal["transactions", "supplier_payouts", "funding_transfers"]
    rows: int = Field(ge=0)
    expires_at: datetime


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
    EventType.REFUND_REQUESTED: RefundRequested,
    EventType.REFUND_SUCCEEDED: RefundSucceeded,
    EventType.REFUND_FAILED: RefundFailed,
    EventType.REFUND_FUNDS_RESERVED: RefundFundsDecision,
    EventType.REFUND_FUNDS_REFUSED: RefundFundsDecision,
    EventType.CHARGEBACK_RECEIVED: ChargebackEvent,
    EventType.CHARGEBACK_REVERSED: ChargebackEvent,
    EventType.PAYOUT_COMPUTED: PayoutEvent,
    EventType.PAYOUT_PENDING: PayoutEvent,
    EventType.PAYOUT_SETTLED: PayoutEvent,
    EventType.PAYOUT_FAILED: PayoutEvent,
    EventType.PAYOUT_UNKNOWN: PayoutEvent,
    EventType.FUNDING_TRANSFER_CREATED: FundingTransferEvent,
    EventType.FUNDING_TRANSFER_COMPLETED: FundingTransferEvent,
    EventType.FUNDING_TRANSFER_FAILED: FundingTransferEvent,
    EventType.EXPORT_READY: ExportReady,
    EventType.PAYMENT_OVERDUE: PaymentOverdue,
    EventType.BUYER_ACCOUNT_UPSERTED: BuyerAccountUpserted,
    EventType.PAYMENT_BANK_TRANSFER_PAID: BankTransferPaid,
}


TEST_CATALOGUE: dict[str, type[EventData]] = {}
"""Event types that exist only in tests (`common.testing.events.probe_type`); empty in a
service. Kept apart from `CATALOGUE`, which lists what services publish."""


class UnknownEventError(ValueError):
    pass


def model_of(event_type: str) -> type[EventData] | None:
    return CATALOGUE.get(event_type) or TEST_CATALOGUE.get(event_type)


M = TypeVar("M", bound=EventData)


def read_data(model: type[M], data: Mapping[str, Any]) -> M:
    """A consumed event's payload, read tolerantly: fields this consumer does not know are
    ignored (a producer may add optional fields during a rolling deploy); the fields it knows
    are validated as strictly as ever. Producers stay strict: they build the model."""
    return model.model_validate(data, extra="ignore")


def parse_data(envelope: Envelope) -> EventData:
    """Validate an envelope's payload against the catalogue (tolerantly, see `read_data`)."""
    model = model_of(envelope.type)
    if model is None:
        raise UnknownEventError(envelope.type)
    return read_data(model, envelope.data)


def make_envelope(
    event_type: EventType,
    data: EventData,
    *,
    tenant_id: str | None,
    correlation_id: str,
    causation_id: str | None = None,
    version: int = 1,
) -> Envelope:
    """The envelope of one event: `data` must be the catalogue's model for `event_type`
    (a producer builds the model, so it cannot send a field the catalogue does not know)."""
    model = model_of(event_type)
    if model is None:
        raise UnknownEventError(f"{event_type} has no payload model in the catalogue yet")
    if not isinstance(data, model):
        raise TypeError(f"{event_type} carries {model.__name__}, not {type(data).__name__}")
    return Envelope(
        type=str(event_type),
        version=version,
        tenant_id=tenant_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
        # what consumers receive is the model's own JSON form (rates as strings, ...)
        data=data.model_dump(mode="json"),
    )
