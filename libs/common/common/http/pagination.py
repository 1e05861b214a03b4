"""Cursor pagination over `(created_at, id)`, newest first (DESIGN §4).

Cursors are opaque (base64 of the row's sort key) and stable under inserts: a page after a
cursor is defined by the key, not by an offset.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from common.db.types import Conn
from common.http.errors import Unprocessable
from common.row import Row

DEFAULT_LIMIT = 25
MAX_LIMIT = 100


class PageInfo(BaseModel):
    has_previous: bool
    has_next: bool
    start_cursor: str | None
    end_cursor: str | None


@dataclass(frozen=True)
class Cursor:
    """The sort key of one row. `id` keeps its JSON type: text and uuid ids travel as strings,
    integer ids as integers, so the key binds to the id column's type again."""

    created_at: datetime
    id: str | int

    @classmethod
    def of(cls, row: Row) -> Cursor:
        id_ = row["id"]
        return cls(row["created_at"], id_ if isinstance(id_, int) else str(id_))

    def encode(self) -> str:
        raw = json.dumps([self.created_at.isoformat(), self.id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, param: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            created_at, id_ = json.loads(raw)
            if not isinstance(id_, str | int) or isinstance(id_, bool):
                raise TypeError(id_)
            return cls(datetime.fromisoformat(created_at), id_)
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise _invalid_cursor(param) from None


def limit_param(query: Mapping[str, str]) -> int:
    """`limit` as given (an integer, clamped to 1..100 by the caller), `DEFAULT_LIMIT` when
    absent; anything else (`abc`, `2.5`, `null`, empty) is a 422 rather than silently the
    default, so a client's bug shows."""
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not _INTEGER.fullmatch(raw):
        raise Unprocessable(
            "limit: an integer from 1 to 100", code="parameter_invalid", param="limit"
        )
    return int(raw)


_INTEGER = re.compile(r"[+-]?[0-9]{1,9}")


def _invalid_cursor(param: str) -> Unprocessable:
    return Unprocessable("not a cursor of this list", code="cursor_invalid", param=param)


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    after: Cursor | None = None
    before: Cursor | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> PageRequest:
        limit = min(max(limit_param(query), 1), MAX_LIMIT)
        after = query.get("after_cursor")
        before = query.get("before_cursor")
        if after and before:
            raise Unprocessable(
                "use after_cursor or before_cursor, not both",
                code="parameter_invalid",
                param="before_cursor",
            )
        return cls(
            limit=limit,
            after=Cursor.decode(after, "after_cursor") if after else None,
            before=Cursor.decode(before, "before_cursor") if before else None,
        )


async def fetch_page(
    conn: Conn,
    *,
    table: str,
    where: Sequence[str],
    args: Sequence[Any],
    request: PageRequest,
    columns: str = "*",
) -> tuple[list[asyncpg.Record], PageInfo]:
    """Rows of `table` matching `where` (SQL with $n placeholders over `args`), one page.

    `table` and `where` are code, never user input; values always travel in `args`. The
    table needs `created_at` and `id` columns; `(created_at, id)` orders the rows totally, so
    rows sharing a `created_at` are neither skipped nor repeated across pages.
    """
    base = " AND ".join(f"({condition})" for condition in where) or "true"
    base_args = list(args)
    cursor = request.before or request.after
    param = "before_cursor" if request.before is not None else "after_cursor"
    n = len(base_args)
    key = f"(created_at, id) {{op}} (${n + 1}, ${n + 2})"

    async def exists(op: str, at: Cursor) -> bool:
        sql = f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {base} AND {key.format(op=op)})"
        return bool(await conn.fetchval(sql, *base_args, at.created_at, at.id))

    backwards = request.before is not None
    order = "ASC" if backwards else "DESC"
    if cursor is None:
        sql = f"SELECT {columns} FROM {table} WHERE {base}"
        query_args: list[Any] = base_args
    else:
        op = ">" if backwards else "<"
        sql = f"SELECT {columns} FROM {table} WHERE {base} AND {key.format(op=op)}"
        query_args = [*base_args, cursor.created_at, cursor.id]
    sql += f" ORDER BY created_at {order}, id {order} LIMIT {int(request.limit) + 1}"
    try:
        rows = list(await conn.fetch(sql, *query_args))
    except asyncpg.DataError:
        if cursor is None:
            raise
        # a well-formed cursor whose key does not fit this table's columns (another list's)
        raise _invalid_cursor(param) from None
    more = len(rows) > request.limit
    rows = rows[: request.limit]
    if backwards:
        rows.reverse()
    if not rows:
        # past either end: say what lies on the cursor's other side, so a client can turn back
        return rows, PageInfo(
            has_previous=cursor is not None and not backwards and await exists(">=", cursor),
            has_next=cursor is not None and backwards and await exists("<=", cursor),
            start_cursor=None,
            end_cursor=None,
        )
    first = Cursor.of(rows[0])
    last = Cursor.of(rows[-1])
    if backwards:
        has_previous, has_next = more, await exists("<", last)
    else:
        has_next = more
        has_previous = await exists(">", first) if cursor is not None else False
    return rows, PageInfo(
        has_previous=has_previous,
        has_next=has_next,
        start_cursor=first.encode(),
        end_cursor=last.encode(),
    )
