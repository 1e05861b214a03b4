"""Exchanges and queues (DESIGN §3).

For a consuming queue `Q` the topology is:
- `Q`: durable quorum queue bound to its routing keys; rejected or over-delivered messages
  dead-letter to `marketpay.dlx` with routing key `Q.dlq`;
- `Q.retry.N`: one queue per retry delay, with that delay as message TTL, dead-lettering back
  to `Q` through the default exchange (growing delays: 1 s, 5 s, 30 s by default);
- `Q.dlq`: where a message is parked with its error once retries are spent or when it cannot
  be parsed at all.
All names are prefixed with the broker namespace, so test runs never see each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection, ExchangeType

from common.events import DOMAIN_EXCHANGE, OMS_EXCHANGE

DEAD_LETTER_EXCHANGE = "marketpay.dlx"
RETRY_EXCHANGE = "marketpay.retry"
# A consumer that crashes on a message (the process dies before it acks) must not loop forever.
DELIVERY_LIMIT = 10


@dataclass(frozen=True)
class Names:
    """Broker names of one deployment. Test runs set a unique `namespace` and
    `queue_expires_ms`, so their queues never meet another run's and vanish once unused."""

    namespace: str = ""
    queue_expires_ms: int | None = None

    def queue_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        if self.queue_expires_ms is not None:
            return {**arguments, "x-expires": self.queue_expires_ms}
        return arguments

    def exchange(self, name: str) -> str:
        return f"{self.namespace}{name}"

    def queue(self, name: str) -> str:
        return f"{self.namespace}{name}"


@dataclass(frozen=True)
class QueueSpec:
    """A consuming queue: its name, its bindings and its retry delays."""

    name: str
    bindings: Sequence[tuple[str, str]]  # (logical exchange, routing key)
    retry_delays_ms: Sequence[int] = field(default=(1_000, 5_000, 30_000))

    def retry_queue(self, attempt: int) -> str:
        return f"{self.name}.retry.{attempt}"

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"


async def connect(url: str) -> AbstractRobustConnection:
    """A connection that reconnects by itself and restores channels, queues and consumers."""
    return await aio_pika.connect_robust(url, reconnect_interval=1.0, fail_fast=True)


async def declare_exchanges(channel: AbstractChannel, names: Names) -> None:
    for name, kind in (
        (DOMAIN_EXCHANGE, ExchangeType.TOPIC),
        (OMS_EXCHANGE, ExchangeType.TOPIC),
        (DEAD_LETTER_EXCHANGE, ExchangeType.DIRECT),
        (RETRY_EXCHANGE, ExchangeType.DIRECT),
    ):
        await channel.declare_exchange(names.exchange(name), kind, durable=True)


async def declare_queue(channel: AbstractChannel, names: Names, spec: QueueSpec) -> AbstractQueue:
    """Declare `spec`'s queue with its retry queues and dead-letter queue; return the main queue."""
    await declare_exchanges(channel, names)
    queue_name = names.queue(spec.name)
    dlx = await channel.get_exchange(names.exchange(DEAD_LETTER_EXCHANGE))
    retry = await channel.get_exchange(names.exchange(RETRY_EXCHANGE))

    dlq = await channel.declare_queue(
        names.queue(spec.dlq),
        durable=True,
        arguments=names.queue_arguments({"x-queue-type": "quorum"}),
    )
    await dlq.bind(dlx, routing_key=names.queue(spec.dlq))

    for attempt, delay in enumerate(spec.retry_delays_ms, start=1):
        retry_name = names.queue(spec.retry_queue(attempt))
        retry_queue = await channel.declare_queue(
            retry_name,
            durable=True,
            arguments=names.queue_arguments(
                {
                    "x-queue-type": "quorum",
                    "x-message-ttl": delay,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": queue_name,
                }
            ),
        )
        await retry_queue.bind(retry, routing_key=retry_name)

    queue = await channel.declare_queue(
        queue_name,
        durable=True,
        arguments=names.queue_arguments(
            {
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": names.exchange(DEAD_LETTER_EXCHANGE),
                "x-dead-letter-routing-key": names.queue(spec.dlq),
                "x-delivery-limit": DELIVERY_LIMIT,
            }
        ),
    )
    for exchange, routing_key in spec.bindings:
        await queue.bind(names.exchange(exchange), routing_key=routing_key)
    return queue


def all_queue_names(names: Names, spec: QueueSpec) -> list[str]:
    return [
        names.queue(spec.name),
        names.queue(spec.dlq),
        *(names.queue(spec.retry_queue(i + 1)) for i in range(len(spec.retry_delays_ms))),
    ]


def all_exchange_names(names: Names) -> list[str]:
    return [
        names.exchange(n)
        for n in (DOMAIN_EXCHANGE, OMS_EXCHANGE, DEAD_LETTER_EXCHANGE, RETRY_EXCHANGE)
    ]
