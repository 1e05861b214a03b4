"""The intervention queue (capture service, operator) with retry, and the suppliers with the
commission matrix (tenants service, operator). A supplier key asking for these pages gets the
services' 403, shown as such: the pages do not decide who may see them."""

from __future__ import annotations

from aiohttp import web

from backoffice.sessions import Login, visit_of
from backoffice.web import call, logged_in, new_idempotency_key, refused, render

routes = web.RouteTableDef()

INTERVENTION_STATUSES = ["OPEN", "RETRIED", "RESOLVED"]


async def intervention_queue(
    request: web.Request, login: Login, path: str, template: str, title: str
) -> web.StreamResponse:
    """One page of an intervention queue of the capture service (captures' or refunds'), each
    row with the Idempotency-Keys of its retry, resolve and resend forms."""
    status = request.query.get("status", "OPEN")
    answer = await call(
        request,
        login,
        "capture",
        "GET",
        path,
        params={
            "status": status,
            "after_cursor": request.query.get("after_cursor", ""),
            "before_cursor": request.query.get("before_cursor", ""),
            "limit": "25",
        },
    )
    if not answer.ok:
        return refused(request, answer, title)
    return render(
        request,
        template,
        {
            "interventions": [
                {
                    **row,
                    "idempotency_key": new_idempotency_key(),
                    "resolve_key": new_idempotency_key(),
                    "resend_key": new_idempotency_key(),
                }
                for row in answer.data
            ],
            "status": status,
            "statuses": INTERVENTION_STATUSES,
            "page_info": answer.page_info,
        },
    )


@routes.get("/interventions")
@logged_in
async def interventions(request: web.Request, login: Login) -> web.StreamResponse:
    return await intervention_queue(
        request, login, "/v1/admin/interventions", "interventions.html", "Interventions"
    )


@routes.post("/interventions/{id}/retry")
@logged_in
async def retry(request: web.Request, login: Login) -> web.StreamResponse:
    form = await request.post()
    key = str(form.get("idempotency_key", ""))
    visit = await visit_of(request)
    if not (1 <= len(key) <= 64):
        visit.flash("error", "This form has expired: open the queue again.")
        raise web.HTTPSeeOther("/interventions")
    answer = await call(
        request,
        login,
        "capture",
        "POST",
        f"/v1/admin/interventions/{request.match_info['id']}/retry",
        idempotency_key=key,
    )
    if answer.ok and answer.replayed:
        visit.flash("ok", "Retry requested already (this form was sent before): nothing more.")
    elif answer.ok:
        visit.flash("ok", f"Capture {answer.data['capture_id']} sent again.")
    else:
        error = answer.error
        visit.flash("error", f"Retry refused: {error.get('message')} ({error.get('code')})")
    raise web.HTTPSeeOther("/interventions?status=OPEN")


@routes.get("/suppliers")
@logged_in
async def suppliers(request: web.Request, login: Login) -> web.StreamResponse:
    found = await call(
        request, login, "tenants", "GET", "/v1/admin/suppliers", params={"limit": "100"}
    )
    if not found.ok:
        return refused(request, found, "Suppliers")
    matrix = await call(
        request, login, "tenants", "GET", "/v1/admin/commissions", params={"limit": "100"}
    )
    if not matrix.ok:
        return refused(request, matrix, "Commission matrix")
    rates = {line["supplier_id"]: line for line in matrix.data}
    return render(
        request,
        "suppliers.html",
        {"suppliers": found.data, "rates": rates, "more": found.page_info.get("has_next")},
    )


@routes.post("/suppliers/{id}/commission")
@logged_in
async def set_commission(request: web.Request, login: Login) -> web.StreamResponse:
    form = await request.post()
    rate = str(form.get("rate", "")).strip()
    answer = await call(
        request,
        login,
        "tenants",
        "PUT",
        f"/v1/admin/commissions/{request.match_info['id']}",
        json={"rate": rate},
    )
    visit = await visit_of(request)
    if answer.ok:
        visit.flash("ok", f"Commission set to {answer.data['rate']} %.")
    else:
        error = answer.error
        visit.flash("error", f"Rate refused: {error.get('message')} ({error.get('code')})")
    raise web.HTTPSeeOther("/suppliers")
