"""The inbox consumer (DESIGN §2, invariant 3).

For each delivery: parse the envelope; in one transaction insert `(queue, message id)` into
`inbox` and run the handler. A message already in the inbox is acknowledged and skipped, so
redelivery and the relay's re-publishing change nothing. A handler error rolls the transaction
back and republishes the message to `Q.retry.N` (growing delays); once the delays are spent,
the message is parked in `Q.dlq` with the error. A message that cannot be parsed, or whose type
has no handler, goes straight to `Q.dlq`: retrying cannot fix it. The original is acknowledged
only after its retry or dead-letter copy is confirmed by the broker.
"""

from __future__ import annotations

import json
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from pydantic import ValidationError

from common.broker.topology import (
    DEAD_LETTER_EXCHANGE,
    RETRY_EXCHANGE,
    Names,
    QueueSpec,
    declare_queue,
)
from common.events import Envelope
from common.logging import correlation, get_logger
from common.metrics import Metrics

log = get_logger("marketpay.consumer")

Handler = Callable[[asyncpg.Connection, Envelope], Awaitable[None]]
Parser = Callable[[AbstractIncomingMessage], Envelope]

ATTEMPT_HEADER = "x-attempt"


class PoisonMessageError(Exception):
    """Raised by a parser or handler for a message no retry can fix: it goes to the DLQ now."""


def parse_envelope(message: AbstractIncomingMessage) -> Envelope:
    try:
        return Envelope.model_validate_json(message.body)
    except ValidationError as exc:
        raise PoisonMessageError(f"not a Marketpay event envelope: {_short(exc)}") from exc


class InboxConsumer:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        connection: AbstractRobustConnection,
        names: Names,
        spec: QueueSpec,
        handlers: Mapping[str, Handler],
        parser: Parser = parse_envelope,
        prefetch: int = 50,
        metrics: Metrics | None = None,
    ) -> None:
        self._pool = pool
        self._connection = connection
        self._names = names
        self._spec = spec
        self._handlers = dict(handlers)
        self._parser = parser
        self._prefetch = prefetch
        self._metrics = metrics
        self._channel: AbstractChannel | None = None
        self._publish_channel: AbstractChannel | None = None
        self._tag: str | None = None
        self._queue_name = names.queue(spec.name)

    async def start(self) -> None:
        self._publish_channel = await self._connection.channel(publisher_confirms=True)
        self._channel = await self._connection.channel()
        await self._channel.set_qos(prefetch_count=self._prefetch)
        queue = await declare_queue(self._channel, self._names, self._spec)
        self._tag = await queue.consume(self._on_message)

    async def stop(self) -> None:
        for channel in (self._channel, self._publish_channel):
            if channel is not None and not channel.is_closed:
                await channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        outcome = await self._process(message)
        if self._metrics:
            self._metrics.consumer_messages.labels(self._spec.name, outcome).inc()
            self._metrics.consumer_duration.labels(self._spec.name).observe(
                time.perf_counter() - started
            )

    async def _process(self, message: AbstractIncomingMessage) -> str:
        try:
            envelope = self._parser(message)
            handler = self._handlers.get(envelope.type)
            if handler is None:
                raise PoisonMessageError(f"no handler for event type {envelope.type!r}")
        except PoisonMessageError as exc:
            log.warning("poison message", queue=self._spec.name, reason=str(exc))
            await self._dead_letter(message, str(exc), kind="poison")
            return "dead_lettered"

        with correlation(envelope.correlation_id, message_id=str(envelope.id)):
            try:
                applied = await self._apply(envelope, handler)
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

    async def _apply(self, envelope: Envelope, handler: Handler) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO inbox (message_id, queue, event_type) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING RETURNING true",
                envelope.id,
                self._spec.name,
                envelope.type,
            )
            if not inserted:
                return False
            await handler(conn, envelope)
            return True

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
                exchange=RETRY_EXCHANGE,
                routing_key=self._names.queue(self._spec.retry_queue(attempt)),
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
        copy = aio_pika.Message(
            body=message.body,
            message_id=message.message_id or str(uuid.uuid4()),
            content_type=message.content_type,
            correlation_id=message.correlation_id,
            type=message.type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={**(message.headers or {}), **headers},
        )
        await target.publish(copy, routing_key=routing_key, timeout=10)
        await message.ack()


def _short(exc: ValidationError) -> str:
    return json.dumps(
        [{"loc": ".".join(map(str, e["loc"])), "msg": e["msg"]} for e in exc.errors()][:5]
    )
