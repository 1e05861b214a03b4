import asyncio
import uuid

import asyncpg

from common.broker import InboxConsumer, OutboxRelay, QueueSpec, connect, publish_event
from common.db import apply_migrations, create_pool
from common.db.migrations import COMMON_MIGRATIONS
from common.events import DOMAIN_EXCHANGE, Envelope


async def test_event_flows_from_outbox_to_inbox_handler(servers, service_db, broker_names):
    # given
    pool = await create_pool(service_db.dsn, service_db.schema)
    async with pool.acquire() as conn:
        await apply_migrations(conn, service_db.schema, {"common": COMMON_MIGRATIONS})
        await conn.execute("CREATE TABLE seen (id uuid primary key, type text)")
    connection = await connect(servers.amqp_url)
    seen: list[Envelope] = []

    async def handle(conn: asyncpg.Connection, envelope: Envelope) -> None:
        await conn.execute("INSERT INTO seen VALUES ($1, $2)", envelope.id, envelope.type)
        seen.append(envelope)

    consumer = InboxConsumer(
        pool=pool,
        connection=connection,
        names=broker_names,
        spec=QueueSpec("smoke", [(DOMAIN_EXCHANGE, "smoke.happened")]),
        handlers={"smoke.happened": handle},
    )
    await consumer.start()
    relay = OutboxRelay(
        pool=pool,
        connection=connection,
        names=broker_names,
        schema=service_db.schema,
        poll_interval=0.2,
    )
    task = asyncio.create_task(relay.run())
    # when
    async with pool.acquire() as conn, conn.transaction():
        await publish_event(
            conn, "smoke.happened", {"n": 1}, tenant_id="t1", aggregate_id=str(uuid.uuid4())
        )
    # then
    for _ in range(50):
        if seen:
            break
        await asyncio.sleep(0.1)
    assert [e.data for e in seen] == [{"n": 1}]
    task.cancel()
    await consumer.stop()
    await connection.close()
    await pool.close()
