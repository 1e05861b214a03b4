"""The payouts service's screens: ledger balances (now or as of a day), payouts (list, detail
with its lines, compute and execute through confirmation dialogs with the rendered form's
Idempotency-Key, retry of a failed one), and the funding transfers (ADM-PAY-553 filters).
A supplier key gets its own account, payouts and transfers only: the service answers it so."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from backoffice.sessions import Login, visit_of
from backoffice.web import call, logged_in, new_idempotency_key, refused, render

routes = web.RouteTableDef()

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PAYOUT_STATUSES = [
    "COMPUTED",
    "SKIPPED",
    "PENDING",
    "SETTLED",
    "FAILED",
    "INSUFFICIENT_FUNDS",
    "UNKNOWN",
]
TRANSFER_STATUSES = ["PENDING", "COMPLETED", "FAILED"]
ACCOUNT_TYPES = ["PLATFORM", "MARKETPLACE", "SUPPLIER"]
TRANSFER_FILTERS = (
    "created_from",
    "created_to",
    "status",
    "supplier_ids",
    "amount_min",
    "amount_max",
    "source_account_type",
    "target_account_type",
)


def _form_key(form: Mapping[str, Any]) -> str:
    key = str(form.get("idempotency_key", ""))
    return key if 1 <= len(key) <= 64 else ""


@routes.get("/balances")
@logged_in
async def balances(request: web.Request, login: Login) -> web.StreamResponse:
    """Every account's balance; with a day, at the end of that day (UTC), from the postings."""
    as_of = request.query.get("as_of", "").strip()
    instant = f"{as_of}T23:59:59.999999Z" if DAY.match(as_of) else as_of
    answer = await call(
        request,
        login,
        "payouts",
        "GET",
        "/v1/admin/balances",
        params={"as_of": instant, "limit": "100"},
    )
    if not answer.ok and answer.status not in (400, 422):
        return refused(request, answer, "Balances")
    rows = answer.data if answer.ok else []
    totals: dict[str, int] = {}
    for row in rows:
        totals[row["currency"]] = totals.get(row["currency"], 0) + row["balance"]
    return render(
        request,
        "balances.html",
        {
            "balances": rows,
            "totals": totals,
            "as_of": as_of,
            "error": None if answer.ok else answer.error,
            "more": answer.page_info.get("has_next"),
        },
        status=200 if answer.ok else 422,
    )


@routes.get("/payouts")
@logged_in
async def payouts(request: web.Request, login: Login) -> web.StreamResponse:
    status = request.query.get("status", "")
    answer = await call(
        request,
        login,
        "payouts",
        "GET",
        "/v1/admin/payouts",
        params={
            "status": status,
            "after_cursor": request.query.get("after_cursor", ""),
            "before_cursor": request.query.get("before_cursor", ""),
            "limit": "25",
        },
    )
    if not answer.ok:
        return refused(request, answer, "Payouts")
    return render(
        request,
        "payouts.html",
        {
            "payouts": answer.data,
            "status": status,
            "statuses": PAYOUT_STATUSES,
            "page_info": answer.page_info,
            "idempotency_key": new_idempotency_key(),
        },
    )


@routes.post("/payouts/compute")
@logged_in
async def compute(request: web.Request, login: Login) -> web.StreamResponse:
    """Compute the period's payouts now: one per supplier with eligible orders (or the
    marketplace's). The form's key makes a second click answer the first computation."""
    form = await request.post()
    visit = await visit_of(request)
    key = _form_key(form)
    if not key:
        visit.flash("error", "This form has expired: open the payouts again.")
        raise web.HTTPSeeOther("/payouts")
    kind = str(form.get("kind", "SUPPLIER"))
    answer = await call(
        request,
        login,
        "payouts",
        "POST",
        "/v1/admin/payouts/compute",
        json={"kind": kind},
        idempotency_key=key,
    )
    if answer.ok and answer.replayed:
        visit.flash("ok", "Computed already (this form was sent before): nothing more.")
    elif answer.ok:
        visit.flash("ok", f"Computed {len(answer.data)} payout(s).")
    else:
        error = answer.error
        visit.flash("error", f"Compute refused: {error.get('message')} ({error.get('code')})")
    raise web.HTTPSeeOther("/payouts")


@routes.get("/payouts/{id}")
@logged_in
async def payout_detail(request: web.Request, login: Login) -> web.StreamResponse:
    payout_id = request.match_info["id"]
    found = await call(request, login, "payouts", "GET", f"/v1/admin/payouts/{payout_id}")
    if not found.ok:
        return refused(request, found, "Payout")
    lines = await call(
        request,
        login,
        "payouts",
        "GET",
        f"/v1/admin/payouts/{payout_id}/lines",
        params={"limit": "100"},
    )
    if not lines.ok:
        return refused(request, lines, "Payout lines")
    return render(
        request,
        "payout.html",
        {
            "payout": found.data,
            "lines": lines.data,
            "more_lines": lines.page_info.get("has_next"),
            "idempotency_key": new_idempotency_key(),
        },
    )


@routes.post("/payouts/{id}/{action:execute|retry}")
@logged_in
async def payout_action(request: web.Request, login: Login) -> web.StreamResponse:
    """Send a COMPUTED payout to the payout provider (or a FAILED one again, as a new order),
    with the form's Idempotency-Key: two clicks send one order."""
    payout_id = request.match_info["id"]
    action = request.match_info["action"]
    back = f"/payouts/{payout_id}"
    form = await request.post()
    visit = await visit_of(request)
    key = _form_key(form)
    if not key:
        visit.flash("error", "This form has expired: open the payout again.")
        raise web.HTTPSeeOther(back)
    answer = await call(
        request,
        login,
        "payouts",
        "POST",
        f"/v1/admin/payouts/{payout_id}/{action}",
        idempotency_key=key,
    )
    verb = "Execution" if action == "execute" else "Retry"
    if answer.ok and answer.replayed:
        visit.flash("ok", f"{verb} requested already (this form was sent before): nothing more.")
    elif answer.ok:
        visit.flash("ok", f"{verb} requested: the payout is {answer.data['status']}.")
    else:
        error = answer.error
        visit.flash("error", f"{verb} refused: {error.get('message')} ({error.get('code')})")
    raise web.HTTPSeeOther(back)


@routes.get("/funding-transfers")
@logged_in
async def funding_transfers(request: web.Request, login: Login) -> web.StreamResponse:
    """ADM-PAY-553 with its filters, passed as they are: a bad one comes back from the service
    with its param, shown above the form."""
    filters = {name: request.query.get(name, "").strip() for name in TRANSFER_FILTERS}
    answer = await call(
        request,
        login,
        "payouts",
        "GET",
        "/v1/payments/funding-transfers",
        params={
            **filters,
            "after_cursor": request.query.get("after_cursor", ""),
            "before_cursor": request.query.get("before_cursor", ""),
            "limit": "25",
        },
    )
    if not answer.ok and answer.status not in (400, 422):
        return refused(request, answer, "Funding transfers")
    return render(
        request,
        "funding_transfers.html",
        {
            "transfers": answer.data if answer.ok else [],
            "filters": filters,
            "statuses": TRANSFER_STATUSES,
            "account_types": ACCOUNT_TYPES,
            "error": None if answer.ok else answer.error,
            "page_info": answer.page_info if answer.ok else {},
        },
        status=200 if answer.ok else 422,
    )
