"""Refunds (capture service): a partial or full refund from a payment's detail page, through a
confirmation dialog with the rendered form's Idempotency-Key; the refund-intervention queue
with retry; and resolving an intervention (a capture's or a refund's) with a note."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from backoffice.operations import intervention_queue
from backoffice.sessions import Login, visit_of
from backoffice.web import call, logged_in
from common.money import currency_exponent

routes = web.RouteTableDef()

REASONS = ["customer_request", "goods_returned", "order_cancelled", "duplicate", "fraudulent"]


def minor_units(text: str, currency: str) -> int | None:
    """'12.5' EUR -> 1250; None for what is not an amount in this currency (more decimals than
    it has, a sign, words): the form says so instead of guessing."""
    try:
        amount = Decimal(text.replace(",", "."))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0:
        return None
    scaled = amount.scaleb(currency_exponent(currency))
    if scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def _form_key(form: Mapping[str, Any]) -> str:
    key = str(form.get("idempotency_key", ""))
    return key if 1 <= len(key) <= 64 else ""


@routes.post("/payments/{id}/refunds")
@logged_in
async def refund(request: web.Request, login: Login) -> web.StreamResponse:
    """A refund with the form's Idempotency-Key: two clicks (or the form sent again) get the
    first answer again from the capture service, and the PSP is asked once."""
    payment_id = request.match_info["id"]
    back = f"/payments/{payment_id}"
    form = await request.post()
    visit = await visit_of(request)
    key = _form_key(form)
    if not key:
        visit.flash("error", "This form has expired: open the payment again.")
        raise web.HTTPSeeOther(back)
    currency = str(form.get("currency", "")).strip().upper()
    body: dict[str, object] = {"reason": str(form.get("reason", "customer_request"))}
    text = str(form.get("amount", "")).strip()
    if text:
        try:
            value = minor_units(text, currency)
        except ValueError:
            value = None
        if value is None:
            visit.flash("error", f"Refund refused: {text!r} is not an amount in {currency}.")
            raise web.HTTPSeeOther(back)
        body["amount"] = {"value": value, "currency": currency}
    line = str(form.get("logistic_order_id", "")).strip()
    if line:
        body["logistic_order_id"] = line
    description = str(form.get("description", "")).strip()
    if description:
        body["description"] = description
    answer = await call(
        request,
        login,
        "capture",
        "POST",
        f"/v1/admin/payments/{payment_id}/refunds",
        json=body,
        idempotency_key=key,
    )
    if answer.ok and answer.replayed:
        visit.flash("ok", "Refund requested already (this form was sent before): nothing more.")
    elif answer.ok:
        count = len(answer.data["refunds"])
        visit.flash("ok", f"Refund requested: {count} refund(s) on their way to the PSP.")
    else:
        error = answer.error
        param = f", {error['param']}" if error.get("param") else ""
        visit.flash("error", f"Refund refused: {error.get('message')} ({error.get('code')}{param})")
    raise web.HTTPSeeOther(back)


@routes.get("/refund-interventions")
@logged_in
async def refund_interventions(request: web.Request, login: Login) -> web.StreamResponse:
    return await intervention_queue(
        request,
        login,
        "/v1/admin/refund-interventions",
        "refund_interventions.html",
        "Refund interventions",
    )


@routes.post("/refund-interventions/{id}/retry")
@logged_in
async def retry_refund(request: web.Request, login: Login) -> web.StreamResponse:
    form = await request.post()
    visit = await visit_of(request)
    key = _form_key(form)
    if not key:
        visit.flash("error", "This form has expired: open the queue again.")
        raise web.HTTPSeeOther("/refund-interventions")
    answer = await call(
        request,
        login,
        "capture",
        "POST",
        f"/v1/admin/refund-interventions/{request.match_info['id']}/retry",
        idempotency_key=key,
    )
    if answer.ok and answer.replayed:
        visit.flash("ok", "Retry requested already (this form was sent before): nothing more.")
    elif answer.ok:
        visit.flash("ok", "Refund sent to the PSP again, under its same PSP key.")
    else:
        error = answer.error
        visit.flash("error", f"Retry refused: {error.get('message')} ({error.get('code')})")
    raise web.HTTPSeeOther("/refund-interventions")


@routes.post("/interventions/{id}/resolve")
@logged_in
async def resolve(request: web.Request, login: Login) -> web.StreamResponse:
    """Close a capture's or a refund's intervention with a person's note: nothing is sent to
    the PSP, nothing is failed."""
    form = await request.post()
    visit = await visit_of(request)
    back = "/refund-interventions" if form.get("queue") == "refunds" else "/interventions"
    key = _form_key(form)
    if not key:
        visit.flash("error", "This form has expired: open the queue again.")
        raise web.HTTPSeeOther(back)
    answer = await call(
        request,
        login,
        "capture",
        "POST",
        f"/v1/admin/interventions/{request.match_info['id']}/resolve",
        json={"note": str(form.get("note", "")).strip()},
        idempotency_key=key,
    )
    if answer.ok:
        visit.flash("ok", f"Intervention resolved: {answer.data.get('note')}")
    else:
        error = answer.error
        visit.flash("error", f"Resolve refused: {error.get('message')} ({error.get('code')})")
    raise web.HTTPSeeOther(back)


@routes.post("/interventions/{id}/resend")
@logged_in
async def resend(request: web.Request, login: Login) -> web.StreamResponse:
    """An unconfirmed capture sent to the PSP again under its same PSP key."""
    form = await request.post()
    visit = await visit_of(request)
    key = _form_key(form)
    if not key:
        visit.flash("error", "This form has expired: open the queue again.")
        raise web.HTTPSeeOther("/interventions")
    answer = await call(
        request,
        login,
        "capture",
        "POST",
        f"/v1/admin/interventions/{request.match_info['id']}/resend",
        idempotency_key=key,
    )
    if answer.ok:
        visit.flash("ok", "Capture sent to the PSP again, under its same PSP key.")
    else:
        error = answer.error
        visit.flash("error", f"Resend refused: {error.get('message')} ({error.get('code')})")
    raise web.HTTPSeeOther("/interventions")
