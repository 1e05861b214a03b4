"""List endpoints: a declarative filter spec and cursor pagination over `(created_at, id)`,
newest first (DESIGN §4).

A list is declared once as a `ListSpec` (its table and its `Filter`s); the same declaration
parses the query string (422 `parameter_invalid` with the param for a bad value), documents
the parameters in `/openapi.json` (enums, formats, lengths) and builds the SQL, so no SQL is
written in an `api.py`. Cursors are opaque (base64 of the row's sort key) and stable under
inserts: a page after a cursor is defined by the key, not by an offset.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel

from common.db.types import Conn
from common.http.errors import Unprocessable
from common.http.query import datetime_param
from common.row import Row

DEFAULT_LIMIT = 25
MAX_LIMIT = 100


class PageInfo(BaseModel):
    has_previous: bool
    has_next: bool
    start_cursor: str | None
    end_cursor: str | None


PAGE_PARAMS = (
    ("limit", "integer", "page size, 1 to 100 (default 25)"),
    ("after_cursor", "string", "end_cursor of the previous page"),
    ("before_cursor", "string", "start_cursor of the next page"),
)
"""The query parameters of every list: (name, type, description)."""


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
    if len(raw.lstrip("+-")) > 9:  # far outside 1..100 either way: clamped by the caller
        return -1 if raw.startswith("-") else MAX_LIMIT
    return int(raw)


_INTEGER = re.compile(r"[+-]?[0-9]+")


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


FilterKind = Literal["text", "choice", "datetime", "boolean"]


@dataclass(frozen=True)
class Filter:
    """One query parameter of a list. `condition` is SQL with `{}` where the value binds
    (code, never input): `"status = {}"`, `"created_at >= {}"`. A `text` value is 1 to
    `max_length` characters; a `choice` one of `choices`; a `datetime` an ISO 8601 date or
    date-time (UTC without an offset); a `boolean` `true` or `false`."""

    param: str
    condition: str | None  # None: not a condition; the caller reads it (`ListSpec.value`)
    description: str
    kind: FilterKind = "text"
    choices: tuple[str, ...] = ()
    max_length: int = 255

    def parse(self, raw: str) -> Any:
        if self.kind == "choice":
            if raw not in self.choices:
                raise self._invalid(f"one of {', '.join(self.choices)}")
            return raw
        if self.kind == "boolean":
            if raw not in ("true", "false"):
                raise self._invalid("true or false")
            return raw == "true"
        if self.kind == "datetime":
            if not raw:
                raise self._invalid("an ISO 8601 date or date-time")
            return datetime_param({self.param: raw}, self.param)
        if not 1 <= len(raw) <= self.max_length:
            raise self._invalid(f"1 to {self.max_length} characters")
        return raw

    def _invalid(self, expected: str) -> Unprocessable:
        return Unprocessable(
            f"{self.param}: {expected}", code="parameter_invalid", param=self.param
        )

    def schema(self) -> dict[str, Any]:
        """The parameter's JSON schema, saying exactly what `parse` accepts."""
        if self.kind == "choice":
            return {"type": "string", "enum": list(self.choices)}
        if self.kind == "boolean":
            return {"type": "string", "enum": ["true", "false"]}
        if self.kind == "datetime":
            return {"type": "string", "format": "date-time"}
        return {"type": "string", "minLength": 1, "maxLength": self.max_length}


@dataclass(frozen=True)
class ListSpec:
    """A list endpoint's source (`table`: a table name or a parenthesised subquery with an
    alias, code only) and filters. The table needs `created_at` and `id` columns."""

    table: str
    filters: tuple[Filter, ...] = ()
    columns: str = "*"

    def value(self, query: Mapping[str, str], param: str, default: Any = None) -> Any:
        """A filter's parsed value (`default` when absent)."""
        (spec,) = [f for f in self.filters if f.param == param]
        return spec.parse(query[param]) if param in query else default

    def conditions(
        self, query: Mapping[str, str], scope: Sequence[tuple[str, Any]] = ()
    ) -> tuple[list[str], list[Any]]:
        """`WHERE` conditions and their arguments: the scope first (`("tenant_id = {}",
        tenant)`: what the caller may see), then every filter present in `query`."""
        where: list[str] = []
        args: list[Any] = []
        present = [
            (f.condition, f.parse(query[f.param]))
            for f in self.filters
            if f.param in query and f.condition is not None
        ]
        for condition, value in (*scope, *present):
            args.append(value)
            where.append(condition.format(f"${len(args)}"))
        return where, args


async def fetch_list(
    conn: Conn,
    spec: ListSpec,
    query: Mapping[str, str],
    *,
    scope: Sequence[tuple[str, Any]],
    table: str | None = None,
    columns: str | None = None,
) -> tuple[list[asyncpg.Record], PageInfo]:
    """One page of `spec`'s rows within `scope` matching the query's filters. `table` and
    `columns` override the spec's (a list that reads one of two tables)."""
    where, args = spec.conditions(query, scope)
    return await fetch_page(
        conn,
        table=table or spec.table,
        where=where,
        args=args,
        request=PageRequest.from_query(query),
        columns=columns or spec.columns,
    )
