"""The Adyen Checkout API (v71) adapter of the PSP port.

- One aiohttp session per adapter (`async with AdyenAdapter(config) as psp`, or `start()` /
  `close()` from a cleanup context).
- Every call has its own timeout. Retries (tenacity, exponential backoff) happen only for
  requests that are safe to repeat: POSTs carrying an `Idempotency-Key` (the PSP answers a
  repeat with the first response, no second effect) and the read-only `/paymentMethods`;
  only on connection errors, timeouts, 429 and 5xx, and always with the same key.
- Idempotency keys come from the caller's own ids (`f"authorise:{payment_id}"`): at most 64
  characters, longer ones are replaced by a hash so the same id always gives the same key.
- Nothing here logs a request body: no API key, no card field, no HMAC key reaches a log.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from common.logging import get_logger
from common.money import Money
from common.psp.hmac import verify_signature
from common.psp.port import (
    AuthorisationResult,
    AuthoriseRequest,
    CancelRequest,
    CaptureRequest,
    DeclineCode,
    DetailsRequest,
    ModificationResult,
    PaymentMethodsRequest,
    PaymentMethodsResult,
    PspAuthenticationError,
    PspError,
    PspGatewayError,
    PspIdempotencyError,
    PspTimeout,
    PspUnavailable,
    PspValidationError,
    RefundRequest,
    Split,
)

log = get_logger("marketpay.psp.adyen")

MAX_IDEMPOTENCY_KEY = 64


class AdyenConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = "https://checkout-test.adyen.com/v71"  # the sandbox: http://127.0.0.1:8090/v71
    api_key: SecretStr
    # A platform's company-level key acts for many merchant accounts: then each request names
    # its own, and this default may stay unset.
    merchant_account: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)
    connect_timeout_s: float = Field(default=3.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=10)
    retry_initial_delay_s: float = Field(default=0.2, ge=0)
    retry_max_delay_s: float = Field(default=2.0, ge=0)


def idempotency_key(key: str) -> str:
    """The key as sent to Adyen: itself when it fits in 64 printable ASCII characters,
    else a deterministic hash of it."""
    if 0 < len(key) <= MAX_IDEMPOTENCY_KEY and key.isascii() and key.isprintable():
        return key
    return "h:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[: MAX_IDEMPOTENCY_KEY - 2]


# Adyen validation errorCode → our stable error code (seed 002's codes where one fits).
_VALIDATION_CODES: dict[str, tuple[str, str | None]] = {
    "100": ("amount_required", "amount"),
    "101": ("card_number_invalid", "payment_method"),
    "102": ("card_number_invalid", "payment_method"),
    "103": ("invalid_cvc", "payment_method"),
    "129": ("invalid_expiry_month", "payment_method"),
    "130": ("parameter_missing", "reference"),
    "137": ("invalid_charge_amount", "amount"),
    "138": ("currency_invalid", "amount"),
    "167": ("resource_not_found", "psp_reference"),
    "901": ("parameter_missing", "merchant_account"),
    "14_006": ("payment_method_required", "payment_method"),
}

# Adyen refusalReasonCode → our decline code.
_DECLINES: dict[str, DeclineCode] = {
    "2": "card_declined",
    "3": "card_declined",
    "4": "gateway_error",
    "5": "card_declined",
    "6": "expired_card",
    "7": "invalid_amount",
    "8": "card_number_invalid",
    "9": "gateway_error",
    "11": "not_authenticated",
    "12": "insufficient_funds",
    "14": "fraud_suspected",
    "15": "cancelled",
    "16": "cancelled",
    "20": "fraud_suspected",
    "22": "fraud_suspected",
    "24": "invalid_cvc",
    "25": "restricted_card",
    "31": "fraud_suspected",
    "42": "not_authenticated",
}

# The issuer's raw ISO 8583 answer (additionalData.refusalReasonRaw) is more precise for these.
_RAW_DECLINES: dict[str, DeclineCode] = {
    "05": "card_declined",
    "41": "lost_card",
    "43": "stolen_card",
    "51": "insufficient_funds",
    "54": "expired_card",
    "N7": "invalid_cvc",
    "91": "gateway_error",
}


def decline_code(result_code: str, reason_code: str | None, raw: str | None) -> DeclineCode | None:
    if result_code == "Error":
        return "gateway_error"
    if result_code == "Cancelled":
        return "cancelled"
    if result_code != "Refused":
        return None
    if raw:
        found = _RAW_DECLINES.get(raw.split(":", 1)[0].strip())
        if found is not None:
            return found
    return _DECLINES.get(reason_code or "", "card_declined")


def _money(value: Any) -> Money | None:
    if not isinstance(value, Mapping):
        return None
    try:
        return Money(value=value.get("value"), currency=value.get("currency"))
    except ValidationError:
        return None


def _amount(money: Money) -> dict[str, Any]:
    return {"value": money.value, "currency": money.currency}


def _splits(splits: Sequence[Split], currency: str) -> list[dict[str, Any]]:
    out = []
    for split in splits:
        line: dict[str, Any] = {
            "amount": {"value": split.amount, "currency": currency},
            "type": split.type,
        }
        for name in ("account", "reference", "description"):
            value = getattr(split, name)
            if value is not None:
                line[name] = value
        out.append(line)
    return out


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}


class AdyenAdapter:
    def __init__(self, config: AdyenConfig, session: aiohttp.ClientSession | None = None) -> None:
        self._config = config
        self._base_url = config.base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(
            total=config.timeout_s, sock_connect=config.connect_timeout_s
        )

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the port ---------------------------------------------------------------------

    async def payment_methods(self, request: PaymentMethodsRequest) -> PaymentMethodsResult:
        body: dict[str, Any] = {"merchantAccount": self._account(request.merchant_account)}
        if request.amount is not None:
            body["amount"] = _amount(request.amount)
        if request.country_code is not None:
            body["countryCode"] = request.country_code
        if request.shopper_locale is not None:
            body["shopperLocale"] = request.shopper_locale
        answer = await self._post("/paymentMethods", body, key=None, safe=True)
        methods = answer.get("paymentMethods")
        return PaymentMethodsResult(payment_methods=methods if isinstance(methods, list) else [])

    async def authorise(
        self, request: AuthoriseRequest, *, idempotency_key: str
    ) -> AuthorisationResult:
        body: dict[str, Any] = {
            "merchantAccount": self._account(request.merchant_account),
            "amount": _amount(request.amount),
            "reference": request.reference,
            "paymentMethod": request.payment_method,
            "returnUrl": request.return_url,
            "channel": "Web",
        }
        optional = {
            "browserInfo": request.browser_info,
            "additionalData": request.additional_data,
            "shopperReference": request.shopper_reference,
            "shopperIP": request.shopper_ip,
            "countryCode": request.country_code,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if request.splits is not None:
            body["splits"] = _splits(request.splits, request.amount.currency)
        answer = await self._post("/payments", body, key=idempotency_key, safe=True)
        return self._authorisation(answer)

    async def submit_details(
        self, request: DetailsRequest, *, idempotency_key: str
    ) -> AuthorisationResult:
        body: dict[str, Any] = {"details": request.details}
        if request.payment_data is not None:
            body["paymentData"] = request.payment_data
        answer = await self._post("/payments/details", body, key=idempotency_key, safe=True)
        return self._authorisation(answer)

    async def capture(self, request: CaptureRequest, *, idempotency_key: str) -> ModificationResult:
        body = self._modification_body(request.merchant_account, request.reference)
        body["amount"] = _amount(request.amount)
        if request.splits is not None:
            body["splits"] = _splits(request.splits, request.amount.currency)
        if request.additional_data is not None:
            body["additionalData"] = request.additional_data
        path = f"/payments/{request.psp_reference}/captures"
        return self._modification(await self._post(path, body, key=idempotency_key, safe=True))

    async def refund(self, request: RefundRequest, *, idempotency_key: str) -> ModificationResult:
        body = self._modification_body(request.merchant_account, request.reference)
        body["amount"] = _amount(request.amount)
        if request.splits is not None:
            body["splits"] = _splits(request.splits, request.amount.currency)
        path = f"/payments/{request.psp_reference}/refunds"
        return self._modification(await self._post(path, body, key=idempotency_key, safe=True))

    async def cancel(self, request: CancelRequest, *, idempotency_key: str) -> ModificationResult:
        body = self._modification_body(request.merchant_account, request.reference)
        path = f"/payments/{request.psp_reference}/cancels"
        return self._modification(await self._post(path, body, key=idempotency_key, safe=True))

    def verify_notification(self, item: Mapping[str, Any], hmac_keys: Sequence[str]) -> bool:
        valid: bool = verify_signature(item, hmac_keys)
        return valid

    # -- mapping ----------------------------------------------------------------------

    def _account(self, given: str | None) -> str:
        account = given or self._config.merchant_account
        if not account:
            raise PspValidationError(
                "no merchant account for this request",
                code="parameter_missing",
                param="merchant_account",
            )
        return account

    def _modification_body(
        self, merchant_account: str | None, reference: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"merchantAccount": self._account(merchant_account)}
        if reference is not None:
            body["reference"] = reference
        return body

    @staticmethod
    def _authorisation(answer: Mapping[str, Any]) -> AuthorisationResult:
        additional = _strings(answer.get("additionalData"))
        result_code = str(answer.get("resultCode", "Error"))
        reason_code = answer.get("refusalReasonCode")
        action = answer.get("action")
        try:
            return AuthorisationResult(
                result_code=result_code,
                psp_reference=answer.get("pspReference"),
                merchant_reference=answer.get("merchantReference"),
                amount=_money(answer.get("amount")),
                action=action if isinstance(action, dict) else None,
                refusal_reason=answer.get("refusalReason"),
                refusal_reason_code=str(reason_code) if reason_code is not None else None,
                decline_code=decline_code(
                    result_code,
                    str(reason_code) if reason_code is not None else None,
                    additional.get("refusalReasonRaw"),
                ),
                brand=additional.get("paymentMethod"),
                card_summary=additional.get("cardSummary"),
                funding_source=additional.get("fundingSource"),
                is_commercial_card=additional.get("isCardCommercial", "").lower()
                in ("true", "yes"),
                additional_data=additional,
            )
        except ValidationError as exc:
            raise PspGatewayError(
                f"unexpected payment answer: {exc.error_count()} errors"
            ) from None

    @staticmethod
    def _modification(answer: Mapping[str, Any]) -> ModificationResult:
        try:
            return ModificationResult(
                psp_reference=answer.get("pspReference"),
                payment_psp_reference=answer.get("paymentPspReference"),
                status=answer.get("status"),
                merchant_account=answer.get("merchantAccount"),
                amount=_money(answer.get("amount")),
                reference=answer.get("reference"),
            )
        except ValidationError as exc:
            raise PspGatewayError(
                f"unexpected modification answer: {exc.error_count()} errors"
            ) from None

    # -- transport --------------------------------------------------------------------

    async def _post(
        self, path: str, body: Mapping[str, Any], *, key: str | None, safe: bool
    ) -> dict[str, Any]:
        headers = {
            "X-API-Key": self._config.api_key.get_secret_value(),
            "Content-Type": "application/json",
        }
        if key is not None:
            headers["Idempotency-Key"] = idempotency_key(key)
        payload = json.dumps(body, separators=(",", ":")).encode()
        attempts = self._config.max_attempts if safe else 1
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(
                multiplier=self._config.retry_initial_delay_s,
                max=self._config.retry_max_delay_s,
            ),
            retry=retry_if_exception_type(PspUnavailable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._send(path, payload, headers, attempt.retry_state.attempt_number)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self, path: str, payload: bytes, headers: Mapping[str, str], attempt: int
    ) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("AdyenAdapter used before start()")
        url = self._base_url + path
        try:
            async with self._session.post(
                url, data=payload, headers=headers, timeout=self._timeout
            ) as response:
                status = response.status
                raw = await response.read()
        except TimeoutError:
            log.warning("psp call timed out", path=path, attempt=attempt)
            raise PspTimeout(f"no answer from the PSP within {self._config.timeout_s}s") from None
        except aiohttp.ClientError as exc:
            log.warning("psp unreachable", path=path, attempt=attempt, error=type(exc).__name__)
            raise PspUnavailable(f"the PSP is unreachable ({type(exc).__name__})") from None
        try:
            answer = json.loads(raw) if raw else {}
        except (ValueError, UnicodeDecodeError):
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        if 200 <= status < 300:
            log.info(
                "psp call",
                path=path,
                status=status,
                attempt=attempt,
                psp_reference=answer.get("pspReference"),
                result_code=answer.get("resultCode"),
            )
            return answer
        log.warning(
            "psp call failed",
            path=path,
            status=status,
            attempt=attempt,
            psp_error_code=answer.get("errorCode"),
        )
        raise _error(status, answer)


def _error(status: int, answer: Mapping[str, Any]) -> PspError:
    error_code = str(answer.get("errorCode")) if answer.get("errorCode") is not None else None
    message = str(answer.get("message") or f"the PSP answered HTTP {status}")
    common: dict[str, Any] = {"psp_error_code": error_code, "http_status": status}
    if status == 429:
        return PspUnavailable(message, code="gateway_rate_limit_error", **common)
    if status >= 500:
        return PspUnavailable(message, **common)
    if status in (401, 403):
        return PspAuthenticationError(message, **common)
    if error_code == "704":
        return PspIdempotencyError(message, **common)
    if status in (400, 422):
        code, param = _VALIDATION_CODES.get(error_code or "", ("psp_request_invalid", None))
        return PspValidationError(message, code=code, param=param, **common)
    return PspGatewayError(message, **common)
