"""The demo storefront: a cart, a checkout session created server-side with the storefront's
key, the PSP's drop-in for the card (PAY-501 methods, PAY-101, the 3-D Secure challenge and
PAY-102), and a result page that polls the payment's status.

The card fields live in the PSP's component: this server and checkout only ever see its tokens.
The session's client token stays here, in the visit; the page talks to this server only."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from backoffice.sessions import Visit, visit_of
from backoffice.settings import Settings
from backoffice.upstream import UPSTREAM, Answer
from backoffice.web import new_idempotency_key, render

routes = web.RouteTableDef()
SETTINGS = web.AppKey("settings", Settings)

# what the drop-in hands over: the PSP's encrypted (here tokenised) fields, never raw ones
PAYMENT_METHOD_FIELDS = frozenset(
    {
        "type",
        "brand",
        "holderName",
        "encryptedCardNumber",
        "encryptedExpiryMonth",
        "encryptedExpiryYear",
        "encryptedSecurityCode",
    }
)
PENDING = frozenset({"INIT_PAYMENT", "AUTHORIZATION_PENDING"})
# the demo cart: (name, price in cents), one item per supplier of the demo tenant
CART = [("Pallet of A4 paper (40 reams)", 12_000), ("Toner cartridges, pack of 4", 3_000)]


def storefront_config(settings: Settings) -> tuple[str, list[str]] | None:
    """The storefront key and the suppliers the cart sells for, or None when not configured
    (yet: `make up` writes the demo keys after the services have started)."""
    if settings.storefront_key is not None and settings.storefront_supplier_ids:
        return settings.storefront_key.get_secret_value(), list(settings.storefront_supplier_ids)
    path: Path | None = settings.storefront_keys_file
    if path is None or not path.exists():
        return None
    keys = json.loads(path.read_text())
    return str(keys["storefront_key"]), [str(s["id"]) for s in keys["suppliers"]]


def _cart(supplier_ids: list[str]) -> list[dict[str, Any]]:
    return [
        {"name": name, "amount": amount, "supplier_id": supplier_ids[n % len(supplier_ids)]}
        for n, (name, amount) in enumerate(CART)
    ]


@routes.get("/shop")
async def shop(request: web.Request) -> web.Response:
    await visit_of(request)
    config = storefront_config(request.app[SETTINGS])
    cart = _cart(config[1]) if config else []
    return render(
        request,
        "shop.html",
        {
            "cart": cart,
            "total": sum(item["amount"] for item in cart),
            "configured": config is not None,
            "idempotency_key": new_idempotency_key(),
        },
        status=200 if config else 503,
    )


@routes.post("/shop/checkout")
async def checkout(request: web.Request) -> web.StreamResponse:
    visit = await visit_of(request)
    config = storefront_config(request.app[SETTINGS])
    form = await request.post()
    key = str(form.get("idempotency_key", ""))
    if config is None or not (1 <= len(key) <= 64):
        raise web.HTTPSeeOther("/shop")
    storefront_key, supplier_ids = config
    cart = _cart(supplier_ids)
    capture_mode = request.app[SETTINGS].storefront_capture_mode
    answer = await request.app[UPSTREAM].call(
        "checkout",
        "POST",
        "/v1/checkout/sessions",
        storefront_key,
        json={
            **({"capture_mode": capture_mode} if capture_mode else {}),
            "order_id": f"demo_{uuid.uuid4().hex[:12]}",
            "amount": {"value": sum(i["amount"] for i in cart), "currency": "EUR"},
            "buyer_account": "demo_buyer",
            "return_url": f"{request.url.origin()}/shop",
            "lines": [
                {
                    "logistic_order_id": f"lo_{n + 1}",
                    "supplier_id": item["supplier_id"],
                    "amount": item["amount"],
                }
                for n, item in enumerate(cart)
            ],
        },
        idempotency_key=key,
    )
    if not answer.ok:
        visit.flash("error", f"Checkout failed: {answer.error.get('message')}")
        raise web.HTTPSeeOther("/shop")
    session = answer.data
    visit.client_tokens[session["payment_id"]] = session["client_token"]
    raise web.HTTPSeeOther(f"/shop/pay/{session['payment_id']}")


def _client_token(visit: Visit, payment_id: str) -> str:
    token = visit.client_tokens.get(payment_id)
    if token is None:
        # not a checkout of this browser
        raise web.HTTPNotFound()
    return token


@routes.get("/shop/pay/{id}")
async def pay_page(request: web.Request) -> web.Response:
    visit = await visit_of(request)
    payment_id = request.match_info["id"]
    token = _client_token(visit, payment_id)
    upstream = request.app[UPSTREAM]
    methods = await upstream.call("checkout", "GET", "/v1/shop/payment-methods", token)
    status = await upstream.call("checkout", "GET", f"/v1/shop/payments/{payment_id}", token)
    if not status.ok:
        raise web.HTTPNotFound()
    if status.data["status"] not in PENDING:
        raise web.HTTPSeeOther(f"/shop/result/{payment_id}")
    return render(
        request,
        "pay.html",
        {
            "payment": status.data,
            "methods": methods.data["payment_methods"] if methods.ok else [],
            "methods_error": None if methods.ok else methods.error,
            "dropin_url": request.app[SETTINGS].psp_dropin_url,
            "pay_key": new_idempotency_key(),
            "details_key": new_idempotency_key(),
        },
    )


def _answer(payment_id: str, answer: Answer) -> web.Response:
    if answer.status == 402:
        # refused by the issuer: the result page tells the shopper
        return web.json_response({"next": f"/shop/result/{payment_id}", "status": "REFUSED"})
    if not answer.ok:
        return web.json_response({"error": answer.error}, status=answer.status)
    data = answer.data
    if data.get("action"):
        return web.json_response({"action": data["action"]})
    return web.json_response({"next": f"/shop/result/{payment_id}", "status": data["status"]})


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(reason="malformed JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="a JSON object is expected")
    return body


@routes.post("/shop/pay/{id}")
async def pay(request: web.Request) -> web.Response:
    """PAY-101 with the drop-in's tokens; any other field is refused here, before checkout."""
    visit = await visit_of(request)
    payment_id = request.match_info["id"]
    token = _client_token(visit, payment_id)
    body = await _json(request)
    method = body.get("payment_method")
    if not isinstance(method, dict) or not set(method) <= PAYMENT_METHOD_FIELDS:
        return web.json_response(
            {
                "error": {
                    "code": "payment_method_invalid",
                    "message": "drop-in fields only",
                    "param": "payment_method",
                }
            },
            status=422,
        )
    browser_info = body.get("browser_info")
    answer = await request.app[UPSTREAM].call(
        "checkout",
        "POST",
        "/v1/shop/payments",
        token,
        json={
            "payment_method": method,
            "browser_info": browser_info if isinstance(browser_info, dict) else None,
            "return_url": f"{request.url.origin()}/shop/result/{payment_id}",
        },
        idempotency_key=str(body.get("idempotency_key") or new_idempotency_key())[:64],
    )
    return _answer(payment_id, answer)


@routes.post("/shop/pay/{id}/details")
async def details(request: web.Request) -> web.Response:
    """PAY-102: what the 3-D Secure challenge answered."""
    visit = await visit_of(request)
    payment_id = request.match_info["id"]
    token = _client_token(visit, payment_id)
    body = await _json(request)
    if not isinstance(body.get("details"), dict):
        raise web.HTTPBadRequest(reason="details are expected")
    answer = await request.app[UPSTREAM].call(
        "checkout",
        "POST",
        "/v1/shop/payments/details",
        token,
        json={"details": body["details"]},
        idempotency_key=str(body.get("idempotency_key") or new_idempotency_key())[:64],
    )
    return _answer(payment_id, answer)


async def _status(request: web.Request) -> dict[str, Any]:
    visit = await visit_of(request)
    payment_id = request.match_info["id"]
    token = _client_token(visit, payment_id)
    answer = await request.app[UPSTREAM].call(
        "checkout", "GET", f"/v1/shop/payments/{payment_id}", token
    )
    if not answer.ok:
        raise web.HTTPNotFound()
    data: dict[str, Any] = answer.data
    return {"payment": data, "pending": data["status"] in PENDING}


@routes.get("/shop/result/{id}")
async def result(request: web.Request) -> web.Response:
    return render(request, "result.html", await _status(request))


@routes.get("/shop/result/{id}/status")
async def result_status(request: web.Request) -> web.Response:
    """The fragment the result page polls (htmx) until the payment leaves the pending states."""
    return render(request, "result_status.html", await _status(request))
