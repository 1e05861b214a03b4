"""Exchanges and queues (DESIGN §3).

For a consuming queue `Q` the topology is:
- `Q`: durable quorum queue bound to its routing keys; rejected or over-delivered messages
  dead-letter to `marketpay.dlx` with routing key `Q.dlq`;
- `Q.dlq`: where a message is parked with its error once retries are spent or when it cannot
  be parsed at all.
Retries wait in delay tiers shared by every queue: for a delay of D ms, the fanout exchange
and quorum queue `marketpay.retry.Dms`, whose message TTL is D and which dead-letters through
the default exchange with the message's own routing key. A consumer republishes a failed
message to the tier with routing key `Q`, so after D ms it is back in `Q` (growing delays:
1 s, 5 s, 30 s by default). Tiers keep the broker at two queues per consumer instead of one
per consumer and delay.
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
RETRY_TIER_PREFIX = "marketpay.retry."
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


# Queues declared in a test namespace (one with `queue_expires_ms`), so that test fixtures can
# delete them when the test ends. Production namespaces are never recorded.
_TEST_QUEUES: set[str] = set()


def declared_test_queues(namespace: str) -> list[str]:
    """Test queues declared in this process under `namespace` (and forget them)."""
    found = sorted(q for q in _TEST_QUEUES if q.startswith(namespace))
    _TEST_QUEUES.difference_update(found)
    return found


def retry_tier(delay_ms: int) -> str:
    """The logical name of the delay tier's exchange and queue."""
    return f"{RETRY_TIER_PREFIX}{delay_ms}ms"


@dataclass(frozen=True)
class QueueSpec:
    """A consuming queue: its name, its bindings and its retry delays."""

    name: str
    bindings: Sequence[tuple[str, str]]  # (logical exchange, routing key)
    retry_delays_ms: Sequence[int] = field(default=(1_000, 5_000, 30_000))

    def retry_tier(self, attempt: int) -> str:
        """The delay tier a message waits in before its `attempt`-th retry (1-based)."""
        return retry_tier(self.retry_delays_ms[attempt - 1])

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"


async def connect(url: str) -> AbstractRobustConnection:
    """A connection that reconnects by itself and restores channels, queues and consumers."""
    # The timeout bounds each (re)connection attempt: without it an attempt whose handshake
    # stalls (a half-open link after a network cut) blocks every later attempt for good.
    return await aio_pika.connect_robust(url, reconnect_interval=1.0, fail_fast=True, timeout=10)


async def declare_exchanges(channel: AbstractChannel, names: Names) -> None:
    for name, kind in (
        (DOMAIN_EXCHANGE, ExchangeType.TOPIC),
        (OMS_EXCHANGE, ExchangeType.TOPIC),
        (DEAD_LETTER_EXCHANGE, ExchangeType.DIRECT),
    ):
        await channel.declare_exchange(names.exchange(name), kind, durable=True)


async def declare_retry_tier(channel: AbstractChannel, names: Names, delay_ms: int) -> None:
    name = names.exchange(retry_tier(delay_ms))
    exchange = await channel.declare_exchange(name, ExchangeType.FANOUT, durable=True)
    queue = await _declare(
        channel,
        names,
        names.queue(retry_tier(delay_ms)),
        {
            "x-queue-type": "quorum",
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": "",  # back through the default exchange, by routing key
        },
    )
    await queue.bind(exchange)


async def _declare(
    channel: AbstractChannel, names: Names, name: str, arguments: dict[str, Any]
) -> AbstractQueue:
    queue = await channel.declare_queue(
        name, durable=True, arguments=names.queue_arguments(arguments)
    )
    if names.queue_expires_ms is not None:
        _TEST_QUEUES.add(name)
    return queue


async def declare_queue(channel: AbstractChannel, names: Names, spec: QueueSpec) -> AbstractQueue:
    """Declare `spec`'s queue, its dead-letter queue and its delay tiers; return the queue."""
    await declare_exchanges(channel, names)
    queue_name = names.queue(spec.name)
    dlx = await channel.get_exchange(names.exchange(DEAD_LETTER_EXCHANGE))
    dlq = await _declare(channel, names, names.queue(spec.dlq), {"x-queue-type": "quorum"})
    await dlq.bind(dlx, routing_key=names.queue(spec.dlq))
    for delay in sorted(set(spec.retry_delays_ms)):
        await declare_retry_tier(channel, names, delay)
    queue = await _declare(
        channel,
        names,
        queue_name,
        {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": names.exchange(DEAD_LETTER_EXCHANGE),
            "x-dead-letter-routing-key": names.queue(spec.dlq),
            "x-delivery-limit": DELIVERY_LIMIT,
        },
    )
    for exchange, routing_key in spec.bindings:
        await queue.bind(names.exchange(exchange), routing_key=routing_key)
    return queue


def all_queue_names(names: Names, spec: QueueSpec) -> list[str]:
    return [
        names.queue(spec.name),
        names.queue(spec.dlq),
        *(names.queue(retry_tier(d)) for d in sorted(set(spec.retry_delays_ms))),
    ]


def all_exchange_names(names: Names, retry_delays_ms: Sequence[int] = ()) -> list[str]:
    return [
        names.exchange(n)
        for n in (
            DOMAIN_EXCHANGE,
            OMS_EXCHANGE,
            DEAD_LETTER_EXCHANGE,
            *(retry_tier(d) for d in sorted(set(retry_delays_ms))),
        )
    ]
