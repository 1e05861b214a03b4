"""pytest fixtures every service's tests reuse (enable with
`pytest_plugins = ["common.testing.fixtures"]` in a conftest).

- `servers`: the PostgreSQL and RabbitMQ of this run (see `servers.py`);
- `test_database`: a database of its own for this run, dropped at the end;
- `service_db`: a fresh schema with its own role in that database, per call;
- `broker_names`: fresh RabbitMQ names per test; queues expire once unused;
- `service_pool`: a pool on `service_db` with the common migrations (outbox, inbox) applied;
- `amqp_connection`: a robust connection to this run's RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
import pytest
import pytest_asyncio
import structlog
from aio_pika.abc import AbstractRobustConnection
from yarl import URL

from common.broker.topology import (
    RETRY_TIER_PREFIX,
    Names,
    all_exchange_names,
    connect,
    declared_test_queues,
)
from common.db.migrations import COMMON_MIGRATIONS, apply_migrations
from common.db.pool import create_pool, provision_service
from common.testing.servers import Servers, test_servers


def pytest_configure(config: pytest.Config) -> None:
    """Tests log through structlog's default console renderer, with plain tracebacks. Its
    default renders them with rich, ~0.4 s of CPU each; a test that cuts a service off its
    database gets one per retry of each of its loops, rendered in the event loop that also
    runs the services and the PSP sandbox under test, and starves them for seconds."""
    processors = structlog.get_config()["processors"]
    renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    structlog.configure(processors=[*processors[:-1], renderer])


RUN_ID = secrets.token_hex(4)
TEST_QUEUE_EXPIRES_MS = 5 * 60 * 1000  # a safety net; fixtures delete their queues


def dsn_with(
    dsn: str,
    *,
    user: str | None = None,
    password: str | None = None,
    database: str | None = None,
    host: str | None = None,
    port: int | None = None,
) -> str:
    url = URL(dsn)
    if user is not None:
        url = url.with_user(user).with_password(password)
    if database is not None:
        url = url.with_path("/" + database)
    if host is not None:
        url = url.with_host(host)
    if port is not None:
        url = url.with_port(port)
    return str(url)


@dataclass(frozen=True)
class ServiceDb:
    schema: str
    role: str
    dsn: str


def service_settings_values(
    servers: Servers, db: ServiceDb, names: Names, **more: Any
) -> dict[str, Any]:
    """What every service's settings in a test start from: the test profile, the service's
    schema on this run's database, this test's broker names and a quick outbox relay; `more`
    adds the service's own values or overrides these."""
    return {
        "profile": "test",
        "database_url": db.dsn,
        "db_schema": db.schema,
        "amqp_url": servers.amqp_url,
        "broker_namespace": names.namespace,
        "broker_queue_expires_ms": names.queue_expires_ms,
        "outbox_poll_interval_s": 0.1,
        **more,
    }


@dataclass
class TestDatabase:
    name: str
    admin_dsn: str
    roles: list[str] = field(default_factory=list)

    async def new_service_db(self, label: str) -> ServiceDb:
        """A schema and role of its own, as `make up` provisions one per service."""
        suffix = secrets.token_hex(3)
        schema = f"{label}_{suffix}"
        role = f"mp_{RUN_ID}_{label}_{suffix}"
        password = secrets.token_urlsafe(12)
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await provision_service(conn, schema=schema, role=role, password=password)
        finally:
            await conn.close()
        self.roles.append(role)
        return ServiceDb(
            schema=schema, role=role, dsn=dsn_with(self.admin_dsn, user=role, password=password)
        )


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    with test_servers() as found:
        yield found


@pytest_asyncio.fixture(scope="session")
async def test_database(servers: Servers) -> AsyncIterator[TestDatabase]:
    name = f"marketpay_test_{RUN_ID}"
    admin = await asyncpg.connect(servers.pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    database = TestDatabase(name=name, admin_dsn=dsn_with(servers.pg_admin_dsn, database=name))
    yield database
    admin = await asyncpg.connect(servers.pg_admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in database.roles:
            with contextlib.suppress(asyncpg.PostgresError):
                await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await admin.close()


@pytest_asyncio.fixture
async def service_db(test_database: TestDatabase) -> ServiceDb:
    return await test_database.new_service_db("svc")


@pytest_asyncio.fixture
async def broker_names(servers: Servers) -> AsyncIterator[Names]:
    names = Names(f"t{RUN_ID}.{secrets.token_hex(3)}.", TEST_QUEUE_EXPIRES_MS)
    yield names
    await delete_namespace(servers.amqp_url, names)


async def delete_namespace(amqp_url: str, names: Names) -> None:
    """Delete what tests declared under `names`: a broker holds only so many quorum queues
    (each keeps files open), so they must not wait for their expiry."""
    queues = declared_test_queues(names.namespace)
    tier_prefix = names.exchange(RETRY_TIER_PREFIX)
    exchanges = [*all_exchange_names(names), *(q for q in queues if q.startswith(tier_prefix))]
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel()
            for queue in queues:
                async with asyncio.timeout(10):
                    await channel.queue_delete(queue)
            for exchange in exchanges:
                async with asyncio.timeout(10):
                    await channel.exchange_delete(exchange)


@pytest_asyncio.fixture
async def service_pool(service_db: ServiceDb) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(service_db.dsn, service_db.schema)
    async with pool.acquire() as conn:
        await apply_migrations(conn, service_db.schema, {"common": COMMON_MIGRATIONS})
    yield pool
    try:
        async with asyncio.timeout(5):
            await pool.close()
    except TimeoutError:  # a connection still held by a task the test left behind
        pool.terminate()


@pytest_asyncio.fixture
async def amqp_connection(servers: Servers) -> AsyncIterator[AbstractRobustConnection]:
    connection = await connect(servers.amqp_url)
    yield connection
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await connection.close()
