"""The refunds' background loops and queues, wired by `capture.app`.

`RefundSender` sends due refunds to the PSP: it leases them (`FOR UPDATE SKIP LOCKED`),
calls the PSP outside any transaction under `refund:<id>`, and records each answer in its own
transaction. It wakes when this replica reserves a refund (`wake`) and polls as a fallback, so
a refund reserved on another replica, or released by `refund.funds_reserved`, is sent within
one poll interval.

`UnconfirmedWatch` opens an `unconfirmed` intervention for captures and refunds that the PSP
(or payouts) left without an answer for `unconfirmed_after_s`; it never fails them.

Queues: `capture.refund-notifications` (`psp.notification.received`: REFUND, REFUND_FAILED
and the dispute codes; a second copy of the notifications, so capture's own queue is
untouched) and `capture.refund-funds` (`refund.funds_reserved`, `refund.funds_refused`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import asyncpg
from aiohttp import web

from capture.refunds import domain, service
from capture.settings import Settings
from common import runtime
from common.broker.consumer import Handler, tenant_payload
from common.broker.topology import QueueSpec
from common.db.types import Conn
from common.events import (
    DOMAIN_EXCHANGE,
    Envelope,
    EventType,
    PspNotificationReceived,
    RefundFundsDecision,
)
from common.logging import correlation, get_logger, new_correlation_id
from common.psp.adyen import AdyenAdapter, AdyenConfig
from common.psp.port import PspPort
from common.runtime import Consumption, notification_consumption
from common.wakeup import Wakeup

REFUND_NOTIFICATION_CODES = (*sorted(service.REFUND_CODES), *sorted(domain.DISPUTE_CODES))
"""The PSP notifications the refund worker acts on; the only ones its queue is bound to."""

log = get_logger("capture.refunds.worker")
Clock = Callable[[], datetime]


class RefundSender:
    def __init__(
        self, *, pool: asyncpg.Pool, psp: PspPort, clock: Clock, settings: Settings
    ) -> None:
        self._pool = pool
        self._psp = psp
        self._clock = clock
        self._lease = timedelta(seconds=settings.capture_lease_s)
        self._delays = [timedelta(seconds=s) for s in settings.refund_retry_delays_s]
        self._poll = settings.refund_poll_interval_s
        self._wakeup = Wakeup()
        self._inflight: set[asyncio.Task[None]] = set()
        self.psp = psp  # also for an operator's resend of an unconfirmed capture

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("refund sender round failed")
            await self._wakeup.sleep(self._poll)

    async def run_once(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            claims = await service.claim(conn, now=self._clock(), lease=self._lease, limit=50)
        for c in claims:
            task = asyncio.create_task(self._one(c))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return len(claims)

    async def _one(self, c: service.Claim) -> None:
        with correlation(new_correlation_id()):
            answer = await service.send(self._psp, c)
            async with self._pool.acquire() as conn, conn.transaction():
                updated = await service.record_answer(
                    conn, c, answer, now=self._clock(), retry_delays=self._delays
                )
            if updated is not None and updated.send_state == "DUE":
                self.wake()

    async def close(self) -> None:
        for task in list(self._inflight):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


class UnconfirmedWatch:
    def __init__(self, *, pool: asyncpg.Pool, clock: Clock, settings: Settings) -> None:
        self._pool = pool
        self._clock = clock
        self._after = timedelta(seconds=settings.unconfirmed_after_s)
        self._interval = settings.unconfirmed_check_interval_s

    async def run_once(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            flagged: int = await service.flag_unconfirmed(
                conn, now=self._clock(), after=self._after
            )
        return flagged

    async def run(self) -> None:
        while True:
            try:
                flagged = await self.run_once()
                if flagged:
                    log.warning("unconfirmed operations flagged", count=flagged)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("unconfirmed check failed")
            await asyncio.sleep(self._interval)


SENDER = web.AppKey("refund_sender", RefundSender)
WATCH = web.AppKey("unconfirmed_watch", UnconfirmedWatch)


class RefundWiring:
    """What `capture.app` adds for refunds: the queues (`consumptions`) and the loops
    (`workers`). A funds decision consumed here wakes this replica's sender."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._sender: RefundSender | None = None

    def wake(self) -> None:
        if self._sender is not None:
            self._sender.wake()

    def consumptions(self) -> list[Consumption]:
        return refund_consumptions(self._clock, self.wake)

    def workers(self) -> Callable[[web.Application], AsyncIterator[None]]:
        inner = refund_workers(self._settings, self._clock)

        async def ctx(app: web.Application) -> AsyncIterator[None]:
            async for _ in inner(app):
                self._sender = app[SENDER]
                yield
            self._sender = None

        return ctx


def refund_consumptions(clock: Clock, wake: Callable[[], None]) -> list[Consumption]:
    async def on_notification(conn: Conn, envelope: Envelope) -> None:
        event, tenant_id = tenant_payload(envelope, PspNotificationReceived)
        await service.on_psp_notification(conn, tenant_id, event, now=clock())

    def on_funds(reserved: bool) -> Handler:
        async def handle(conn: Conn, envelope: Envelope) -> None:
            event, tenant_id = tenant_payload(envelope, RefundFundsDecision)
            await service.on_funds_decision(conn, tenant_id, event, reserved=reserved, now=clock())

        return handle

    funds: dict[str, Handler] = {
        EventType.REFUND_FUNDS_RESERVED: on_funds(True),
        EventType.REFUND_FUNDS_REFUSED: on_funds(False),
    }
    return [
        notification_consumption(
            "capture.refund-notifications", on_notification, REFUND_NOTIFICATION_CODES
        ),
        Consumption(
            spec=QueueSpec(
                name="capture.refund-funds", bindings=[(DOMAIN_EXCHANGE, t) for t in funds]
            ),
            handlers=funds,
        ),
    ]


def refund_workers(
    settings: Settings, clock: Clock
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if settings.psp_api_key is None:
            raise RuntimeError("MARKETPAY_PSP_API_KEY is required")
        adapter = AdyenAdapter(
            AdyenConfig(
                base_url=settings.psp_base_url,
                api_key=settings.psp_api_key,
                timeout_s=settings.psp_timeout_s,
                max_attempts=1,
            )
        )
        await adapter.start()
        pool = app[runtime.DB_POOL]
        sender = RefundSender(pool=pool, psp=adapter, clock=clock, settings=settings)
        watch = UnconfirmedWatch(pool=pool, clock=clock, settings=settings)
        app[SENDER] = sender
        app[WATCH] = watch
        tasks = [
            asyncio.create_task(sender.run(), name="refund-sender"),
            asyncio.create_task(watch.run(), name="unconfirmed-watch"),
        ]
        yield
        for task in tasks:
            task.cancel()
            await runtime.bounded(task, task.get_name())
        await sender.close()
        await adapter.close()

    return ctx
