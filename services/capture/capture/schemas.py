"""Request and response models of the capture API (snake_case)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common.money import Money, Rate


class CaptureRequestIn(BaseModel):
    """ADM-PAY-101. No body (or `{}`): every line still authorised and uncaptured."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    logistic_order_id: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$"
    )


class SplitLineOut(BaseModel):
    party: str
    amount: int
    rate: Rate | None


class AttemptOut(BaseModel):
    attempt: int
    generation: int
    idempotency_key: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None  # received | unknown | refused; null: in flight, or its replica died
    code: str | None
    detail: str | None
    psp_reference: str | None


class HistoryOut(BaseModel):
    occurred_at: datetime
    status_from: str | None
    status_to: str
    source: str
    detail: dict[str, Any]


class Capture(BaseModel):
    id: str
    payment_id: str
    order_id: str
    logistic_order_id: str
    supplier_id: str
    amount: Money
    trigger: str
    status: str
    revision: int
    platform_rate: Rate | None
    marketplace_rate: Rate | None
    splits: list[SplitLineOut]
    payment_psp_reference: str
    psp_reference: str | None
    block_code: str | None
    block_message: str | None
    failure_code: str | None
    failure_reason: str | None
    outcome_known: bool | None
    generation: int
    attempt_count: int
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    succeeded_at: datetime | None
    attempts: list[AttemptOut] | None = None
    history: list[HistoryOut] | None = None


class PaymentCaptures(BaseModel):
    """What ADM-PAY-101 did: the captures it created or reopened."""

    payment_id: str
    captures: list[Capture]


class Intervention(BaseModel):
    id: str
    capture_id: str
    payment_id: str
    logistic_order_id: str
    kind: str
    code: str
    reason: str
    status: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    capture: Capture | None = None


class LogisticOrderEvent(BaseModel):
    id: str
    oms_event_id: str
    order_id: str
    logistic_order_id: str
    supplier_id: str
    status: str
    occurred_at: datetime
    outcome: str
    reason: str | None
    payment_id: str | None
    capture_id: str | None
    created_at: datetime
    updated_at: datetime
