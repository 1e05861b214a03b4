"""Exports' decisions, pure: what a domain event becomes in the read models, which filters an
export may take, which columns a file has, how a cell is neutralised, and what a finished job
publishes. No I/O here; `repo` turns these into SQL and `worker` runs them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from common.events import (
    AccountType,
    CaptureSucceeded,
    ChargebackEvent,
    EventData,
    EventType,
    ExportReady,
    FundingTransferEvent,
    PaymentAuthorised,
    PayoutEvent,
    PayoutStatus,
    RefundEvent,
    RefundFailed,
    RefundSucceeded,
    ReturnLine,
)
from common.money import CurrencyCode

ExportType = Literal["transactions", "supplier_payouts", "funding_transfers"]
EXPORT_TYPES: tuple[ExportType, ...] = ("transactions", "supplier_payouts", "funding_transfers")
ExportStatus = Literal["PENDING", "RUNNING", "READY", "FAILED", "EXPIRED"]
TransactionType = Literal["AUTHORISATION", "CAPTURE", "REFUND", "CHARGEBACK", "CHARGEBACK_REVERSAL"]
TransactionStatus = Literal["AUTHORISED", "SUCCEEDED", "FAILED", "RECEIVED", "REVERSED"]
Direction = Literal["CREDIT", "DEBIT", "NONE"]
FundingTransferStatus = Literal["PENDING", "COMPLETED", "FAILED"]

MAX_AMOUNT = 10**15  # far above any real amount, well inside bigint
MAX_LIST = 100

# -- the read models ---------------------------------------------------------------------


@dataclass(frozen=True)
class TransactionRow:
    tenant_id: str
    row_key: str
    revision: int
    occurred_at: datetime
    transaction_type: TransactionType
    direction: Direction
    status: TransactionStatus
    payment_id: str
    order_id: str
    logistic_order_id: str
    supplier_id: str
    reference_id: str
    capture_id: str | None
    psp_reference: str | None
    amount: int
    currency: str
    platform_amount: int | None = None
    platform_rate: Decimal | None = None
    marketplace_amount: int | None = None
    marketplace_rate: Decimal | None = None
    supplier_amount: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class PayoutRow:
    tenant_id: str
    payout_id: str
    revision: int
    kind: str
    supplier_id: str | None
    status: str
    amount: int
    currency: str
    period_start: datetime | None
    period_end: datetime | None
    logistic_order_ids: list[str]
    provider_reference: str | None
    code: str | None
    message: str | None
    occurred_at: datetime


@dataclass(frozen=True)
class FundingTransferRow:
    tenant_id: str
    funding_transfer_id: str
    revision: int
    status: str
    amount: int
    currency: str
    source_account_type: str
    target_account_type: str
    supplier_id: str
    linked_type: str
    linked_id: str
    reason: str | None
    occurred_at: datetime


Projection = list[TransactionRow] | PayoutRow | FundingTransferRow

FEED_EVENTS: dict[str, type[EventData]] = {
    EventType.PAYMENT_AUTHORISED: PaymentAuthorised,
    EventType.CAPTURE_SUCCEEDED: CaptureSucceeded,
    EventType.REFUND_SUCCEEDED: RefundSucceeded,
    EventType.REFUND_FAILED: RefundFailed,
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
}
"""The events the read models are built from, with the catalogue model of each."""


def project(event_type: str, event: EventData, tenant_id: str, occurred_at: datetime) -> Projection:
    """What one event becomes in the read models. `occurred_at` is the envelope's: a row's
    time is when the fact happened, not when it arrived, so a rebuild gives the same file."""
    if isinstance(event, PaymentAuthorised):
        return _authorisation(event, tenant_id, occurred_at)
    if isinstance(event, CaptureSucceeded):
        return [_capture(event, tenant_id, occurred_at)]
    if isinstance(event, RefundEvent):
        return [_refund(event, tenant_id, occurred_at, failed=isinstance(event, RefundFailed))]
    if isinstance(event, ChargebackEvent):
        reversal = event_type == EventType.CHARGEBACK_REVERSED
        return _chargeback(event, tenant_id, occurred_at, reversal=reversal)
    if isinstance(event, PayoutEvent):
        return PayoutRow(
            tenant_id=tenant_id,
            payout_id=event.payout_id,
            revision=event.revision,
            kind=event.kind,
            supplier_id=event.supplier_id,
            status=event.status,
            amount=event.amount.value,
            currency=event.amount.currency,
            period_start=event.period_start,
            period_end=event.period_end,
            logistic_order_ids=list(event.logistic_order_ids),
            provider_reference=event.provider_reference,
            code=event.code,
            message=event.message,
            occurred_at=occurred_at,
        )
    if isinstance(event, FundingTransferEvent):
        return FundingTransferRow(
            tenant_id=tenant_id,
            funding_transfer_id=event.funding_transfer_id,
            revision=event.revision,
            status=event.status,
            amount=event.amount.value,
            currency=event.amount.currency,
            source_account_type=event.source_account_type,
            target_account_type=event.target_account_type,
            supplier_id=event.supplier_id,
            linked_type=event.linked_type,
            linked_id=event.linked_id,
            reason=event.reason,
            occurred_at=occurred_at,
        )
    raise ValueError(f"exports does not project {event_type}")


def _authorisation(
    event: PaymentAuthorised, tenant_id: str, occurred_at: datetime
) -> list[TransactionRow]:
    return [
        TransactionRow(
            tenant_id=tenant_id,
            row_key=f"AUTHORISATION:{event.payment_id}:{line.logistic_order_id}",
            revision=1,
            occurred_at=occurred_at,
            transaction_type="AUTHORISATION",
            direction="NONE",
            status="AUTHORISED",
            payment_id=event.payment_id,
            order_id=event.order_id,
            logistic_order_id=line.logistic_order_id,
            supplier_id=line.supplier_id,
            reference_id=event.payment_id,
            capture_id=None,
            psp_reference=event.psp_reference,
            amount=line.amount,
            currency=event.amount.currency,
        )
        for line in event.lines
    ]


def _capture(event: CaptureSucceeded, tenant_id: str, occurred_at: datetime) -> TransactionRow:
    by_party = {line.party: line.amount for line in event.splits}
    return TransactionRow(
        tenant_id=tenant_id,
        row_key=f"CAPTURE:{event.capture_id}",
        revision=event.revision,
        occurred_at=occurred_at,
        transaction_type="CAPTURE",
        direction="CREDIT",
        status="SUCCEEDED",
        payment_id=event.payment_id,
        order_id=event.order_id,
        logistic_order_id=event.logistic_order_id,
        supplier_id=event.supplier_id,
        reference_id=event.capture_id,
        capture_id=event.capture_id,
        psp_reference=event.psp_reference,
        amount=event.amount.value,
        currency=event.amount.currency,
        platform_amount=by_party.get("PLATFORM", 0),
        platform_rate=event.platform_rate,
        marketplace_amount=by_party.get("MARKETPLACE", 0),
        marketplace_rate=event.marketplace_rate,
        supplier_amount=by_party.get("SUPPLIER", 0),
    )


def _party_sums(lines: list[ReturnLine]) -> dict[str, int]:
    sums: dict[str, int] = defaultdict(int)
    for line in lines:
        sums[line.party] += line.amount
    return sums


def _refund(
    event: RefundEvent, tenant_id: str, occurred_at: datetime, *, failed: bool
) -> TransactionRow:
    sums = _party_sums(event.lines)
    return TransactionRow(
        tenant_id=tenant_id,
        row_key=f"REFUND:{event.refund_id}:{'FAILED' if failed else 'SUCCEEDED'}",
        revision=event.revision,
        occurred_at=occurred_at,
        transaction_type="REFUND",
        direction="NONE" if failed else "DEBIT",
        status="FAILED" if failed else "SUCCEEDED",
        payment_id=event.payment_id,
        order_id=event.order_id,
        logistic_order_id=event.logistic_order_id,
        supplier_id=event.supplier_id,
        reference_id=event.refund_id,
        capture_id=event.capture_id,
        psp_reference=event.psp_reference if isinstance(event, RefundSucceeded) else None,
        amount=event.amount.value,
        currency=event.amount.currency,
        platform_amount=sums["PLATFORM"],
        marketplace_amount=sums["MARKETPLACE"],
        supplier_amount=sums["SUPPLIER"],
        reason=event.message if isinstance(event, RefundFailed) else event.reason,
    )


def _chargeback(
    event: ChargebackEvent, tenant_id: str, occurred_at: datetime, *, reversal: bool
) -> list[TransactionRow]:
    """One row per capture the chargeback touches (each is one logistic order, one
    supplier), so a supplier's export holds its part and nothing of another's."""
    kind: TransactionType = "CHARGEBACK_REVERSAL" if reversal else "CHARGEBACK"
    per_capture: dict[str, list[ReturnLine]] = defaultdict(list)
    for line in event.lines:
        per_capture[line.capture_id].append(line)
    rows = []
    for capture_id in sorted(per_capture):
        lines = per_capture[capture_id]
        sums = _party_sums(lines)
        rows.append(
            TransactionRow(
                tenant_id=tenant_id,
                row_key=f"{kind}:{event.chargeback_id}:{capture_id}",
                revision=event.revision,
                occurred_at=occurred_at,
                transaction_type=kind,
                direction="CREDIT" if reversal else "DEBIT",
                status="REVERSED" if reversal else "RECEIVED",
                payment_id=event.payment_id,
                order_id=event.order_id,
                logistic_order_id=lines[0].logistic_order_id,
                supplier_id=lines[0].supplier_id,
                reference_id=event.chargeback_id,
                capture_id=capture_id,
                psp_reference=event.psp_reference,
                amount=sum(line.amount for line in lines),
                currency=event.amount.currency,
                platform_amount=sums["PLATFORM"],
                marketplace_amount=sums["MARKETPLACE"],
                supplier_amount=sums["SUPPLIER"],
                reason=event.reason,
            )
        )
    return rows


# -- filters -------------------------------------------------------------------------------

Id = Annotated[str, Field(min_length=1, max_length=64)]


class Filters(BaseModel):
    """Filters every export takes. `created_from` / `created_to` are inclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    created_from: AwareDatetime | None = None
    created_to: AwareDatetime | None = None
    supplier_ids: list[Id] | None = Field(default=None, min_length=1, max_length=MAX_LIST)
    amount_min: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)
    amount_max: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)
    currency: CurrencyCode | None = None


class TransactionFilters(Filters):
    types: list[TransactionType] | None = Field(default=None, min_length=1)
    statuses: list[TransactionStatus] | None = Field(default=None, min_length=1)
    payment_id: Id | None = None
    logistic_order_ids: list[Id] | None = Field(default=None, min_length=1, max_length=MAX_LIST)


class SupplierPayoutFilters(Filters):
    statuses: list[PayoutStatus] | None = Field(default=None, min_length=1)


class FundingTransferFilters(Filters):
    """ADM-PAY-553's filters (DESIGN §8)."""

    statuses: list[FundingTransferStatus] | None = Field(default=None, min_length=1)
    source_account_types: list[AccountType] | None = Field(default=None, min_length=1)
    target_account_types: list[AccountType] | None = Field(default=None, min_length=1)


FILTERS: dict[ExportType, type[Filters]] = {
    "transactions": TransactionFilters,
    "supplier_payouts": SupplierPayoutFilters,
    "funding_transfers": FundingTransferFilters,
}


@dataclass(frozen=True)
class FilterProblem:
    param: str
    message: str


def check_filters(filters: Filters) -> FilterProblem | None:
    """What the fields' own validation cannot see: ranges given backwards."""
    if (
        filters.created_from is not None
        and filters.created_to is not None
        and filters.created_from > filters.created_to
    ):
        return FilterProblem("filters.created_from", "created_from is after created_to")
    if (
        filters.amount_min is not None
        and filters.amount_max is not None
        and filters.amount_min > filters.amount_max
    ):
        return FilterProblem("filters.amount_min", "amount_min is greater than amount_max")
    return None


@dataclass(frozen=True)
class Scope:
    """Who asks: an operator (everything of its tenant) or one supplier."""

    tenant_id: str
    supplier_id: str | None = None


def may_export(export_type: ExportType, scope: Scope) -> bool:
    """Supplier payouts are for operators only; a supplier exports its own transactions and
    funding transfers."""
    return scope.supplier_id is None or export_type != "supplier_payouts"


# -- the files -----------------------------------------------------------------------------

TRANSACTION_COLUMNS = (
    "occurred_at",
    "transaction_type",
    "direction",
    "status",
    "amount",
    "currency",
    "payment_id",
    "order_id",
    "logistic_order_id",
    "supplier_id",
    "reference_id",
    "capture_id",
    "psp_reference",
    "platform_amount",
    "platform_rate",
    "marketplace_amount",
    "marketplace_rate",
    "supplier_amount",
    "reason",
)
COMMISSION_COLUMNS = frozenset(
    {"platform_amount", "platform_rate", "marketplace_amount", "marketplace_rate"}
)
"""Blank in a supplier's transactions export: operators get the commission breakdown."""

SUPPLIER_PAYOUT_COLUMNS = (
    "payout_id",
    "created_at",
    "updated_at",
    "supplier_id",
    "status",
    "amount",
    "currency",
    "period_start",
    "period_end",
    "logistic_order_count",
    "logistic_order_ids",
    "provider_reference",
    "failure_code",
    "failure_message",
)
FUNDING_TRANSFER_COLUMNS = (
    "funding_transfer_id",
    "created_at",
    "updated_at",
    "status",
    "amount",
    "currency",
    "source_account_type",
    "target_account_type",
    "supplier_id",
    "linked_type",
    "linked_id",
    "reason",
)
COLUMNS: dict[ExportType, tuple[str, ...]] = {
    "transactions": TRANSACTION_COLUMNS,
    "supplier_payouts": SUPPLIER_PAYOUT_COLUMNS,
    "funding_transfers": FUNDING_TRANSFER_COLUMNS,
}

DANGEROUS_FIRST = frozenset({"=", "+", "-", "@", "\t", "\r"})


def neutralise(cell: str) -> str:
    """The rule the SQL function `csv_safe` applies (OWASP CSV injection): a cell a
    spreadsheet would read as a formula gets a leading single quote."""
    return "'" + cell if cell[:1] in DANGEROUS_FIRST else cell


def csv_time(moment: datetime) -> str:
    """ISO 8601 UTC to the second, as the files write it (SQL `csv_time`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- jobs ----------------------------------------------------------------------------------


def storage_key(tenant_id: str, export_id: str, attempt: int) -> str:
    """Each attempt writes its own object, so a late writer of a lost attempt can never
    overwrite the file of the attempt that completed the job."""
    return f"{tenant_id}/{export_id}/{attempt}.csv"


def file_name(export_type: ExportType, export_id: str) -> str:
    return f"{export_type}_{export_id}.csv"


def ready_event(
    export_id: str, export_type: ExportType, rows: int, completed_at: datetime, retention: timedelta
) -> ExportReady:
    return ExportReady(
        export_id=export_id,
        export_type=export_type,
        rows=rows,
        expires_at=completed_at + retention,
    )


def rows_in(chunk: bytes) -> int:
    """Lines in a chunk of COPY output: the progress counter (a cell with a line break inside
    quotes counts twice, so progress is capped by the total and the final count is COPY's)."""
    return chunk.count(b"\n")
