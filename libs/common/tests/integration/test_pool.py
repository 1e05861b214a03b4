"""Pooled connections come back clean without asyncpg's reset round trip on every release:
one given back inside a transaction is rolled back, and the outbox relay (the one user of
LISTEN and session advisory locks) leaves neither behind."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from common.broker import OutboxRelay
from common.db import create_pool


@pytest.fixture
async def one_connection(service_db):
    pool = await create_pool(service_db.dsn, service_db.schema, min_size=1, max_size=1)
    yield pool
    await pool.close()


async def test_a_connection_given_back_inside_a_transaction_is_rolled_back(one_connection):
    # given a connection released with its transaction still open
    async with one_connection.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.execute("CREATE TABLE left_open (a int)")
    # when the next caller gets it
    async with one_connection.acquire() as conn:
        # then it is clean, and the open transaction's work is gone
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT to_regclass('left_open')") is None


async def test_a_relay_that_stops_leaves_no_lock_and_no_listen_on_its_connection(
    one_connection, service_pool, amqp_connection, broker_names, service_db
):
    # given a relay leading on the pool's only connection
    relay = OutboxRelay(
        pool=one_connection,
        connection=amqp_connection,
        names=broker_names,
        schema=service_db.schema,
        poll_interval=0.05,
    )
    task = asyncio.create_task(relay.run())
    for _ in range(100):
        if relay.is_leader:
            break
        await asyncio.sleep(0.02)
    assert relay.is_leader
    # when it stops
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # then the connection it gives back holds no advisory lock and listens to nothing
    async with one_connection.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND pid = pg_backend_pid()"
            )
            == 0
        )
        assert await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
