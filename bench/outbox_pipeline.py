"""Outbox → RabbitMQ → inbox consumer: throughput and added latency, beside the bare aio-pika
ceiling (publisher confirms awaited per batch of 100; consume with prefetch 100 and manual ack).

Everything runs in this one process against the servers of the test fixtures (127.0.0.1 by
default), in a database and a broker namespace of its own that are removed at the end.

- ceiling: publish N messages to a quorum queue, confirms awaited per batch; then consume them.
- drain: N events already in the outbox; start relay and consumer; time until the handler has
  run for every one (consumer with one transaction per message, then with batches).
- latency: events written one per transaction at a steady rate below the drain throughput;
  latency = handler start − commit of the transaction that enqueued the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aio_pika
import asyncpg

from bench.processes import scratch_database
from common.broker import InboxConsumer, Names, OutboxRelay, QueueSpec, connect, publish_event
from common.broker.topology import all_exchange_names, all_queue_names
from common.db import apply_migrations, create_pool
from common.db.migrations import COMMON_MIGRATIONS
from common.db.types import Conn
from common.events import DOMAIN_EXCHANGE, Envelope, make_envelope
from common.testing.events import Probe, probe_type
from common.testing.servers import test_servers

N = int(os.environ.get("BENCH_EVENTS", "5000"))
LATENCY_EVENTS = int(os.environ.get("BENCH_LATENCY_EVENTS", "1200"))
# One commit per event on the producer side, and on the consumer's with batch 1: keep the rate
# below what this machine's fsync allows (~300 commits/s here), or the latency is queueing.
LATENCY_RATE = float(os.environ.get("BENCH_LATENCY_RATE", "150"))  # events/s
CONFIRM_BATCH = 100
PREFETCH = 100
EVENT = probe_type("bench.happened")
DEADLINE_S = 60.0


@dataclass
class Run:
    events: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds / self.events * 1e6


async def until(check: Callable[[], bool], what: str, within: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done within {within} s")
        await asyncio.sleep(0.002)


async def ceiling(connection: aio_pika.abc.AbstractConnection, names: Names) -> tuple[Run, Run]:
    """Bare aio-pika: publish with confirms per batch, then consume with manual ack."""
    channel = await connection.channel(publisher_confirms=True)
    queue = await channel.declare_queue(
        names.queue("ceiling"),
        durable=True,
        arguments=names.queue_arguments({"x-queue-type": "quorum"}),
    )
    exchange = channel.default_exchange
    envelope = make_envelope(EVENT, Probe(n=0), tenant_id="t", correlation_id="c")
    body = envelope.model_dump_json().encode()

    cpu, started = time.process_time(), time.perf_counter()
    for first in range(0, N, CONFIRM_BATCH):
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        body,
                        message_id=str(i),
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=queue.name,
                )
                for i in range(first, min(first + CONFIRM_BATCH, N))
            )
        )
    publish = Run(N, time.perf_counter() - started, time.process_time() - cpu)

    consumer_channel = await connection.channel()
    await consumer_channel.set_qos(prefetch_count=PREFETCH)
    consumed = 0

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal consumed
        Envelope.model_validate_json(message.body)  # the consumer parses too: a fair ceiling
        await message.ack()
        consumed += 1

    consume_queue = await consumer_channel.get_queue(queue.name)
    cpu, started = time.process_time(), time.perf_counter()
    tag = await consume_queue.consume(on_message)
    await until(lambda: consumed >= N, "bare consume")
    consume = Run(N, time.perf_counter() - started, time.process_time() - cpu)
    await consume_queue.cancel(tag)
    await queue.delete(if_unused=False, if_empty=False)
    await consumer_channel.close()
    await channel.close()
    return publish, consume


@dataclass
class Pipeline:
    pool: asyncpg.Pool
    connection: aio_pika.abc.AbstractRobustConnection
    names: Names
    schema: str
    handled: int = 0
    handler_started: dict[str, float] | None = None

    async def handle(self, conn: Conn, envelope: Envelope) -> None:
        if self.handler_started is not None:
            self.handler_started[str(envelope.id)] = time.perf_counter()
        await conn.execute("INSERT INTO effects (event_id) VALUES ($1)", envelope.id)
        self.handled += 1

    @contextlib.asynccontextmanager
    async def running(self, queue: str, batch_size: int) -> AsyncIterator[InboxConsumer]:
        consumer = InboxConsumer(
            pool=self.pool,
            connection=self.connection,
            names=self.names,
            spec=QueueSpec(queue, [(DOMAIN_EXCHANGE, EVENT)]),
            handlers={EVENT: self.handle},
            prefetch=PREFETCH,
            batch_size=batch_size,
        )
        await consumer.start()
        relay = OutboxRelay(
            pool=self.pool,
            connection=self.connection,
            names=self.names,
            schema=self.schema,
            batch_size=100,
            poll_interval=0.5,
        )
        task = asyncio.create_task(relay.run())
        try:
            yield consumer
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await consumer.stop()

    async def reset(self) -> None:
        self.handled = 0
        self.handler_started = None
        await self.pool.execute("TRUNCATE effects, inbox, outbox")

    async def preload(self, count: int) -> None:
        """`count` events in the outbox, written as a service would (one transaction per 100)."""
        for first in range(0, count, 100):
            async with self.pool.acquire() as conn, conn.transaction():
                for n in range(first, min(first + 100, count)):
                    await publish_event(conn, EVENT, Probe(n=n), tenant_id="t", aggregate_id=str(n))

    async def drain(self, queue: str, batch_size: int, count: int) -> Run:
        await self.reset()
        # declare the queue first, so that nothing published is unroutable
        async with self.running(queue, batch_size):
            pass
        await self.preload(count)
        cpu, started = time.process_time(), time.perf_counter()
        async with self.running(queue, batch_size):
            await until(lambda: self.handled >= count, f"drain {queue}")
            return Run(count, time.perf_counter() - started, time.process_time() - cpu)

    async def latency(self, queue: str, batch_size: int) -> list[float]:
        await self.reset()
        started_at: dict[str, float] = {}
        committed: dict[str, float] = {}
        self.handler_started = started_at
        async with self.running(queue, batch_size):
            await asyncio.sleep(0.5)  # let the relay take the lead
            interval = 1.0 / LATENCY_RATE
            begin = time.perf_counter()
            for n in range(LATENCY_EVENTS):
                async with self.pool.acquire() as conn:
                    async with conn.transaction():
                        envelope = await publish_event(
                            conn, EVENT, Probe(n=n), tenant_id="t", aggregate_id=str(n)
                        )
                    committed[str(envelope.id)] = time.perf_counter()
                delay = begin + (n + 1) * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await until(lambda: self.handled >= LATENCY_EVENTS, f"latency {queue}")
        return sorted((started_at[i] - committed[i]) * 1000 for i in committed)


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


async def measure(label: str, action: Callable[[], Awaitable[Run]]) -> Run:
    run = await action()
    print(
        f"  {label:<44} {run.rate:>8,.0f} /s   ({run.events} in {run.seconds:.2f} s,"
        f" {run.cpu_us_per_event:.0f} µs CPU each)",
        flush=True,
    )
    return run


async def main() -> None:
    with test_servers() as servers:
        names = Names(f"bench.{secrets.token_hex(3)}.", queue_expires_ms=10 * 60 * 1000)
        async with scratch_database(servers.pg_admin_dsn) as service:
            dsn, schema = service.dsn, service.schema
            pool = await create_pool(dsn, schema, max_size=10)
            connection = await connect(servers.amqp_url)
            queues: list[str] = []
            try:
                async with pool.acquire() as conn:
                    await apply_migrations(conn, schema, {"common": COMMON_MIGRATIONS})
                    await conn.execute("CREATE TABLE effects (event_id uuid PRIMARY KEY)")
                print(f"events per run: {N}; everything on this machine, one process")
                publish, consume = await ceiling(connection, names)
                print(
                    f"  {'ceiling: aio-pika publish, confirms per 100':<44} {publish.rate:>8,.0f}"
                    f" /s   ({publish.cpu_us_per_event:.0f} µs CPU each)"
                )
                print(
                    f"  {'ceiling: aio-pika consume, prefetch 100':<44} {consume.rate:>8,.0f}"
                    f" /s   ({consume.cpu_us_per_event:.0f} µs CPU each)"
                )
                top = min(publish.rate, consume.rate)
                pipeline = Pipeline(pool, connection, names, schema)
                # one commit per message is bound by fsync: fewer events keep the run short
                for batch_size, count in ((1, N // 5), (50, N)):
                    queue = f"bench_drain_b{batch_size}"
                    queues.append(queue)
                    run = await measure(
                        f"outbox→inbox drain, consumer batch {batch_size}",
                        lambda q=queue, b=batch_size, c=count: pipeline.drain(q, b, c),  # type: ignore[misc]
                    )
                    print(f"    ratio to the ceiling (the slower bare rate): {run.rate / top:.0%}")
                for batch_size in (1, 50):
                    queue = f"bench_latency_b{batch_size}"
                    queues.append(queue)
                    latencies = await pipeline.latency(queue, batch_size)
                    print(
                        f"  added latency at {LATENCY_RATE:.0f} events/s, consumer batch"
                        f" {batch_size}: p50 {percentile(latencies, 50):.1f} ms,"
                        f" p99 {percentile(latencies, 99):.1f} ms,"
                        f" max {latencies[-1]:.1f} ms ({len(latencies)} events)",
                        flush=True,
                    )
            finally:
                await cleanup(connection, names, queues)
                await connection.close()
                await pool.close()


async def cleanup(
    connection: aio_pika.abc.AbstractConnection, names: Names, queues: list[str]
) -> None:
    with contextlib.suppress(Exception):
        channel = await connection.channel()
        for queue in queues:
            for name in all_queue_names(names, QueueSpec(queue, [])):
                await channel.queue_delete(name)
        for exchange in all_exchange_names(names):
            await channel.exchange_delete(exchange)
        await channel.close()
