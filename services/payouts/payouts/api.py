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
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel

from common.db import snapshot
from common.db.types import Conn
from common.http.envelope import ok, page
from common.http.pagination import PageRequest, fetch_page
from common.http.query import datetime_param
from common.http.routing import OPERATOR, OPERATOR_OR_SUPPLIER, Api, Call
from common.money import MAX_AMOUNT, Money
from common.runtime import DB_POOL
from payouts import errors, ledger, payout_cases
from payouts.domain import iban_valid
from payouts.executor import Clock, PayoutExecutor
from payouts.metrics import PayoutsMetrics
from payouts.schemas import (
    AccountBalance,
    BankAccountIn,
    ComputeIn,
    FundingTransfer,
    Intervention,
    LedgerCheck,
    Payout,
    PayoutLine,
    Posting,
)

api = Api("Marketpay payouts")
PAYOUTS_METRICS = web.AppKey("payouts_metrics", PayoutsMetrics)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
EXECUTOR = web.AppKey("executor", PayoutExecutor)

TRANSFER_STATUSES = ["PENDING", "COMPLETED", "FAILED"]
ACCOUNT_TYPES = ["PLATFORM", "MARKETPLACE", "SUPPLIER"]
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


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


async def _scoped(conn: Conn, call: Call[Any], table: str, id_: str) -> asyncpg.Record | None:
    """The tenant's row `id_` of `table` (a constant), None if it is not the caller's to see
    (another tenant's, or another supplier's when a supplier asks)."""
    row = await conn.fetchrow(
        f"SELECT * FROM {table} WHERE tenant_id = $1 AND id = $2", call.tenant_id, id_
    )
    scope = _supplier_scope(call)
    if row is None or (scope is not None and row["supplier_id"] != scope):
        return None
    return row


async def _listed(
    request: web.Request,
    call: Call[Any],
    table: str,
    where: list[str],
    args: list[Any],
    view: Callable[[asyncpg.Record], BaseModel],
) -> web.Response:
    """One page of `table`'s rows matching `where` (constants, values in `args`), each shown
    by `view`, read from one snapshot."""
    async with snapshot(request.app[DB_POOL]) as conn:
        rows, info = await fetch_page(
            conn,
            table=table,
            where=where,
            args=args,
            request=PageRequest.from_query(call.query),
        )
    return page([view(r) for r in rows], info)


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
    filters: list[tuple[str, Any]] = [
        ("created_at >= ${n}", created_from),
        ("created_at <= ${n}", created_to),
        ("status = ${n}", status),
        ("amount >= ${n}", amount_min),
        ("amount <= ${n}", amount_max),
        ("source_account_type = ${n}", source),
        ("target_account_type = ${n}", target),
        ("supplier_id = ANY(${n}::text[])", _ids(query, "supplier_ids")),
        ("supplier_id = ${n}", _supplier_scope(call)),
    ]
    for condition, value in filters:
        if value is not None:
            add(condition, value)
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
    return await _listed(request, call, "funding_transfers", where, args, transfer_view)


@api.get(
    "/v1/payments/funding-transfers/{id}",
    summary="ADM-PAY-503: one funding transfer",
    roles=OPERATOR_OR_SUPPLIER,
    response=FundingTransfer,
    tags=["funding transfers"],
)
async def get_funding_transfer(request: web.Request, call: Call[None]) -> web.Response:
    async with snapshot(request.app[DB_POOL]) as conn:
        row = await _scoped(conn, call, "funding_transfers", request.match_info["id"])
    if row is None:
        raise errors.not_found("funding_transfer")
    return ok("funding_transfer", transfer_view(row))


# -- payouts --------------------------------------------------------------------------------

PAYOUT_STATUSES = [
    "COMPUTED",
    "SKIPPED",
    "PENDING",
    "SETTLED",
    "FAILED",
    "INSUFFICIENT_FUNDS",
    "UNKNOWN",
]


def payout_view(row: asyncpg.Record) -> Payout:
    return Payout(
        id=row["id"],
        kind=row["kind"],
        supplier_id=row["supplier_id"],
        status=row["status"],
        amount=Money(value=row["amount"], currency=row["currency"]),
        recovered=row["recovered"],
        period_start=row["period_start"],
        period_end=row["period_end"],
        code=row["code"],
        message=row["message"],
        funding_transfer_id=row["funding_transfer_id"],
        provider_reference=row["provider_reference"],
        revision=row["revision"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


@api.get(
    "/v1/admin/payouts",
    summary="Payouts, newest first",
    roles=OPERATOR_OR_SUPPLIER,
    response=Payout,
    list_response=True,
    query=[
        ("status", ", ".join(PAYOUT_STATUSES)),
        ("kind", "SUPPLIER or MARKETPLACE"),
        ("supplier_id", "only this supplier's payouts"),
    ],
    tags=["payouts"],
)
async def list_payouts(request: web.Request, call: Call[None]) -> web.Response:
    where = ["tenant_id = $1"]
    args: list[Any] = [call.tenant_id]
    status = _choice(call.query, "status", PAYOUT_STATUSES)
    kind = _choice(call.query, "kind", ["SUPPLIER", "MARKETPLACE"])
    supplier = _supplier_scope(call) or call.query.get("supplier_id")
    for column, value in (("status", status), ("kind", kind), ("supplier_id", supplier)):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    return await _listed(request, call, "payouts", where, args, payout_view)


async def _payout(conn: Conn, call: Call[Any], payout_id: str) -> asyncpg.Record:
    row = await _scoped(conn, call, "payouts", payout_id)
    if row is None:
        raise errors.not_found("payout")
    return row


@api.get(
    "/v1/admin/payouts/{id}",
    summary="A payout",
    roles=OPERATOR_OR_SUPPLIER,
    response=Payout,
    tags=["payouts"],
)
async def get_payout(request: web.Request, call: Call[None]) -> web.Response:
    async with snapshot(request.app[DB_POOL]) as conn:
        row = await _payout(conn, call, request.match_info["id"])
    return ok("payout", payout_view(row))


@api.get(
    "/v1/admin/payouts/{id}/lines",
    summary="A payout's lines: the logistic orders (captures) it pays, each net of refunds"
    " and chargebacks",
    roles=OPERATOR_OR_SUPPLIER,
    response=PayoutLine,
    list_response=True,
    tags=["payouts"],
)
async def payout_lines(request: web.Request, call: Call[None]) -> web.Response:
    async with snapshot(request.app[DB_POOL]) as conn:
        row = await _payout(conn, call, request.match_info["id"])
        lines = await conn.fetch(
            "SELECT * FROM payout_lines WHERE payout_id = $1 ORDER BY capture_id", row["id"]
        )
    return web.json_response(
        {
            "id": row["id"],
            "type": "array",
            "data": [
                PayoutLine(
                    capture_id=r["capture_id"],
                    logistic_order_id=r["logistic_order_id"],
                    amount=r["amount"],
                ).model_dump(mode="json")
                for r in lines
            ],
            "page_info": None,
        }
    )


@api.post(
    "/v1/admin/payouts/compute",
    summary="Compute the payouts of a period now (supplier payouts, or the marketplace's)",
    roles=OPERATOR,
    body=ComputeIn,
    body_required=False,
    response=Payout,
    list_response=True,
    status=201,
    idempotent=True,
    tags=["payouts"],
)
async def compute_payouts(request: web.Request, call: Call[ComputeIn]) -> web.Response:
    now = request.app[CLOCK]()
    period_end = call.body.period_end or now
    if period_end > now:
        raise errors.parameter_invalid("period_end", "in the future")
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        if call.body.kind == "MARKETPLACE":
            rows = await payout_cases.compute_marketplace_payout(
                conn, call.tenant_id, period_end=period_end
            )
        else:
            rows = await payout_cases.compute_supplier_payouts(
                conn, call.tenant_id, period_end=period_end, supplier_id=call.body.supplier_id
            )
    return web.json_response(
        {
            "id": None,
            "type": "array",
            "data": [payout_view(r).model_dump(mode="json") for r in rows],
            "page_info": None,
        },
        status=201,
    )


def _run_payout(action: str) -> Any:
    async def handle(request: web.Request, call: Call[None]) -> web.Response:
        use_case = payout_cases.execute if action == "execute" else payout_cases.retry
        async with request.app[DB_POOL].acquire() as conn, conn.transaction():
            row = await use_case(
                conn, call.tenant_id, request.match_info["id"], now=request.app[CLOCK]()
            )
        executor = request.app.get(EXECUTOR)
        if executor is not None:
            executor.wake()
        return ok("payout", payout_view(row), status=202)

    handle.__name__ = f"{action}_payout"
    return handle


api.post(
    "/v1/admin/payouts/{id}/execute",
    summary="Send a COMPUTED payout to the payout provider",
    roles=OPERATOR,
    response=Payout,
    status=202,
    idempotent=True,
    tags=["payouts"],
)(_run_payout("execute"))
api.post(
    "/v1/admin/payouts/{id}/retry",
    summary="Send a FAILED payout again, as a new provider order",
    roles=OPERATOR,
    response=Payout,
    status=202,
    idempotent=True,
    tags=["payouts"],
)(_run_payout("retry"))


@api.get(
    "/v1/admin/payouts-interventions",
    summary="The intervention queue: payouts whose outcome is unknown for too long",
    roles=OPERATOR,
    response=Intervention,
    list_response=True,
    tags=["payouts"],
)
async def list_interventions(request: web.Request, call: Call[None]) -> web.Response:
    return await _listed(
        request,
        call,
        "payout_interventions",
        ["tenant_id = $1"],
        [call.tenant_id],
        lambda r: Intervention(**{k: r[k] for k in Intervention.model_fields}),
    )


@api.put(
    "/v1/admin/marketplace-bank-account",
    summary="The marketplace's own bank account, for marketplace payouts",
    roles=OPERATOR,
    body=BankAccountIn,
    response=BankAccountIn,
    tags=["payouts"],
)
async def put_bank_account(request: web.Request, call: Call[BankAccountIn]) -> web.Response:
    if not iban_valid(call.body.iban):
        raise errors.parameter_invalid("iban", "not a valid IBAN")
    async with request.app[DB_POOL].acquire() as conn:
        await conn.execute(
            "INSERT INTO marketplace_bank_accounts (tenant_id, iban, holder) VALUES ($1, $2, $3)"
            " ON CONFLICT (tenant_id) DO UPDATE SET iban = EXCLUDED.iban,"
            " holder = EXCLUDED.holder, updated_at = now()",
            call.tenant_id,
            call.body.iban,
            call.body.holder,
        )
    return ok("bank_account", call.body, id_=call.tenant_id)


async def provider_callback(request: web.Request) -> web.Response:
    """The payout provider's order callback. Its body only names the order: the outcome is
    read from the provider itself, so a forged callback can at most cause a poll."""
    try:
        body = await request.json()
        order_id = body["orderId"]
        if not isinstance(order_id, str) or not _ID.fullmatch(order_id):
            raise ValueError(order_id)
    except (ValueError, KeyError, TypeError):
        return web.json_response(
            {
                "error": {
                    "code": "invalid_callback",
                    "message": "orderId required",
                    "param": "orderId",
                }
            },
            status=400,
        )
    executor = request.app.get(EXECUTOR)
    known = executor is not None and await executor.on_callback(order_id)
    return web.json_response({"received": True, "known": known})
