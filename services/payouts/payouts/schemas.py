"""Response and request models of the payouts API (snake_case)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from common.money import Money


class AccountBalance(BaseModel):
    id: int
    type: str
    supplier_id: str | None
    currency: str
    balance: int
    held: int | None  # null for a past instant: holds are current state
    available: int | None


class Posting(BaseModel):
    transaction_id: int
    idempotency_key: str
    kind: str
    amount: Money
    signed_amount: int
    capture_id: str | None
    logistic_order_id: str | None
    ref_type: str | None
    ref_id: str | None
    posted_at: datetime


class LedgerCheck(BaseModel):
    ok: bool
    unbalanced_transactions: int
    nonzero_tenant_currencies: int
    balance_mismatches: int
    held_mismatches: int
    conflicts: int


class FundingTransfer(BaseModel):
    id: str
    status: str
    reason: str | None
    amount: Money
    recovered: int
    supplier_id: str
    source_account_type: str
    target_account_type: str
    linked_type: str
    linked_id: str
    created_at: datetime
    updated_at: datetime


class PayoutLine(BaseModel):
    capture_id: str
    logistic_order_id: str
    amount: int


class Payout(BaseModel):
    id: str
    kind: str
    supplier_id: str | None
    status: str
    amount: Money
    recovered: int
    period_start: datetime | None
    period_end: datetime | None
    code: str | None
    message: str | None
    funding_transfer_id: str | None
    provider_reference: str | None
    revision: int
    created_at: datetime
    updated_at: datetime


class ComputeIn(BaseModel):
    """Compute the payouts of a period now (default: everything eligible up to now)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(default="SUPPLIER", pattern="^(SUPPLIER|MARKETPLACE)$")
    supplier_id: str | None = Field(default=None, min_length=1, max_length=64)
    period_end: datetime | None = None


class Intervention(BaseModel):
    id: int
    payout_id: str
    reason: str
    status: str
    created_at: datetime


class BankAccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    iban: str = Field(min_length=15, max_length=34, pattern=r"^[A-Z]{2}[0-9]{2}[A-Za-z0-9]+$")
    holder: str = Field(min_length=1, max_length=140)
