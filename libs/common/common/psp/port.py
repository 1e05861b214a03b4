"""The PSP port: what Marketpay asks of a PSP, in its own types (DESIGN §11).

Amounts are `Money` (integer minor units + ISO 4217). A refusal is a result, not an error:
`AuthorisationResult.decline_code` says why. Errors are for calls that did not produce an
answer about the payment:

PspError                              code                        retryable
├── PspUnavailable                    psp_unavailable             yes  (connection, 5xx)
│   └── PspTimeout                    gateway_timeout_error       yes  (no answer in time)
├── PspGatewayError                   gateway_error               no   (unexpected answer)
├── PspAuthenticationError            gateway_authentication_error no  (API key refused)
├── PspIdempotencyError               gateway_idempotency_error   no   (key reused, other body)
└── PspValidationError                card_number_invalid, amount_required, ... no

A retryable error means the outcome is unknown: retry with the same idempotency key, or let
the webhook settle it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from common.money import Money

ResultCode = Literal[
    "Authorised",
    "Refused",
    "Error",
    "Cancelled",
    "Received",
    "Pending",
    "RedirectShopper",
    "ChallengeShopper",
    "IdentifyShopper",
    "PresentToShopper",
]

DeclineCode = Literal[
    "card_declined",
    "insufficient_funds",
    "lost_card",
    "stolen_card",
    "expired_card",
    "invalid_cvc",
    "gateway_error",
    "not_authenticated",
    "fraud_suspected",
    "restricted_card",
    "invalid_amount",
    "card_number_invalid",
    "cancelled",
]

SplitType = Literal[
    "BalanceAccount", "Commission", "Default", "MarketPlace", "PaymentFee", "VAT", "Remainder"
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Split(_Model):
    """One line of a split; the amount is in the currency of the operation."""

    amount: int = Field(ge=0)
    type: SplitType
    account: str | None = None
    reference: str | None = None
    description: str | None = None


class PaymentMethodsRequest(_Model):
    amount: Money | None = None
    country_code: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    shopper_locale: str | None = None
    merchant_account: str | None = None  # the adapter's configured account when absent


class PaymentMethodsResult(_Model):
    """In the PSP's own `paymentMethods` shape: the drop-in reads it as is."""

    payment_methods: list[dict[str, Any]]


class AuthoriseRequest(_Model):
    reference: str = Field(min_length=1, max_length=80)
    amount: Money
    payment_method: dict[str, Any]  # the drop-in's encrypted fields only, never a plain PAN
    return_url: str
    browser_info: dict[str, Any] | None = None
    splits: list[Split] | None = None
    additional_data: dict[str, str] | None = None  # e.g. enhancedSchemeData.* (Level 2/3)
    shopper_reference: str | None = None
    shopper_ip: str | None = None
    country_code: str | None = None
    merchant_account: str | None = None


class DetailsRequest(_Model):
    details: dict[str, Any]  # e.g. {"threeDSResult": "..."}
    payment_data: str | None = None


class AuthorisationResult(_Model):
    result_code: ResultCode
    psp_reference: str | None = None
    merchant_reference: str | None = None
    amount: Money | None = None
    action: dict[str, Any] | None = None  # for the drop-in (3DS2 challenge), as the PSP sent it
    refusal_reason: str | None = None
    refusal_reason_code: str | None = None
    decline_code: DeclineCode | None = None
    brand: str | None = None
    card_summary: str | None = None  # last four digits
    funding_source: str | None = None
    is_commercial_card: bool = False
    additional_data: dict[str, str] = Field(default_factory=dict)

    @property
    def authorised(self) -> bool:
        return self.result_code == "Authorised"

    @property
    def needs_action(self) -> bool:
        return self.action is not None and self.result_code in (
            "ChallengeShopper",
            "IdentifyShopper",
            "RedirectShopper",
        )


class CaptureRequest(_Model):
    psp_reference: str
    amount: Money
    reference: str | None = None
    splits: list[Split] | None = None
    additional_data: dict[str, str] | None = None  # Level 2/3 data at capture
    merchant_account: str | None = None


class RefundRequest(_Model):
    psp_reference: str
    amount: Money
    reference: str | None = None
    splits: list[Split] | None = None
    merchant_account: str | None = None


class CancelRequest(_Model):
    psp_reference: str
    reference: str | None = None
    merchant_account: str | None = None


class ModificationResult(_Model):
    """The PSP received the modification; its outcome arrives by webhook."""

    psp_reference: str
    payment_psp_reference: str
    status: str
    merchant_account: str
    amount: Money | None = None
    reference: str | None = None


class PspError(Exception):
    code = "gateway_error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        psp_error_code: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.psp_error_code = psp_error_code
        self.http_status = http_status


class PspUnavailable(PspError):
    code = "psp_unavailable"
    retryable = True


class PspTimeout(PspUnavailable):
    code = "gateway_timeout_error"


class PspGatewayError(PspError):
    code = "gateway_error"


class PspAuthenticationError(PspError):
    code = "gateway_authentication_error"


class PspIdempotencyError(PspError):
    code = "gateway_idempotency_error"


class PspValidationError(PspError):
    code = "parameter_missing"


@runtime_checkable
class PspPort(Protocol):
    """Every money-moving call takes an idempotency key derived from our own ids
    (e.g. `f"authorise:{payment_id}"`), so a retry after a crash reuses it."""

    async def payment_methods(self, request: PaymentMethodsRequest) -> PaymentMethodsResult: ...

    async def authorise(
        self, request: AuthoriseRequest, *, idempotency_key: str
    ) -> AuthorisationResult: ...

    async def submit_details(
        self, request: DetailsRequest, *, idempotency_key: str
    ) -> AuthorisationResult: ...

    async def capture(
        self, request: CaptureRequest, *, idempotency_key: str
    ) -> ModificationResult: ...

    async def refund(
        self, request: RefundRequest, *, idempotency_key: str
    ) -> ModificationResult: ...

    async def cancel(
        self, request: CancelRequest, *, idempotency_key: str
    ) -> ModificationResult: ...

    def verify_notification(self, item: Mapping[str, Any], hmac_keys: Sequence[str]) -> bool: ...
