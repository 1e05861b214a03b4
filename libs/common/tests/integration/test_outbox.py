"""Outbox → RabbitMQ → inbox, end to end against the real servers (DESIGN §2, invariants 2 and 3).

Every event written is delivered, an event of a rolled-back transaction never is, a re-published
event changes nothing the second time, and each aggregate's events first reach the handler in
the order they were written — also when the broker or the database connection is cut.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import pytest

from common.broker import InboxConsumer, OutboxRelay, QueueSpec, connect, publish_event
from common.db import create_pool
from common.db.notify_after_commit import BEGIN_SILENT, transaction_notifying_after_commit
from common.events import DOMAIN_EXCHANGE, Envelope
from common.metrics import Metrics
from common.testing.events import Probe, probe_type
from common.testing.fixtures import dsn_with
from common.testing.tcpproxy import TcpProxy
from common.testing.waiting import eventually

EVENT = probe_type("probe.happened")


@dataclass
class Sink:
    """The consuming side: an inbox consumer whose handler counts its effect per event."""

    pool: asyncpg.Pool
    metrics: Metrics = field(default_factory=Metrics)
    arrivals: list[tuple[str, int]] = field(default_factory=list)

    async def handle(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        self.arrivals.append((envelope.data["aggregate"], envelope.data["n"]))
        await conn.execute(
            "INSERT INTO effects (event_id, aggregate, n) VALUES ($1, $2, $3)"
            " ON CONFLICT (event_id) DO UPDATE SET applied = effects.applied + 1",
            envelope.id,
            envelope.data["aggregate"],
            envelope.data["n"],
        )

    def first_arrivals(self) -> dict[str, list[int]]:
        seen: set[tuple[str, int]] = set()
        order: dict[str, list[int]] = {}
        for arrival in self.arrivals:
            if arrival not in seen:
                seen.add(arrival)
                order.setdefault(arrival[0], []).append(arrival[1])
        return order

    def count(self, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "consumer_messages_total", {"queue": "probe", "outcome": outcome}
        )
        return value or 0.0

    async def effects(self) -> list[asyncpg.Record]:
        return await self.pool.fetch("SELECT aggregate, n, applied FROM effects ORDER BY seq")

    async def received(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM effects"))


@contextlib.asynccontextmanager
async def sink(pool, connection, names, *, batch_size: int = 1) -> AsyncIterator[Sink]:
    await pool.execute(
        "CREATE TABLE effects (seq bigserial, event_id uuid PRIMARY KEY, aggregate text,"
        " n int, applied int NOT NULL DEFAULT 1)"
    )
    result = Sink(pool)
    consumer = InboxConsumer(
        pool=pool,
        connection=connection,
        names=names,
        spec=QueueSpec("probe", [(DOMAIN_EXCHANGE, EVENT)], retry_delays_ms=(200, 400)),
        handlers={EVENT: result.handle},
        metrics=result.metrics,
        batch_size=batch_size,
    )
    await consumer.start()
    try:
        yield result
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def running(*relays: OutboxRelay) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.create_task(relay.run()) for relay in relays]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def relay_for(pool, connection, names, schema, **kwargs) -> OutboxRelay:
    kwargs.setdefault("poll_interval", 0.2)
    return OutboxRelay(pool=pool, connection=connection, names=names, schema=schema, **kwargs)


async def write(pool: asyncpg.Pool, aggregate: str, n: int, *, then_fail: bool = False) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await publish_event(
            conn, EVENT, Probe(aggregate=aggregate, n=n), tenant_id="t1", aggregate_id=aggregate
        )
        if then_fail:
            raise RuntimeError("state change failed")


async def produce(
    pool: asyncpg.Pool, aggregates: int, per_aggregate: int, pause: float
) -> dict[str, list[int]]:
    """Write events round-robin over the aggregates, one transaction each; return what was
    written per aggregate, in order."""
    written: dict[str, list[int]] = {f"agg-{a}": [] for a in range(aggregates)}
    for n in range(per_aggregate):
        for aggregate, numbers in written.items():
            await write(pool, aggregate, n)
            numbers.append(n)
        await asyncio.sleep(pause)
    return written


async def test_events_of_a_rolled_back_transaction_are_never_published(
    service_pool, service_db, amqp_connection, broker_names
):
    # given
    async with (
        sink(service_pool, amqp_connection, broker_names) as seen,
        running(relay_for(service_pool, amqp_connection, broker_names, service_db.schema)),
    ):
        # when a transaction enqueues an event and then fails, and another one commits
        with pytest.raises(RuntimeError, match="state change failed"):
            await write(service_pool, "a", 0, then_fail=True)
        await write(service_pool, "a", 1)

        # then only the committed event is delivered, and once published it leaves the outbox
        await eventually(lambda: _true(seen.first_arrivals().get("a") == [1]))
        await eventually(lambda: _eq(service_pool.fetchval("SELECT count(*) FROM outbox"), 0))
        assert seen.arrivals == [("a", 1)]


async def test_a_relay_killed_before_marking_sent_republishes_and_the_inbox_absorbs_it(
    service_pool, service_db, amqp_connection, broker_names
):
    # given five committed events and a relay that publishes them but dies before mark_sent
    async with sink(service_pool, amqp_connection, broker_names) as seen:
        for n in range(5):
            await write(service_pool, "a", n)
        doomed = relay_for(service_pool, amqp_connection, broker_names, service_db.schema)
        async with service_pool.acquire() as conn:
            batch = await doomed.claim(conn)
            confirmed, error = await doomed.publish(batch)
        assert error is None
        assert len(confirmed) == 5
        del doomed
        await eventually(lambda: _true(seen.count("applied") == 5))

        # when a fresh relay starts
        async with running(
            relay_for(service_pool, amqp_connection, broker_names, service_db.schema)
        ):
            # then it publishes the five again, and the inbox skips every copy
            await eventually(lambda: _true(seen.count("duplicate") == 5))
            await eventually(lambda: _eq(service_pool.fetchval("SELECT count(*) FROM outbox"), 0))
        effects = await seen.effects()
        assert [(r["aggregate"], r["n"], r["applied"]) for r in effects] == [
            ("a", n, 1) for n in range(5)
        ]
        assert seen.first_arrivals() == {"a": [0, 1, 2, 3, 4]}


async def test_published_rows_are_deleted_with_the_next_claim_without_a_statement_of_their_own(
    service_pool, service_db, amqp_connection, broker_names
):
    # given a relay that published one event
    relay = relay_for(service_pool, amqp_connection, broker_names, service_db.schema)
    async with sink(service_pool, amqp_connection, broker_names) as seen:
        await write(service_pool, "a", 0)
        async with service_pool.acquire() as conn:
            assert await relay.publish_pending(conn) == 1
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 1  # not deleted yet

            # when the next event is written and the relay makes its next pass
            await write(service_pool, "a", 1)
            statements: list[str] = []
            conn.add_query_logger(lambda record: statements.append(record.query))
            assert await relay.publish_pending(conn) == 1

            # then that pass deleted the first row in its claim: one statement on the outbox
            # (asyncpg's own type introspection aside)
            on_outbox = [q for q in statements if "outbox" in q]
            assert len(on_outbox) == 1
            assert "gone AS (DELETE FROM outbox" in on_outbox[0]
            assert [
                r["envelope"]["data"]["n"] for r in await conn.fetch("SELECT * FROM outbox")
            ] == [1]

            # and an idle relay deletes on its own what it published
            await relay.delete_published(conn)
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
        await eventually(lambda: _true(seen.first_arrivals().get("a") == [0, 1]))


async def test_the_claim_keeps_one_generic_plan_whatever_was_published_before_it(
    service_pool, service_db, amqp_connection, broker_names
):
    # given a relay whose passes publish batches of several sizes, each deleted by the next
    # pass's claim
    relay = relay_for(service_pool, amqp_connection, broker_names, service_db.schema)
    async with sink(service_pool, amqp_connection, broker_names) as seen:
        async with service_pool.acquire() as conn:
            written = 0
            for size in (1, 3, 2, 7, 1, 4, 2, 5, 1):
                for _ in range(size):
                    await write(service_pool, "a", written)
                    written += 1
                assert await relay.publish_pending(conn) == size
            # then, past PostgreSQL's five custom plans, the claim runs its generic plan
            plans = await conn.fetch(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE 'WITH p AS (SELECT $1::bigint[] AS seqs)%'"
            )
            assert [(p["generic_plans"], p["custom_plans"]) for p in plans] == [(4, 5)]
        await eventually(lambda: _true(len(seen.first_arrivals().get("a", [])) == written))


async def test_rows_marked_published_by_an_earlier_relay_are_never_published_and_are_purged(
    service_pool, service_db, amqp_connection, broker_names
):
    # given an event an earlier version's relay published and marked, and a new one
    async with sink(service_pool, amqp_connection, broker_names) as seen:
        await write(service_pool, "a", 0)
        await service_pool.execute("UPDATE outbox SET published_at = now()")
        await write(service_pool, "a", 1)

        # when today's relay runs
        relay = relay_for(service_pool, amqp_connection, broker_names, service_db.schema)
        async with running(relay):
            await eventually(lambda: _true(seen.first_arrivals().get("a") == [1]))
            async with service_pool.acquire() as conn:
                await relay.purge_marked(conn)

            # then only the unmarked event was published, and the outbox ends empty
            await eventually(lambda: _eq(service_pool.fetchval("SELECT count(*) FROM outbox"), 0))
        assert seen.arrivals == [("a", 1)]


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 20])
async def test_cutting_the_broker_connection_loses_nothing_and_keeps_order_per_aggregate(
    service_pool, service_db, servers, broker_names, batch_size
):
    # given a relay and a consumer that reach RabbitMQ through a proxy
    proxy = await TcpProxy("127.0.0.1", 5672).start()
    url = servers.amqp_url.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
    assert url != servers.amqp_url
    connection = await connect(url)
    try:
        async with (
            sink(service_pool, connection, broker_names, batch_size=batch_size) as seen,
            running(relay_for(service_pool, connection, broker_names, service_db.schema)),
        ):
            # when a producer writes events for several aggregates and the link is cut mid-stream
            producer = asyncio.create_task(produce(service_pool, 4, 100, pause=0.03))
            await eventually(lambda: _true(len(seen.arrivals) >= 40))
            await proxy.sever()
            await asyncio.sleep(1.5)  # the outage; the producer keeps writing
            assert not producer.done()
            proxy.restore()
            written = await producer

            # then every event arrives, first arrivals in the order written, each applied once
            await eventually(lambda: _eq(seen.received(), 400), within=40)
        assert seen.first_arrivals() == written
        assert {r["applied"] for r in await seen.effects()} == {1}
    finally:
        await connection.close()
        await proxy.close()


@pytest.mark.slow
async def test_cutting_the_relays_database_connection_recovers(
    service_pool, service_db, amqp_connection, broker_names
):
    # given a relay whose pool reaches PostgreSQL through a proxy
    port = int(service_db.dsn.rsplit(":", 1)[1].split("/")[0])
    proxy = await TcpProxy("127.0.0.1", port).start()
    relay_pool = await create_pool(
        dsn_with(service_db.dsn, port=proxy.port), service_db.schema, max_size=2
    )
    relay = relay_for(relay_pool, amqp_connection, broker_names, service_db.schema)
    try:
        async with sink(service_pool, amqp_connection, broker_names) as seen, running(relay):
            # when events are written while the relay's database link is cut and restored
            producer = asyncio.create_task(produce(service_pool, 3, 50, pause=0.02))
            await eventually(lambda: _true(len(seen.arrivals) >= 20))
            await proxy.sever()
            await eventually(lambda: _true(not relay.is_leader))
            await asyncio.sleep(1.0)  # the outage; the producer keeps writing
            proxy.restore()
            written = await producer

            # then the relay takes the lead again and publishes everything, in order
            await eventually(lambda: _eq(seen.received(), 150), within=40)
            assert relay.is_leader
        assert seen.first_arrivals() == written
        assert {r["applied"] for r in await seen.effects()} == {1}
    finally:
        await relay_pool.close()
        await proxy.close()


@pytest.mark.slow
async def test_two_relays_on_one_schema_one_leads_and_the_other_takes_over(
    service_pool, service_db, amqp_connection, broker_names
):
    # given two relays of the same service
    first = relay_for(service_pool, amqp_connection, broker_names, service_db.schema)
    second = relay_for(service_pool, amqp_connection, broker_names, service_db.schema)
    both_led: list[float] = []

    async def watch() -> None:
        while True:
            if first.is_leader and second.is_leader:
                both_led.append(time.monotonic())
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        async with (
            sink(service_pool, amqp_connection, broker_names) as seen,
            running(first, second) as tasks,
        ):
            await eventually(lambda: _true(first.is_leader or second.is_leader))
            producer = asyncio.create_task(produce(service_pool, 3, 50, pause=0.02))
            await eventually(lambda: _true(len(seen.arrivals) >= 30))

            # when the leader stops mid-stream
            leader, follower = (0, second) if first.is_leader else (1, first)
            tasks[leader].cancel()
            written = await producer

            # then the other one takes over; nothing is lost and order per aggregate holds
            await eventually(lambda: _true(follower.is_leader))
            await eventually(lambda: _eq(seen.received(), 150), within=40)
        assert seen.first_arrivals() == written
        assert {r["applied"] for r in await seen.effects()} == {1}
        assert both_led == []
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _true(value: bool) -> bool:
    return value


async def _eq(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def test_an_event_written_while_the_relay_waits_to_delete_is_published_at_once(
    service_pool, service_db, amqp_connection, broker_names
):
    # given a relay that polls rarely and has just published an event
    relay = relay_for(
        service_pool, amqp_connection, broker_names, service_db.schema, poll_interval=30
    )
    async with sink(service_pool, amqp_connection, broker_names) as seen, running(relay):
        await eventually(lambda: _true(relay.is_leader))
        await write(service_pool, "a", 0)
        await eventually(lambda: _true(seen.first_arrivals().get("a") == [0]))

        # when the next event is written at once, while the delete of the first still waits
        started = time.monotonic()
        await write(service_pool, "a", 1)

        # then its commit's notification wakes the relay: published well before a poll
        await eventually(lambda: _true(seen.first_arrivals().get("a") == [0, 1]))
        assert time.monotonic() - started < 5


async def test_a_writer_that_notifies_after_commit_wakes_the_relay_without_notifying_inside(
    service_pool, service_db
):
    # given a session listening on the relay's channel
    listener = await asyncpg.connect(service_db.dsn)
    heard: list[str] = []
    await listener.add_listener(f"outbox_{service_db.schema}", lambda *a: heard.append(a[2]))

    async def heard_after(write: Callable[[asyncpg.Connection], Awaitable[None]]) -> int:
        heard.clear()
        async with service_pool.acquire() as conn:
            await write(conn)
        await asyncio.sleep(0.3)  # a notification arrives in a few ms
        return len(heard)

    async def event(conn: asyncpg.Connection) -> None:
        await publish_event(
            conn, EVENT, Probe(aggregate="a", n=0), tenant_id="t1", aggregate_id="a"
        )

    async def plain(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await event(conn)

    async def silent_then_notified(conn: asyncpg.Connection) -> None:
        async with transaction_notifying_after_commit(conn):
            await event(conn)

    async def silent_without_events(conn: asyncpg.Connection) -> None:
        with contextlib.suppress(RuntimeError):
            async with transaction_notifying_after_commit(conn):
                await event(conn)
                raise RuntimeError("rolled back: its event was never written")
        async with transaction_notifying_after_commit(conn):
            await conn.execute("SELECT 1")  # a handler that writes no event

    async def silent_only(conn: asyncpg.Connection) -> None:
        await conn.execute(BEGIN_SILENT)
        await event(conn)
        await conn.execute("COMMIT")

    try:
        # then a writer of the outbox wakes the relay from inside its transaction, as before;
        assert await heard_after(plain) == 1
        # one that notifies after its commit wakes it once, from a transaction of its own;
        assert await heard_after(silent_then_notified) == 1
        # one that wrote no event (or only one it rolled back) wakes nobody;
        assert await heard_after(silent_without_events) == 0
        # and the trigger is silent for it (this one commits without notifying): its COMMIT
        # takes no NOTIFY lock, the lock PostgreSQL holds through the commit's WAL flush
        assert await heard_after(silent_only) == 0
    finally:
        await listener.close()
