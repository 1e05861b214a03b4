"""Payouts under test: the real app on real PostgreSQL and RabbitMQ, fed on the bus exactly as
in production. The tests play the tenants service, capture, checkout and the OMS by
publishing their catalogue events (`payouts.testing` builds them)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pytest_asyncio
from aiohttp import web

import payouts
from common.broker import Names
from common.db.migrations import COMMON_MIGRATIONS, apply_migrations
from common.db.pool import create_pool
from common.events import (
    DOMAIN_EXCHANGE,
    OMS_EXCHANGE,
)
from common.runtime import DB_POOL
from common.testing.clock import MovableClock
from common.testing.fixtures import ServiceDb, service_settings_values
from common.testing.outbox import record_outbox
from payouts.app import create_app
from payouts.settings import Settings
from payouts.testing import PayoutsHarness
from psp_sandbox.testing import Sandbox, running_sandbox

MIGRATIONS = payouts.__path__[0] + "/migrations"


@pytest_asyncio.fixture
async def ledger_pool(service_db: ServiceDb) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh schema with the payouts migrations, no service running."""
    from pathlib import Path

    pool = await create_pool(service_db.dsn, service_db.schema)
    async with pool.acquire() as conn:
        await apply_migrations(
            conn, service_db.schema, {"common": COMMON_MIGRATIONS, "payouts": Path(MIGRATIONS)}
        )
    yield pool
    await pool.close()


PROVIDER_KEY = "test-payout-provider-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def payouts_settings(
    servers: Any, db: Any, names: Names, sandbox_url: str, port: int, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "http_port": port,
        "provider_base_url": f"{sandbox_url}/payout",
        "provider_api_key": PROVIDER_KEY,
        "provider_timeout_s": 1.0,
        "provider_callback_url": f"http://127.0.0.1:{port}/v1/provider/payouts/callback",
        "pending_poll_s": 0.5,
        "unknown_poll_delays_s": (0.3, 0.6, 1.0),
        "claim_lease_s": 3.0,
        "executor_poll_interval_s": 0.1,
        "scheduler_poll_interval_s": 3600,
    }
    return Settings(**service_settings_values(servers, db, names, **{**values, **overrides}))


@contextlib.asynccontextmanager
async def serving(app: web.Application, port: int) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    async with app[DB_POOL].acquire() as conn:
        await record_outbox(conn)  # the relay deletes what it published: keep a copy
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with running_sandbox(
        company_api_key="test-company-key", payout_api_key=PROVIDER_KEY
    ) as found:
        yield found


@pytest_asyncio.fixture
async def harness(
    request: Any, servers: Any, service_db: ServiceDb, broker_names: Names, sandbox: Sandbox
) -> AsyncIterator[PayoutsHarness]:
    """One payouts replica; parametrize indirectly with Settings overrides."""
    overrides = dict(getattr(request, "param", {}))
    workers = overrides.pop("workers", True)
    clock = MovableClock()
    async with contextlib.AsyncExitStack() as stack:
        port = free_port()
        settings = payouts_settings(
            servers, service_db, broker_names, sandbox.url, port, **overrides
        )
        app = create_app(settings, clock=clock, workers=workers)
        url = await stack.enter_async_context(serving(app, port))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        connection = await aio_pika.connect(servers.amqp_url)
        stack.push_async_callback(connection.close)
        channel = await connection.channel(publisher_confirms=True)

        async def replica(**more: Any) -> web.Application:
            """Another replica on the same schema and queues."""
            other_port = free_port()
            other = create_app(
                payouts_settings(
                    servers,
                    service_db,
                    broker_names,
                    sandbox.url,
                    other_port,
                    **{**overrides, **more},
                ),
                clock=clock,
            )
            await stack.enter_async_context(serving(other, other_port))
            started: web.Application = other
            return started

        yield PayoutsHarness(
            http=http,
            url=url,
            app=app,
            exchange=await channel.get_exchange(broker_names.exchange(DOMAIN_EXCHANGE)),
            oms_exchange=await channel.get_exchange(broker_names.exchange(OMS_EXCHANGE)),
            amqp_url=servers.amqp_url,
            names=broker_names,
            sandbox=sandbox,
            clock=clock,
            start_replica=replica,
            settings=settings,
        )
