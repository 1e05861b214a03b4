"""Exports (exports service): ask for a CSV export (a type and its filters) with the rendered
form's Idempotency-Key, follow its progress (htmx polls rows_written / rows_total until the job
is final) and download the file, streamed through the back office with the logged-in key."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from backoffice.sessions import Login, visit_of
from backoffice.upstream import UPSTREAM
from backoffice.web import call, logged_in, new_idempotency_key, refused, render

routes = web.RouteTableDef()

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TYPES = ["transactions", "supplier_payouts", "funding_transfers"]
TRANSACTION_TYPES = ["AUTHORISATION", "CAPTURE", "REFUND", "CHARGEBACK", "CHARGEBACK_REVERSAL"]
FINAL = frozenset({"READY", "FAILED", "EXPIRED"})
DOWNLOAD_HEADERS = ("Content-Type", "Content-Disposition", "Content-Length")


def export_filters(form: Any) -> dict[str, Any]:
    """The form's fields as the API's filters: days become instants (both inclusive, UTC);
    what is left empty is no filter. Values are passed as typed: the service validates them
    and names the offending filter."""
    filters: dict[str, Any] = {}
    start = str(form.get("created_from", "")).strip()
    end = str(form.get("created_to", "")).strip()
    if start:
        filters["created_from"] = f"{start}T00:00:00Z" if DAY.match(start) else start
    if end:
        filters["created_to"] = f"{end}T23:59:59.999999Z" if DAY.match(end) else end
    if str(form.get("type")) == "transactions":
        types = [str(t) for t in form.getall("types", []) if str(t) in TRANSACTION_TYPES]
        if types:
            filters["types"] = types
        payment_id = str(form.get("payment_id", "")).strip()
        if payment_id:
            filters["payment_id"] = payment_id
    return filters


@routes.get("/exports")
@logged_in
async def exports(request: web.Request, login: Login) -> web.StreamResponse:
    answer = await call(
        request,
        login,
        "exports",
        "GET",
        "/v1/exports",
        params={
            "after_cursor": request.query.get("after_cursor", ""),
            "before_cursor": request.query.get("before_cursor", ""),
            "limit": "20",
        },
    )
    if not answer.ok:
        return refused(request, answer, "Exports")
    return render(
        request,
        "exports.html",
        {
            "exports": answer.data,
            "types": TYPES,
            "transaction_types": TRANSACTION_TYPES,
            "page_info": answer.page_info,
            "idempotency_key": new_idempotency_key(),
            "base": "",
        },
    )


@routes.post("/exports")
@logged_in
async def ask_for_export(request: web.Request, login: Login) -> web.StreamResponse:
    form = await request.post()
    visit = await visit_of(request)
    key = str(form.get("idempotency_key", ""))
    if not (1 <= len(key) <= 64):
        visit.flash("error", "This form has expired: open the exports again.")
        raise web.HTTPSeeOther("/exports")
    answer = await call(
        request,
        login,
        "exports",
        "POST",
        "/v1/exports",
        json={"type": str(form.get("type", "")), "filters": export_filters(form)},
        idempotency_key=key,
    )
    if not answer.ok:
        error = answer.error
        param = f", {error['param']}" if error.get("param") else ""
        visit.flash("error", f"Export refused: {error.get('message')} ({error.get('code')}{param})")
        raise web.HTTPSeeOther("/exports")
    raise web.HTTPSeeOther(f"/exports/{answer.data['id']}")


async def _export(request: web.Request, login: Login) -> dict[str, Any] | web.Response:
    answer = await call(request, login, "exports", "GET", f"/v1/exports/{request.match_info['id']}")
    if not answer.ok:
        return refused(request, answer, "Export")
    job: dict[str, Any] = answer.data
    total, written = job.get("rows_total"), job.get("rows_written") or 0
    if job["status"] == "READY":
        percent = 100
    elif total:
        percent = min(100, written * 100 // total)
    else:
        percent = 0
    return {"job": job, "percent": percent, "final": job["status"] in FINAL}


@routes.get("/exports/{id}")
@logged_in
async def export_detail(request: web.Request, login: Login) -> web.StreamResponse:
    view = await _export(request, login)
    if isinstance(view, web.Response):
        return view
    return render(request, "export.html", view)


@routes.get("/exports/{id}/progress")
@logged_in
async def export_progress(request: web.Request, login: Login) -> web.StreamResponse:
    """The progress bar alone, for htmx to poll; once the job is final the fragment it returns
    no longer polls."""
    view = await _export(request, login)
    if isinstance(view, web.Response):
        return view
    return render(request, "export_progress.html", view)


@routes.get("/exports/{id}/download")
@logged_in
async def download(request: web.Request, login: Login) -> web.StreamResponse:
    """The CSV, streamed from the exports service with this login's key, chunk by chunk (the
    back office never holds the file)."""
    path = f"/v1/exports/{request.match_info['id']}/download"
    async with request.app[UPSTREAM].stream("exports", path, login.api_key) as upstream:
        if upstream.status != 200:
            try:
                body = await upstream.json(content_type=None)
            except ValueError:
                body = None
            error = body.get("error") if isinstance(body, dict) else None
            message = (error or {}).get("message", "the export cannot be downloaded")
            raise _refusal(upstream.status, message)
        response = web.StreamResponse(
            headers={h: upstream.headers[h] for h in DOWNLOAD_HEADERS if h in upstream.headers}
        )
        await response.prepare(request)
        async for chunk in upstream.content.iter_chunked(64 * 1024):
            await response.write(chunk)
        await response.write_eof()
        return response


def _refusal(status: int, message: str) -> web.HTTPException:
    kinds: dict[int, type[web.HTTPException]] = {
        401: web.HTTPForbidden,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
        410: web.HTTPGone,
    }
    return kinds.get(status, web.HTTPBadGateway)(reason=message)
