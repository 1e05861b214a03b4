"""The Adyen Checkout API subset, under `/v71/` and `/v72/`.

Every call goes through `_adyen`: `X-API-Key` authentication, JSON parsing, fault injection,
the request log, and `Idempotency-Key` (same key and body → the first response again, no
second effect; same key and another body, or while the first runs → 422 errorCode 704).
Errors keep Adyen's shape: `{"status", "errorCode", "message", "errorType"}`.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from common.http.routing import Api, Call
from common.logging import get_logger
from psp_sandbox import domain
from psp_sandbox.app import SETTINGS, STORE, WEBHOOKS
from psp_sandbox.settings import Settings
from psp_sandbox.store import (
    IdempotencyRecord,
    MerchantAccount,
    Modification,
    Payment,
    Store,
    fingerprint,
    now_iso,
)
from psp_sandbox.webhooks import WebhookSender, notification_item

log = get_logger("psp_sandbox.checkout")

VERSIONS = ("v71", "v72")
CARD_FIELDS = (
    "encryptedCardNumber",
    "encryptedExpiryMonth",
    "encryptedExpiryYear",
    "encryptedSecurityCode",
    "number",
    "expiryMonth",
    "expiryYear",
    "cvc",
)
MAX_IDEMPOTENCY_KEY = 64


class AdyenError(Exception):
    def __init__(self, status: int, error_code: str, message: str, error_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.error_type = error_type

    def body(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "errorCode": self.error_code,
            "message": self.message,
            "errorType": self.error_type,
        }


def validation(error_code: str, message: str) -> AdyenError:
    return AdyenError(422, error_code, message, "validation")


class AdyenResponse(BaseModel):
    """Adyen's JSON (documented loosely: the sandbox answers Adyen's own shapes)."""

    model_config = ConfigDict(extra="allow")


@dataclass
class AdyenCall:
    request: web.Request
    account: MerchantAccount
    body: dict[str, Any]
    idempotency_key: str | None
    store: Store
    webhooks: WebhookSender
    settings: Settings


AdyenHandler = Callable[[AdyenCall], Awaitable[tuple[int, dict[str, Any]]]]


def _adyen(handler: AdyenHandler) -> Callable[[web.Request, Call[Any]], Awaitable[web.Response]]:
    async def endpoint(request: web.Request, _: Call[Any]) -> web.Response:
        try:
            return await _handle(request, handler)
        except AdyenError as exc:
            return web.json_response(exc.body(), status=exc.status)

    endpoint.__name__ = handler.__name__
    return endpoint


async def _handle(request: web.Request, handler: AdyenHandler) -> web.Response:
    store = request.app[STORE]
    api_key = request.headers.get("X-API-Key", "")
    company_key = request.app[SETTINGS].company_api_key
    is_company_key = bool(
        api_key
        and company_key is not None
        and secrets.compare_digest(api_key, company_key.get_secret_value())
    )
    account = store.account_by_key(api_key) if api_key and not is_company_key else None
    if account is None and not is_company_key:
        raise AdyenError(401, "000", "HTTP Status Response - Unauthorized", "security")
    path = "/" + request.path.split("/", 2)[2]  # without the version
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        raise AdyenError(400, "702", "Unable to parse JSON", "validation") from None
    if not isinstance(body, dict):
        raise AdyenError(400, "702", "Unable to parse JSON", "validation")
    if account is None:
        # A company-level credential acts for any of its merchant accounts: the one named in
        # the body, or, for /payments/details (which names none), the payment's own.
        named = body.get("merchantAccount")
        if named is None and path == "/payments/details":
            pending = _payment_awaiting_details(store, body)
            named = pending.merchant_account if pending is not None else None
        account = store.accounts.get(str(named or ""))
        if account is None:
            raise AdyenError(403, "901", "Invalid Merchant Account", "security")
    key = request.headers.get("Idempotency-Key")
    entry: dict[str, Any] = {"method": request.method, "path": path, "idempotencyKey": key}
    store.log_request(account.code, entry)
    await _inject_faults(request, account, entry)
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise validation("000", f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    call = AdyenCall(
        request, account, body, key, store, request.app[WEBHOOKS], request.app[SETTINGS]
    )
    if key is None:
        status, answer = await _run(handler, call)
        return web.json_response(answer, status=status)
    print_ = fingerprint(request.method, path, body)
    scope = (account.code, key)
    record = store.idempotency.get(scope)
    if record is not None:
        if record.fingerprint != print_:
            raise validation("704", "Idempotency key already used with a different request")
        if not record.done.is_set():
            raise validation("704", "request already processed or in progress")
        entry["replayed"] = True
        assert record.body is not None
        return web.json_response(
            record.body, status=record.status, headers={"Idempotent-Replayed": "true"}
        )
    record = IdempotencyRecord(fingerprint=print_, done=asyncio.Event())
    store.idempotency[scope] = record
    try:
        status, answer = await _run(handler, call)
    except BaseException:
        del store.idempotency[scope]
        raise
    if status >= 500:
        del store.idempotency[scope]
    else:
        record.status, record.body = status, answer
    record.done.set()
    return web.json_response(answer, status=status)


async def _run(handler: AdyenHandler, call: AdyenCall) -> tuple[int, dict[str, Any]]:
    try:
        return await handler(call)
    except AdyenError as exc:
        if exc.status >= 500:
            raise
        return exc.status, exc.body()


async def _inject_faults(
    request: web.Request, account: MerchantAccount, entry: dict[str, Any]
) -> None:
    faults = account.faults
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    if faults.timeout or faults.timeout_next:
        if faults.timeout_next:
            faults.timeout_next -= 1
        entry["fault"] = "timeout"
        await _hang(request, faults.hang_ms / 1000)
    if faults.fail_next or (faults.error_rate and random.random() < faults.error_rate):
        if faults.fail_next:
            faults.fail_next -= 1
        entry["fault"] = "error"
        raise AdyenError(500, "905", "Internal error (sandbox fault injection)", "internal")


async def _hang(request: web.Request, seconds: float) -> None:
    """Hang like an unresponsive PSP; a client that gives up leaves nothing processed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise asyncio.CancelledError
        await asyncio.sleep(0.02)


# -- payments ---------------------------------------------------------------------------


def _require_merchant_account(call: AdyenCall) -> None:
    given = call.body.get("merchantAccount")
    if not given:
        raise validation("901", "Required field 'merchantAccount' is not provided.")
    if given != call.account.code:
        raise AdyenError(403, "901", "Invalid Merchant Account", "security")


def _amount(body: dict[str, Any], required: bool = True) -> dict[str, Any] | None:
    amount = body.get("amount")
    if amount is None:
        if required:
            raise validation("100", "Required object 'amount' is not provided.")
        return None
    if not isinstance(amount, dict):
        raise validation("137", "Invalid amount specified")
    value, currency = amount.get("value"), amount.get("currency")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise validation("137", "Invalid amount specified")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isupper():
        raise validation("138", "Unsupported currency specified")
    return {"value": value, "currency": currency}


async def payment_methods(call: AdyenCall) -> tuple[int, dict[str, Any]]:
    _require_merchant_account(call)
    _amount(call.body, required=False)
    brands = ["visa", "mc", "amex", "discover", "diners", "jcb", "cup"]
    return 200, {"paymentMethods": [{"name": "Cards", "type": "scheme", "brands": brands}]}


def _card_value(call: AdyenCall, method: dict[str, Any], name: str, plain: str) -> str | None:
    """A card field from `test_`-prefixed encrypted fields, sandbox tokens, or plain fields."""
    value = method.get(name)
    if value is None:
        value = method.get(plain)
        return str(value) if value is not None else None
    value = str(value)
    if value.startswith("test_"):
        return value[len("test_") :]
    if value.startswith("sbx_tok_"):
        found = call.store.detokenize(value)
        if found is None:
            raise validation("000", f"Unknown or expired sandbox token in {name}")
        return found
    raise validation("000", f"Unable to decrypt {name} (the sandbox accepts test_ or sbx_tok_)")


def _card(call: AdyenCall) -> domain.Card:
    method = call.body.get("paymentMethod")
    if not isinstance(method, dict):
        raise validation("14_006", "Required object 'paymentMethod' is not provided.")
    if method.get("type", "scheme") != "scheme":
        raise validation("905", "Payment details are not supported")
    number = _card_value(call, method, "encryptedCardNumber", "number")
    month = _card_value(call, method, "encryptedExpiryMonth", "expiryMonth")
    year = _card_value(call, method, "encryptedExpiryYear", "expiryYear")
    cvc = _card_value(call, method, "encryptedSecurityCode", "cvc")
    if not number:
        raise validation("101", "Invalid card number")
    if not month or not year:
        raise validation("129", "Expiry Date Invalid")
    return domain.Card(number=number, expiry_month=month, expiry_year=year, cvc=cvc)


def _without_card_data(body: dict[str, Any]) -> dict[str, Any]:
    kept = dict(body)
    method = kept.get("paymentMethod")
    if isinstance(method, dict):
        kept["paymentMethod"] = {k: v for k, v in method.items() if k not in CARD_FIELDS}
    return kept


def _card_additional_data(card: domain.TestCard, expiry: str) -> dict[str, str]:
    return {
        "cardSummary": domain.last_four(card.number),
        "paymentMethod": card.brand,
        "cardPaymentMethod": card.brand,
        "expiryDate": expiry,
        "cardBin": card.number[:6],
        "fundingSource": card.funding_source,
        "cardIssuingCountry": card.issuing_country,
        "isCardCommercial": "true" if card.commercial else "false",
    }


async def payments(call: AdyenCall) -> tuple[int, dict[str, Any]]:
    body = call.body
    amount = _amount(body)
    assert amount is not None
    if not body.get("reference"):
        raise validation("130", "Required field 'reference' is not provided.")
    _require_merchant_account(call)
    card = _card(call)
    decision = domain.decide(card, datetime.now(UTC).date())
    if isinstance(decision, domain.Invalid):
        raise validation(decision.error_code, decision.message)
    month = int(card.expiry_month)
    year = int(card.expiry_year) + (2000 if int(card.expiry_year) < 100 else 0)
    payment = Payment(
        psp_reference=call.store.new_psp_reference(),
        merchant_account=call.account.code,
        reference=str(body["reference"]),
        amount=amount,
        card=decision.card,
        expiry=f"{month}/{year}",
        result_code="Received",
        request=_without_card_data(body),
        idempotency_key=call.idempotency_key,
        created_at=now_iso(),
    )
    call.store.payments[payment.psp_reference] = payment
    if isinstance(decision, domain.Challenge):
        return 200, _challenge(call, payment, decision)
    refusal = decision.refusal if isinstance(decision, domain.Refused) else None
    return 200, _settle(call, payment, refusal)


def _challenge(call: AdyenCall, payment: Payment, decision: domain.Challenge) -> dict[str, Any]:
    trans_id = secrets.token_hex(16)
    payment.result_code = "ChallengeShopper"
    payment.challenge_trans_id = trans_id
    payment.challenge_fails = decision.fails
    call.store.challenges[trans_id] = payment.psp_reference
    base = call.settings.public_url or f"{call.request.scheme}://{call.request.host}"
    token = domain.encode_three_ds_result(trans_id, authenticated=False)  # opaque to clients
    log.info("3ds challenge", psp_reference=payment.psp_reference)
    return {
        "resultCode": "ChallengeShopper",
        "pspReference": payment.psp_reference,
        "merchantReference": payment.reference,
        "action": {
            "type": "threeDS2",
            "subtype": "challenge",
            "token": token,
            "paymentData": payment.psp_reference,
            "authorisationToken": trans_id,
            "paymentMethodType": "scheme",
            "url": f"{base}/sandbox/3ds/challenge?transId={trans_id}",
        },
    }


def _settle(call: AdyenCall, payment: Payment, refusal: domain.Refusal | None) -> dict[str, Any]:
    card_data = _card_additional_data(payment.card, payment.expiry)
    answer: dict[str, Any] = {
        "pspReference": payment.psp_reference,
        "merchantReference": payment.reference,
        "amount": payment.amount,
    }
    if refusal is None:
        payment.result_code = "Authorised"
        auth_code = f"{secrets.randbelow(1_000_000):06d}"
        answer |= {
            "resultCode": "Authorised",
            "additionalData": {**card_data, "authCode": auth_code},
        }
        reason = f"{auth_code}:{card_data['cardSummary']}:{payment.expiry}"
    else:
        payment.result_code = "Refused"
        payment.refusal = refusal
        answer |= {
            "resultCode": "Refused",
            "refusalReason": refusal.reason,
            "refusalReasonCode": refusal.code,
            "additionalData": {**card_data, "refusalReasonRaw": refusal.raw},
        }
        reason = refusal.reason
    log.info(
        "payment settled",
        psp_reference=payment.psp_reference,
        merchant_account=payment.merchant_account,
        result_code=payment.result_code,
    )
    call.webhooks.notify(
        call.account,
        notification_item(
            account=call.account,
            event_code="AUTHORISATION",
            success=refusal is None,
            psp_reference=payment.psp_reference,
            merchant_reference=payment.reference,
            amount=payment.amount,
            reason=reason,
            payment_method=payment.card.brand,
            additional_data={
                "cardSummary": card_data["cardSummary"],
                "fundingSource": card_data["fundingSource"],
                "isCardCommercial": card_data["isCardCommercial"],
            },
        ),
    )
    return answer


async def payment_details(call: AdyenCall) -> tuple[int, dict[str, Any]]:
    details = call.body.get("details")
    if not isinstance(details, dict) or not isinstance(details.get("threeDSResult"), str):
        raise validation("000", "Required field 'details.threeDSResult' is not provided.")
    payment = _payment_awaiting_details(call.store, call.body)
    if payment is None or payment.merchant_account != call.account.code:
        raise validation("000", "Invalid payment details: unknown 3DS transaction")
    payment.details_idempotency_keys.append(call.idempotency_key)
    if payment.result_code != "ChallengeShopper":
        raise validation("000", f"Payment is {payment.result_code}, not awaiting 3DS details")
    refusal = domain.challenge_outcome(payment.challenge_fails, details["threeDSResult"])
    return 200, _settle(call, payment, refusal)


def _payment_awaiting_details(store: Store, body: dict[str, Any]) -> Payment | None:
    """The payment a /payments/details body is about: by `paymentData`, else by the 3DS
    transaction in `details.threeDSResult`."""
    psp_reference = body.get("paymentData")
    details = body.get("details")
    if not psp_reference and isinstance(details, dict):
        result = details.get("threeDSResult")
        decoded = domain.decode_three_ds_result(result) if isinstance(result, str) else {}
        trans_id = decoded.get("threeDSServerTransID")
        psp_reference = store.challenges.get(str(trans_id)) if trans_id else None
    return store.payments.get(str(psp_reference)) if psp_reference else None


# -- modifications ----------------------------------------------------------------------


def _payment_for_modification(call: AdyenCall) -> Payment:
    _require_merchant_account(call)
    psp_reference = call.request.match_info["pspReference"]
    payment = call.store.payments.get(psp_reference)
    if payment is None or payment.merchant_account != call.account.code:
        raise validation("167", "Original pspReference required for this operation")
    if not payment.authorised:
        raise validation("000", f"Payment {psp_reference} is {payment.result_code}, not Authorised")
    return payment


def _modification(
    call: AdyenCall,
    payment: Payment,
    kind: Any,
    amount: dict[str, Any] | None,
    success: bool,
    event_code: str,
    reason: str,
) -> dict[str, Any]:
    reference = call.body.get("reference")
    splits = call.body.get("splits")
    additional_data = call.body.get("additionalData")
    modification = Modification(
        kind=kind,
        psp_reference=call.store.new_psp_reference(),
        reference=str(reference) if reference is not None else None,
        amount=amount,
        splits=splits if isinstance(splits, list) else None,
        idempotency_key=call.idempotency_key,
        success=success,
        event_code=event_code,
        reason=reason,
        created_at=now_iso(),
        additional_data=additional_data if isinstance(additional_data, dict) else None,
    )
    payment.modifications.append(modification)
    faults = call.account.faults
    if faults.drop_webhooks or faults.drop_next_webhooks:
        faults.drop_next_webhooks = max(0, faults.drop_next_webhooks - 1)
        modification.webhook_dropped = True
    else:
        _confirm(call, payment, modification, amount, success, event_code, reason)
    answer: dict[str, Any] = {
        "merchantAccount": call.account.code,
        "paymentPspReference": payment.psp_reference,
        "pspReference": modification.psp_reference,
        "status": "received",
    }
    if modification.reference is not None:
        answer["reference"] = modification.reference
    if amount is not None:
        answer["amount"] = amount
    if modification.splits is not None:
        answer["splits"] = modification.splits
    return answer


def _confirm(
    call: AdyenCall,
    payment: Payment,
    modification: Modification,
    amount: dict[str, Any] | None,
    success: bool,
    event_code: str,
    reason: str,
) -> None:
    call.webhooks.notify(
        call.account,
        notification_item(
            account=call.account,
            event_code=event_code,
            success=success if event_code not in ("CAPTURE_FAILED", "REFUND_FAILED") else True,
            psp_reference=modification.psp_reference,
            original_reference=payment.psp_reference,
            merchant_reference=modification.reference or payment.reference,
            amount=amount or payment.amount,
            reason=reason,
            payment_method=payment.card.brand,
        ),
    )


def _same_currency(payment: Payment, amount: dict[str, Any]) -> None:
    if amount["currency"] != payment.amount["currency"]:
        raise validation("138", "Currency does not match the payment's currency")


def _valid_splits(body: dict[str, Any], amount: dict[str, Any]) -> None:
    if "splits" not in body:
        return
    problem = domain.split_problem(amount["value"], amount["currency"], body["splits"])
    if problem is not None:
        raise validation("000", f"Invalid split instructions: {problem}")


async def captures(call: AdyenCall) -> tuple[int, dict[str, Any]]:
    amount = _amount(call.body)
    assert amount is not None
    payment = _payment_for_modification(call)
    _same_currency(payment, amount)
    _valid_splits(call.body, amount)
    allowed = domain.capture_allowed(payment.balance(), amount["value"])
    if allowed and call.account.faults.fail_captures:
        answer = _modification(
            call, payment, "capture", amount, False, "CAPTURE_FAILED", "Capture failed (fault)"
        )
    elif allowed:
        answer = _modification(call, payment, "capture", amount, True, "CAPTURE", "")
    else:
        reason = "Insufficient balance on payment"
        answer = _modification(call, payment, "capture", amount, False, "CAPTURE", reason)
    return 201, answer


async def refunds(call: AdyenCall) -> tuple[int, dict[str, Any]]:
    amount = _amount(call.body)
    assert amount is not None
    payment = _payment_for_modification(call)
    _same_currency(payment, amount)
    _valid_splits(call.body, amount)
    allowed = domain.refund_allowed(payment.balance(), amount["value"])
    if allowed and call.account.faults.fail_refunds:
        answer = _modification(
            call, payment, "refund", amount, False, "REFUND_FAILED", "Refund failed (fault)"
        )
    elif allowed:
        answer = _modification(call, payment, "refund", amount, True, "REFUND", "")
    else:
        reason = "Insufficient in-process funds on account to refund"
        answer = _modification(call, payment, "refund", amount, False, "REFUND", reason)
    return 201, answer


async def cancels(call: AdyenCall) -> tuple[int, dict[str, Any]]:
    payment = _payment_for_modification(call)
    allowed = domain.cancel_allowed(payment.balance())
    reason = "" if allowed else "Payment already captured or cancelled"
    return 201, _modification(call, payment, "cancel", None, allowed, "CANCELLATION", reason)


def register(api: Api) -> None:
    for version in VERSIONS:
        routes: list[tuple[str, AdyenHandler, str]] = [
            ("/paymentMethods", payment_methods, "List the payment methods"),
            ("/payments", payments, "Start a card payment"),
            ("/payments/details", payment_details, "Submit the 3DS2 result"),
            ("/payments/{pspReference}/captures", captures, "Capture an authorised payment"),
            ("/payments/{pspReference}/refunds", refunds, "Refund a captured payment"),
            ("/payments/{pspReference}/cancels", cancels, "Cancel an authorised payment"),
        ]
        for path, handler, summary in routes:
            api.post(
                f"/{version}{path}",
                summary=f"{summary} (Adyen Checkout {version})",
                roles=None,
                response=AdyenResponse,
                tags=("checkout",),
            )(_adyen(handler))
