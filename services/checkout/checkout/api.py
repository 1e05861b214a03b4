"""Checkout's HTTP routes: sessions (storefront), the drop-in's shop routes (client token) and
the admin routes (operator; a supplier key sees only payments with its lines, and only those)."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from checkout import (
    bank_transfer_api,
    bank_transfer_repo,
    bank_transfers,
    errors,
    payments,
    repo,
    service,
)
from checkout.app import PSP, SETTINGS
from checkout.domain import StoredPayment
from checkout.schemas import (
    DetailsRequestIn,
    Payment,
    PaymentMethods,
    PayRequest,
    PayResult,
    SessionCreate,
    SessionCreated,
    ShopPaymentStatus,
)
from common.db import snapshot
from common.http.auth import Principal, hash_key
from common.http.envelope import ok, page
from common.http.errors import ApiError, Unprocessable
from common.http.routing import OPERATOR, OPERATOR_OR_SUPPLIER, STOREFRONT, Api, Call
from common.money import Money
from common.psp.port import AuthorisationResult, DetailsRequest, PspError, PspUnavailable
from common.runtime import DB_POOL

api = Api("Marketpay checkout")


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
            bank_transfer_iban=settings.bank_transfer_iban,
        )
    return ok("checkout_session", created, status=201)


async def client_token(request: web.Request) -> Principal:
    """drop-in: the session's client token (`Bearer ct_...`), short-lived, one payment"""
    authorization = request.headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith("ct_") or len(token) > 100:
        raise errors.client_token_invalid()
    async with request.app[DB_POOL].acquire() as conn:
        row = await repo.payment_by_token(conn, hash_key(token))
    if row is None:
        raise errors.client_token_invalid()
    if row.client_token_expires_at <= datetime.now(UTC):
        raise errors.client_token_expired()
    return Principal(role="client", tenant_id=row.tenant_id, subject=row.id)


async def _bound_payment(request: web.Request, call: Call[Any]) -> StoredPayment:
    async with request.app[DB_POOL].acquire() as conn:
        row = await repo.get_payment(conn, call.tenant_id, str(call.principal.subject))
    if row is None:
        raise errors.payment_not_found()
    return row


async def _psp_step(
    pool: asyncpg.Pool,
    payment_id: str,
    tenant_id: str,
    psp_call: Awaitable[AuthorisationResult],
    *,
    param: str,
    source: str,
) -> PayResult:
    """PAY-101/102 around the PSP call: no transaction is open (nor connection held) while it
    runs; its answer, its silence or its error is recorded in a short transaction of its own,
    and a refusal is raised only after that transaction committed."""
    try:
        result = await psp_call
    except PspUnavailable as exc:
        async with pool.acquire() as conn, conn.transaction():
            return await payments.pending(conn, payment_id, tenant_id, exc)
    except PspError as exc:
        async with pool.acquire() as conn, conn.transaction():
            await payments.record_failure(conn, payment_id, tenant_id, exc)
        raise Unprocessable(exc.message, code=exc.code, param=exc.param or param) from None
    async with pool.acquire() as conn, conn.transaction():
        outcome = await payments.settle(conn, payment_id, tenant_id, result, source=source)
    payments.raise_if_refused(outcome, result)
    return outcome


@api.get(
    "/v1/shop/payment-methods",
    summary="PAY-501: the payment methods for this session, in the PSP's shape",
    auth=client_token,
    response=PaymentMethods,
    tags=["shop"],
)
async def shop_payment_methods(request: web.Request, call: Call[None]) -> web.Response:
    payment = await _bound_payment(request, call)
    try:
        found = await payments.payment_methods(request.app[PSP], payment)
    except PspError as exc:
        raise ApiError(exc.message, code=exc.code) from None
    return ok(
        "payment_methods", PaymentMethods(payment_methods=found.payment_methods), id_=payment.id
    )


@api.post(
    "/v1/shop/payments",
    summary="PAY-101: pay with the drop-in's encrypted card fields",
    auth=client_token,
    body=PayRequest,
    response=PayResult,
    idempotent=True,
    tags=["shop"],
)
async def shop_pay(request: web.Request, call: Call[PayRequest]) -> web.Response:
    pool, payment_id, tenant_id = request.app[DB_POOL], str(call.principal.subject), call.tenant_id
    payments.refuse_raw_card_data(call.body.payment_method)
    async with pool.acquire() as conn, conn.transaction():
        payment, return_url = await payments.start_payment(conn, payment_id, tenant_id, call.body)
    psp_request = payments.authorise_request(payment, call.body, return_url)
    result = await _psp_step(
        pool,
        payment_id,
        tenant_id,
        request.app[PSP].authorise(psp_request, idempotency_key=f"authorise:{payment_id}"),
        param="payment_method",
        source="psp_response",
    )
    return ok(
        "payment",
        result,
        status=202 if result.status == "AUTHORIZATION_PENDING" and result.action is None else 200,
    )


@api.post(
    "/v1/shop/payments/details",
    summary="PAY-102: the result of the 3-D Secure challenge",
    auth=client_token,
    body=DetailsRequestIn,
    response=PayResult,
    idempotent=True,
    tags=["shop"],
)
async def shop_details(request: web.Request, call: Call[DetailsRequestIn]) -> web.Response:
    pool, payment_id, tenant_id = request.app[DB_POOL], str(call.principal.subject), call.tenant_id
    async with pool.acquire() as conn:
        await payments.awaiting_details(conn, payment_id, tenant_id)
    result = await _psp_step(
        pool,
        payment_id,
        tenant_id,
        request.app[PSP].submit_details(
            DetailsRequest(details=call.body.details, payment_data=call.body.payment_data),
            idempotency_key=payments.details_idempotency_key(payment_id, call.body.details),
        ),
        param="details",
        source="psp_details_response",
    )
    return ok("payment", result, status=202 if result.status == "AUTHORIZATION_PENDING" else 200)


@api.get(
    "/v1/shop/payments/{id}",
    summary="The payment's status, for the drop-in to poll",
    auth=client_token,
    response=ShopPaymentStatus,
    tags=["shop"],
)
async def shop_payment(request: web.Request, call: Call[None]) -> web.Response:
    if request.match_info["id"] != call.principal.subject:
        raise errors.client_token_invalid()
    row = await _bound_payment(request, call)
    async with request.app[DB_POOL].acquire() as conn:
        transfer = (await bank_transfer_repo.of_payments(conn, [row.id])).get(row.id)
    return ok(
        "payment",
        ShopPaymentStatus(
            id=row.id,
            status=row.status,
            result_code=row.result_code,
            refusal_reason=row.refusal_reason,
            amount=Money(value=row.amount, currency=row.currency),
            bank_transfer=bank_transfers.instructions_of(transfer) if transfer else None,
        ),
    )


@api.get(
    "/v1/admin/payments",
    summary="List payments, newest first",
    roles=OPERATOR_OR_SUPPLIER,
    response=Payment,
    list_response=True,
    query=repo.PAYMENT_LIST,
    tags=["admin"],
)
async def list_payments(request: web.Request, call: Call[None]) -> web.Response:
    supplier_id = call.principal.supplier_id if call.principal.role == "supplier" else None
    async with snapshot(request.app[DB_POOL]) as conn:
        rows, info = await repo.payment_page(conn, call.tenant_id, supplier_id, call.query)
        lines = await repo.lines_of(conn, [r.id for r in rows], supplier_id)
        transfers = await bank_transfer_repo.of_payments(conn, [r.id for r in rows])
    return page(
        [service.to_payment(r, lines.get(r.id, []), None, transfers.get(r.id)) for r in rows],
        info,
    )


@api.get(
    "/v1/admin/payments/{id}",
    summary="A payment with its lines and its full timeline",
    roles=OPERATOR_OR_SUPPLIER,
    response=Payment,
    tags=["admin"],
)
async def get_payment(request: web.Request, call: Call[None]) -> web.Response:
    supplier_id = call.principal.supplier_id if call.principal.role == "supplier" else None
    async with snapshot(request.app[DB_POOL]) as conn:
        row = await repo.get_payment(conn, call.tenant_id, request.match_info["id"])
        if row is None:
            raise errors.payment_not_found()
        view = await service.payment_view(conn, row, supplier_id=supplier_id, with_timeline=True)
    if supplier_id is not None and not view.lines:
        raise errors.payment_not_found()
    return ok("payment", view)


@api.post(
    "/v1/admin/payments/{id}/cancel",
    summary="Cancel an authorised payment (the CANCELLATION webhook confirms it)",
    roles=OPERATOR,
    idempotent=True,
    response=Payment,
    status=202,
    tags=["admin"],
)
async def cancel_payment(request: web.Request, call: Call[None]) -> web.Response:
    pool = request.app[DB_POOL]
    async with pool.acquire() as conn:
        payment = await payments.cancellable(conn, request.match_info["id"], call.tenant_id)
    received = await payments.request_cancel(request.app[PSP], payment)
    async with pool.acquire() as conn, conn.transaction():
        await payments.cancel(conn, payment, received)
    async with snapshot(pool) as snap:
        row = await repo.get_payment(snap, call.tenant_id, request.match_info["id"])
        assert row is not None
        view = await service.payment_view(snap, row, with_timeline=True)
    return ok("payment", view, status=202)


bank_transfer_api.register(api)
