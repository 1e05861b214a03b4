"""Payouts under test: the real app on real PostgreSQL and RabbitMQ, fed on the bus exactly as
in production. The tests play the tenants service, capture, checkout and the OMS by
publishing their catalogue events (`payouts.testing` builds them)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pytest_asyncio

import payouts
from common.broker import Names
from common.db.migrations import COMMON_MIGRATIONS, apply_migrations
from common.db.pool import create_pool
from common.events import (
    DOMAIN_EXCHANGE,
    OMS_EXCHANGE,
)
from common.testing.apps import running
from common.testing.fixtures import ServiceDb
from payouts.app import create_app
from payouts.settings import Settings
from payouts.testing import PayoutsHarness

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


def payouts_settings(servers: Any, db: Any, names: Names, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "profile": "test",
        "database_url": db.dsn,
        "db_schema": db.schema,
        "amqp_url": servers.amqp_url,
        "broker_namespace": names.namespace,
        "broker_queue_expires_ms": names.queue_expires_ms,
        "outbox_poll_interval_s": 0.1,
        "retry_delays_ms": (200, 500),
    }
    return Settings(**{**values, **overrides})


@pytest_asyncio.fixture
async def harness(servers, service_db, broker_names) -> AsyncIterator[PayoutsHarness]:
    async with contextlib.AsyncExitStack() as stack:
        app = create_app(payouts_settings(servers, service_db, broker_names))
        url = await stack.enter_async_context(running(app))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        connection = await aio_pika.connect(servers.amqp_url)
        stack.push_async_callback(connection.close)
        channel = await connection.channel(publisher_confirms=True)
        yield PayoutsHarness(
            http=http,
            url=url,
            app=app,
            exchange=await channel.get_exchange(broker_names.exchange(DOMAIN_EXCHANGE)),
            oms_exchange=await channel.get_exchange(broker_names.exchange(OMS_EXCHANGE)),
            amqp_url=servers.amqp_url,
            names=broker_names,
        )
