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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from psp_sandbox.settings import Settings


@dataclass
class PayoutFaults:
    fail_attempts: int = 0
    max_attempts: int = 3
    lose_callback: bool = False
    create_delay_s: float = 0.0
    create_5xx: int = 0
    attempt_delay_s: float = 0.05


@dataclass
class PayoutOrder:
    order_id: str
    amount: int
    currency: str
    iban: str
    name: str
    callback_url: str | None
    faults: PayoutFaults
    status: str = "FULFILLMENTS_SCHEDULED"
    fulfillments: list[dict[str, Any]] = field(default_factory=list)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def view(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "type": "FULFILL_ONLY",
            "status": self.status,
            "amount": self.amount,
            "currency": self.currency,
            "fulfillments": self.fulfillments,
            "createdAt": self.created_at,
        }


@dataclass
class PayoutProviderState:
    api_key: str | None
    faults: PayoutFaults = field(default_factory=PayoutFaults)
    orders: dict[str, PayoutOrder] = field(default_factory=dict)
    create_requests: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    http: aiohttp.ClientSession | None = None


STATE = web.AppKey("payout_provider", PayoutProviderState)


def _authenticated(request: web.Request) -> bool:
    state = request.app[STATE]
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
    state = request.app[STATE]
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
    order = request.app[STATE].orders.get(request.match_info["order_id"])
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
        request.app[STATE].faults = PayoutFaults(**body)
    except (ValueError, TypeError) as exc:
        return _error(422, "INVALID_FAULTS", str(exc))
    return web.json_response(asdict(request.app[STATE].faults))


async def list_orders(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {
            "create_requests": state.create_requests,
            "data": [{**o.view(), "callbacks": o.callbacks} for o in state.orders.values()],
        }
    )


def install(app: web.Application, settings: Settings) -> None:
    """The wiring hook `psp_sandbox.app` calls."""
    key = settings.payout_api_key or settings.company_api_key
    app[STATE] = PayoutProviderState(api_key=key.get_secret_value() if key else None)
    app.router.add_post("/payout/merchant/v1/orders", create_order)
    app.router.add_get("/payout/merchant/v1/orders/{order_id}", get_order)
    app.router.add_put("/sandbox/payout-faults", put_faults)
    app.router.add_get("/sandbox/payout-orders", list_orders)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        state = app[STATE]
        state.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        yield
        for task in list(state.tasks):
            task.cancel()
        for task in list(state.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await state.http.close()

    app.cleanup_ctx.append(lifecycle)
