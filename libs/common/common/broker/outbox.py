"""The transactional outbox (DESIGN §2, invariant 2).

`enqueue` writes an event into the `outbox` table on the caller's connection, inside the
caller's transaction: the event exists exactly when the state change it describes commits.

`OutboxRelay` publishes pending rows in `seq` order with publisher confirms, a batch at a time,
and sets `published_at` only for the prefix the broker acknowledged. Only one relay per schema
publishes at a time (a session advisory lock), so a payment's events leave in the order they
were written. Writers lock the aggregate's row before enqueueing, so two transactions on the
same aggregate commit in `seq` order. If the relay dies between the broker's ack and the
UPDATE, the next relay publishes those rows again: consumers' inboxes make that harmless, and
a consumer sees each aggregate's events first in the order they were written.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection
from aiormq.exceptions import DeliveryError
from pamqp.commands import Basic
from structlog.contextvars import get_contextvars

from common.broker.topology import Names, declare_exchanges
from common.db.pool import reset_session
from common.db.types import Conn
from common.events import DOMAIN_EXCHANGE, Envelope, EventData, EventType, make_envelope
from common.logging import current_correlation_id, get_logger, new_correlation_id
from common.metrics import Metrics
from common.wakeup import Wakeup

log = get_logger("marketpay.outbox")


async def enqueue(
    conn: Conn,
    envelope: Envelope,
    *,
    aggregate_id: str | None = None,
    exchange: str = DOMAIN_EXCHANGE,
    routing_key: str | None = None,
) -> None:
    """Add `envelope` to the outbox in the current transaction."""
    if not conn.is_in_transaction():
        raise RuntimeError("enqueue must run inside the transaction that changes the state")
    await conn.execute(
        "INSERT INTO outbox (id, exchange, routing_key, aggregate_id, envelope)"
        " VALUES ($1, $2, $3, $4, $5)",
        envelope.id,
        exchange,
        routing_key or envelope.type,
        aggregate_id,
        envelope.model_dump(mode="json"),
    )


async def enqueue_many(
    conn: Conn,
    events: Sequence[tuple[Envelope, str | None]],
    *,
    exchange: str = DOMAIN_EXCHANGE,
) -> None:
    """Add several `(envelope, aggregate_id)` to the outbox in one statement, in order."""
    if not conn.is_in_transaction():
        raise RuntimeError("enqueue must run inside the transaction that changes the state")
    if not events:
        return
    await conn.execute(
        "INSERT INTO outbox (id, exchange, routing_key, aggregate_id, envelope)"
        " SELECT e.id, $1, e.type, e.aggregate_id, e.envelope::jsonb"
        " FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[])"
        " WITH ORDINALITY AS e(id, type, aggregate_id, envelope, n) ORDER BY e.n",
        exchange,
        [envelope.id for envelope, _ in events],
        [envelope.type for envelope, _ in events],
        [aggregate_id for _, aggregate_id in events],
        [envelope.model_dump_json() for envelope, _ in events],
    )


def new_envelope(
    event_type: EventType,
    data: EventData,
    *,
    tenant_id: str | None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Envelope:
    """An envelope carrying the current correlation id (a new one outside any request or
    message) and, inside a consumer, the message being handled as its cause."""
    return make_envelope(
        event_type,
        data,
        tenant_id=tenant_id,
        correlation_id=correlation_id or current_correlation_id() or new_correlation_id(),
        causation_id=causation_id or get_contextvars().get("message_id"),
    )


async def publish_event(
    conn: Conn,
    event_type: EventType,
    data: EventData,
    *,
    tenant_id: str | None,
    aggregate_id: str | None,
    causation_id: str | None = None,
) -> Envelope:
    """Build an envelope (`new_envelope`) and enqueue it."""
    envelope = new_envelope(event_type, data, tenant_id=tenant_id, causation_id=causation_id)
    await enqueue(conn, envelope, aggregate_id=aggregate_id)
    return envelope


async def publish_events(
    conn: Conn,
    events: Sequence[tuple[EventType, EventData]],
    *,
    tenant_id: str | None,
    aggregate_id: str | None,
) -> list[Envelope]:
    """`publish_event` for several events of one aggregate (one correlation id), in order, in
    one statement."""
    correlation_id = current_correlation_id() or new_correlation_id()
    envelopes = [
        new_envelope(event_type, data, tenant_id=tenant_id, correlation_id=correlation_id)
        for event_type, data in events
    ]
    await enqueue_many(conn, [(envelope, aggregate_id) for envelope in envelopes])
    return envelopes


@dataclass(frozen=True)
class PendingEvent:
    seq: int
    id: uuid.UUID
    exchange: str
    routing_key: str
    envelope: dict[str, Any]


class OutboxRelay:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        connection: AbstractRobustConnection,
        names: Names,
        schema: str,
        metrics: Metrics | None = None,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        publish_timeout: float = 10.0,
        retention_days: int = 7,
    ) -> None:
        self._pool = pool
        self._connection = connection
        self._names = names
        self._schema = schema
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._publish_timeout = publish_timeout
        self._retention_days = retention_days
        self._wakeup = Wakeup()
        self._channel: AbstractRobustChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self.is_leader = False

    @property
    def lock_key(self) -> str:
        return f"outbox-relay:{self._schema}"

    async def run(self) -> None:
        """Publish forever; on any failure back off and start again (until cancelled)."""
        backoff = 0.2
        while True:
            try:
                await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._metrics:
                    self._metrics.outbox_publish_failures.inc()
                log.warning("outbox relay interrupted", error=repr(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                backoff = 0.2

    async def _lead(self) -> None:
        async with self._pool.acquire() as conn:
            channel = f"outbox_{self._schema}"
            await conn.add_listener(channel, self._wakeup.set)
            try:
                while not await conn.fetchval(
                    "SELECT pg_try_advisory_lock(hashtext($1))", self.lock_key
                ):
                    self.is_leader = False
                    await self._sleep()
                self.is_leader = True
                log.info("outbox relay leading", schema=self._schema)
                await self._publish_loop(conn)
            finally:
                self.is_leader = False
                await reset_session(conn)  # the lock and the LISTEN go

    async def _publish_loop(self, conn: Conn) -> None:
        passes = 0
        while True:
            published = await self.publish_pending(conn)
            passes += 1
            if passes % 1000 == 0:
                await self.purge_published(conn)
            if published < self._batch_size:
                await self._sleep()

    async def _sleep(self) -> None:
        await self._wakeup.sleep(self._poll_interval)

    async def publish_pending(self, conn: Conn) -> int:
        """One pass: claim a batch, publish it, mark what the broker confirmed."""
        batch = await self.claim(conn)
        if self._metrics:
            self._metrics.outbox_pending.set(len(batch))
        if not batch:
            return 0
        confirmed, error = await self.publish(batch)
        await self.mark_sent(conn, confirmed)
        if error is not None:
            raise error
        return len(confirmed)

    async def claim(self, conn: Conn) -> list[PendingEvent]:
        rows = await conn.fetch(
            "SELECT seq, id, exchange, routing_key, envelope FROM outbox"
            " WHERE published_at IS NULL ORDER BY seq LIMIT $1",
            self._batch_size,
        )
        return [PendingEvent(**dict(row)) for row in rows]

    async def publish(self, batch: Sequence[PendingEvent]) -> tuple[list[int], Exception | None]:
        """Publish all, await the confirms together; return the confirmed prefix's seqs."""
        if not batch:
            return [], None
        # Open the channel first: every publish of the batch must go through the same one, in
        # `seq` order (concurrent first calls used to open a channel each).
        try:
            for logical in dict.fromkeys(event.exchange for event in batch):
                await self._exchange(logical)
        except Exception as exc:
            return [], exc
        results = await asyncio.gather(
            *(self._publish_one(event) for event in batch), return_exceptions=True
        )
        confirmed: list[int] = []
        for event, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                error = result if isinstance(result, Exception) else RuntimeError(str(result))
                return confirmed, error
            confirmed.append(event.seq)
        return confirmed, None

    async def mark_sent(self, conn: Conn, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        await conn.execute(
            "UPDATE outbox SET published_at = now() WHERE seq = ANY($1::bigint[])", list(seqs)
        )
        if self._metrics:
            self._metrics.outbox_published.inc(len(seqs))

    async def purge_published(self, conn: Conn) -> None:
        await conn.execute(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(days => $1)",
            self._retention_days,
        )

    async def _publish_one(self, event: PendingEvent) -> None:
        exchange = await self._exchange(event.exchange)
        envelope = event.envelope
        message = aio_pika.Message(
            body=_dumps(envelope),
            message_id=str(event.id),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            correlation_id=envelope.get("correlation_id"),
            type=envelope.get("type"),
            headers={"x-tenant-id": envelope.get("tenant_id") or ""},
        )
        # Not mandatory: an event nobody subscribes to yet is still published. aio-pika raises
        # DeliveryError when the broker nacks, so anything but an ack here is a lost confirm.
        confirmation = await exchange.publish(
            message,
            routing_key=event.routing_key,
            mandatory=False,
            timeout=self._publish_timeout,
        )
        if not isinstance(confirmation, Basic.Ack):
            raise DeliveryError(None, None)  # type: ignore[arg-type]

    async def _exchange(self, logical: str) -> AbstractExchange:
        # One robust channel for the relay's life: the connection restores it after an outage.
        # Opening another while the connection is down leaves a half-open channel behind that
        # can make every later restore attempt fail, so wait for the restore instead.
        if self._channel is None:
            async with asyncio.timeout(self._publish_timeout):
                await self._connection.ready()
            self._channel = await self._connection.channel(publisher_confirms=True)
            await declare_exchanges(self._channel, self._names)
            self._exchanges.clear()
        elif self._channel.is_closed:
            async with asyncio.timeout(self._publish_timeout):
                await self._channel.ready()
        exchange = self._exchanges.get(logical)
        if exchange is None:
            exchange = await self._channel.get_exchange(self._names.exchange(logical))
            self._exchanges[logical] = exchange
        return exchange


def _dumps(value: Any) -> bytes:
    import json

    return json.dumps(value, separators=(",", ":")).encode()
