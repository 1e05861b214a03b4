"""Request and response models of the refunds API (snake_case; seed 002's refund object)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common.money import Money


class RefundIn(BaseModel):
    """`amount` absent: everything still refundable (one refund per captured logistic order
    when `logistic_order_id` is absent too). `reason`: duplicate, fraudulent,
    customer_request, order_cancelled or goods_returned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: Money | None = None
    logistic_order_id: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$"
    )
    reason: str = Field(default="customer_request", min_length=1, max_length=40)
    description: str | None = Field(default=None, max_length=500)


class ReturnLineOut(BaseModel):
    party: str
    amount: int


class RefundHistoryOut(BaseModel):
    occurred_at: datetime
    status_from: str | None
    status_to: str
    source: str
    detail: dict[str, Any]


class RefundOut(BaseModel):
    id: str
    payment_id: str
    order_id: str
    capture_id: str
    logistic_order_id: str
    supplier_id: str
    amount: Money
    status: str  # AWAITING_FUNDS, WAITING_REFUND, REFUNDED, FAILED
    psp_request: str  # NOT_DUE, DUE, RECEIVED, UNKNOWN, DONE
    reason: str
    description: str | None
    lines: list[ReturnLineOut]
    funds_check: bool
    supplier_share_paid_out: bool | None
    funding_transfer_id: str | None
    psp_reference: str | None
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime
    refunded_at: datetime | None
    history: list[RefundHistoryOut] | None = None


class PaymentRefunds(BaseModel):
    payment_id: str
    refunds: list[RefundOut]


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    note: str = Field(min_length=1, max_length=2000)


class InterventionOut(BaseModel):
    id: str
    capture_id: str
    refund_id: str | None
    payment_id: str | None
    kind: str
    code: str
    reason: str
    status: str
    note: str | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
