"""The inbox consumer (DESIGN §2, invariant 3).

For each delivery: parse the envelope; in one transaction insert `(queue, message id)` into
`inbox` and run the handler. A message already in the inbox is acknowledged and skipped, so
redelivery and the relay's re-publishing change nothing. A handler error rolls the transaction
back and republishes the message to the delay tier of its next attempt (growing delays); once
the delays are spent, the message is parked in `Q.dlq` with the error. A message that cannot
be parsed, or whose type has no handler, goes straight to `Q.dlq`: retrying cannot fix it. The
original is acknowledged only after its retry or dead-letter copy is confirmed by the broker.

Deliveries are handled one after the other in the order the broker delivered them (aiormq
would otherwise run a task per delivery, and a queue's events, those of one aggregate
included, would be applied in whatever order their transactions happened to finish). With
`batch_size > 1` the messages already prefetched are applied in one transaction (one commit for
up to `batch_size` messages); if any handler of a batch raises, the batch is rolled back and
its messages are applied again one transaction each, so a failing message never takes the
others' effects with it. A handler wrapped in `Batched` receives the batch's messages of its
types together (consecutive ones, in delivery order), so that it can load what they all need
in one statement, and lock it in a fixed order, instead of once per message. When the
database is unreachable the messages are held and retried with a back-off: an outage neither
burns retry attempts nor parks messages in the DLQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import re
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aiormq.exceptions import ChannelInvalidStateError
from pydantic import BaseModel, ValidationError

from common.broker.topology import (
    DEAD_LETTER_EXCHANGE,
    Names,
    QueueSpec,
    declare_queue,
)
from common.db.notify_after_commit import (
    BEGIN_SILENT,
    COMMIT_NOTIFY,
    transaction_notifying_after_commit,
)
from common.db.pool import CONNECTION_ERRORS, connection_lost
from common.db.types import Conn
from common.events import OMS_STATUS_CHANGED, Envelope, EventType, LogisticOrderStatusChanged
from common.logging import correlation, get_logger
from common.metrics import Metrics

log = get_logger("marketpay.consumer")

Handler = Callable[[Conn, Envelope], Awaitable[None]]


@dataclass(frozen=True)
class Batched:
    """A handler of several messages at once: `apply` receives, in delivery order, every
    consecutive message of a batch that maps to this same `Batched` (one message when the
    consumer applies them one by one), inside the batch's transaction, after their inbox rows.
    It must give each message the effect it would have alone, in that order: a later message
    of one aggregate sees what an earlier one did. Bind each message's correlation id while
    handling it (`one_by_one`)."""

    apply: Callable[[Conn, Sequence[Envelope]], Awaitable[None]]


def one_by_one(envelopes: Sequence[Envelope]) -> Iterator[Envelope]:
    """The envelopes of a `Batched` call, each with its correlation and message ids bound
    to the log lines written while the loop's body handles it."""
    for envelope in envelopes:
        with correlation(envelope.correlation_id, message_id=str(envelope.id)):
            yield envelope


Parser = Callable[[AbstractIncomingMessage], Envelope]
Accepts = Callable[[Envelope], bool]
Needs = Callable[[Conn, Sequence[Envelope]], Awaitable[Sequence[bool]]]

# Work a handler wants done once its message's transaction has committed (see `after_commit`).
_AFTER_COMMIT: contextvars.ContextVar[list[Callable[[], None]] | None] = contextvars.ContextVar(
    "after_commit", default=None
)


def can_defer_after_commit() -> bool:
    """Whether the running handler's transaction takes `after_commit` callbacks (inside an
    inbox consumer: yes; anywhere else: no)."""
    return _AFTER_COMMIT.get() is not None


def after_commit(callback: Callable[[], None]) -> None:
    """Run `callback` once the consumer's transaction that runs this handler has committed;
    never if it rolls back (a failing batch is applied again message by message, each with
    callbacks of its own). For work that must not start before the state it reads is durable,
    e.g. sending a capture the handler created. Raises outside an inbox consumer."""
    pending = _AFTER_COMMIT.get()
    if pending is None:
        raise RuntimeError("after_commit outside an inbox consumer's transaction")
    pending.append(callback)


@contextlib.contextmanager
def _collecting_after_commit() -> Iterator[list[Callable[[], None]]]:
    pending: list[Callable[[], None]] = []
    token = _AFTER_COMMIT.set(pending)
    try:
        yield pending
    finally:
        _AFTER_COMMIT.reset(token)


def _run_after_commit(pending: list[Callable[[], None]]) -> None:
    for callback in pending:
        try:
            callback()
        except Exception:  # the transaction is committed: a callback's failure is its own
            log.exception("after-commit callback failed")


ATTEMPT_HEADER = "x-attempt"
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
_INSERT_INBOX_BATCH = (
    "INSERT INTO inbox (message_id, queue, event_type)"
    " SELECT m.id, $2, m.type FROM unnest($1::uuid[], $3::text[]) AS m(id, type)"
    " ON CONFLICT DO NOTHING RETURNING message_id"
)


class PoisonMessageError(Exception):
    """Raised by a parser or handler for a message no retry can fix: it goes to the DLQ now."""


class DatabaseUnavailableError(Exception):
    """The database could not be reached or the connection broke: not the message's fault."""


def parse_envelope(message: AbstractIncomingMessage) -> Envelope:
    try:
        return Envelope.model_validate_json(message.body)
    except ValidationError as exc:
        raise PoisonMessageError(
            f"not a Marketpay event envelope: {validation_summary(exc)}"
        ) from exc


def oms_parser(id_namespace: uuid.UUID) -> Parser:
    """The parser of a queue of the OMS's `logistic_order.status_changed` (bare JSON, not a
    Marketpay envelope): the body validated, or a `PoisonMessageError` with the reason (no
    retry can fix a malformed event, nor one holding text PostgreSQL cannot store: NUL or a
    lone surrogate), wrapped so that the OMS event's `id` is the inbox message id (a UUIDv5 of
    it in `id_namespace`, the consuming service's own, when it is not a UUID): the same event
    delivered again is applied once."""

    def parse(message: AbstractIncomingMessage) -> Envelope:
        try:
            event = LogisticOrderStatusChanged.model_validate_json(message.body)
        except ValidationError as exc:
            raise PoisonMessageError(
                f"not a valid logistic_order.status_changed event: {validation_summary(exc)}"
            ) from exc
        for name, value in event.model_dump().items():
            if isinstance(value, str) and _unstorable(value):
                raise PoisonMessageError(
                    f"not a valid logistic_order.status_changed event: {name}: contains"
                    " characters that are not allowed (NUL or a lone surrogate)"
                )
        try:
            message_id = uuid.UUID(event.id)
        except ValueError:
            message_id = uuid.uuid5(id_namespace, event.id)
        return Envelope(
            id=message_id,
            type=OMS_STATUS_CHANGED,
            occurred_at=event.occurred_at,
            tenant_id=event.tenant_id,
            correlation_id=message.correlation_id or f"oms:{event.id}",
            data=event.model_dump(mode="json"),
        )

    return parse


def _unstorable(text: str) -> bool:
    """NUL and lone surrogates are valid JSON but no PostgreSQL text can hold them."""
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


M = TypeVar("M", bound=BaseModel)


def tenant_payload(envelope: Envelope, model: type[M]) -> tuple[M, str]:
    """A consumed event's payload and tenant, read tolerantly: fields this consumer does not
    know are ignored (a newer producer may add optional fields during a rolling upgrade), the
    fields it knows are validated as strictly as ever. An event without a tenant, or whose
    payload does not validate, is poison: no retry can fix it (it goes to the DLQ with the
    reason)."""
    if envelope.tenant_id is None:
        raise PoisonMessageError(f"{envelope.type} without a tenant_id")
    try:
        # a tolerant reader: fields this consumer does not know are ignored
        return model.model_validate(envelope.data, extra="ignore"), envelope.tenant_id
    except ValidationError as exc:
        raise PoisonMessageError(
            f"{envelope.type} payload invalid: {validation_summary(exc)}"
        ) from exc


@dataclass
class _Parsed:
    message: AbstractIncomingMessage
    envelope: Envelope
    handler: Handler | Batched


class InboxConsumer:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        connection: AbstractRobustConnection,
        names: Names,
        spec: QueueSpec,
        handlers: Mapping[str, Handler | Batched] | Mapping[EventType, Handler | Batched],
        parser: Parser = parse_envelope,
        prefetch: int = 50,
        metrics: Metrics | None = None,
        batch_size: int = 1,
        accepts: Accepts | None = None,
        needs: Needs | None = None,
    ) -> None:
        """`accepts`, when given, says which parsed messages the handlers act on: the others
        are acknowledged without touching the database (no transaction, no inbox row), for a
        queue that receives a type of which it uses only some (a PSP notification's codes).
        `needs`, when given, says the same of the accepted messages of a batch by reading the
        database, in one read outside any transaction: for a queue most of whose messages
        are about something else (checkout's SHIPPED of card payments). It must only read, and
        a message it lets go must be one the handler would have done nothing with."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        for name in (spec.name, *map(str, handlers)):  # written as literals (`_inbox_insert`)
            if not _NAME.fullmatch(name):
                raise ValueError(f"not a queue or event type name: {name!r}")
        self._pool = pool
        self._connection = connection
        self._names = names
        self._spec = spec
        self._handlers: dict[str, Handler | Batched] = {str(k): v for k, v in handlers.items()}
        self._parser = parser
        self._accepts = accepts
        self._needs = needs
        self._prefetch = max(prefetch, batch_size)
        self._batch_size = batch_size
        self._metrics = metrics
        self._channel: AbstractChannel | None = None
        self._publish_channel: AbstractChannel | None = None
        self._tag: str | None = None
        self._queue_name = names.queue(spec.name)
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    @property
    def queue(self) -> str:
        return self._spec.name

    async def start(self) -> None:
        self._publish_channel = await self._connection.channel(publisher_confirms=True)
        self._channel = await self._connection.channel()
        await self._channel.set_qos(prefetch_count=self._prefetch)
        queue = await declare_queue(self._channel, self._names, self._spec)
        self._worker = asyncio.create_task(self._work(), name=f"inbox:{self._spec.name}")
        self._tag = await queue.consume(self._on_message)

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        for channel in (self._channel, self._publish_channel):
            if channel is not None and not channel.is_closed:
                await channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # Only queue it: one worker applies deliveries in the order they arrived.
        self._inbox.put_nowait(message)

    async def _work(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < self._batch_size and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            backoff = 0.2
            while True:
                # A delivery whose channel is gone will come again on the restored channel.
                batch = [m for m in batch if not _channel_closed(m)]
                if not batch:
                    break
                try:
                    await self._process_batch(batch)
                except DatabaseUnavailableError as exc:
                    log.warning(
                        "database unavailable, holding messages",
                        queue=self._spec.name,
                        error=str(exc.__cause__ or exc),
                        retry_in_s=backoff,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                except Exception as exc:
                    # Mostly the broker going away: those deliveries come again on the restored
                    # channel. If the channel survived, hand back what was not acknowledged.
                    log.warning("delivery handling interrupted", error=repr(exc))
                    for message in batch:
                        if not message.processed and not _channel_closed(message):
                            with contextlib.suppress(Exception):
                                await message.nack(requeue=True)
                    break
                else:
                    break

    async def _process_batch(self, batch: Sequence[AbstractIncomingMessage]) -> None:
        started = time.perf_counter()
        parsed: list[_Parsed] = []
        for message in batch:
            item = await self._parse(message)
            if item is not None:
                parsed.append(item)
        if parsed and self._needs is not None:
            parsed = await self._needed(parsed, started)
        if not parsed:
            return
        if len(parsed) > 1:
            try:
                outcomes = await self._apply_batch(parsed)
            except DatabaseUnavailableError:
                raise
            except Exception as exc:
                log.info("batch failed, applying one by one", error=repr(exc), size=len(parsed))
            else:
                # One frame acknowledges the batch: every earlier delivery on this channel
                # was settled before it (one worker, in delivery order), those of the batch
                # that were not parsed included.
                await parsed[-1].message.ack(multiple=True)
                for outcome in outcomes:
                    self._count(outcome, started, len(parsed))
                return
        for item in parsed:
            one_started = time.perf_counter()
            outcome = await self._process_one(item)
            self._count(outcome, one_started, 1)

    async def _needed(self, parsed: list[_Parsed], started: float) -> list[_Parsed]:
        """The messages of `parsed` that `needs` says the handlers act on; the others are
        acknowledged (one frame when none is needed) and counted as not for us."""
        assert self._needs is not None
        async with self._connection_for_work() as conn:
            needed = await self._needs(conn, [item.envelope for item in parsed])
        kept = [item for item, need in zip(parsed, needed, strict=True) if need]
        if not kept:
            # every earlier delivery on this channel was settled before (one worker, in order)
            await parsed[-1].message.ack(multiple=True)
        for item, need in zip(parsed, needed, strict=True):
            if not need:
                if kept:
                    await item.message.ack()
                self._count("not_for_us", started, len(parsed))
        return kept

    def _count(self, outcome: str, started: float, size: int) -> None:
        if self._metrics:
            self._metrics.consumer_messages.labels(self._spec.name, outcome).inc()
            self._metrics.consumer_duration.labels(self._spec.name).observe(
                (time.perf_counter() - started) / size
            )

    async def _parse(self, message: AbstractIncomingMessage) -> _Parsed | None:
        """The parsed message, or None once a poison message has been dead-lettered."""
        try:
            envelope = self._parser(message)
            handler = self._handlers.get(envelope.type)
            if handler is None:
                raise PoisonMessageError(f"no handler for event type {envelope.type!r}")
        except PoisonMessageError as exc:
            log.warning("poison message", queue=self._spec.name, reason=str(exc))
            await self._dead_letter(message, str(exc), kind="poison")
            self._count("dead_lettered", time.perf_counter(), 1)
            return None
        if self._accepts is not None and not self._accepts(envelope):
            await message.ack()
            self._count("not_for_us", time.perf_counter(), 1)
            return None
        return _Parsed(message, envelope, handler)

    async def _process_one(self, item: _Parsed) -> str:
        message, envelope = item.message, item.envelope
        with correlation(envelope.correlation_id, message_id=str(envelope.id)):
            try:
                applied = await self._apply(envelope, item.handler)
            except DatabaseUnavailableError:
                raise
            except PoisonMessageError as exc:
                log.warning("handler refused message", type=envelope.type, reason=str(exc))
                await self._dead_letter(message, str(exc), kind="poison")
                return "dead_lettered"
            except Exception as exc:
                return await self._retry_or_park(message, envelope, exc)
            await message.ack()
            if not applied:
                log.debug("duplicate skipped", type=envelope.type, message_id=str(envelope.id))
                return "duplicate"
            return "applied"

    async def _apply(self, envelope: Envelope, handler: Handler | Batched) -> bool:
        """Insert the inbox row and run the handler in one transaction. The transaction's
        BEGIN travels with the inbox INSERT (one round trip, in the simple query protocol, so
        with literal values)."""
        async with self._connection_for_work() as conn:
            status = await conn.execute(
                BEGIN_SILENT + "; " + _inbox_insert(envelope.id, self._spec.name, envelope.type)
            )
            try:
                if status == "INSERT 0 0":  # applied before
                    await conn.execute("ROLLBACK")
                    return False
                with _collecting_after_commit() as pending:
                    await _handle(conn, handler, [envelope])
                await conn.execute(COMMIT_NOTIFY)
            except BaseException:
                if conn.is_in_transaction() and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.execute("ROLLBACK")
                raise
        _run_after_commit(pending)
        return True

    async def _apply_batch(self, items: Sequence[_Parsed]) -> list[str]:
        """Apply every message of `items` in one transaction, or none if a handler raises."""
        with _collecting_after_commit() as pending:
            outcomes = await self._apply_batch_in_transaction(items)
        _run_after_commit(pending)
        return outcomes

    async def _apply_batch_in_transaction(self, items: Sequence[_Parsed]) -> list[str]:
        async with (
            self._connection_for_work() as conn,
            transaction_notifying_after_commit(conn),
        ):
            rows = await conn.fetch(
                _INSERT_INBOX_BATCH,
                [item.envelope.id for item in items],
                self._spec.name,
                [item.envelope.type for item in items],
            )
            fresh = {row["message_id"] for row in rows}
            outcomes: list[str] = []
            run: list[Envelope] = []  # consecutive fresh messages of one handler, not applied
            handler: Handler | Batched | None = None
            for item in items:
                if item.envelope.id not in fresh:  # applied before, or earlier in this batch
                    outcomes.append("duplicate")
                    continue
                fresh.discard(item.envelope.id)
                outcomes.append("applied")
                if run and item.handler is not handler:
                    assert handler is not None
                    await _handle(conn, handler, run)
                    run = []
                handler = item.handler
                run.append(item.envelope)
            if run:
                assert handler is not None
                await _handle(conn, handler, run)
            return outcomes

    @contextlib.asynccontextmanager
    async def _connection_for_work(self) -> AsyncIterator[Conn]:
        """A pooled connection; a failure of the connection itself becomes
        `DatabaseUnavailableError`, so that the messages are held rather than retried."""
        try:
            conn = await self._pool.acquire()
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailableError("cannot acquire a connection") from exc
        try:
            yield conn
        except Exception as exc:
            if connection_lost(exc, conn):
                raise DatabaseUnavailableError("connection lost") from exc
            raise
        finally:
            with contextlib.suppress(Exception):
                await self._pool.release(conn)

    async def _retry_or_park(
        self, message: AbstractIncomingMessage, envelope: Envelope, exc: Exception
    ) -> str:
        attempt = int((message.headers or {}).get(ATTEMPT_HEADER, 0)) + 1  # type: ignore[arg-type]
        reason = f"{type(exc).__name__}: {exc}"
        if attempt <= len(self._spec.retry_delays_ms):
            log.warning(
                "handler failed, will retry",
                type=envelope.type,
                attempt=attempt,
                error=reason,
            )
            await self._republish(
                message,
                exchange=self._spec.retry_tier(attempt),
                routing_key=self._queue_name,
                headers={ATTEMPT_HEADER: attempt, "x-last-error": reason[:1000]},
            )
            return "retried"
        log.error("handler failed, parking in DLQ", type=envelope.type, error=reason)
        await self._dead_letter(
            message, reason, kind="handler_error", trace="".join(traceback.format_exception(exc))
        )
        return "dead_lettered"

    async def _dead_letter(
        self, message: AbstractIncomingMessage, reason: str, *, kind: str, trace: str = ""
    ) -> None:
        await self._republish(
            message,
            exchange=DEAD_LETTER_EXCHANGE,
            routing_key=self._names.queue(self._spec.dlq),
            headers={
                "x-error": reason[:2000],
                "x-error-kind": kind,
                "x-error-trace": trace[-4000:],
                "x-failed-at": datetime.now(UTC).isoformat(),
                "x-original-routing-key": message.routing_key or "",
                "x-original-exchange": message.exchange or "",
                "x-queue": self._spec.name,
            },
        )

    async def _republish(
        self,
        message: AbstractIncomingMessage,
        *,
        exchange: str,
        routing_key: str,
        headers: dict[str, Any],
    ) -> None:
        """Publish a confirmed copy of `message`, then ack the original."""
        assert self._publish_channel is not None
        target = await self._publish_channel.get_exchange(self._names.exchange(exchange))
        kept = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-death")}
        copy = aio_pika.Message(
            body=message.body,
            message_id=message.message_id or str(uuid.uuid4()),
            content_type=message.content_type,
            correlation_id=message.correlation_id,
            type=message.type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={**kept, **headers},
        )
        await target.publish(copy, routing_key=routing_key, timeout=10)
        await message.ack()


async def _handle(conn: Conn, handler: Handler | Batched, envelopes: Sequence[Envelope]) -> None:
    """Consecutive messages of one handler, in order: together for a `Batched`, else one
    after the other, each under its correlation id."""
    if isinstance(handler, Batched):
        await handler.apply(conn, envelopes)
        return
    for envelope in one_by_one(envelopes):
        await handler(conn, envelope)


def _inbox_insert(message_id: uuid.UUID, queue: str, event_type: str) -> str:
    """The inbox INSERT with literal values, for a statement sent with its BEGIN: a UUID, and
    the queue's name and a handler's event type, both checked against `_NAME` by the
    consumer's constructor."""
    return (
        "INSERT INTO inbox (message_id, queue, event_type)"
        f" VALUES ('{message_id}', '{queue}', '{event_type}') ON CONFLICT DO NOTHING"
    )


def _channel_closed(message: AbstractIncomingMessage) -> bool:
    try:
        return bool(message.channel.is_closed)
    except ChannelInvalidStateError:
        return True


def event_codes(*codes: str) -> Accepts:
    """`accepts` for a queue of PSP notifications: those whose `event_code` is one of `codes`
    (read tolerantly: a payload without one is left to the handler, which refuses it)."""
    wanted = frozenset(codes)

    def accepts(envelope: Envelope) -> bool:
        code = envelope.data.get("event_code")
        return not isinstance(code, str) or code in wanted

    return accepts


def validation_summary(exc: ValidationError) -> str:
    """The first problems of a validation error, short enough for a DLQ header or a log."""
    return json.dumps(
        [{"loc": ".".join(map(str, e["loc"])), "msg": e["msg"]} for e in exc.errors()][:5]
    )
