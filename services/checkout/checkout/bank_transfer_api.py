"""Checkout's admin routes for bank transfers (operator only): incoming transfers (the parked,
unmatched ones to assign or return) and the overdue payments."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from checkout import bank_transfer_repo as btrepo
from checkout import bank_transfers, repo, service
from checkout.schemas import AssignTransfer, IncomingTransfer, Payment, ReturnTransfer
from common.db import snapshot
from common.http.envelope import ok, page
from common.http.errors import NotFound
from common.http.routing import OPERATOR, Api, Call
from common.runtime import DB_POOL


def register(api: Api) -> None:
    @api.get(
        "/v1/admin/bank-transfers/incoming",
        summary="Incoming bank transfers, newest first (status=UNMATCHED: the parked ones)",
        roles=OPERATOR,
        response=IncomingTransfer,
        list_response=True,
        query=btrepo.INCOMING_LIST,
        tags=["bank transfers"],
    )
    async def list_incoming(request: web.Request, call: Call[None]) -> web.Response:
        async with snapshot(request.app[DB_POOL]) as conn:
            rows, info = await btrepo.incoming_page(conn, call.tenant_id, call.query)
        return page([bank_transfers.incoming_of(r) for r in rows], info)

    @api.get(
        "/v1/admin/bank-transfers/incoming/{id}",
        summary="One incoming bank transfer",
        roles=OPERATOR,
        response=IncomingTransfer,
        tags=["bank transfers"],
    )
    async def get_incoming(request: web.Request, call: Call[None]) -> web.Response:
        async with snapshot(request.app[DB_POOL]) as conn:
            row = await btrepo.incoming(conn, call.tenant_id, request.match_info["id"])
        if row is None:
            raise NotFound("no such incoming transfer", code="transfer_not_found", param="id")
        return ok("incoming_transfer", bank_transfers.incoming_of(row))

    @api.post(
        "/v1/admin/bank-transfers/incoming/{id}/assign",
        summary="Apply an unmatched transfer to a bank-transfer payment",
        roles=OPERATOR,
        body=AssignTransfer,
        response=IncomingTransfer,
        idempotent=True,
        tags=["bank transfers"],
    )
    async def assign(request: web.Request, call: Call[AssignTransfer]) -> web.Response:
        async with request.app[DB_POOL].acquire() as conn, conn.transaction():
            out = await bank_transfers.assign(
                conn,
                call.tenant_id,
                request.match_info["id"],
                call.body.payment_id,
                now=datetime.now(UTC),
            )
        return ok("incoming_transfer", out)

    @api.post(
        "/v1/admin/bank-transfers/incoming/{id}/return",
        summary="Mark an unmatched transfer as returned to its sender",
        roles=OPERATOR,
        body=ReturnTransfer,
        response=IncomingTransfer,
        idempotent=True,
        tags=["bank transfers"],
    )
    async def return_transfer(request: web.Request, call: Call[ReturnTransfer]) -> web.Response:
        async with request.app[DB_POOL].acquire() as conn, conn.transaction():
            out = await bank_transfers.return_transfer(
                conn, call.tenant_id, request.match_info["id"], call.body.note
            )
        return ok("incoming_transfer", out)

    @api.get(
        "/v1/admin/bank-transfers/overdue",
        summary="Bank-transfer payments past their due date and not fully paid",
        roles=OPERATOR,
        response=Payment,
        list_response=True,
        query=btrepo.OVERDUE_LIST,
        tags=["bank transfers"],
    )
    async def list_overdue(request: web.Request, call: Call[None]) -> web.Response:
        async with snapshot(request.app[DB_POOL]) as conn:
            rows, info = await btrepo.overdue_page(conn, call.tenant_id, call.query)
            ids = [r.id for r in rows]
            lines = await repo.lines_of(conn, ids)
            transfers = await btrepo.of_payments(conn, ids)
        return page(
            [service.to_payment(r, lines.get(r.id, []), None, transfers.get(r.id)) for r in rows],
            info,
        )
