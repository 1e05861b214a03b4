"""The payout-provider port and its adapter for the "fulfill only" order flow (seed 003).

Create an order (basic authentication, the API key as user name, no password) with our own
order id; the provider attempts fulfilment asynchronously, retries per its retry policy, and
calls us back; we poll the order as the fallback. Our order id is deterministic (the payout
id, then `-<attempt>` for an operator's retry), so creating the same order again after a
crash or a timeout finds the first one instead of paying twice.

Outcomes: `ProviderOrder` (the order as the provider holds it), None from `get_order` (no such
order: it was never created), `ProviderUnavailableError` (timeout, connection error, 5xx: the
outcome is unknown).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Literal, Protocol

import aiohttp

OrderStatus = Literal["PENDING", "SUCCESS", "FAILURE"]


@dataclass(frozen=True)
class ProviderOrder:
    order_id: str
    status: OrderStatus
    attempts: int
    detail: str | None = None


class ProviderUnavailableError(Exception):
    """No definite answer (timeout, connection error, 5xx): the outcome is unknown."""


class ProviderRefusedError(Exception):
    """A definite refusal of the request (4xx other than 404): the order was not created."""


class PayoutProvider(Protocol):
    async def create_order(
        self, *, order_id: str, amount: int, currency: str, iban: str, beneficiary: str
    ) -> ProviderOrder: ...

    async def get_order(self, order_id: str) -> ProviderOrder | None: ...


_STATUSES: dict[str, OrderStatus] = {
    "CREATED": "PENDING",
    "READY_FOR_FULFILLMENT": "PENDING",
    "FULFILLMENTS_SCHEDULED": "PENDING",
    "FULFILLMENTS_SUCCESSFUL": "SUCCESS",
    "FULFILLMENTS_FAILURE": "FAILURE",
}


def _order(body: dict[str, object]) -> ProviderOrder:
    status = _STATUSES.get(str(body.get("status")))
    if status is None:
        raise ProviderUnavailableError(f"unknown order status {body.get('status')!r}")
    attempts = body.get("fulfillments")
    return ProviderOrder(
        order_id=str(body["orderId"]),
        status=status,
        attempts=len(attempts) if isinstance(attempts, list) else 0,
        detail=str(body.get("statusReason")) if body.get("statusReason") else None,
    )


class HttpPayoutProvider:
    def __init__(self, base_url: str, api_key: str, timeout_s: float, callback_url: str | None):
        self._base = base_url.rstrip("/")
        self._authorization = "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._callback_url = callback_url
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=self._timeout, headers={"Authorization": self._authorization}
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def _call(self, method: str, path: str, json: object = None) -> tuple[int, object]:
        assert self._http is not None
        try:
            async with self._http.request(method, self._base + path, json=json) as response:
                try:
                    body: object = await response.json(content_type=None)
                except ValueError:
                    body = None
                return response.status, body
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ProviderUnavailableError(f"{type(exc).__name__}: {exc}") from exc

    async def create_order(
        self, *, order_id: str, amount: int, currency: str, iban: str, beneficiary: str
    ) -> ProviderOrder:
        payload = {
            "orderId": order_id,
            "type": "FULFILL_ONLY",
            "amount": amount,
            "currency": currency,
            "fulfillments": [
                {
                    "amount": amount,
                    "beneficiaryDetails": {"details": {"iban": iban, "name": beneficiary}},
                }
            ],
            "callbackUrl": self._callback_url,
        }
        status, body = await self._call("POST", "/merchant/v1/orders", payload)
        if status >= 500 or status in (408, 429):
            raise ProviderUnavailableError(f"HTTP {status}")
        if status >= 400 or not isinstance(body, dict):
            raise ProviderRefusedError(f"HTTP {status}: {body}")
        return _order(body)

    async def get_order(self, order_id: str) -> ProviderOrder | None:
        status, body = await self._call("GET", f"/merchant/v1/orders/{order_id}")
        if status == 404:
            return None
        if status >= 400 or not isinstance(body, dict):
            raise ProviderUnavailableError(f"HTTP {status}")
        return _order(body)
