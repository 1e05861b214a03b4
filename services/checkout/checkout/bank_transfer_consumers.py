"""Checkout's bank-transfer background work:

- `checkout.shipments` (the OMS's `logistic_order.status_changed` on `oms.events`): SHIPPED
  fixes a bank-transfer payment's due date. A malformed OMS body goes to the queue's DLQ.
  Another status, or a SHIPPED about no bank-transfer payment (one read per batch, before any
  transaction), is acknowledged without a transaction or an inbox row.
- the overdue scheduler: every `overdue_interval_s`, each replica runs `flag_overdue` in a
  transaction; rows are claimed FOR UPDATE SKIP LOCKED, so replicas share the work and never
  flag one payment twice for one due date.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web

from checkout import bank_transfer_repo as btrepo
from checkout import bank_transfers
from common.broker.consumer import Batched, oms_parser, one_by_one, tenant_payload
from common.broker.topology import QueueSpec
from common.db.types import Conn
from common.events import (
    DOMAIN_EXCHANGE,
    OMS_EXCHANGE,
    OMS_STATUS_CHANGED,
    BuyerAccountUpserted,
    Envelope,
    EventType,
    LogisticOrderStatusChanged,
)
from common.logging import get_logger
from common.runtime import DB_POOL, Consumption
from common.wakeup import Wakeup

log = get_logger("checkout.bank_transfer_consumers")

OMS_ID_NAMESPACE = uuid.UUID("0b6c2f4e-93a1-4f57-8a0e-7d1f5c3e2b90")


async def on_logistic_order_events(conn: Conn, envelopes: Sequence[Envelope]) -> None:
    """A batch of SHIPPED events: their bank-transfer payments looked up in one statement,
    then each event's due date fixed in delivery order."""
    events = [LogisticOrderStatusChanged.model_validate(e.data) for e in envelopes]
    payments = await bank_transfers.bank_transfer_payments(conn, events)
    for _, event, payment_id in zip(one_by_one(envelopes), events, payments, strict=True):
        outcome = await bank_transfers.record_shipment(conn, event, payment_id)
        if outcome == "due_date_set":
            log.info("bank transfer due date set", logistic_order_id=event.logistic_order_id)


def shipped(envelope: Envelope) -> bool:
    """Only a SHIPPED fixes a due date: the OMS's other statuses are acknowledged without a
    transaction."""
    return envelope.data.get("status") == "SHIPPED"


async def about_bank_transfers(conn: Conn, envelopes: Sequence[Envelope]) -> list[bool]:
    """Which SHIPPED of a batch are about a bank-transfer payment's line, in one read before
    any transaction: the others (a card payment's line, most of them, or a line checkout
    doesn't know) are acknowledged without one, as the handler would do nothing with them."""
    events = [LogisticOrderStatusChanged.model_validate(e.data) for e in envelopes]
    return [p is not None for p in await bank_transfers.bank_transfer_payments(conn, events)]


def shipments_consumption() -> Consumption:
    return Consumption(
        spec=QueueSpec(name="checkout.shipments", bindings=[(OMS_EXCHANGE, OMS_STATUS_CHANGED)]),
        handlers={OMS_STATUS_CHANGED: Batched(on_logistic_order_events)},
        parser=oms_parser(OMS_ID_NAMESPACE),
        accepts=shipped,
        needs=about_bank_transfers,
    )


async def on_buyer_account_upserted(conn: Conn, envelope: Envelope) -> None:
    event, tenant_id = tenant_payload(envelope, BuyerAccountUpserted)
    await btrepo.upsert_buyer_account(
        conn, tenant_id, event.buyer_account, event.payment_option, event.revision
    )


def buyer_accounts_consumption() -> Consumption:
    return Consumption(
        spec=QueueSpec(
            name="checkout.buyer-accounts",
            bindings=[(DOMAIN_EXCHANGE, EventType.BUYER_ACCOUNT_UPSERTED)],
        ),
        handlers={EventType.BUYER_ACCOUNT_UPSERTED: on_buyer_account_upserted},
    )


def overdue_scheduler(
    interval_s: float,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        wakeup = Wakeup()

        async def run() -> None:
            while not stop.is_set():
                try:
                    async with app[DB_POOL].acquire() as conn, conn.transaction():
                        flagged = await bank_transfers.flag_overdue(conn)
                    if flagged:
                        log.info("overdue payments flagged", count=flagged)
                except Exception:  # a failed step is logged and retried at the next tick
                    log.exception("overdue scheduler step failed")
                await wakeup.sleep(interval_s)

        task = asyncio.create_task(run(), name="overdue-scheduler")
        yield
        stop.set()
        wakeup.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx
