"""Cursor pagination over `(created_at, id)`, newest first (DESIGN §4).

Cursors are opaque (base64 of the row's sort key) and stable under inserts: a page after a
cursor is defined by the key, not by an offset.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from common.http.errors import Unprocessable

DEFAULT_LIMIT = 25
MAX_LIMIT = 100


class PageInfo(BaseModel):
    has_previous: bool
    has_next: bool
    start_cursor: str | None
    end_cursor: str | None


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    id: str

    def encode(self) -> str:
        raw = json.dumps([self.created_at.isoformat(), self.id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, param: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            created_at, id_ = json.loads(raw)
            return cls(datetime.fromisoformat(created_at), str(id_))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise Unprocessable(
                "not a cursor of this list", code="cursor_invalid", param=param
            ) from None


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    after: Cursor | None = None
    before: Cursor | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> PageRequest:
        try:
            limit = int(query.get("limit", DEFAULT_LIMIT))
        except ValueError:
            limit = DEFAULT_LIMIT  # as the PSP API does: an invalid limit means the default
        limit = min(max(limit, 1), MAX_LIMIT)
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
    conn: asyncpg.Connection,
    *,
    table: str,
    where: Sequence[str],
    args: Sequence[Any],
    request: PageRequest,
    columns: str = "*",
) -> tuple[list[asyncpg.Record], PageInfo]:
    """Rows of `table` matching `where` (SQL with $n placeholders over `args`), one page.

    `table` and `where` are code, never user input; values always travel in `args`.
    """
    args = list(args)
    conditions = list(where) or ["true"]

    def key_condition(op: str, cursor: Cursor) -> str:
        args.extend([cursor.created_at, cursor.id])
        return f"(created_at, id) {op} (${len(args) - 1}, ${len(args)})"

    backwards = request.before is not None
    if request.after is not None:
        conditions.append(key_condition("<", request.after))
    if request.before is not None:
        conditions.append(key_condition(">", request.before))
    order = "ASC" if backwards else "DESC"
    sql = (
        f"SELECT {columns} FROM {table} WHERE {' AND '.join(conditions)}"
        f" ORDER BY created_at {order}, id {order} LIMIT {request.limit + 1}"
    )
    rows = list(await conn.fetch(sql, *args))
    more = len(rows) > request.limit
    rows = rows[: request.limit]
    if backwards:
        rows.reverse()
    if not rows:
        return rows, PageInfo(
            has_previous=False, has_next=False, start_cursor=None, end_cursor=None
        )
    first = Cursor(rows[0]["created_at"], rows[0]["id"])
    last = Cursor(rows[-1]["created_at"], rows[-1]["id"])
    base = list(where) or ["true"]
    base_args = args[: len(args) - (2 if (request.after or request.before) else 0)]

    async def exists(op: str, cursor: Cursor) -> bool:
        n = len(base_args)
        sql = (
            f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {' AND '.join(base)}"
            f" AND (created_at, id) {op} (${n + 1}, ${n + 2}))"
        )
        return bool(await conn.fetchval(sql, *base_args, cursor.created_at, cursor.id))

    if backwards:
        has_previous, has_next = more, await exists("<", last)
    else:
        has_next = more
        has_previous = await exists(">", first) if request.after is not None else False
    return rows, PageInfo(
        has_previous=has_previous,
        has_next=has_next,
        start_cursor=first.encode(),
        end_cursor=last.encode(),
    )
