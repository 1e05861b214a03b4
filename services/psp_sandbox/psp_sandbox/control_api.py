"""The sandbox's own control API (`/sandbox/...`): merchant accounts and their keys, fault
injection, what the sandbox received, webhook deliveries, chargebacks, the 3DS challenge
page and the tokenising drop-in. Not part of Adyen's API; never exposed in production."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from common.http.errors import NotFound, Unprocessable
from common.http.routing import Api, Call
from psp_sandbox import domain
from psp_sandbox.app import SETTINGS, STORE, WEBHOOKS
from psp_sandbox.store import Faults, Modification, now_iso
from psp_sandbox.webhooks import notification_item

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "600",
}


class MerchantAccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merchant_account: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")
    webhook_url: str | None = Field(default=None, max_length=2000)
    # the HMAC key to sign this account's webhooks with (64 hex digits), as one enters or
    # rotates it in a PSP's customer area; absent: a random one for a new account
    hmac_key: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{64}$")


class MerchantAccountOut(BaseModel):
    merchant_account: str
    api_key: str
    hmac_key: str
    webhook_url: str | None


DisputeStage = Literal[
    "NOTIFICATION_OF_CHARGEBACK",
    "CHARGEBACK",
    "CHARGEBACK_REVERSED",
    "SECOND_CHARGEBACK",
    "PREARBITRATION_WON",
    "PREARBITRATION_LOST",
]


class ChargebackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    psp_reference: str
    amount: int | None = Field(default=None, ge=1)
    reversed: bool = False
    reason: str = "Fraudulent transaction"
    # one of Adyen's dispute notifications; absent: CHARGEBACK (CHARGEBACK_REVERSED when
    # `reversed`). A stage that moves money needs a captured payment.
    stage: DisputeStage | None = None


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(min_length=1, max_length=23)
    expiry_month: str = Field(min_length=1, max_length=2)
    expiry_year: str = Field(min_length=2, max_length=4)
    cvc: str | None = Field(default=None, max_length=4)


class Tokens(BaseModel):
    type: str = "scheme"
    brand: str | None
    encryptedCardNumber: str
    encryptedExpiryMonth: str
    encryptedExpiryYear: str
    encryptedSecurityCode: str | None


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.json_response(payload, status=status)


def _account(request: web.Request) -> Any:
    account = request.app[STORE].accounts.get(request.match_info["code"])
    if account is None:
        raise NotFound("no such merchant account", code="resource_not_found", param="code")
    return account


def register(api: Api) -> list[tuple[str, str, Any]]:
    """Declare the control endpoints; return the routes kept out of the OpenAPI document
    (the drop-in script, the 3DS page, the CORS preflight)."""
    _register_merchant_accounts(api)
    _register_inspection(api)
    _register_webhook_release(api)
    _register_chargebacks(api)
    return _register_drop_in(api)


def _register_merchant_accounts(api: Api) -> None:
    """Merchant accounts and their fault injection."""

    @api.post(
        "/sandbox/merchant-accounts",
        summary="Create (or fetch) a merchant account with its API key and HMAC key",
        roles=None,
        body=MerchantAccountCreate,
        response=MerchantAccountOut,
        tags=("sandbox",),
    )
    async def create_merchant_account(
        request: web.Request, call: Call[MerchantAccountCreate]
    ) -> web.Response:
        account = request.app[STORE].upsert_account(
            call.body.merchant_account, call.body.webhook_url, call.body.hmac_key
        )
        out = MerchantAccountOut(
            merchant_account=account.code,
            api_key=account.api_key,
            hmac_key=account.hmac_key,
            webhook_url=account.webhook_url,
        )
        return _json(out.model_dump())

    @api.put(
        "/sandbox/merchant-accounts/{code}/faults",
        summary="Switch fault injection for a merchant account (replaces the previous set)",
        roles=None,
        body=Faults,
        response=Faults,
        tags=("sandbox",),
    )
    async def put_faults(request: web.Request, call: Call[Faults]) -> web.Response:
        account = _account(request)
        account.faults = call.body.model_copy()
        return _json(account.faults.model_dump())


def _register_inspection(api: Api) -> None:
    """What the sandbox received and sent: webhook attempts, requests, a payment's state."""

    @api.get(
        "/sandbox/merchant-accounts/{code}/webhooks",
        summary="Webhook delivery attempts of a merchant account",
        roles=None,
        tags=("sandbox",),
    )
    async def list_webhooks(request: web.Request, _: Call[None]) -> web.Response:
        account = _account(request)
        return _json({"data": request.app[STORE].webhook_attempts.get(account.code, [])})

    @api.get(
        "/sandbox/merchant-accounts/{code}/requests",
        summary="Checkout API requests the sandbox received (method, path, Idempotency-Key)",
        roles=None,
        tags=("sandbox",),
    )
    async def list_requests(request: web.Request, _: Call[None]) -> web.Response:
        account = _account(request)
        return _json({"data": request.app[STORE].requests.get(account.code, [])})

    @api.get(
        "/sandbox/payments/{pspReference}",
        summary="What the sandbox holds for a payment (request without card data, splits, "
        "additionalData, modifications with their idempotency keys)",
        roles=None,
        tags=("sandbox",),
    )
    async def get_payment(request: web.Request, _: Call[None]) -> web.Response:
        payment = request.app[STORE].payments.get(request.match_info["pspReference"])
        if payment is None:
            raise NotFound("no such payment", code="resource_not_found", param="pspReference")
        return _json(payment.public())


def _register_webhook_release(api: Api) -> None:
    """The webhooks the drop_webhooks fault held back, sent on request."""

    @api.post(
        "/sandbox/merchant-accounts/{code}/webhooks/release-dropped",
        summary="Send the confirmation webhooks that the drop_webhooks fault held back",
        roles=None,
        tags=("sandbox",),
    )
    async def release_dropped(request: web.Request, _: Call[None]) -> web.Response:
        account = _account(request)
        released = []
        for payment in request.app[STORE].payments.values():
            if payment.merchant_account != account.code:
                continue
            for m in payment.modifications:
                if not m.webhook_dropped:
                    continue
                m.webhook_dropped = False
                released.append(m.psp_reference)
                request.app[WEBHOOKS].notify(
                    account,
                    notification_item(
                        account=account,
                        event_code=m.event_code,
                        success=m.success
                        if m.event_code not in ("CAPTURE_FAILED", "REFUND_FAILED")
                        else True,
                        psp_reference=m.psp_reference,
                        original_reference=payment.psp_reference,
                        merchant_reference=m.reference or payment.reference,
                        amount=m.amount or payment.amount,
                        reason=m.reason,
                        payment_method=payment.card.brand,
                    ),
                )
        return _json({"released": released})


def _register_chargebacks(api: Api) -> None:
    """Dispute notifications raised on request."""

    @api.post(
        "/sandbox/merchant-accounts/{code}/chargebacks",
        summary="Raise a dispute notification (CHARGEBACK, its reversal, or another stage)"
        " for a payment",
        roles=None,
        body=ChargebackCreate,
        status=201,
        tags=("sandbox",),
    )
    async def chargeback(request: web.Request, call: Call[ChargebackCreate]) -> web.Response:
        account = _account(request)
        store = request.app[STORE]
        payment = store.payments.get(call.body.psp_reference)
        if payment is None or payment.merchant_account != account.code:
            raise NotFound("no such payment", code="resource_not_found", param="psp_reference")
        if not payment.authorised:
            raise Unprocessable("the payment is not authorised", code="payment_not_authorised")
        event_code = call.body.stage or (
            "CHARGEBACK_REVERSED" if call.body.reversed else "CHARGEBACK"
        )
        captured = payment.balance().captured
        if call.body.stage is not None and captured == 0:
            raise Unprocessable("nothing is captured on this payment", code="payment_not_captured")
        value = call.body.amount or (captured if call.body.stage else payment.amount["value"])
        amount = {"value": value, "currency": payment.amount["currency"]}
        psp_reference = store.new_psp_reference()
        payment.modifications.append(
            Modification(
                kind="chargeback",
                psp_reference=psp_reference,
                reference=None,
                amount=amount,
                splits=None,
                idempotency_key=None,
                success=True,
                event_code=event_code,
                reason=call.body.reason,
                created_at=now_iso(),
            )
        )
        request.app[WEBHOOKS].notify(
            account,
            notification_item(
                account=account,
                event_code=event_code,
                success=True,
                psp_reference=psp_reference,
                original_reference=payment.psp_reference,
                merchant_reference=payment.reference,
                amount=amount,
                reason=call.body.reason,
                payment_method=payment.card.brand,
            ),
        )
        return _json({"pspReference": psp_reference, "eventCode": event_code}, status=201)


def _register_drop_in(api: Api) -> list[tuple[str, str, Any]]:
    """The drop-in's tokenisation endpoint; return its unlisted routes (the CORS preflight,
    the script, the 3DS challenge page)."""

    @api.post(
        "/sandbox/tokenize",
        summary="Tokenise card fields for the drop-in (CORS open); answers sbx_tok_ tokens",
        roles=None,
        body=TokenizeRequest,
        response=Tokens,
        tags=("sandbox",),
    )
    async def tokenize(request: web.Request, call: Call[TokenizeRequest]) -> web.Response:
        store = request.app[STORE]
        ttl = request.app[SETTINGS].token_ttl_s
        number = call.body.number.replace(" ", "")
        tokens = Tokens(
            brand=domain.brand_of(number) if number.isdigit() and len(number) >= 4 else None,
            encryptedCardNumber=store.tokenize(number, ttl),
            encryptedExpiryMonth=store.tokenize(call.body.expiry_month, ttl),
            encryptedExpiryYear=store.tokenize(call.body.expiry_year, ttl),
            encryptedSecurityCode=store.tokenize(call.body.cvc, ttl) if call.body.cvc else None,
        )
        return web.json_response(tokens.model_dump(), headers=CORS)

    async def tokenize_preflight(_: web.Request) -> web.Response:
        return web.Response(status=204, headers=CORS)

    async def dropin_js(_: web.Request) -> web.Response:
        script = resources.files("psp_sandbox").joinpath("static/dropin.js").read_text()
        return web.Response(
            text=script,
            content_type="application/javascript",
            headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache"},
        )

    async def challenge_page(request: web.Request) -> web.Response:
        trans_id = request.query.get("transId", "")
        if trans_id not in request.app[STORE].challenges:
            raise NotFound("no such 3DS transaction", code="resource_not_found", param="transId")
        results = {
            ok: domain.encode_three_ds_result(trans_id, authenticated=ok) for ok in (True, False)
        }
        page = CHALLENGE_PAGE.replace("__RESULTS__", json.dumps(results))
        return web.Response(text=page, content_type="text/html")

    return [
        ("OPTIONS", "/sandbox/tokenize", tokenize_preflight),
        ("GET", "/sandbox/dropin.js", dropin_js),
        ("GET", "/sandbox/3ds/challenge", challenge_page),
    ]


CHALLENGE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>PSP sandbox: 3-D Secure challenge</title></head>
<body style="font-family: sans-serif">
<h1>PSP sandbox &mdash; 3-D Secure challenge</h1>
<p>This is a stand-in issuer page. Choose how the challenge ends.</p>
<button id="ok">Authenticate</button> <button id="fail">Fail</button>
<pre id="out"></pre>
<script>
const results = __RESULTS__;
function finish(ok) {
  const threeDSResult = ok ? results["true"] : results["false"];
  const message = {type: "psp-sandbox-3ds", details: {threeDSResult}};
  if (window.opener) { window.opener.postMessage(message, "*"); }
  if (window.parent !== window) { window.parent.postMessage(message, "*"); }
  document.getElementById("out").textContent = JSON.stringify(message, null, 2);
}
document.getElementById("ok").onclick = () => finish(true);
document.getElementById("fail").onclick = () => finish(false);
</script>
</body></html>
"""
