"""The refunds routes, added to capture's `Api` by `add_routes`.

| route | who |
|---|---|
| `POST /v1/admin/payments/{id}/refunds` (Idempotency-Key) | operator (supplier: 403) |
| `GET /v1/admin/payments/{id}/refunds` | operator; supplier: refunds of its own lines |
| `GET /v1/admin/refunds/{id}` | operator; supplier: its own (lines: its own) |
| `GET /v1/admin/refund-interventions` | operator |
| `POST /v1/admin/refund-interventions/{id}/retry` | operator |
| `POST /v1/admin/interventions/{id}/resend` (an unconfirmed capture, same PSP key) | operator |
| `POST /v1/admin/interventions/{id}/resolve` (a capture's or a refund's) | operator |
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aiohttp import web

from capture.refunds import repo, service
from capture.refunds.repo import Refund
from capture.refunds.schemas import (
    InterventionOut,
    PaymentRefunds,
    RefundHistoryOut,
    RefundIn,
    RefundOut,
    ResolveIn,
    ReturnLineOut,
)
from capture.refunds.worker import SENDER
from common.db import snapshot
from common.http.envelope import ok, page
from common.http.errors import NotFound, Unprocessable
from common.http.pagination import PageInfo
from common.http.routing import OPERATOR, OPERATOR_OR_SUPPLIER, Api, Call
from common.money import Money
from common.runtime import DB_POOL


def refund_view(
    r: Refund, *, for_supplier: bool = False, history: Sequence[Any] | None = None
) -> RefundOut:
    lines = [
        ReturnLineOut(party=party, amount=amount)
        for party, amount in r.lines.lines()
        if not for_supplier or party == "SUPPLIER"
    ]
    return RefundOut(
        id=r.id,
        payment_id=r.payment_id,
        order_id=r.order_id,
        capture_id=r.capture_id,
        logistic_order_id=r.logistic_order_id,
        supplier_id=r.supplier_id,
        amount=Money(value=r.amount, currency=r.currency),
        status=r.status.value,
        psp_request=r.send_state.value,
        reason=r.reason,
        description=r.description,
        lines=lines,
        funds_check=r.funds_check,
        supplier_share_paid_out=r.supplier_share_paid_out,
        funding_transfer_id=r.funding_transfer_id,
        psp_reference=r.psp_reference,
        failure_code=r.failure_code,
        failure_message=r.failure_message,
        created_at=r.created_at,
        updated_at=r.updated_at,
        refunded_at=r.refunded_at,
        history=[RefundHistoryOut(**vars(h)) for h in history] if history is not None else None,
    )


def ok_list(items: Sequence[InterventionOut]) -> web.Response:
    """A list of at most 100, newest first, without cursors."""
    return page(
        items, PageInfo(has_previous=False, has_next=False, start_cursor=None, end_cursor=None)
    )


def refund_not_found() -> NotFound:
    return NotFound("no such refund", code="refund_not_found", param="id")


def add_routes(api: Api) -> None:
    @api.post(
        "/v1/admin/payments/{id}/refunds",
        summary="Refund a captured payment: all that is left, one logistic order, or a part",
        roles=OPERATOR,
        body=RefundIn,
        body_required=False,
        response=PaymentRefunds,
        status=201,
        idempotent=True,
        tags=["refunds"],
    )
    async def create_refund(request: web.Request, call: Call[RefundIn]) -> web.Response:
        payment_id = request.match_info["id"]
        body = call.body
        given = service.RefundInput(
            amount=body.amount.value if body.amount else None,
            currency=body.amount.currency if body.amount else None,
            logistic_order_id=body.logistic_order_id,
            reason=body.reason,
            description=body.description,
        )
        async with request.app[DB_POOL].acquire() as conn, conn.transaction():
            rows = await service.request_refund(
                conn, call.tenant_id, payment_id, given, now=_now(request)
            )
        if any(r.send_state == "DUE" for r in rows):
            request.app[SENDER].wake()
        result = PaymentRefunds(payment_id=payment_id, refunds=[refund_view(r) for r in rows])
        return ok("payment_refunds", result, id_=payment_id, status=201)

    @api.get(
        "/v1/admin/payments/{id}/refunds",
        summary="A payment's refunds with their split lines and status history",
        roles=OPERATOR_OR_SUPPLIER,
        response=PaymentRefunds,
        tags=["refunds"],
    )
    async def list_refunds(request: web.Request, call: Call[None]) -> web.Response:
        payment_id = request.match_info["id"]
        for_supplier = call.principal.role == "supplier"
        async with snapshot(request.app[DB_POOL]) as conn:
            known = await conn.fetchval(
                "SELECT true FROM payments WHERE tenant_id = $1 AND payment_id = $2",
                call.tenant_id,
                payment_id,
            )
            if not known:
                raise NotFound("no such payment", code="payment_not_found", param="id")
            rows = await repo.refunds_of_payment(conn, call.tenant_id, payment_id)
            if for_supplier:
                rows = [r for r in rows if r.supplier_id == call.principal.supplier_id]
            history = await repo.history_of(conn, [r.id for r in rows])
        views = [
            refund_view(r, for_supplier=for_supplier, history=history.get(r.id, [])) for r in rows
        ]
        return ok(
            "payment_refunds", PaymentRefunds(payment_id=payment_id, refunds=views), id_=payment_id
        )

    @api.get(
        "/v1/admin/refunds/{id}",
        summary="A refund with its split lines and status history",
        roles=OPERATOR_OR_SUPPLIER,
        response=RefundOut,
        tags=["refunds"],
    )
    async def get_refund(request: web.Request, call: Call[None]) -> web.Response:
        for_supplier = call.principal.role == "supplier"
        async with snapshot(request.app[DB_POOL]) as conn:
            r = await repo.refund(conn, request.match_info["id"], tenant_id=call.tenant_id)
            if r is None or (for_supplier and r.supplier_id != call.principal.supplier_id):
                raise refund_not_found()
            history = await repo.history_of(conn, [r.id])
        return ok(
            "refund", refund_view(r, for_supplier=for_supplier, history=history.get(r.id, []))
        )

    @api.get(
        "/v1/admin/refund-interventions",
        summary="Refunds waiting for a person: unconfirmed for too long, or their PSP outcome"
        " unknown after the retries",
        roles=OPERATOR,
        response=InterventionOut,
        list_response=True,
        query=[("payment_id", "only this payment's"), ("status", "OPEN, RETRIED or RESOLVED")],
        tags=["refunds"],
    )
    async def list_refund_interventions(request: web.Request, call: Call[None]) -> web.Response:
        status = call.query.get("status") or None
        if status is not None and status not in ("OPEN", "RETRIED", "RESOLVED"):
            raise Unprocessable(
                "status must be one of OPEN, RETRIED, RESOLVED",
                code="parameter_invalid",
                param="status",
            )
        async with snapshot(request.app[DB_POOL]) as conn:
            found = await repo.refund_interventions(
                conn, call.tenant_id, call.query.get("payment_id") or None, status
            )
        return ok_list([InterventionOut(**vars(i)) for i in found])

    @api.post(
        "/v1/admin/refund-interventions/{id}/retry",
        summary="Send an intervention's refund to the PSP again, under its same PSP key",
        roles=OPERATOR,
        response=InterventionOut,
        status=202,
        idempotent=True,
        tags=["refunds"],
    )
    async def retry_refund(request: web.Request, call: Call[None]) -> web.Response:
        async with request.app[DB_POOL].acquire() as conn, conn.transaction():
            found = await service.retry_refund(
                conn, call.tenant_id, request.match_info["id"], now=_now(request)
            )
        request.app[SENDER].wake()
        return ok("intervention", InterventionOut(**vars(found)), status=202)

    @api.post(
        "/v1/admin/interventions/{id}/resend",
        summary="Send an unconfirmed capture to the PSP again, under its same PSP key",
        roles=OPERATOR,
        response=InterventionOut,
        status=202,
        idempotent=True,
        tags=["refunds"],
    )
    async def resend_capture(request: web.Request, call: Call[None]) -> web.Response:
        async with snapshot(request.app[DB_POOL]) as conn:
            resend = await service.prepare_capture_resend(
                conn, call.tenant_id, request.match_info["id"]
            )
        answer = await service.send_capture_again(request.app[SENDER].psp, resend)
        async with request.app[DB_POOL].acquire() as conn, conn.transaction():
            found = await service.record_capture_resend(conn, resend, answer, now=_now(request))
        return ok("intervention", InterventionOut(**vars(found)), status=202)

    @api.post(
        "/v1/admin/interventions/{id}/resolve",
        summary="Close an intervention (capture or refund) with an operator's note;"
        " nothing is sent or failed",
        roles=OPERATOR,
        body=ResolveIn,
        response=InterventionOut,
        idempotent=True,
        tags=["refunds"],
    )
    async def resolve(request: web.Request, call: Call[ResolveIn]) -> web.Response:
        async with request.app[DB_POOL].acquire() as conn, conn.transaction():
            found = await service.resolve_intervention(
                conn, call.tenant_id, request.match_info["id"], call.body.note, now=_now(request)
            )
        return ok("intervention", InterventionOut(**vars(found)))


def _now(request: web.Request) -> datetime:
    from capture.app import CLOCK  # capture's clock key (the app's injected clock)

    return request.app[CLOCK]()
