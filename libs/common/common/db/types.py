"""Types for code that talks to PostgreSQL.

`Conn` is what a use case or repository receives: a plain connection or a pool's proxy of one
(`pool.acquire()` yields the proxy). `Row` is what a pure function may read a row through
without importing asyncpg (a `Record`, a dict, a mapping).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from common.row import Row

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
else:
    Conn = asyncpg.Connection

__all__ = ["Conn", "Row"]
