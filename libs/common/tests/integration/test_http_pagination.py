"""Cursor pagination (DESIGN §4) over a real table, through HTTP: limit, after_cursor,
before_cursor, page_info, and stability under inserts."""

import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web

from common.db import create_pool
from common.http.app import create_base_app
from common.http.auth import Authenticator, Principal, hash_key
from common.http.envelope import page
from common.http.pagination import Cursor, PageRequest, fetch_page
from common.http.routing import AUTHENTICATOR, OPERATOR, Api, Call
from common.metrics import Metrics
from common.testing.apps import running

KEY_A = "test_tenant-a"
KEY_B = "test_tenant-b"
PRINCIPALS = {
    hash_key(KEY_A): Principal(role="operator", tenant_id="ten_a"),
    hash_key(KEY_B): Principal(role="operator", tenant_id="ten_b"),
}
POOL = web.AppKey("pool", asyncpg.Pool)
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def build_api() -> Api:
    api = Api("pagination-probe")

    @api.get(
        "/v1/items",
        summary="Items",
        roles=OPERATOR,
        list_response=True,
        query=[("kinds", "two kinds, comma-separated")],
    )
    async def list_items(request: web.Request, call: Call[None]) -> web.Response:
        where = ["tenant_id = $1"]
        args: list[Any] = [call.tenant_id]
        if "kinds" in call.query:  # a filter with OR in it, as services write them
            first, second = call.query["kinds"].split(",")
            args += [first, second]
            where.append("kind = $2 OR kind = $3")
        async with request.app[POOL].acquire() as conn:
            rows, info = await fetch_page(
                conn,
                table="items",
                where=where,
                args=args,
                request=PageRequest.from_query(call.query),
                columns="id, created_at, kind",
            )
        return page([{"id": r["id"], "kind": r["kind"]} for r in rows], info)

    return api


@dataclass
class Probe:
    url: str
    http: aiohttp.ClientSession
    pool: asyncpg.Pool

    async def fetch(self, key: str = KEY_A, **query: Any) -> tuple[int, dict[str, Any]]:
        params = {k: str(v) for k, v in query.items()}
        headers = {"Authorization": f"Bearer {key}"}
        async with self.http.get(f"{self.url}/v1/items", params=params, headers=headers) as r:
            return r.status, await r.json()

    async def add(self, tenant: str, id_: str, at: datetime, kind: str = "a") -> None:
        await self.pool.execute(
            "INSERT INTO items (id, tenant_id, created_at, kind) VALUES ($1, $2, $3, $4)",
            id_,
            tenant,
            at,
            kind,
        )

    async def expected_order(self, tenant: str = "ten_a") -> list[str]:
        rows = await self.pool.fetch(
            "SELECT id FROM items WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC", tenant
        )
        return [r["id"] for r in rows]


@pytest_asyncio.fixture
async def probe(service_db) -> AsyncIterator[Probe]:
    pool = await create_pool(service_db.dsn, service_db.schema)
    await pool.execute(
        "CREATE TABLE items (id text PRIMARY KEY, tenant_id text NOT NULL,"
        " created_at timestamptz NOT NULL, kind text NOT NULL)"
    )

    async def lookup(digest: str) -> Principal | None:
        return PRINCIPALS.get(digest)

    app = create_base_app(build_api(), Metrics())
    app[POOL] = pool
    app[AUTHENTICATOR] = Authenticator(lookup)
    try:
        async with running(app) as url, aiohttp.ClientSession() as http:
            yield Probe(url, http, pool)
    finally:
        await pool.close()


async def seven_items(probe: Probe) -> list[str]:
    """Seven items of tenant A, three of them created in the same microsecond, and one of B."""
    for n, offset in enumerate([0, 1, 2, 2, 2, 3, 4]):
        await probe.add("ten_a", f"it_{n}", T0 + timedelta(seconds=offset))
    await probe.add("ten_b", "it_b", T0 + timedelta(seconds=2))
    return await probe.expected_order()


def ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["data"]]


def flags(body: dict[str, Any]) -> tuple[bool, bool]:
    return body["page_info"]["has_previous"], body["page_info"]["has_next"]


async def test_pages_walk_forward_and_back(probe):
    # given
    order = await seven_items(probe)
    assert order[:2] == ["it_6", "it_5"]
    # when walking forward by 3
    _, first = await probe.fetch(limit=3)
    _, second = await probe.fetch(limit=3, after_cursor=first["page_info"]["end_cursor"])
    _, third = await probe.fetch(limit=3, after_cursor=second["page_info"]["end_cursor"])
    # then every item comes once, newest first, equal timestamps included
    assert ids(first) + ids(second) + ids(third) == order
    assert [len(ids(p)) for p in (first, second, third)] == [3, 3, 1]
    assert flags(first) == (False, True)
    assert flags(second) == (True, True)
    assert flags(third) == (True, False)
    # and walking back from the last page gives the same pages
    _, back_second = await probe.fetch(limit=3, before_cursor=third["page_info"]["start_cursor"])
    _, back_first = await probe.fetch(
        limit=3, before_cursor=back_second["page_info"]["start_cursor"]
    )
    assert ids(back_second) == ids(second)
    assert flags(back_second) == (True, True)
    assert ids(back_first) == ids(first)
    assert flags(back_first) == (False, True)


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 6, 7, 8])
async def test_every_limit_walks_every_item_once(probe, limit):
    # given
    order = await seven_items(probe)
    # when
    seen: list[str] = []
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        _, body = await probe.fetch(limit=limit, **({"after_cursor": cursor} if cursor else {}))
        pages.append(body)
        seen += ids(body)
        if not body["page_info"]["has_next"]:
            break
        cursor = body["page_info"]["end_cursor"]
    # then
    assert seen == order
    assert len(pages) == -(-len(order) // limit)
    assert [flags(p)[0] for p in pages] == [False] + [True] * (len(pages) - 1)
    # and back again from the last page
    back: list[str] = ids(pages[-1])
    body = pages[-1]
    while body["page_info"]["has_previous"]:
        _, body = await probe.fetch(limit=limit, before_cursor=body["page_info"]["start_cursor"])
        assert body["page_info"]["has_next"]
        back = ids(body) + back
    assert back == order


async def test_pages_are_stable_under_inserts(probe):
    # given a first page
    order = await seven_items(probe)
    _, first = await probe.fetch(limit=3)
    # when newer items arrive before the client asks for the next page
    await probe.add("ten_a", "it_new_1", T0 + timedelta(minutes=5))
    await probe.add("ten_a", "it_new_2", T0 + timedelta(seconds=4))  # same time as it_6
    _, second = await probe.fetch(limit=3, after_cursor=first["page_info"]["end_cursor"])
    # then the next page is what it would have been
    assert ids(second) == order[3:6]
    # and going back shows the new items before the first page
    _, before = await probe.fetch(limit=3, before_cursor=first["page_info"]["start_cursor"])
    assert ids(before) == ["it_new_1", "it_new_2"]
    assert flags(before) == (False, True)
    _, first_again = await probe.fetch(limit=3, after_cursor=before["page_info"]["end_cursor"])
    assert ids(first_again) == ids(first)


async def test_past_the_last_page_is_an_empty_page(probe):
    # given
    order = await seven_items(probe)
    _, last = await probe.fetch(limit=7)
    assert ids(last) == order
    # when
    _, after = await probe.fetch(limit=7, after_cursor=last["page_info"]["end_cursor"])
    _, before = await probe.fetch(limit=7, before_cursor=last["page_info"]["start_cursor"])
    # then
    assert (ids(after), ids(before)) == ([], [])
    assert flags(after) == (True, False)
    assert flags(before) == (False, True)


async def test_an_empty_list(probe):
    # when
    status, body = await probe.fetch()
    # then
    assert status == 200
    assert body["page_info"] == {
        "has_previous": False,
        "has_next": False,
        "start_cursor": None,
        "end_cursor": None,
    }


async def test_filters_with_or_stay_within_the_tenant(probe):
    # given items of both tenants, of several kinds
    for n in range(4):
        await probe.add("ten_a", f"a_{n}", T0 + timedelta(seconds=n), kind="ab"[n % 2])
        await probe.add("ten_b", f"b_{n}", T0 + timedelta(seconds=n), kind="ab"[n % 2])
    await probe.add("ten_a", "a_c", T0, kind="c")
    # when
    _, first = await probe.fetch(limit=2, kinds="a,b")
    _, second = await probe.fetch(
        limit=2, kinds="a,b", after_cursor=first["page_info"]["end_cursor"]
    )
    # then only tenant A's items of those kinds, each once
    assert ids(first) + ids(second) == ["a_3", "a_2", "a_1", "a_0"]
    assert flags(second) == (True, False)


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor!",
        "e30",  # {}
        base64.urlsafe_b64encode(b'["yesterday", "it_1"]').decode(),
        base64.urlsafe_b64encode(b'["2030-01-01T00:00:00+00:00", null]').decode(),
        base64.urlsafe_b64encode(b'["2030-01-01T00:00:00+00:00", 5]').decode(),  # int id: text
        base64.urlsafe_b64encode(b'["2030-01-01T00:00:00+00:00"]').decode(),
        "\u00e9t\u00e9",
        "",
    ],
)
async def test_an_invalid_cursor_is_a_422(probe, cursor):
    # given
    await seven_items(probe)
    # when
    status_after, after = await probe.fetch(after_cursor=cursor)
    status_before, before = await probe.fetch(before_cursor=cursor)
    # then
    if cursor == "":  # no cursor at all: the first page
        assert (status_after, status_before) == (200, 200)
        return
    assert (status_after, status_before) == (422, 422)
    assert after["error"]["code"] == before["error"]["code"] == "cursor_invalid"
    assert after["error"]["param"] == "after_cursor"
    assert before["error"]["param"] == "before_cursor"


async def test_both_cursors_at_once_is_a_422(probe):
    # given
    await seven_items(probe)
    _, first = await probe.fetch(limit=2)
    cursor = first["page_info"]["end_cursor"]
    # when
    status, body = await probe.fetch(after_cursor=cursor, before_cursor=cursor)
    # then
    assert status == 422
    assert body["error"]["param"] == "before_cursor"


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(None, 25), (100, 100), (101, 100), (500, 100), (0, 1), (-3, 1), ("9" * 30, 100)],
)
async def test_limit_defaults_to_25_and_clamps_to_1_to_100(probe, limit, expected):
    # given
    await probe.pool.executemany(
        "INSERT INTO items (id, tenant_id, created_at, kind) VALUES ($1, 'ten_a', $2, 'a')",
        [(f"it_{n:03}", T0 + timedelta(seconds=n)) for n in range(120)],
    )
    # when
    status, body = await probe.fetch(**({} if limit is None else {"limit": limit}))
    # then
    assert status == 200
    assert len(body["data"]) == expected
    assert body["page_info"]["has_next"]


@pytest.mark.parametrize("limit", ["abc", "2.5", "null", "", "1e3", " 5", "٣"])
async def test_a_limit_that_is_not_an_integer_is_a_422(probe, limit):
    # when
    status, body = await probe.fetch(limit=limit)
    # then
    assert status == 422
    assert body["error"]["code"] == "parameter_invalid"
    assert body["error"]["param"] == "limit"


@pytest.mark.parametrize("name", ["kinds", "limit", "after_cursor", "free_text"])
@pytest.mark.parametrize("value", ["a\x00b", "\x00"])
async def test_a_query_value_with_a_nul_byte_is_a_422(probe, name, value):
    # when
    status, body = await probe.fetch(**{name: value})
    # then
    assert status == 422
    assert body["error"] == {
        "code": "invalid_characters",
        "message": f"{name}: contains characters that are not allowed",
        "param": name,
    }


@pytest.mark.parametrize("name", ["kind", "Limit", "after", "free_text"])
async def test_a_query_parameter_the_list_does_not_take_is_a_422_naming_it(probe, name):
    # given a list that takes kinds, limit, after_cursor and before_cursor
    # when it is asked with a misspelt or unknown one beside a valid one
    status, body = await probe.fetch(limit=5, **{name: "x"})
    # then it refuses rather than list everything unfiltered
    assert status == 422
    assert body["error"]["code"] == "parameter_unknown"
    assert body["error"]["param"] == name
    assert "after_cursor, before_cursor, kinds, limit" in body["error"]["message"]


async def test_uuid_and_integer_ids_paginate_too(service_db):
    # given tables whose ids are uuid and bigint
    conn = await asyncpg.connect(service_db.dsn)
    try:
        for table, id_type in (("u_items", "uuid"), ("n_items", "bigint")):
            await conn.execute(
                f"CREATE TABLE {table} (id {id_type} PRIMARY KEY, created_at timestamptz NOT NULL)"
            )
        uuids = [uuid.uuid4() for _ in range(5)]
        await conn.executemany("INSERT INTO u_items VALUES ($1, $2)", [(u, T0) for u in uuids])
        await conn.executemany("INSERT INTO n_items VALUES ($1, $2)", [(n, T0) for n in range(5)])
        for table, expected in (
            ("u_items", sorted(uuids, reverse=True)),
            ("n_items", [4, 3, 2, 1, 0]),
        ):
            # when
            first, info = await fetch_page(
                conn, table=table, where=[], args=[], request=PageRequest(limit=3)
            )
            assert info.end_cursor is not None
            request = PageRequest.from_query({"limit": "3", "after_cursor": info.end_cursor})
            second, info2 = await fetch_page(conn, table=table, where=[], args=[], request=request)
            # then
            assert [r["id"] for r in first + second] == expected
            assert (info.has_next, info2.has_next, info2.has_previous) == (True, False, True)
    finally:
        await conn.close()


def test_cursors_are_opaque_and_round_trip():
    # given
    cursor = Cursor(T0 + timedelta(microseconds=123), "it_1")
    # when
    token = cursor.encode()
    # then
    assert "it_1" not in token
    assert "=" not in token
    assert Cursor.decode(token, "after_cursor") == cursor
