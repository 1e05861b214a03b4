"""Exports' HTTP routes (DESIGN §9).

| route | who |
|---|---|
| `POST /v1/exports` | operator; supplier: its own transactions and funding transfers |
| `GET /v1/exports`, `GET /v1/exports/{id}` | operator: the tenant's; supplier: its own |
| `GET /v1/exports/{id}/download` | as above; 409 before READY, 410 once EXPIRED |
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from common.db import snapshot
from common.db.types import Conn
from common.http.envelope import ok, page
from common.http.pagination import PageRequest, fetch_page
from common.http.routing import OPERATOR_OR_SUPPLIER, Api, Call
from common.logging import get_logger
from common.runtime import DB_POOL
from exports import errors, repo, service
from exports.domain import EXPORT_TYPES, Scope, file_name
from exports.schemas import Export, ExportCreate, ExportError
from exports.storage import Storage, StorageMissingError
from exports.worker import ExportWorker

api = Api("Marketpay exports")
log = get_logger("exports.api")
WORKER = web.AppKey("worker", ExportWorker)
STORAGE: web.AppKey[Storage] = web.AppKey("storage")

STATUSES = ["PENDING", "RUNNING", "READY", "FAILED", "EXPIRED"]


def _scope(call: Call[Any]) -> Scope:
    supplier = call.principal.supplier_id if call.principal.role == "supplier" else None
    return Scope(tenant_id=call.tenant_id, supplier_id=supplier)


def export_view(row: asyncpg.Record) -> Export:
    status = "EXPIRED" if row["expired"] else row["status"]
    error = (
        ExportError(code=row["error_code"], message=row["error_message"] or "")
        if row["error_code"] is not None and status in ("FAILED", "PENDING")
        else None
    )
    return Export(
        id=row["id"],
        type=row["export_type"],
        status=status,
        filters=row["filters"],
        supplier_id=row["supplier_scope"],
        rows_written=row["rows_written"],
        rows_total=row["rows_total"],
        size_bytes=row["size_bytes"],
        attempt=row["attempt"],
        error=error,
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        expires_at=row["expires_at"],
        download_url=f"/v1/exports/{row['id']}/download" if status == "READY" else None,
    )


async def _visible(conn: Conn, export_id: str, scope: Scope) -> asyncpg.Record:
    row = await repo.export(conn, export_id, scope.tenant_id)
    if row is None or (
        scope.supplier_id is not None and row["supplier_scope"] != scope.supplier_id
    ):
        raise errors.export_not_found()
    return row


@api.post(
    "/v1/exports",
    summary="Ask for a CSV export (transactions, supplier_payouts or funding_transfers)",
    roles=OPERATOR_OR_SUPPLIER,
    body=ExportCreate,
    response=Export,
    status=202,
    idempotent=True,
    tags=["exports"],
)
async def create_export(request: web.Request, call: Call[ExportCreate]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        row = await service.create_export(
            conn,
            _scope(call),
            call.body.type,
            call.body.filters,
            requested_by=call.principal.key_id,
        )
    request.app[WORKER].wake()
    return ok("export", export_view(row), status=202)


@api.get(
    "/v1/exports",
    summary="Exports, newest first",
    roles=OPERATOR_OR_SUPPLIER,
    response=Export,
    list_response=True,
    query=[
        ("status", "PENDING, RUNNING, READY, FAILED or EXPIRED"),
        ("type", "transactions, supplier_payouts or funding_transfers"),
    ],
    tags=["exports"],
)
async def list_exports(request: web.Request, call: Call[None]) -> web.Response:
    scope = _scope(call)
    where = ["tenant_id = $1"]
    args: list[Any] = [scope.tenant_id]
    if scope.supplier_id is not None:
        args.append(scope.supplier_id)
        where.append(f"supplier_scope = ${len(args)}")
    status = call.query.get("status")
    if status:
        if status not in STATUSES:
            raise errors.filter_invalid("status", f"one of {', '.join(STATUSES)}")
        args.append(status)
        n = len(args)
        where.append(f"CASE WHEN expired THEN 'EXPIRED' ELSE status END = ${n}")
    export_type = call.query.get("type")
    if export_type:
        if export_type not in EXPORT_TYPES:
            raise errors.filter_invalid("type", f"one of {', '.join(EXPORT_TYPES)}")
        args.append(export_type)
        where.append(f"export_type = ${len(args)}")
    async with snapshot(request.app[DB_POOL]) as conn:
        rows, info = await fetch_page(
            conn,
            table=repo.EXPORT_VIEW,
            where=where,
            args=args,
            request=PageRequest.from_query(call.query),
        )
    return page([export_view(r) for r in rows], info)


@api.get(
    "/v1/exports/{id}",
    summary="An export: its status, and rows written out of the total (a progress bar)",
    roles=OPERATOR_OR_SUPPLIER,
    response=Export,
    tags=["exports"],
)
async def get_export(request: web.Request, call: Call[None]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn:
        row = await _visible(conn, request.match_info["id"], _scope(call))
    return ok("export", export_view(row))


@api.get(
    "/v1/exports/{id}/download",
    summary="The export's CSV file (text/csv, UTF-8, `;`): 409 before READY, 410 once EXPIRED",
    roles=OPERATOR_OR_SUPPLIER,
    tags=["exports"],
)
async def download_export(request: web.Request, call: Call[None]) -> web.StreamResponse:
    async with request.app[DB_POOL].acquire() as conn:
        row = await _visible(conn, request.match_info["id"], _scope(call))
    if row["expired"] or row["status"] == "EXPIRED":
        raise errors.expired()
    if row["status"] != "READY":
        raise errors.not_ready(row["status"])
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": (
                f'attachment; filename="{file_name(row["export_type"], row["id"])}"'
            ),
            "Content-Length": str(row["size_bytes"]),
        }
    )
    chunks = request.app[STORAGE].read(row["storage_key"])
    try:
        first = await anext(chunks, b"")  # a missing file fails before the headers go out
    except StorageMissingError:
        log.error("a READY export's file is missing", export_id=row["id"])
        raise errors.file_missing() from None
    await response.prepare(request)
    if first:
        await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response
