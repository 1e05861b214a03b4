"""Payouts under test: the real service on real PostgreSQL and RabbitMQ (see harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest_asyncio

from common.db.migrations import COMMON_MIGRATIONS, apply_migrations
from common.db.pool import create_pool
from common.testing.fixtures import ServiceDb
import payouts

MIGRATIONS = Path(payouts.__file__).parent / "migrations"


@pytest_asyncio.fixture
async def ledger_pool(service_db: ServiceDb) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh schema with the payouts migrations, no service running."""
    pool = await create_pool(service_db.dsn, service_db.schema)
    async with pool.acquire() as conn:
        await apply_migrations(
            conn, service_db.schema, {"common": COMMON_MIGRATIONS, "payouts": MIGRATIONS}
        )
    yield pool
    await pool.close()
