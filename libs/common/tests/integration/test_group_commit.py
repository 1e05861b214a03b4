"""Group commit against the real server: concurrent requests share transactions, each answer
comes after its commit, a bad request fails alone, a lost database fails every waiting request
with nothing half-stored; and `enqueue_many` writes events in order in the caller's transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest

from common.broker import enqueue_many
from common.db import create_pool
from common.db.group_commit import GroupCommit, StorageUnavailableError
from common.events import make_envelope
from common.testing.events import Probe, probe_type
from common.testing.fixtures import dsn_with
from common.testing.tcpproxy import TcpProxy


async def _store(conn: asyncpg.Connection, items: Sequence[str]) -> list[bool]:
    """Store each name once; True for the item that stored it (its position says which)."""
    rows = await conn.fetch(
        "INSERT INTO things (name, position) SELECT * FROM unnest($1::text[], $2::int[])"
        " ON CONFLICT (name) DO NOTHING RETURNING position",
        list(items),
        list(range(len(items))),
    )
    fresh = {r["position"] for r in rows}
    if any(name.startswith("boom") for name in items):
        raise ValueError("this request cannot be stored")
    return [i in fresh for i in range(len(items))]


@pytest.fixture
async def things(service_pool):
    await service_pool.execute("CREATE TABLE things (name text PRIMARY KEY, position int)")
    return service_pool


async def names(pool: asyncpg.Pool) -> set[str]:
    return {r["name"] for r in await pool.fetch("SELECT name FROM things")}


async def test_concurrent_requests_share_commits_and_get_their_own_results(things):
    # given
    batches: list[tuple[int, int]] = []
    group = GroupCommit(things, _store, on_batch=lambda r, i: batches.append((r, i)))
    await group.start()
    try:
        # when 50 requests of 2 items come at once, one of them repeating another's item
        requests = [[f"a{i}", f"b{i}"] for i in range(50)]
        requests.append(["a0", "new"])
        results = await asyncio.gather(*(group.submit(r) for r in requests))
    finally:
        await group.stop()
    # then every request has its own answer, duplicates found, and commits were shared
    assert results[:50] == [[True, True]] * 50
    assert results[50] == [False, True]
    assert len(await names(things)) == 101
    assert sum(items for _, items in batches) == 102
    assert len(batches) < len(requests)


async def test_a_request_that_cannot_be_stored_fails_alone(things):
    # given
    group = GroupCommit(things, _store)
    await group.start()
    try:
        # when a bad request is coalesced with good ones
        outcomes = await asyncio.gather(
            *(group.submit([f"ok{i}"]) for i in range(5)),
            group.submit(["boom"]),
            *(group.submit([f"ok{i}"]) for i in range(5, 10)),
            return_exceptions=True,
        )
    finally:
        await group.stop()
    # then it alone fails, and nothing of it is stored
    assert [o for o in outcomes if isinstance(o, Exception)] == [outcomes[5]]
    assert isinstance(outcomes[5], ValueError)
    assert await names(things) == {f"ok{i}" for i in range(10)}


async def test_a_lost_database_fails_waiting_requests_with_nothing_stored(
    things, service_db, servers
):
    # given a group committing through a proxy, and a lock that holds its transaction open
    proxy = await TcpProxy("127.0.0.1", 5432).start()
    pool = await create_pool(
        dsn_with(service_db.dsn, host="127.0.0.1", port=proxy.port), service_db.schema
    )
    group = GroupCommit(pool, _store, acquire_timeout_s=1.0)
    await group.start()
    blocker = await things.acquire()
    try:
        await blocker.execute("BEGIN; LOCK TABLE things IN EXCLUSIVE MODE")
        waiting = [asyncio.create_task(group.submit([f"x{i}", f"y{i}"])) for i in range(3)]
        await asyncio.sleep(0.3)
        # when the database connection dies while the transaction is open
        await proxy.sever()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        await blocker.execute("ROLLBACK")
        # then every request fails as unavailable, and none of it was stored
        assert all(isinstance(o, StorageUnavailableError) for o in outcomes), outcomes
        assert await names(things) == set()
        # and once the database is back, the retry is stored
        proxy.restore()
        assert await group.submit(["x0", "y0"]) == [True, True]
        assert await names(things) == {"x0", "y0"}
    finally:
        await things.release(blocker)
        await group.stop()
        pool.terminate()
        await proxy.close()


async def test_enqueue_many_writes_every_event_in_order_in_the_transaction(service_pool):
    # given
    envelopes = [
        make_envelope(probe_type("probe.happened"), Probe(n=n), tenant_id="t1", correlation_id="c")
        for n in range(5)
    ]
    # when one transaction enqueues them and another rolls back
    async with service_pool.acquire() as conn, conn.transaction():
        await enqueue_many(conn, [(e, "agg") for e in envelopes])

    async def enqueue_then_fail() -> None:
        async with service_pool.acquire() as conn, conn.transaction():
            lost = make_envelope(probe_type("x.y"), Probe(), tenant_id=None, correlation_id="c")
            await enqueue_many(conn, [(lost, None)])
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await enqueue_then_fail()
    # then
    rows = await service_pool.fetch(
        "SELECT id, routing_key, aggregate_id, envelope FROM outbox ORDER BY seq"
    )
    assert [r["id"] for r in rows] == [e.id for e in envelopes]
    assert {r["routing_key"] for r in rows} == {"probe.happened"}
    assert [r["envelope"]["data"]["n"] for r in rows] == list(range(5))
    assert rows[0]["envelope"] == envelopes[0].model_dump(mode="json")
