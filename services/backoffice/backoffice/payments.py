"""Transactions: checkout's payments (filters, cursor pagination), a payment's detail with its
lines, captures and full timeline, and manual capture (ADM-PAY-101, capture service)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from backoffice.refunds import REASONS
from backoffice.sessions import Login, visit_of
from backoffice.web import call, logged_in, new_idempotency_key, refused, render

routes = web.RouteTableDef()

STATUSES = [
    "INIT_PAYMENT",
    "AUTHORIZATION_PENDING",
    "AUTHORIZED",
    "REFUSED",
    "CAPTURE_PENDING",
    "PARTIALLY_PAID",
    "PAID",
    "WAITING_PAYMENT",
    "OVER_PAID",
    "WAITING_REFUND",
    "PARTIALLY_REFUNDED",
    "REFUNDED",
    "CANCELLED",
    "ERROR",
    "CHARGEBACK",
]
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FILTERS = ("status", "order_id", "created_from", "created_to", "limit")
PAGING = ("after_cursor", "before_cursor")
# lines a manual capture may still take (their capture has not started)
CAPTURABLE_LINES = frozenset({"PENDING", "CAPTURE_FAILED"})
CAPTURABLE_PAYMENTS = frozenset({"AUTHORIZED", "PARTIALLY_PAID", "CAPTURE_PENDING"})


@routes.get("/payments")
@logged_in
async def list_payments(request: web.Request, login: Login) -> web.StreamResponse:
    filters = {name: request.query.get(name, "").strip() for name in FILTERS}
    paging = {name: request.query.get(name, "") for name in PAGING}
    answer = await call(
        request,
        login,
        "checkout",
        "GET",
        "/v1/admin/payments",
        params={**_api_filters(filters), **paging, "limit": filters["limit"] or "20"},
    )
    if not answer.ok:
        # a bad filter (e.g. a malformed date): the form again, with the API's message
        return render(
            request,
            "payments.html",
            {
                "payments": [],
                "filters": filters,
                "statuses": STATUSES,
                "error": answer.error,
                "page_info": {},
            },
            status=422 if answer.status in (400, 422) else 502,
        )
    return render(
        request,
        "payments.html",
        {
            "payments": answer.data,
            "filters": filters,
            "statuses": STATUSES,
            "page_info": answer.page_info,
        },
    )


def _api_filters(filters: dict[str, str]) -> dict[str, str]:
    """The form's dates are days (inclusive); the API takes instants."""
    found = dict(filters)
    if DAY.match(found["created_from"]):
        found["created_from"] += "T00:00:00Z"
    if DAY.match(found["created_to"]):
        found["created_to"] += "T23:59:59.999999Z"
    return found


async def _payment_view(request: web.Request, login: Login, payment_id: str) -> dict[str, Any]:
    payment = await call(request, login, "checkout", "GET", f"/v1/admin/payments/{payment_id}")
    if not payment.ok:
        raise _Refused(payment)
    captures = await call(
        request,
        login,
        "capture",
        "GET",
        "/v1/admin/captures",
        params={"payment_id": payment_id, "limit": "100"},
    )
    refunds = await call(
        request, login, "capture", "GET", f"/v1/admin/payments/{payment_id}/refunds"
    )
    data = payment.data
    captured = [c for c in captures.data or [] if c["status"] == "SUCCEEDED"] if captures.ok else []
    capturable = [line for line in data["lines"] if line["status"] in CAPTURABLE_LINES]
    return {
        "payment": data,
        "timeline": list(reversed(data.get("timeline") or [])),
        "captures": captures.data if captures.ok else [],
        "captures_error": None if captures.ok else captures.error,
        "can_capture": login.role == "operator"
        and data["status"] in CAPTURABLE_PAYMENTS
        and bool(capturable),
        "capturable_lines": capturable,
        "refunds": refunds.data["refunds"] if refunds.ok else [],
        "refunds_error": None if refunds.ok else refunds.error,
        "can_refund": login.role == "operator" and bool(captured),
        "refundable_lines": sorted({c["logistic_order_id"] for c in captured}),
        "reasons": REASONS,
    }


class _Refused(Exception):
    def __init__(self, answer: Any) -> None:
        self.answer = answer


@routes.get("/payments/{id}")
@logged_in
async def payment_detail(request: web.Request, login: Login) -> web.StreamResponse:
    try:
        view = await _payment_view(request, login, request.match_info["id"])
    except _Refused as exc:
        return refused(request, exc.answer, "Payment")
    return render(
        request,
        "payment.html",
        {
            **view,
            "idempotency_key": new_idempotency_key(),
            "refund_idempotency_key": new_idempotency_key(),
        },
    )


@routes.get("/payments/{id}/activity")
@logged_in
async def payment_activity(request: web.Request, login: Login) -> web.StreamResponse:
    """The lines, captures and timeline: the part of the detail page htmx refreshes."""
    try:
        view = await _payment_view(request, login, request.match_info["id"])
    except _Refused as exc:
        return refused(request, exc.answer, "Payment")
    # the status pill in the page's headline follows (htmx out-of-band swap)
    return render(request, "payment_activity.html", {**view, "oob": True})


@routes.post("/payments/{id}/capture")
@logged_in
async def capture(request: web.Request, login: Login) -> web.StreamResponse:
    """ADM-PAY-101 with the form's Idempotency-Key: the second of two clicks gets the first
    answer again from the capture service, and nothing is captured twice."""
    payment_id = request.match_info["id"]
    form = await request.post()
    key = str(form.get("idempotency_key", ""))
    line = str(form.get("logistic_order_id", "")).strip()
    visit = await visit_of(request)
    if not (1 <= len(key) <= 64):
        visit.flash("error", "This form has expired: open the payment again.")
        raise web.HTTPSeeOther(f"/payments/{payment_id}")
    answer = await call(
        request,
        login,
        "capture",
        "POST",
        f"/v1/admin/payments/{payment_id}/capture",
        json={"logistic_order_id": line} if line else {},
        idempotency_key=key,
    )
    if answer.ok and answer.replayed:
        visit.flash("ok", "Capture requested already (this form was sent before): nothing more.")
    elif answer.ok:
        count = len(answer.data["captures"])
        visit.flash("ok", f"Capture requested: {count} capture(s) sent to the PSP.")
    else:
        error = answer.error
        visit.flash("error", f"Capture refused: {error.get('message')} ({error.get('code')})")
    raise web.HTTPSeeOther(f"/payments/{payment_id}")
