"""The transactional outbox (DESIGN §2, invariant 2).

`enqueue` writes an event into the `outbox` table on the caller's connection, inside the
caller's transaction: the event exists exactly when the state change it describes commits.

`OutboxRelay` publishes pending rows in `seq` order with publisher confirms, a batch at a time,
and deletes the prefix the broker acknowledged: the table holds what is still to publish, not
the history, so its cost does not grow with time. The delete rides on the next pass's claim (one
statement: delete what was confirmed, read what is next), or runs on its own once the relay has
been idle for `delete_delay` seconds; and it commits asynchronously (`synchronous_commit = off`
on the relay's own connection). Losing it in a crash loses nothing: the rows are published
again and the consumers' inboxes skip the copies, exactly as when a relay dies between the
broker's ack and the delete.

Only one relay per schema publishes at a time (a session advisory lock), so a payment's events
leave in the order they were written. Writers lock the aggregate's row before enqueueing, so
two transactions on the same aggregate commit in `seq` order, and a consumer sees each
aggregate's events first in the order they were written.

Rows marked `published_at` were left by relays of earlier versions (they marked rather than
deleted); the relay deletes them a batch at a time, and never publishes them.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from common.events import routing_key as routing_key_of
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
        routing_key or routing_key_of(envelope.type, envelope.data),
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
    await conn.execute(outbox_insert(1), *outbox_values(events, exchange=exchange))


def outbox_insert(first: int, *, where: str = "") -> str:
    """`enqueue_many`'s INSERT, to embed in a statement that also changes the state (as a
    data-modifying CTE: one round trip for both), with its five parameters numbered from
    `$first`: `outbox_values` gives them. `where`, if given, is a WHERE clause that decides
    whether the events are written (e.g. only if the CTE that inserts their aggregate did).
    Each array is read through `(SELECT $n)`, which hides its length from the planner, so that
    a statement made with it can keep one generic plan whatever the number of events."""
    p = first
    return (
        "INSERT INTO outbox (id, exchange, routing_key, aggregate_id, envelope)"
        f" SELECT e.id, ${p}, e.routing_key, e.aggregate_id, e.envelope::jsonb"
        f" FROM unnest((SELECT ${p + 1}::uuid[]), (SELECT ${p + 2}::text[]),"
        f" (SELECT ${p + 3}::text[]), (SELECT ${p + 4}::text[]))"
        f" WITH ORDINALITY AS e(id, routing_key, aggregate_id, envelope, n) {where} ORDER BY e.n"
    )


def outbox_values(
    events: Sequence[tuple[Envelope, str | None]], *, exchange: str = DOMAIN_EXCHANGE
) -> tuple[str, list[uuid.UUID], list[str], list[str | None], list[str]]:
    """The parameters of `outbox_insert` for `(envelope, aggregate_id)` pairs, in order."""
    return (
        exchange,
        [envelope.id for envelope, _ in events],
        [routing_key_of(envelope.type, envelope.data) for envelope, _ in events],
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


def new_envelopes(
    events: Sequence[tuple[EventType, EventData]], *, tenant_id: str | None
) -> list[Envelope]:
    """`new_envelope` for several events of one change (one correlation id), in order."""
    correlation_id = current_correlation_id() or new_correlation_id()
    return [
        new_envelope(event_type, data, tenant_id=tenant_id, correlation_id=correlation_id)
        for event_type, data in events
    ]


async def publish_events(
    conn: Conn,
    events: Sequence[tuple[EventType, EventData]],
    *,
    tenant_id: str | None,
    aggregate_id: str | None,
) -> list[Envelope]:
    """`publish_event` for several events of one aggregate (one correlation id), in order, in
    one statement."""
    envelopes = new_envelopes(events, tenant_id=tenant_id)
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
        delete_delay: float = 0.2,
    ) -> None:
        self._pool = pool
        self._connection = connection
        self._names = names
        self._schema = schema
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._publish_timeout = publish_timeout
        self._delete_delay = delete_delay
        self._published: list[int] = []  # confirmed by the broker, not yet deleted
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
                # Deleting published rows is bookkeeping that a crash may undo harmlessly (they
                # are published again, the inboxes skip them): no need to wait for the WAL flush.
                await conn.execute("SET synchronous_commit = off")
                await self._publish_loop(conn)
            finally:
                self.is_leader = False
                await self._delete_before_leaving(conn)
                await reset_session(conn)  # the lock, the LISTEN and the SET go

    async def _publish_loop(self, conn: Conn) -> None:
        passes = 0
        while True:
            published = await self.publish_pending(conn)
            passes += 1
            if passes % 1000 == 0:
                await self.purge_marked(conn)
            if published < self._batch_size:
                if self._published:
                    if await self._wakeup.sleep(self._delete_delay):
                        continue  # more to publish: the next claim deletes them
                    await self.delete_published(conn)  # idle: nothing to ride on
                await self._sleep()

    async def _sleep(self) -> None:
        await self._wakeup.sleep(self._poll_interval)

    async def publish_pending(self, conn: Conn) -> int:
        """One pass: delete what the previous pass published and claim a batch (one
        statement), publish it, remember what the broker confirmed."""
        batch = await self.claim(conn)
        if self._metrics:
            self._metrics.outbox_pending.set(len(batch))
        if not batch:
            return 0
        confirmed, error = await self.publish(batch)
        self._confirmed(confirmed)
        if error is not None:
            raise error
        return len(confirmed)

    async def claim(self, conn: Conn) -> list[PendingEvent]:
        """The next batch to publish, in `seq` order; in the same statement, the rows already
        published are deleted (they are left out of the batch: the statement's snapshot still
        sees them)."""
        # (SELECT $1): the plan doesn't depend on how many rows were published, so one
        # generic plan serves every pass instead of one planned per call
        rows = await conn.fetch(
            "WITH p AS (SELECT $1::bigint[] AS seqs),"
            " gone AS (DELETE FROM outbox WHERE seq = ANY((SELECT seqs FROM p)::bigint[]))"
            " SELECT seq, id, exchange, routing_key, envelope FROM outbox"
            " WHERE published_at IS NULL AND seq <> ALL((SELECT seqs FROM p)::bigint[])"
            " ORDER BY seq LIMIT $2",
            self._published,
            self._batch_size,
        )
        self._published = []
        return [PendingEvent(**dict(row)) for row in rows]

    def _confirmed(self, seqs: Sequence[int]) -> None:
        self._published.extend(seqs)
        if self._metrics and seqs:
            self._metrics.outbox_published.inc(len(seqs))

    async def delete_published(self, conn: Conn) -> None:
        """Delete the rows published since the last claim."""
        if not self._published:
            return
        await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", self._published)
        self._published = []

    async def _delete_before_leaving(self, conn: Conn) -> None:
        """A relay that stops deletes what it published, so that the next one does not publish
        it again; bounded, and harmless when it cannot (the copies are skipped)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self.delete_published(conn)
        self._published = []

    async def purge_marked(self, conn: Conn) -> None:
        """Delete a batch of the rows that relays of earlier versions marked published."""
        await conn.execute(
            "DELETE FROM outbox WHERE seq IN"
            " (SELECT seq FROM outbox WHERE published_at IS NOT NULL LIMIT 5000)"
        )

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
