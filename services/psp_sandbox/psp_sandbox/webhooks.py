"""Standard Adyen notifications, signed with the merchant account's HMAC key and delivered
asynchronously: each notification is its own task, retried on a non-2xx answer or a
connection error after each of `webhook_retry_delays_ms`, then given up.

Faults of the merchant account shape delivery: `webhook_delay_ms` delays it,
`duplicate_webhooks` delivers every notification twice, `reorder_webhooks` holds each
notification until the next one arrives (or 500 ms pass) and sends the pair newest first.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import aiohttp

from common.logging import get_logger
from common.psp.hmac import sign_item
from psp_sandbox.store import MerchantAccount, Store, now_iso

log = get_logger("psp_sandbox.webhooks")

REORDER_WINDOW_S = 0.5


class WebhookSender:
    def __init__(self, store: Store, retry_delays_ms: tuple[int, ...], timeout_s: float) -> None:
        self._store = store
        self._retry_delays_ms = retry_delays_ms
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: dict[str, tuple[dict[str, Any], asyncio.TimerHandle]] = {}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        for _, handle in self._held.values():
            handle.cancel()
        self._held.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()

    def notify(self, account: MerchantAccount, item: dict[str, Any]) -> None:
        """Sign `item` (a NotificationRequestItem) and deliver it in the background."""
        signed = sign_item(item, account.hmac_key)
        if account.faults.reorder_webhooks:
            self._hold_or_swap(account, signed)
            return
        self._dispatch(account, signed)

    def _hold_or_swap(self, account: MerchantAccount, item: dict[str, Any]) -> None:
        held = self._held.pop(account.code, None)
        if held is None:
            loop = asyncio.get_running_loop()
            handle = loop.call_later(REORDER_WINDOW_S, self._release, account)
            self._held[account.code] = (item, handle)
            return
        earlier, handle = held
        handle.cancel()
        self._dispatch(account, item)
        self._dispatch(account, earlier, extra_delay_s=0.05)

    def _release(self, account: MerchantAccount) -> None:
        held = self._held.pop(account.code, None)
        if held is not None:
            self._dispatch(account, held[0])

    def _dispatch(
        self, account: MerchantAccount, item: dict[str, Any], extra_delay_s: float = 0.0
    ) -> None:
        copies = 2 if account.faults.duplicate_webhooks else 1
        delay_s = account.faults.webhook_delay_ms / 1000 + extra_delay_s
        notification_id = secrets.token_hex(8)
        for copy in range(copies):
            task = asyncio.create_task(
                self._deliver(account, item, notification_id, copy, delay_s + copy * 0.02)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self,
        account: MerchantAccount,
        item: dict[str, Any],
        notification_id: str,
        copy: int,
        delay_s: float,
    ) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        body = {"live": "false", "notificationItems": [{"NotificationRequestItem": item}]}
        attempts = self._store.webhook_attempts.setdefault(account.code, [])
        delays = (*self._retry_delays_ms, None)
        for attempt, next_delay_ms in enumerate(delays, start=1):
            url = account.webhook_url
            record: dict[str, Any] = {
                "notificationId": notification_id,
                "copy": copy,
                "attempt": attempt,
                "eventCode": item["eventCode"],
                "pspReference": item["pspReference"],
                "originalReference": item.get("originalReference"),
                "success": item["success"],
                "url": url,
                "at": now_iso(),
                "status": None,
                "error": None,
                "body": body,
            }
            attempts.append(record)
            if url is None:
                record["error"] = "no webhook_url configured"
                return
            try:
                assert self._session is not None
                async with self._session.post(url, json=body) as response:
                    await response.read()
                    record["status"] = response.status
                    if 200 <= response.status < 300:
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                record["error"] = type(exc).__name__
            if next_delay_ms is None:
                log.warning(
                    "webhook given up",
                    merchant_account=account.code,
                    event_code=item["eventCode"],
                    psp_reference=item["pspReference"],
                    attempts=attempt,
                )
                return
            await asyncio.sleep(next_delay_ms / 1000)

    async def drain(self) -> None:
        """Wait until every delivery in flight has finished (tests)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))


def notification_item(
    *,
    account: MerchantAccount,
    event_code: str,
    success: bool,
    psp_reference: str,
    merchant_reference: str,
    amount: dict[str, Any],
    original_reference: str | None = None,
    reason: str = "",
    payment_method: str | None = None,
    additional_data: dict[str, str] | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "eventCode": event_code,
        "success": "true" if success else "false",
        "eventDate": now_iso(),
        "merchantAccountCode": account.code,
        "pspReference": psp_reference,
        "merchantReference": merchant_reference,
        "amount": {"value": int(amount["value"]), "currency": amount["currency"]},
        "reason": reason,
        "additionalData": dict(additional_data or {}),
    }
    if original_reference is not None:
        item["originalReference"] = original_reference
    if payment_method is not None:
        item["paymentMethod"] = payment_method
    return item
