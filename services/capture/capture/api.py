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

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import asyncpg
from aiohttp import web

from capture import errors, repo, service
from capture.domain import CaptureStatus
from capture.executor import CaptureExecutor
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
from capture.service import Clock
from common.db import snapshot
from common.http.envelope import ok, page
from common.http.pagination import PageRequest, fetch_page
from common.http.routing import OPERATOR, OPERATOR_OR_SUPPLIER, Api, Call
from common.money import Money
from common.runtime import DB_POOL

api = Api("Marketpay capture")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
EXECUTOR = web.AppKey("executor", CaptureExecutor)

STATUSES = [s.value for s in CaptureStatus]
TRIGGERS = ["IMMEDIATE", "DELAYED", "ON_SHIPMENT", "MANUAL"]
INTERVENTION_STATUSES = ["OPEN", "RETRIED", "RESOLVED"]
INTERVENTION_KINDS = ["retries_exhausted", "psp_refused", "capture_failed", "blocked"]
OMS_OUTCOMES = ["capture_created", "recorded", "awaiting_authorisation", "ignored"]


def _rate(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def capture_view(
    row: asyncpg.Record,
    *,
    for_supplier: bool = False,
    attempts: Sequence[asyncpg.Record] | None = None,
    history: Sequence[asyncpg.Record] | None = None,
) -> Capture:
    splits = [
        SplitLineOut(party=s["party"], amount=s["amount"], rate=_rate(s["rate"]))
        for s in row["splits"]
        if not for_supplier or s["party"] == "SUPPLIER"
    ]
    return Capture(
        id=row["id"],
        payment_id=row["payment_id"],
        order_id=row["order_id"],
        logistic_order_id=row["logistic_order_id"],
        supplier_id=row["supplier_id"],
        amount=Money(value=row["amount"], currency=row["currency"]),
        trigger=row["trigger"],
        status=row["status"],
        revision=row["revision"],
        platform_rate=None if for_supplier else row["platform_rate"],
        marketplace_rate=None if for_supplier else row["marketplace_rate"],
        splits=splits,
        payment_psp_reference=row["payment_psp_reference"],
        psp_reference=row["psp_reference"],
        block_code=row["block_code"],
        block_message=row["block_message"],
        failure_code=row["failure_code"],
        failure_reason=row["failure_reason"],
        outcome_known=row["outcome_known"],
        generation=row["generation"],
        attempt_count=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        succeeded_at=row["succeeded_at"],
        attempts=[AttemptOut(**{k: a[k] for k in AttemptOut.model_fields}) for a in attempts]
        if attempts is not None
        else None,
        history=[HistoryOut(**dict(h)) for h in history] if history is not None else None,
    )


def intervention_view(row: asyncpg.Record, capture: Capture | None = None) -> Intervention:
    return Intervention(
        **{k: row[k] for k in Intervention.model_fields if k != "capture"}, capture=capture
    )


def _choice(query: dict[str, str], name: str, allowed: list[str]) -> str | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    if value not in allowed:
        raise errors.filter_invalid(name, allowed)
    return value


def _filters(
    query: dict[str, str],
    where: list[str],
    args: list[Any],
    *,
    choices: dict[str, list[str]],
    free: Sequence[str],
) -> None:
    for name, allowed in choices.items():
        value = _choice(query, name, allowed)
        if value is not None:
            args.append(value)
            where.append(f"{name} = ${len(args)}")
    for name in free:
        value = query.get(name)
        if value:
            args.append(value)
            where.append(f"{name} = ${len(args)}")


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
        done = await service.manual_capture(
            conn,
            call.tenant_id,
            payment_id,
            call.body.logistic_order_id,
            now=request.app[CLOCK](),
        )
    request.app[EXECUTOR].wake()
    blocked = done.all_blocked()
    if blocked is not None:
        raise errors.blocked(blocked["block_code"], blocked["block_message"])
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
    query=[
        ("payment_id", "only this payment's captures"),
        ("logistic_order_id", "only this logistic order's capture"),
        ("status", "PENDING, SENT, SUCCEEDED, FAILED or BLOCKED"),
        ("trigger", "IMMEDIATE, DELAYED, ON_SHIPMENT or MANUAL"),
    ],
    tags=["admin"],
)
async def list_captures(request: web.Request, call: Call[None]) -> web.Response:
    where = ["tenant_id = $1"]
    args: list[Any] = [call.tenant_id]
    _filters(
        call.query,
        where,
        args,
        choices={"status": STATUSES, "trigger": TRIGGERS},
        free=("payment_id", "logistic_order_id"),
    )
    for_supplier = call.principal.role == "supplier"
    if for_supplier:
        args.append(call.principal.supplier_id)
        where.append(f"supplier_id = ${len(args)}")
    async with snapshot(request.app[DB_POOL]) as conn:
        rows, info = await fetch_page(
            conn,
            table="captures",
            where=where,
            args=args,
            request=PageRequest.from_query(call.query),
        )
    return page([capture_view(r, for_supplier=for_supplier) for r in rows], info)


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
        row = await repo.capture(conn, request.match_info["id"], tenant_id=call.tenant_id)
        if row is None or (for_supplier and row["supplier_id"] != call.principal.supplier_id):
            raise errors.capture_not_found()
        if for_supplier:
            view = capture_view(row, for_supplier=True)
        else:
            view = capture_view(
                row,
                attempts=await repo.attempts_of(conn, row["id"]),
                history=await repo.history_of(conn, row["id"]),
            )
    return ok("capture", view)


_INTERVENTIONS = (
    "(SELECT i.*, c.payment_id, c.logistic_order_id FROM interventions i"
    " JOIN captures c ON c.id = i.capture_id) AS interventions"
)


@api.get(
    "/v1/admin/interventions",
    summary="The manual-intervention queue: captures that failed for good or are blocked",
    roles=OPERATOR,
    response=Intervention,
    list_response=True,
    query=[
        ("status", "OPEN, RETRIED or RESOLVED"),
        ("kind", "retries_exhausted, psp_refused, capture_failed or blocked"),
        ("capture_id", "only this capture's interventions"),
        ("payment_id", "only this payment's interventions"),
    ],
    tags=["admin"],
)
async def list_interventions(request: web.Request, call: Call[None]) -> web.Response:
    where = ["tenant_id = $1"]
    args: list[Any] = [call.tenant_id]
    _filters(
        call.query,
        where,
        args,
        choices={"status": INTERVENTION_STATUSES, "kind": INTERVENTION_KINDS},
        free=("capture_id", "payment_id"),
    )
    async with snapshot(request.app[DB_POOL]) as conn:
        rows, info = await fetch_page(
            conn,
            table=_INTERVENTIONS,
            where=where,
            args=args,
            request=PageRequest.from_query(call.query),
        )
    return page([intervention_view(r) for r in rows], info)


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
        row = await service.retry_intervention(
            conn, call.tenant_id, request.match_info["id"], now=request.app[CLOCK]()
        )
        capture = await repo.capture(conn, row["capture_id"])
        assert capture is not None
    request.app[EXECUTOR].wake()
    if capture["status"] == CaptureStatus.BLOCKED:
        raise errors.blocked(capture["block_code"], capture["block_message"])
    return ok("intervention", intervention_view(row, capture_view(capture)), status=202)


@api.get(
    "/v1/admin/logistic-order-events",
    summary="OMS logistic-order events received, with what each did (and why one was ignored)",
    roles=OPERATOR,
    response=LogisticOrderEvent,
    list_response=True,
    query=[
        ("outcome", "capture_created, recorded, awaiting_authorisation or ignored"),
        ("status", "the OMS status, e.g. SHIPPED"),
        ("order_id", "only this order's events"),
        ("logistic_order_id", "only this logistic order's events"),
    ],
    tags=["admin"],
)
async def list_logistic_order_events(request: web.Request, call: Call[None]) -> web.Response:
    where = ["tenant_id = $1"]
    args: list[Any] = [call.tenant_id]
    _filters(
        call.query,
        where,
        args,
        choices={"outcome": OMS_OUTCOMES},
        free=("status", "order_id", "logistic_order_id"),
    )
    async with snapshot(request.app[DB_POOL]) as conn:
        rows, info = await fetch_page(
            conn,
            table="logistic_order_events",
            where=where,
            args=args,
            request=PageRequest.from_query(call.query),
        )
    return page(
        [LogisticOrderEvent(**{k: r[k] for k in LogisticOrderEvent.model_fields}) for r in rows],
        info,
    )


# refunds and chargebacks (capture.refunds) add their routes to this Api
from capture.refunds.api import add_routes as _add_refund_routes  # noqa: E402

_add_refund_routes(api)
