"""Request and response models of the checkout API (snake_case; the PSP's camelCase stays in
the adapter)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StrictInt

from checkout.domain import PaymentOption
from common.money import MAX_AMOUNT, Money

Id = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LineIn(Request):
    logistic_order_id: str = Id
    supplier_id: str = Id
    amount: StrictInt = Field(ge=0, le=MAX_AMOUNT)


class Level3ItemIn(Request):
    commodity_code: str = Field(min_length=1, max_length=12)
    description: str = Field(min_length=1, max_length=26)
    quantity: Decimal = Field(gt=0, max_digits=12, decimal_places=4)
    unit_of_measure: str = Field(min_length=1, max_length=3)
    unit_price: StrictInt = Field(ge=0, le=MAX_AMOUNT)
    discount: StrictInt = Field(default=0, ge=0, le=MAX_AMOUNT)
    total: StrictInt = Field(ge=0, le=MAX_AMOUNT)


class Level3In(Request):
    customer_reference: str = Field(min_length=1, max_length=25)
    tax_total: StrictInt = Field(ge=0, le=MAX_AMOUNT)
    freight: StrictInt = Field(default=0, ge=0, le=MAX_AMOUNT)
    duty: StrictInt = Field(default=0, ge=0, le=MAX_AMOUNT)
    items: list[Level3ItemIn] = Field(min_length=1, max_length=9)


class SessionCreate(Request):
    order_id: str = Id
    amount: Money
    buyer_account: str = Id
    payment_option: PaymentOption = PaymentOption.CREDIT_CARD
    country_code: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    capture_mode: Literal["IMMEDIATE", "DELAYED", "ON_SHIPMENT", "MANUAL"] | None = None
    return_url: HttpUrl | None = None
    lines: list[LineIn] = Field(min_length=1, max_length=100)
    level3: Level3In | None = None


class BankTransferInstructions(BaseModel):
    """Where and how a BANK_WIRE_* payment is paid: the beneficiary IBAN, the ISO 11649
    creditor reference the buyer must quote, the amount; what arrived so far, what is still
    due, what was paid in excess (owed back), and the due date once an order line shipped."""

    iban: str
    reference: str
    amount: Money
    received: Money
    remaining: Money
    excess: Money
    due_date: date | None
    overdue: bool


class IncomingTransfer(BaseModel):
    """A transfer the PSP reported: APPLIED, UNMATCHED (parked for an operator), REJECTED,
    ASSIGNED (by an operator) or RETURNED (to its sender). `amount` in minor units."""

    id: str
    psp_reference: str
    reference: str
    amount: int
    currency: str
    status: str
    reason: str | None
    payment_id: str | None
    created_at: datetime
    resolved_at: datetime | None
    resolved_note: str | None


class AssignTransfer(Request):
    payment_id: str = Id


class ReturnTransfer(Request):
    note: str | None = Field(default=None, max_length=500)


class LineOut(BaseModel):
    logistic_order_id: str
    supplier_id: str
    amount: int
    status: str  # its capture: PENDING, CAPTURE_PENDING, CAPTURED, CAPTURE_FAILED, ..._BLOCKED
    capture_id: str | None


class TimelineEntry(BaseModel):
    occurred_at: datetime
    kind: str
    status_from: str | None
    status_to: str | None
    detail: dict[str, Any]


class Payment(BaseModel):
    id: str
    order_id: str
    buyer_account: str
    payment_option: str
    capture_mode: str | None
    amount: Money
    status: str
    psp_reference: str | None
    result_code: str | None
    refusal_reason: str | None
    business_card: bool | None
    lines: list[LineOut]
    created_at: datetime
    updated_at: datetime
    timeline: list[TimelineEntry] | None = None
    bank_transfer: BankTransferInstructions | None = None


class SessionCreated(BaseModel):
    id: str
    payment_id: str
    client_token: str
    expires_at: datetime
    status: str
    amount: Money
    bank_transfer: BankTransferInstructions | None = None


class ShopPaymentStatus(BaseModel):
    id: str
    status: str
    result_code: str | None
    refusal_reason: str | None
    amount: Money
    bank_transfer: BankTransferInstructions | None = None


class PayRequest(Request):
    """PAY-101. `payment_method` is the drop-in's object as the PSP defines it (camelCase):
    encrypted or tokenised card fields only."""

    payment_method: dict[str, Any] = Field(min_length=1, max_length=20)
    browser_info: dict[str, Any] | None = None
    return_url: HttpUrl | None = None


class DetailsRequestIn(Request):
    """PAY-102: what the drop-in got back from the issuer's challenge (the client token says
    which payment)."""

    details: dict[str, Any] = Field(min_length=1, max_length=10)
    payment_data: str | None = Field(default=None, max_length=10_000)


class PayResult(BaseModel):
    id: str
    status: str
    result_code: str | None
    action: dict[str, Any] | None = None
    refusal_reason: str | None = None
    decline_code: str | None = None
    business_card: bool | None = None


class PaymentMethods(BaseModel):
    payment_methods: list[dict[str, Any]]
