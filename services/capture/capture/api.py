"""Capture's HTTP routes (operators; a supplier key reads only its own captures, and of their
split only its own line, as exports treat commissions: DESIGN §9).

| route | who |
|---|---|
| ADM-PAY-101 `POST /v1/admin/payments/{id}/capture` | operator (supplier: 403) |
| `GET /v1/admin/captures[/{id}]` | operator; supplier: its own captures, its own split line |
| `GET /v1/admin/interventions`, `POST /v1/admin/interventions/{id}/retry` | operator |
| `GET /v1/admin/logistic-order-events` | operator |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from capture import errors, lists, operators, repo
from capture.app import CLOCK, EXECUTOR
from capture.domain import Capture as CaptureRecord
from capture.domain import CaptureStatus
from capture.repo import PgRepo
from capture.repository import Intervention as InterventionRecord
from capture.schemas import (
    AttemptOut,
    Capture,
    CaptureRequestIn,
    HistoryOut,
    Intervention,
    LogisticOrderEvent,
    PaymentCaptures,
    SplitLineOut,
)
from common.db import snapshot
from common.http.envelope import ok, page
from common.http.routing import OPERATOR, OPERATOR_OR_SUPPLIER, Api, Call
from common.money import Money
from common.runtime import DB_POOL

api = Api("Marketpay capture")


def capture_view(
    capture: CaptureRecord,
    *,
    for_supplier: bool = False,
    attempts: Sequence[Mapping[str, Any]] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
) -> Capture:
    splits = [
        SplitLineOut(party=s.party, amount=s.amount, rate=s.rate)
        for s in capture.splits
        if not for_supplier or s.party == "SUPPLIER"
    ]
    assert capture.created_at is not None
    assert capture.updated_at is not None
    return Capture(
        id=capture.id,
        payment_id=capture.payment_id,
        order_id=capture.order_id,
        logistic_order_id=capture.logistic_order_id,
        supplier_id=capture.supplier_id,
        amount=Money(value=capture.amount, currency=capture.currency),
        trigger=capture.trigger,
        status=capture.status.value,
        revision=capture.revision,
        platform_rate=None if for_supplier else capture.platform_rate,
        marketplace_rate=None if for_supplier else capture.marketplace_rate,
        splits=splits,
        payment_psp_reference=capture.payment_psp_reference,
        psp_reference=capture.psp_reference,
        block_code=capture.block_code,
        block_message=capture.block_message,
        failure_code=capture.failure_code,
        failure_reason=capture.failure_reason,
        outcome_known=capture.outcome_known,
        generation=capture.generation,
        attempt_count=capture.attempts,
        next_attempt_at=capture.next_attempt_at,
        created_at=capture.created_at,
        updated_at=capture.updated_at,
        succeeded_at=capture.succeeded_at,
        attempts=[AttemptOut(**{k: a[k] for k in AttemptOut.model_fields}) for a in attempts]
        if attempts is not None
        else None,
        history=[HistoryOut(**dict(h)) for h in history] if history is not None else None,
    )


def intervention_view(row: InterventionRecord, capture: Capture | None = None) -> Intervention:
    return Intervention(
        **{k: getattr(row, k) for k in Intervention.model_fields if k != "capture"},
        capture=capture,
    )


@api.post(
    "/v1/admin/payments/{id}/capture",
    summary="ADM-PAY-101: capture the payment's lines still authorised and uncaptured"
    " (or the one named)",
    roles=OPERATOR,
    body=CaptureRequestIn,
    body_required=False,
    response=PaymentCaptures,
    status=202,
    idempotent=True,
    tags=["admin"],
)
async def capture_payment(request: web.Request, call: Call[CaptureRequestIn]) -> web.Response:
    payment_id = request.match_info["id"]
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        done = await operators.manual_capture(
            PgRepo(conn),
            call.tenant_id,
            payment_id,
            call.body.logistic_order_id,
            now=request.app[CLOCK](),
        )
    request.app[EXECUTOR].wake()
    blocked = done.all_blocked()
    if blocked is not None:
        raise errors.blocked(blocked.block_code or "", blocked.block_message or "")
    result = PaymentCaptures(
        payment_id=payment_id, captures=[capture_view(row) for row in done.captures]
    )
    return ok("payment_captures", result, id_=payment_id, status=202)


@api.get(
    "/v1/admin/captures",
    summary="List captures with their split lines, newest first",
    roles=OPERATOR_OR_SUPPLIER,
    response=Capture,
    list_response=True,
    query=lists.CAPTURES,
    tags=["admin"],
)
async def list_captures(request: web.Request, call: Call[None]) -> web.Response:
    for_supplier = call.principal.role == "supplier"
    supplier_id = call.principal.supplier_id if for_supplier else None
    async with snapshot(request.app[DB_POOL]) as conn:
        rows, info = await lists.capture_page(conn, call.tenant_id, supplier_id, call.query)
    return page([capture_view(repo.capture_of(r), for_supplier=for_supplier) for r in rows], info)


@api.get(
    "/v1/admin/captures/{id}",
    summary="A capture with its split lines, frozen rates, PSP attempts and history",
    roles=OPERATOR_OR_SUPPLIER,
    response=Capture,
    tags=["admin"],
)
async def get_capture(request: web.Request, call: Call[None]) -> web.Response:
    for_supplier = call.principal.role == "supplier"
    async with snapshot(request.app[DB_POOL]) as conn:
        store = PgRepo(conn)
        found = await store.capture(request.match_info["id"], tenant_id=call.tenant_id)
        if found is None or (for_supplier and found.supplier_id != call.principal.supplier_id):
            raise errors.capture_not_found()
        if for_supplier:
            view = capture_view(found, for_supplier=True)
        else:
            view = capture_view(
                found,
                attempts=await store.attempts_of(found.id),
                history=await store.history_of(found.id),
            )
    return ok("capture", view)


@api.get(
    "/v1/admin/interventions",
    summary="The manual-intervention queue: captures that failed for good or are blocked",
    roles=OPERATOR,
    response=Intervention,
    list_response=True,
    query=lists.INTERVENTIONS,
    tags=["admin"],
)
async def list_interventions(request: web.Request, call: Call[None]) -> web.Response:
    async with snapshot(request.app[DB_POOL]) as conn:
        rows, info = await lists.intervention_page(conn, call.tenant_id, call.query)
    return page([intervention_view(repo.intervention_of(r)) for r in rows], info)


@api.post(
    "/v1/admin/interventions/{id}/retry",
    summary="Send an intervention's capture again (a new PSP request only when the PSP"
    " certainly did not capture)",
    roles=OPERATOR,
    response=Intervention,
    status=202,
    idempotent=True,
    tags=["admin"],
)
async def retry_intervention(request: web.Request, call: Call[None]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        retried = await operators.retry_intervention(
            PgRepo(conn), call.tenant_id, request.match_info["id"], now=request.app[CLOCK]()
        )
    request.app[EXECUTOR].wake()
    capture = retried.capture
    if capture.status is CaptureStatus.BLOCKED:
        raise errors.blocked(capture.block_code or "", capture.block_message or "")
    return ok(
        "intervention",
        intervention_view(retried.intervention, capture_view(capture)),
        status=202,
    )


@api.get(
    "/v1/admin/logistic-order-events",
    summary="OMS logistic-order events received, with what each did (and why one was ignored)",
    roles=OPERATOR,
    response=LogisticOrderEvent,
    list_response=True,
    query=lists.LOGISTIC_ORDER_EVENTS,
    tags=["admin"],
)
async def list_logistic_order_events(request: web.Request, call: Call[None]) -> web.Response:
    async with snapshot(request.app[DB_POOL]) as conn:
        rows, info = await lists.logistic_order_event_page(conn, call.tenant_id, call.query)
    return page(
        [LogisticOrderEvent(**{k: r[k] for k in LogisticOrderEvent.model_fields}) for r in rows],
        info,
    )


# refunds and chargebacks (capture.refunds) add their routes to this Api
from capture.refunds.api import add_routes as _add_refund_routes  # noqa: E402

_add_refund_routes(api)
