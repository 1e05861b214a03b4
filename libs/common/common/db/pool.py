from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from common.db.types import Conn

# What a lost or unreachable database raises: the operation did not happen, retry it later.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)


def connection_lost(exc: BaseException, conn: Conn | None = None) -> bool:
    """Whether `exc` means the database connection was lost, not that the work was wrong:
    a connection error anywhere in its chain, or a connection that is now closed. (asyncpg
    reports a loss inside a transaction as an `InterfaceError` from the transaction's exit,
    with the real cause in its context; the pool may even have detached the connection.)"""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, CONNECTION_ERRORS):
            return True
        seen = seen.__cause__ or seen.__context__
    if conn is None:
        return False
    try:
        return bool(conn.is_closed())
    except asyncpg.exceptions.InterfaceError:
        return True


async def _init_connection(conn: Conn) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
    )
    await conn.set_type_codec(
        "json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
    )


async def _no_session_reset(conn: Conn) -> None:
    """The pool's reset on release: nothing beyond asyncpg's own cleanup (which still rolls
    back a transaction left open and forgets listeners on the client side).

    asyncpg's default reset (advisory unlock all, CLOSE ALL, UNLISTEN *, RESET ALL) is a round
    trip and ~150 µs of CPU on every release, several times per request. Nothing in Marketpay
    changes session state on a pooled connection except the outbox relay (LISTEN and a session
    advisory lock), the capture executor (LISTEN) and the migration runner, and they reset
    their connection themselves (`reset_session`) before giving it back."""


async def reset_session(conn: Conn, timeout_s: float = 2.0) -> None:
    """For code that LISTENs or takes session advisory locks on a pooled connection: undo it
    before the connection goes back (the pool does not). Bounded, so a stuck connection cannot
    hold up a shutdown; a connection that cannot be reset is terminated (its locks and
    LISTENs go with its session)."""
    try:
        await conn.reset(timeout=timeout_s)
    except Exception:
        with contextlib.suppress(Exception):
            conn.terminate()


async def create_pool(
    dsn: str, schema: str, *, min_size: int = 1, max_size: int = 10, **kwargs: Any
) -> asyncpg.Pool:
    """A pool whose connections see only `schema` (search_path) and decode JSON."""
    kwargs.setdefault("reset", _no_session_reset)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        server_settings={"search_path": schema, "application_name": f"marketpay-{schema}"},
        **kwargs,
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def snapshot(pool: asyncpg.Pool) -> AsyncIterator[Conn]:
    """A read-only connection whose statements all see one snapshot: a view built from several
    queries (a payment and its timeline) never mixes states from before and after a commit."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        yield conn


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise ValueError(f"unsafe identifier: {name!r}")
    return f'"{name}"'


async def provision_service(admin: Conn, *, schema: str, role: str, password: str | None) -> None:
    """Create a service's role and schema; the role can use its schema and nothing else.

    Run with an administrator's connection by `make up`, deployment jobs and test fixtures.
    Safe to run again.
    """
    exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    if not exists:
        await admin.execute(f"CREATE ROLE {_ident(role)} LOGIN")
    if password is not None:
        await admin.execute(f"ALTER ROLE {_ident(role)} PASSWORD {_literal(password)}")
    await admin.execute(
        f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)} AUTHORIZATION {_ident(role)}"
    )
    await admin.execute(f"ALTER ROLE {_ident(role)} SET search_path = {_ident(schema)}")
    database = await admin.fetchval("SELECT current_database()")
    await admin.execute(f"GRANT CONNECT ON DATABASE {_ident(database)} TO {_ident(role)}")
    await admin.execute(f"REVOKE ALL ON SCHEMA public FROM {_ident(role)}")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
