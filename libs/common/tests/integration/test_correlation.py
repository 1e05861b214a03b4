"""One correlation id follows a request: HTTP header → outbox event → consumer's log lines."""

import asyncio
import json
import logging

import aiohttp
import asyncpg
from aiohttp import web

from common.broker import InboxConsumer, OutboxRelay, QueueSpec, connect, publish_event
from common.db import apply_migrations, create_pool
from common.db.migrations import COMMON_MIGRATIONS
from common.events import DOMAIN_EXCHANGE, Envelope
from common.http.app import create_base_app
from common.http.auth import Authenticator
from common.http.routing import AUTHENTICATOR, Api, Call
from common.logging import configure_logging, current_correlation_id, get_logger
from common.metrics import Metrics
from common.runtime import DB_POOL
from common.testing.apps import running
from common.testing.events import Probe, probe_type

THING_MADE = probe_type("thing.made")


async def test_a_correlation_id_travels_from_request_to_consumer(
    servers, service_db, broker_names, capsys
):
    # given a service whose endpoint publishes an event, and a consumer of that event
    configure_logging("correlation-test")
    pool = await create_pool(service_db.dsn, service_db.schema)
    async with pool.acquire() as conn:
        await apply_migrations(conn, service_db.schema, {"common": COMMON_MIGRATIONS})
    api = Api("probe")

    @api.post("/things", summary="make a thing", roles=None)
    async def make_thing(request: web.Request, call: Call[None]) -> web.Response:
        async with request.app[DB_POOL].acquire() as conn, conn.transaction():
            await publish_event(conn, THING_MADE, Probe(n=1), tenant_id="t", aggregate_id="a")
        return web.json_response({"ok": True})

    async def no_keys(_: str) -> None:
        return None

    app = create_base_app(api, Metrics())
    app[DB_POOL] = pool
    app[AUTHENTICATOR] = Authenticator(no_keys)
    connection = await connect(servers.amqp_url)
    seen: list[tuple[str | None, str]] = []

    async def handle(conn: asyncpg.Connection, envelope: Envelope) -> None:
        seen.append((current_correlation_id(), envelope.correlation_id))
        get_logger("probe").info("thing consumed")

    consumer = InboxConsumer(
        pool=pool,
        connection=connection,
        names=broker_names,
        spec=QueueSpec("probe.things", [(DOMAIN_EXCHANGE, "thing.made")]),
        handlers={"thing.made": handle},
    )
    await consumer.start()
    relay = OutboxRelay(
        pool=pool,
        connection=connection,
        names=broker_names,
        schema=service_db.schema,
        poll_interval=0.1,
    )
    relay_task = asyncio.create_task(relay.run())
    try:
        # when a request carries a correlation id
        async with running(app) as url, aiohttp.ClientSession() as http:
            response = await http.post(f"{url}/things", headers={"X-Correlation-Id": "corr-42"})
            assert response.headers["X-Correlation-Id"] == "corr-42"
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.05)
        # then the event carries it and the consumer runs and logs under it
        assert seen == [("corr-42", "corr-42")]
        lines = [
            json.loads(line)
            for line in capsys.readouterr().out.splitlines()
            if line.startswith("{")
        ]
        consumed = [line for line in lines if line.get("event") == "thing consumed"]
        assert consumed
        assert consumed[0]["correlation_id"] == "corr-42"
    finally:
        relay_task.cancel()
        await consumer.stop()
        await connection.close()
        await pool.close()
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_marketpay", False)]:
            root.removeHandler(handler)
