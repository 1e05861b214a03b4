"""The payout provider's "fulfill only" order flow (seed 003), played by the sandbox.

- `POST /payout/merchant/v1/orders` (basic authentication, the API key as user name, no
  password) creates an order; an order id already known returns that order (nothing is paid
  twice). The answer comes at once; fulfilment attempts run asynchronously.
- Each attempt fails while the order's `fail_attempts` budget lasts; the provider retries per
  its retry policy (`max_attempts` attempts in all), then the order is
  `FULFILLMENTS_SUCCESSFUL` or `FULFILLMENTS_FAILURE`, and the final order-level callback is
  POSTed to the order's `callbackUrl` (retried a few times; never, when `lose_callback`).
- `GET /payout/merchant/v1/orders/{id}`: the merchant's polling fallback.

Fault injection (`PUT /sandbox/payout-faults`, for every order created after it):
`fail_attempts`, `max_attempts`, `lose_callback`, `create_delay_s` (the order is created, the
answer comes that much later: a client timeout), `create_5xx` (that many creates answered 503
without creating anything), `attempt_delay_s`. `GET /sandbox/payout-orders` lists the orders.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime

import aiohttp
from aiohttp import web

from psp_sandbox.app import PAYOUT_PROVIDER
from psp_sandbox.settings import Settings
from psp_sandbox.store import PayoutFaults, PayoutOrder, PayoutProviderState


def _authenticated(request: web.Request) -> bool:
    state = request.app[PAYOUT_PROVIDER]
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic ") or state.api_key is None:
        return False
    try:
        user, _, _ = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(user.encode(), state.api_key.encode())


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"status": "ERROR", "errorCode": code, "message": message}, status=status
    )


async def create_order(request: web.Request) -> web.Response:
    if not _authenticated(request):
        return _error(401, "UNAUTHORIZED", "a valid API key is required (basic auth user name)")
    state = request.app[PAYOUT_PROVIDER]
    state.create_requests += 1
    if state.faults.create_5xx > 0:
        state.faults.create_5xx -= 1
        return _error(503, "SERVICE_UNAVAILABLE", "injected fault")
    try:
        body = await request.json()
        order_id = str(body["orderId"])
        amount = int(body["amount"])
        details = body["fulfillments"][0]["beneficiaryDetails"]["details"]
        iban, name = str(details["iban"]), str(details["name"])
    except (ValueError, KeyError, IndexError, TypeError):
        return _error(400, "INVALID_REQUEST", "orderId, amount and fulfillments are required")
    if amount <= 0:
        return _error(400, "INVALID_AMOUNT", "amount must be positive")
    order = state.orders.get(order_id)
    if order is None:
        order = PayoutOrder(
            order_id=order_id,
            amount=amount,
            currency=str(body.get("currency", "EUR")),
            iban=iban,
            name=name,
            callback_url=body.get("callbackUrl"),
            faults=PayoutFaults(**asdict(state.faults)),
        )
        state.orders[order_id] = order
        task = asyncio.create_task(_fulfil(state, order))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
    if order.faults.create_delay_s:
        await asyncio.sleep(order.faults.create_delay_s)  # created; the answer comes late
    return web.json_response(order.view())


async def get_order(request: web.Request) -> web.Response:
    if not _authenticated(request):
        return _error(401, "UNAUTHORIZED", "a valid API key is required (basic auth user name)")
    order = request.app[PAYOUT_PROVIDER].orders.get(request.match_info["order_id"])
    if order is None:
        return _error(404, "ORDER_NOT_FOUND", "no such order")
    return web.json_response(order.view())


async def _fulfil(state: PayoutProviderState, order: PayoutOrder) -> None:
    for attempt in range(1, max(order.faults.max_attempts, 1) + 1):
        await asyncio.sleep(order.faults.attempt_delay_s)
        failed = order.faults.fail_attempts > 0
        if failed:
            order.faults.fail_attempts -= 1
        order.fulfillments.append(
            {
                "attempt": attempt,
                "status": "FAILURE" if failed else "SUCCESS",
                "at": datetime.now(UTC).isoformat(),
            }
        )
        if not failed:
            order.status = "FULFILLMENTS_SUCCESSFUL"
            break
    else:
        order.status = "FULFILLMENTS_FAILURE"
    if order.callback_url and not order.faults.lose_callback:
        await _callback(state, order)


async def _callback(state: PayoutProviderState, order: PayoutOrder) -> None:
    assert state.http is not None
    body = {"event": "ORDER_STATUS_UPDATE", "orderId": order.order_id, "status": order.status}
    for delay in (0.0, 0.5, 2.0, 5.0):
        await asyncio.sleep(delay)
        try:
            assert order.callback_url is not None
            async with state.http.post(order.callback_url, json=body) as response:
                order.callbacks.append({"status": response.status})
                if response.status < 300:
                    return
        except (TimeoutError, aiohttp.ClientError) as exc:
            order.callbacks.append({"error": type(exc).__name__})


async def put_faults(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        request.app[PAYOUT_PROVIDER].faults = PayoutFaults(**body)
    except (ValueError, TypeError) as exc:
        return _error(422, "INVALID_FAULTS", str(exc))
    return web.json_response(asdict(request.app[PAYOUT_PROVIDER].faults))


async def list_orders(request: web.Request) -> web.Response:
    state = request.app[PAYOUT_PROVIDER]
    return web.json_response(
        {
            "create_requests": state.create_requests,
            "data": [{**o.view(), "callbacks": o.callbacks} for o in state.orders.values()],
        }
    )


def install(app: web.Application, settings: Settings) -> None:
    """The wiring hook `psp_sandbox.app` calls."""
    key = settings.payout_api_key or settings.company_api_key
    app[PAYOUT_PROVIDER] = PayoutProviderState(api_key=key.get_secret_value() if key else None)
    app.router.add_post("/payout/merchant/v1/orders", create_order)
    app.router.add_get("/payout/merchant/v1/orders/{order_id}", get_order)
    app.router.add_put("/sandbox/payout-faults", put_faults)
    app.router.add_get("/sandbox/payout-orders", list_orders)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        state = app[PAYOUT_PROVIDER]
        state.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        yield
        for task in list(state.tasks):
            task.cancel()
        for task in list(state.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await state.http.close()

    app.cleanup_ctx.append(lifecycle)
