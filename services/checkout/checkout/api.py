"""Checkout's HTTP routes: sessions (storefront), the drop-in's shop routes (client token) and
the admin routes (operator; a supplier key sees only payments with its lines, and only those)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from checkout import errors, repo, service
from checkout.schemas import Payment, SessionCreate, SessionCreated, ShopPaymentStatus
from checkout.settings import Settings
from common.http.auth import hash_key
from common.http.envelope import ok, page
from common.http.pagination import PageRequest, fetch_page
from common.http.routing import OPERATOR_OR_SUPPLIER, STOREFRONT, Api, Call
from common.money import Money
from common.runtime import DB_POOL

api = Api("Marketpay checkout")
SETTINGS = web.AppKey("settings", Settings)


@api.post(
    "/v1/checkout/sessions",
    summary="Create a checkout session (and its payment) for an order",
    roles=STOREFRONT,
    body=SessionCreate,
    response=SessionCreated,
    status=201,
    idempotent=True,
    tags=["checkout"],
)
async def create_session(request: web.Request, call: Call[SessionCreate]) -> web.Response:
    settings = request.app[SETTINGS]
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        created = await service.create_session(
            conn,
            tenant_id=call.tenant_id,
            body=call.body,
            now=datetime.now(UTC),
            token_ttl=timedelta(seconds=settings.client_token_ttl_s),
        )
    return ok("checkout_session", created, status=201)


async def payment_for_client_token(request: web.Request, payment_id: str | None = None):  # type: ignore[no-untyped-def]
    """The payment a drop-in's client token is bound to; 401 when expired or unknown."""
    authorization = request.headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.startswith("ct_"):
        raise errors.client_token_invalid()
    async with request.app[DB_POOL].acquire() as conn:
        row = await repo.payment_by_token(conn, hash_key(token.strip()))
    if row is None or (payment_id is not None and row["id"] != payment_id):
        raise errors.client_token_invalid()
    if row["client_token_expires_at"] <= datetime.now(UTC):
        raise errors.client_token_expired()
    return row


@api.get(
    "/v1/shop/payments/{id}",
    summary="The payment's status, for the drop-in to poll",
    roles=None,
    response=ShopPaymentStatus,
    tags=["shop"],
)
async def shop_payment(request: web.Request, call: Call[None]) -> web.Response:
    row = await payment_for_client_token(request, request.match_info["id"])
    return ok(
        "payment",
        ShopPaymentStatus(
            id=row["id"],
            status=row["status"],
            result_code=row["result_code"],
            refusal_reason=row["refusal_reason"],
            amount=Money(value=row["amount"], currency=row["currency"]),
        ),
    )


@api.get(
    "/v1/admin/payments",
    summary="List payments, newest first",
    roles=OPERATOR_OR_SUPPLIER,
    response=Payment,
    list_response=True,
    query=[
        ("status", "only payments in this status"),
        ("order_id", "only this order's payments"),
        ("created_from", "ISO 8601, inclusive"),
        ("created_to", "ISO 8601, inclusive"),
    ],
    tags=["admin"],
)
async def list_payments(request: web.Request, call: Call[None]) -> web.Response:
    where = ["tenant_id = $1"]
    args: list[object] = [call.tenant_id]
    for name, column, op in (
        ("status", "status", "="),
        ("order_id", "order_id", "="),
        ("created_from", "created_at", ">="),
        ("created_to", "created_at", "<="),
    ):
        value = call.query.get(name)
        if value:
            args.append(_parse_filter(name, value))
            where.append(f"{column} {op} ${len(args)}")
    supplier_id = call.principal.supplier_id if call.principal.role == "supplier" else None
    if supplier_id is not None:
        args.append(supplier_id)
        where.append(
            f"EXISTS (SELECT 1 FROM payment_lines l WHERE l.payment_id = payments.id"
            f" AND l.supplier_id = ${len(args)})"
        )
    async with request.app[DB_POOL].acquire() as conn:
        rows, info = await fetch_page(
            conn,
            table="payments",
            where=where,
            args=args,
            request=PageRequest.from_query(call.query),
        )
        lines = await repo.lines_of(conn, [r["id"] for r in rows], supplier_id)
    return page([service.to_payment(r, lines.get(r["id"], []), None) for r in rows], info)


def _parse_filter(name: str, value: str) -> object:
    from common.http.errors import Unprocessable

    if name.startswith("created_"):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise Unprocessable(
                "not an ISO 8601 date", code="parameter_invalid", param=name
            ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


@api.get(
    "/v1/admin/payments/{id}",
    summary="A payment with its lines and its full timeline",
    roles=OPERATOR_OR_SUPPLIER,
    response=Payment,
    tags=["admin"],
)
async def get_payment(request: web.Request, call: Call[None]) -> web.Response:
    supplier_id = call.principal.supplier_id if call.principal.role == "supplier" else None
    async with request.app[DB_POOL].acquire() as conn:
        row = await repo.get_payment(conn, call.tenant_id, request.match_info["id"])
        if row is None:
            raise errors.payment_not_found()
        view = await service.payment_view(conn, row, supplier_id=supplier_id, with_timeline=True)
    if supplier_id is not None and not view.lines:
        raise errors.payment_not_found()
    return ok("payment", view)
