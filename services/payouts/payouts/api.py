"""Payouts' HTTP routes. Operators see their tenant; a supplier key sees only its own account,
payouts and funding transfers (another supplier's is a 404, as if it did not exist).

| route | who |
|---|---|
| `GET /v1/admin/balances` (`as_of`, `supplier_id`) | operator; supplier: its own account |
| `GET /v1/admin/accounts/{id}/transactions` | operator; supplier: its own account |
| `GET /v1/admin/ledger/check` | operator |
| ADM-PAY-553 `GET /v1/payments/funding-transfers` | operator; supplier: its own |
| ADM-PAY-503 `GET /v1/payments/funding-transfers/{id}` | operator; supplier: its own |
| `GET /v1/admin/payouts[/{id}[/lines]]` | operator; supplier: its own |
| `POST /v1/admin/payouts/compute`, `POST /v1/admin/payouts/{id}/execute|retry` | operator |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from common.db import snapshot
from common.http.envelope import ok, page
from common.http.pagination import PageRequest, fetch_page
from common.http.query import datetime_param
from common.http.routing import OPERATOR, OPERATOR_OR_SUPPLIER, Api, Call
from common.money import MAX_AMOUNT, Money
from common.runtime import DB_POOL
from payouts import errors, ledger
from payouts.metrics import PayoutsMetrics
from payouts.schemas import AccountBalance, FundingTransfer, LedgerCheck, Posting

api = Api("Marketpay payouts")
PAYOUTS_METRICS = web.AppKey("payouts_metrics", PayoutsMetrics)

PAGING = ("limit", "after_cursor", "before_cursor")
TRANSFER_STATUSES = ["PENDING", "COMPLETED", "FAILED"]
ACCOUNT_TYPES = ["PLATFORM", "MARKETPLACE", "SUPPLIER"]
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _only(query: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    for name in query:
        if name not in allowed and name not in PAGING:
            raise errors.parameter_invalid(name, "not a filter of this list")


def _choice(query: Mapping[str, str], name: str, allowed: list[str]) -> str | None:
    value = query.get(name)
    if value is None:
        return None
    if value not in allowed:
        raise errors.choice_invalid(name, allowed)
    return value


def _amount(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    if not re.fullmatch(r"\d{1,16}", value) or int(value) > MAX_AMOUNT:
        raise errors.parameter_invalid(name, f"an integer amount in minor units, 0..{MAX_AMOUNT}")
    return int(value)


def _bound(query: Mapping[str, str], name: str, *, end: bool) -> datetime | None:
    """A date or date-time; a bare date as an inclusive end covers that whole day."""
    value = query.get(name)
    parsed = datetime_param(query, name)
    if parsed is not None and end and value is not None and len(value) == 10:
        return parsed + timedelta(days=1) - timedelta(microseconds=1)
    return parsed


def _ids(query: Mapping[str, str], name: str) -> list[str] | None:
    value = query.get(name)
    if value is None:
        return None
    ids = [v for v in value.split(",")]
    if not ids or len(ids) > 100 or not all(_ID.fullmatch(v) for v in ids):
        raise errors.parameter_invalid(name, "comma-separated ids (at most 100)")
    return ids


def _supplier_scope(call: Call[Any]) -> str | None:
    return call.principal.supplier_id if call.principal.role == "supplier" else None


# -- ledger ---------------------------------------------------------------------------------


@api.get(
    "/v1/admin/balances",
    summary="Balances of the tenant's accounts, now or at a past instant (as_of)",
    roles=OPERATOR_OR_SUPPLIER,
    response=AccountBalance,
    list_response=True,
    query=[
        ("as_of", "ISO 8601 instant: balances summed from the postings up to it"),
        ("supplier_id", "only this supplier's account"),
    ],
    tags=["ledger"],
)
async def list_balances(request: web.Request, call: Call[None]) -> web.Response:
    _only(call.query, ("as_of", "supplier_id"))
    as_of = datetime_param(call.query, "as_of")
    supplier_id = _supplier_scope(call) or call.query.get("supplier_id")
    if supplier_id is not None and not _ID.fullmatch(supplier_id):
        raise errors.parameter_invalid("supplier_id", "not a supplier id")
    async with snapshot(request.app[DB_POOL]) as conn:
        rows = await ledger.balances(conn, call.tenant_id, as_of=as_of, supplier_id=supplier_id)
    items = [
        AccountBalance(
            id=r["id"],
            type=r["type"],
            supplier_id=r["supplier_id"] or None,
            currency=r["currency"],
            balance=r["balance"],
            held=r["held"],
            available=r["available"],
        )
        for r in rows
    ]
    return web.json_response(
        {
            "id": None,
            "type": "array",
            "data": [i.model_dump(mode="json") for i in items],
            "page_info": None,
        }
    )


_POSTINGS = (
    "(SELECT p.id, p.posted_at AS created_at, p.account_id, p.transaction_id, p.amount,"
    " p.currency, l.tenant_id, l.idempotency_key, l.kind, l.capture_id, l.logistic_order_id,"
    " l.ref_type, l.ref_id FROM postings p JOIN ledger_transactions l"
    " ON l.id = p.transaction_id) AS postings"
)


@api.get(
    "/v1/admin/accounts/{id}/transactions",
    summary="The ledger transactions of an account (its postings), newest first",
    roles=OPERATOR_OR_SUPPLIER,
    response=Posting,
    list_response=True,
    tags=["ledger"],
)
async def account_transactions(request: web.Request, call: Call[None]) -> web.Response:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise errors.not_found("account")
    async with snapshot(request.app[DB_POOL]) as conn:
        account = await conn.fetchrow(
            "SELECT * FROM accounts WHERE id = $1 AND tenant_id = $2", int(raw), call.tenant_id
        )
        scope = _supplier_scope(call)
        if account is None or (scope is not None and account["supplier_id"] != scope):
            raise errors.not_found("account")
        rows, info = await fetch_page(
            conn,
            table=_POSTINGS,
            where=["account_id = $1"],
            args=[account["id"]],
            request=PageRequest.from_query(call.query),
        )
    return page(
        [
            Posting(
                transaction_id=r["transaction_id"],
                idempotency_key=r["idempotency_key"],
                kind=r["kind"],
                amount=Money(value=abs(r["amount"]), currency=r["currency"]),
                signed_amount=r["amount"],
                capture_id=r["capture_id"],
                logistic_order_id=r["logistic_order_id"],
                ref_type=r["ref_type"],
                ref_id=r["ref_id"],
                posted_at=r["created_at"],
            )
            for r in rows
        ],
        info,
    )


@api.get(
    "/v1/admin/ledger/check",
    summary="The ledger check: every transaction balances, each currency sums to zero, each"
    " balance equals its postings",
    roles=OPERATOR,
    response=LedgerCheck,
    tags=["ledger"],
)
async def ledger_check(request: web.Request, call: Call[None]) -> web.Response:
    async with snapshot(request.app[DB_POOL]) as conn:
        result = await ledger.check(conn, call.tenant_id)
    body = LedgerCheck(ok=result.ok, **vars(result))
    return ok("ledger_check", body, id_=call.tenant_id)


# -- funding transfers ----------------------------------------------------------------------

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


def transfer_view(row: asyncpg.Record) -> FundingTransfer:
    return FundingTransfer(
        id=row["id"],
        status=row["status"],
        reason=row["reason"],
        amount=Money(value=row["amount"], currency=row["currency"]),
        recovered=row["recovered"],
        supplier_id=row["supplier_id"],
        source_account_type=row["source_account_type"],
        target_account_type=row["target_account_type"],
        linked_type=row["linked_type"],
        linked_id=row["linked_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def transfer_filters(call: Call[Any]) -> tuple[list[str], list[Any]]:
    query = call.query
    _only(query, TRANSFER_FILTERS)
    where = ["tenant_id = $1"]
    args: list[Any] = [call.tenant_id]

    def add(condition: str, value: Any) -> None:
        args.append(value)
        where.append(condition.format(n=len(args)))

    created_from = _bound(query, "created_from", end=False)
    created_to = _bound(query, "created_to", end=True)
    if created_from and created_to and created_from > created_to:
        raise errors.parameter_invalid("created_to", "before created_from")
    amount_min, amount_max = _amount(query, "amount_min"), _amount(query, "amount_max")
    if amount_min is not None and amount_max is not None and amount_min > amount_max:
        raise errors.parameter_invalid("amount_max", "smaller than amount_min")
    status = _choice(query, "status", TRANSFER_STATUSES)
    source = _choice(query, "source_account_type", ACCOUNT_TYPES)
    target = _choice(query, "target_account_type", ACCOUNT_TYPES)
    suppliers = _ids(query, "supplier_ids")
    if created_from is not None:
        add("created_at >= ${n}", created_from)
    if created_to is not None:
        add("created_at <= ${n}", created_to)
    if status is not None:
        add("status = ${n}", status)
    if amount_min is not None:
        add("amount >= ${n}", amount_min)
    if amount_max is not None:
        add("amount <= ${n}", amount_max)
    if source is not None:
        add("source_account_type = ${n}", source)
    if target is not None:
        add("target_account_type = ${n}", target)
    if suppliers is not None:
        add("supplier_id = ANY(${n}::text[])", suppliers)
    scope = _supplier_scope(call)
    if scope is not None:
        add("supplier_id = ${n}", scope)
    return where, args


@api.get(
    "/v1/payments/funding-transfers",
    summary="ADM-PAY-553: funding transfers between the marketplace's and suppliers' accounts",
    roles=OPERATOR_OR_SUPPLIER,
    response=FundingTransfer,
    list_response=True,
    query=[
        ("created_from", "ISO 8601 date or date-time, inclusive"),
        ("created_to", "ISO 8601 date or date-time, inclusive (a date: that whole day)"),
        ("status", "PENDING, COMPLETED or FAILED"),
        ("supplier_ids", "comma-separated supplier ids"),
        ("amount_min", "minor units, inclusive"),
        ("amount_max", "minor units, inclusive"),
        ("source_account_type", "PLATFORM, MARKETPLACE or SUPPLIER"),
        ("target_account_type", "PLATFORM, MARKETPLACE or SUPPLIER"),
    ],
    tags=["funding transfers"],
)
async def list_funding_transfers(request: web.Request, call: Call[None]) -> web.Response:
    where, args = transfer_filters(call)
    async with snapshot(request.app[DB_POOL]) as conn:
        rows, info = await fetch_page(
            conn,
            table="funding_transfers",
            where=where,
            args=args,
            request=PageRequest.from_query(call.query),
        )
    return page([transfer_view(r) for r in rows], info)


@api.get(
    "/v1/payments/funding-transfers/{id}",
    summary="ADM-PAY-503: one funding transfer",
    roles=OPERATOR_OR_SUPPLIER,
    response=FundingTransfer,
    tags=["funding transfers"],
)
async def get_funding_transfer(request: web.Request, call: Call[None]) -> web.Response:
    async with snapshot(request.app[DB_POOL]) as conn:
        row = await conn.fetchrow(
            "SELECT * FROM funding_transfers WHERE tenant_id = $1 AND id = $2",
            call.tenant_id,
            request.match_info["id"],
        )
    scope = _supplier_scope(call)
    if row is None or (scope is not None and row["supplier_id"] != scope):
        raise errors.not_found("funding_transfer")
    return ok("funding_transfer", transfer_view(row))
