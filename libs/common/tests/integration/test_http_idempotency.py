"""Idempotency-Key over HTTP (DESIGN §4, invariant 5), against a real PostgreSQL."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from common.db import apply_migrations, create_pool
from common.db.migrations import COMMON_MIGRATIONS
from common.http.app import create_base_app
from common.http.auth import Authenticator, Principal, hash_key
from common.http.envelope import ok
from common.http.errors import Unprocessable
from common.http.idempotency import IdempotencyStore, request_fingerprint
from common.http.routing import AUTHENTICATOR, IDEMPOTENCY, OPERATOR, Api, Call
from common.metrics import Metrics
from common.money import Money
from common.testing.apps import running

KEY_A = "test_operator-a"
KEY_B = "test_operator-b"
PRINCIPALS = {
    hash_key(KEY_A): Principal(role="operator", tenant_id="ten_a", key_id="key_a"),
    hash_key(KEY_B): Principal(role="operator", tenant_id="ten_b", key_id="key_b"),
}
POOL = web.AppKey("pool", asyncpg.Pool)


class ChargeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Money
    reference: str
    slow: bool = False


@dataclass
class Probe:
    url: str
    http: aiohttp.ClientSession
    pool: asyncpg.Pool
    store: IdempotencyStore
    behaviour: dict[str, Any]

    async def post(
        self, path: str, body: Any, *, key: str | None = "idem-1", api_key: str = KEY_A
    ) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
        headers = {"Authorization": f"Bearer {api_key}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
        async with self.http.post(self.url + path, data=data, headers=headers) as response:
            return response.status, await response.json(), response.headers

    async def count(self, sql: str, *args: Any) -> int:
        return int(await self.pool.fetchval(sql, *args))


def charge(reference: str = "order-1", value: int = 1000, **more: Any) -> dict[str, Any]:
    return {"amount": {"value": value, "currency": "EUR"}, "reference": reference, **more}


def build_api() -> Api:
    api = Api("idempotency-probe")

    @api.post(
        "/v1/charges",
        summary="Create a charge",
        roles=OPERATOR,
        body=ChargeCreate,
        idempotent=True,
        status=201,
    )
    async def create_charge(request: web.Request, call: Call[ChargeCreate]) -> web.Response:
        if call.body.slow:
            await asyncio.sleep(0.3)
        charge_id = await request.app[POOL].fetchval(
            "INSERT INTO charges (tenant_id, reference, amount) VALUES ($1, $2, $3)"
            " RETURNING id::text",
            call.tenant_id,
            call.body.reference,
            call.body.amount.value,
        )
        return ok("charge", {"id": charge_id, "reference": call.body.reference}, status=201)

    @api.post("/v1/refusals", summary="Refuse", roles=OPERATOR, body=ChargeCreate, idempotent=True)
    async def refuse(request: web.Request, call: Call[ChargeCreate]) -> web.Response:
        await request.app[POOL].execute("INSERT INTO attempts (what) VALUES ('refusal')")
        raise Unprocessable("too much", code="amount_too_large", param="amount")

    @api.post("/v1/flaky", summary="Fail once", roles=OPERATOR, body=ChargeCreate, idempotent=True)
    async def flaky(request: web.Request, call: Call[ChargeCreate]) -> web.Response:
        await request.app[POOL].execute("INSERT INTO attempts (what) VALUES ('flaky')")
        if request.app[BEHAVIOUR]["fail"]:
            raise RuntimeError("the PSP hung up")
        return ok("charge", {"id": "ch_1"}, status=201)

    return api


BEHAVIOUR = web.AppKey("behaviour", dict)


@pytest_asyncio.fixture
async def probe(service_db) -> AsyncIterator[Probe]:
    pool = await create_pool(service_db.dsn, service_db.schema, max_size=25)
    async with pool.acquire() as conn:
        await apply_migrations(conn, service_db.schema, {"common": COMMON_MIGRATIONS})
        await conn.execute(
            "CREATE TABLE charges (id bigserial PRIMARY KEY, tenant_id text NOT NULL,"
            " reference text NOT NULL, amount bigint NOT NULL)"
        )
        await conn.execute("CREATE TABLE attempts (id bigserial PRIMARY KEY, what text)")

    async def lookup(digest: str) -> Principal | None:
        return PRINCIPALS.get(digest)

    app = create_base_app(build_api(), Metrics())
    store = IdempotencyStore(pool)
    app[POOL] = pool
    app[AUTHENTICATOR] = Authenticator(lookup)
    app[IDEMPOTENCY] = store
    app[BEHAVIOUR] = {"fail": True}
    try:
        async with running(app) as url, aiohttp.ClientSession() as http:
            yield Probe(url, http, pool, store, app[BEHAVIOUR])
    finally:
        await pool.close()


async def test_the_same_key_and_body_replay_the_first_response(probe):
    # given a first request
    first_status, first_body, first_headers = await probe.post("/v1/charges", charge())
    # when the client sends it again, with the same JSON written differently
    raw = b'{ "reference": "order-1",  "amount": {"currency": "EUR", "value": 1000} }'
    status, body, headers = await probe.post("/v1/charges", raw)
    # then the stored response comes back and the charge was made once
    assert first_status == status == 201
    assert "Idempotent-Replayed" not in first_headers
    assert headers["Idempotent-Replayed"] == "true"
    assert body == first_body
    assert await probe.count("SELECT count(*) FROM charges") == 1


async def test_the_same_key_with_another_body_is_refused(probe):
    # given
    await probe.post("/v1/charges", charge(value=1000))
    # when
    status, body, _ = await probe.post("/v1/charges", charge(value=2000))
    # then
    assert status == 422
    assert body["error"]["code"] == "idempotency_params_mismatch"
    assert body["error"]["param"] == "Idempotency-Key"
    assert await probe.count("SELECT count(*) FROM charges") == 1


async def test_the_same_key_on_another_path_is_refused(probe):
    # given
    await probe.post("/v1/charges", charge())
    # when
    status, body, _ = await probe.post("/v1/flaky", charge())
    # then
    assert status == 422
    assert body["error"]["code"] == "idempotency_params_mismatch"
    assert await probe.count("SELECT count(*) FROM attempts") == 0


@pytest.mark.parametrize("key", [None, ""])
async def test_a_missing_key_is_refused(probe, key):
    # when
    status, body, _ = await probe.post("/v1/charges", charge(), key=key)
    # then
    assert status == 400
    assert body["error"] == {
        "code": "idempotency_key_required",
        "message": "Idempotency-Key is a required header",
        "param": "Idempotency-Key",
    }
    assert await probe.count("SELECT count(*) FROM charges") == 0


async def test_keys_of_1_to_255_characters_are_accepted_and_longer_ones_refused(probe):
    # when
    short = await probe.post("/v1/charges", charge("a"), key="k")
    longest = await probe.post("/v1/charges", charge("b"), key="k" * 255)
    too_long = await probe.post("/v1/charges", charge("c"), key="k" * 256)
    # then
    assert short[0] == longest[0] == 201
    assert too_long[0] == 400
    assert too_long[1]["error"]["code"] == "idempotency_key_invalid"
    assert too_long[1]["error"]["param"] == "Idempotency-Key"
    assert await probe.count("SELECT count(*) FROM charges") == 2


async def test_a_key_over_aiohttps_header_limit_gets_the_json_error_envelope(probe):
    # given a key longer than aiohttp's default header limit (8190 bytes)
    key = "k" * 10_000
    # when
    status, body, headers = await probe.post("/v1/charges", charge("d"), key=key)
    # then the service's own validation answers, in JSON, without echoing the header
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    assert body["error"]["code"] == "idempotency_key_invalid"
    assert body["error"]["param"] == "Idempotency-Key"
    assert key not in json.dumps(body)
    assert await probe.count("SELECT count(*) FROM charges") == 0


async def test_concurrent_requests_with_one_key_have_one_effect(probe):
    # when 20 clients send the same slow request at once
    results = await asyncio.gather(
        *(probe.post("/v1/charges", charge(slow=True), key="idem-race") for _ in range(20))
    )
    # then one ran, the others were told to retry or got its response
    ran = [r for r in results if r[0] == 201 and "Idempotent-Replayed" not in r[2]]
    replayed = [r for r in results if r[0] == 201 and "Idempotent-Replayed" in r[2]]
    conflicts = [r for r in results if r[0] == 409]
    assert len(ran) == 1
    assert len(ran) + len(replayed) + len(conflicts) == 20
    assert conflicts  # they overlapped: the handler sleeps
    for _, body, _ in conflicts:
        assert body["error"]["code"] == "idempotency_concurrent_request"
    for _, body, _ in replayed:
        assert body == ran[0][1]
    assert await probe.count("SELECT count(*) FROM charges") == 1
    # and once it is done, a retry gets the first response
    status, body, headers = await probe.post("/v1/charges", charge(slow=True), key="idem-race")
    assert (status, body, headers["Idempotent-Replayed"]) == (201, ran[0][1], "true")


async def test_a_failed_request_releases_its_key_so_a_retry_runs(probe):
    # given a first attempt that crashes
    status, body, _ = await probe.post("/v1/flaky", charge())
    assert status == 500
    assert body["error"]["code"] == "internal_server_error"
    # when the client retries after the fault is gone
    probe.behaviour["fail"] = False
    status, body, headers = await probe.post("/v1/flaky", charge())
    # then it ran again, and its success is what is stored now
    assert status == 201
    assert "Idempotent-Replayed" not in headers
    assert await probe.count("SELECT count(*) FROM attempts") == 2
    status, _, headers = await probe.post("/v1/flaky", charge())
    assert (status, headers.get("Idempotent-Replayed")) == (201, "true")
    assert await probe.count("SELECT count(*) FROM attempts") == 2


async def test_a_refusal_is_replayed_too(probe):
    # given
    first = await probe.post("/v1/refusals", charge())
    # when
    again = await probe.post("/v1/refusals", charge())
    # then
    assert first[0] == again[0] == 422
    assert first[1] == again[1]
    assert again[1]["error"]["code"] == "amount_too_large"
    assert again[2]["Idempotent-Replayed"] == "true"
    assert await probe.count("SELECT count(*) FROM attempts") == 1


async def test_keys_belong_to_their_tenant(probe):
    # when two tenants use the same key and body
    a = await probe.post("/v1/charges", charge(), key="shared", api_key=KEY_A)
    b = await probe.post("/v1/charges", charge(), key="shared", api_key=KEY_B)
    # then both ran, each for its own tenant
    assert a[0] == b[0] == 201
    assert "Idempotent-Replayed" not in b[2]
    assert a[1]["data"]["id"] != b[1]["data"]["id"]
    tenants = await probe.pool.fetch("SELECT tenant_id FROM charges ORDER BY tenant_id")
    assert [r["tenant_id"] for r in tenants] == ["ten_a", "ten_b"]


async def test_a_claim_whose_holder_died_is_taken_over_after_its_lease(probe):
    # given a request that claimed the key and never finished (its process died)
    body = json.dumps(charge()).encode()
    fingerprint = request_fingerprint("POST", "/v1/charges", body)
    claimed = await probe.store.begin(
        scope="ten_a", key="idem-dead", method="POST", path="/v1/charges", fingerprint=fingerprint
    )
    assert claimed is None
    # when the client retries within the lease
    status, error, _ = await probe.post("/v1/charges", body, key="idem-dead")
    # then it is told to wait
    assert status == 409
    assert error["error"]["code"] == "idempotency_concurrent_request"
    # and when the lease has run out, the retry runs, once
    await probe.pool.execute(
        "UPDATE idempotency_keys SET lease_until = now() - interval '1 second' WHERE key = $1",
        "idem-dead",
    )
    status, _, headers = await probe.post("/v1/charges", body, key="idem-dead")
    assert status == 201
    assert "Idempotent-Replayed" not in headers
    status, _, headers = await probe.post("/v1/charges", body, key="idem-dead")
    assert (status, headers["Idempotent-Replayed"]) == (201, "true")
    assert await probe.count("SELECT count(*) FROM charges") == 1


async def test_purge_expired_deletes_only_expired_keys(probe):
    # given two stored responses, one past its retention
    await probe.post("/v1/charges", charge("old"), key="idem-old")
    await probe.post("/v1/charges", charge("new"), key="idem-new")
    await probe.pool.execute(
        "UPDATE idempotency_keys SET expires_at = now() - interval '1 day' WHERE key = $1",
        "idem-old",
    )
    # when
    purged = await probe.store.purge_expired()
    # then
    assert purged == 1
    keys = await probe.pool.fetch("SELECT key FROM idempotency_keys")
    assert [r["key"] for r in keys] == ["idem-new"]


async def test_stored_responses_are_kept_for_at_least_31_days(probe):
    # when
    await probe.post("/v1/charges", charge())
    # then
    days = await probe.pool.fetchval(
        "SELECT extract(epoch FROM expires_at - now()) / 86400 FROM idempotency_keys"
    )
    assert days >= 31 - 0.01
