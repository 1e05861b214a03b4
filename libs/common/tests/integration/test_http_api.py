"""The HTTP layer every service shares, driven over real HTTP: error envelope and validation
(invariant 9), authentication and roles (invariant 6), infrastructure routes, OpenAPI, and the
correlation id."""

import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from openapi_spec_validator import validate
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from common.http.app import READINESS, create_base_app
from common.http.auth import Authenticator, Principal, hash_key
from common.http.envelope import ok, page
from common.http.pagination import PageInfo
from common.http.routing import (
    AUTHENTICATOR,
    OPERATOR,
    OPERATOR_OR_SUPPLIER,
    PLATFORM_ADMIN,
    Api,
    Call,
)
from common.logging import REDACTED, configure_logging, get_logger
from common.metrics import Metrics
from common.money import Money, Rate
from common.testing.apps import running

OPERATOR_KEY = "test_operator-key"
SUPPLIER_KEY = "test_supplier-key"
STOREFRONT_KEY = "live_storefront-key"
ADMIN_KEY = "live_platform-admin"
PRINCIPALS = {
    hash_key(OPERATOR_KEY): Principal(role="operator", tenant_id="ten_1"),
    hash_key(SUPPLIER_KEY): Principal(role="supplier", tenant_id="ten_1", supplier_id="sup_1"),
    hash_key(STOREFRONT_KEY): Principal(role="storefront", tenant_id="ten_1"),
}
BODY_LIMIT = 4096


class Line(BaseModel):
    model_config = ConfigDict(extra="forbid")

    supplier_id: str
    amount: Money


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str = Field(min_length=1, max_length=64)
    lines: list[Line] = Field(min_length=1)
    rate: Rate | None = None


class Order(BaseModel):
    id: str
    reference: str


def build_api() -> Api:
    api = Api("http-probe", "0.1.0")

    @api.post(
        "/v1/admin/orders",
        summary="Create an order",
        roles=OPERATOR,
        body=OrderCreate,
        response=Order,
        status=201,
        tags=["orders"],
    )
    async def create_order(request: web.Request, call: Call[OrderCreate]) -> web.Response:
        get_logger("probe").info("creating order", reference=call.body.reference)
        return ok("order", Order(id="ord_1", reference=call.body.reference), status=201)

    @api.get(
        "/v1/admin/orders",
        summary="List orders",
        roles=OPERATOR_OR_SUPPLIER,
        response=Order,
        list_response=True,
        query=[("reference", "only this reference")],
    )
    async def list_orders(request: web.Request, call: Call[None]) -> web.Response:
        info = PageInfo(has_previous=False, has_next=False, start_cursor=None, end_cursor=None)
        return page([Order(id="ord_1", reference="r")], info)

    @api.get(
        "/v1/admin/orders/{id}", summary="An order", roles=OPERATOR_OR_SUPPLIER, response=Order
    )
    async def get_order(request: web.Request, call: Call[None]) -> web.Response:
        return ok("order", Order(id=request.match_info["id"], reference="r"))

    @api.post(
        "/v1/platform/tenants",
        summary="Create a tenant",
        roles=PLATFORM_ADMIN,
        body=OrderCreate,
        idempotent=True,
        status=201,
    )
    async def create_tenant(request: web.Request, call: Call[OrderCreate]) -> web.Response:
        return ok("tenant", {"id": "ten_2"}, status=201)

    @api.get("/v1/platform/whoami", summary="Who am I", roles=PLATFORM_ADMIN)
    async def whoami(request: web.Request, call: Call[None]) -> web.Response:
        return ok("principal", {"id": None, "role": call.principal.role})

    @api.get("/v1/public/boom", summary="Fails", roles=None)
    async def boom(request: web.Request, call: Call[None]) -> web.Response:
        raise RuntimeError("database password=hunter2 and card 4111111111111111")

    return api


class CurrentStdout:
    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@dataclass
class Probe:
    url: str
    http: aiohttp.ClientSession
    app: web.Application

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = OPERATOR_KEY,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        async with self.http.request(method, self.url + path, data=data, headers=sent) as r:
            text = await r.text()
            try:
                parsed: Any = json.loads(text)
            except ValueError:
                parsed = text
            return r.status, parsed, r.headers


@pytest.fixture
def logs(capsys):
    configure_logging("http-probe")
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_marketpay", False):
            handler.setStream(CurrentStdout())  # type: ignore[attr-defined]

    def read() -> tuple[str, list[dict[str, Any]]]:
        out = capsys.readouterr().out
        return out, [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    yield read
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_marketpay", False)]:
        root.removeHandler(handler)


@pytest_asyncio.fixture
async def probe() -> AsyncIterator[Probe]:
    async def lookup(digest: str) -> Principal | None:
        return PRINCIPALS.get(digest)

    app = create_base_app(build_api(), Metrics(), client_max_size=BODY_LIMIT)
    app[AUTHENTICATOR] = Authenticator(lookup, platform_admin_key=SecretStr(ADMIN_KEY))
    async with running(app) as url, aiohttp.ClientSession() as http:
        yield Probe(url, http, app)


def order(**changes: Any) -> dict[str, Any]:
    body = {
        "reference": "order-1",
        "lines": [{"supplier_id": "sup_1", "amount": {"value": 1000, "currency": "EUR"}}],
        "rate": "2.5",
    }
    return {**body, **changes}


# --- success envelope ---------------------------------------------------------------------


async def test_a_valid_request_gets_the_success_envelope(probe):
    # when
    status, body, headers = await probe.call("POST", "/v1/admin/orders", body=order())
    # then
    assert status == 201
    assert headers["Content-Type"].startswith("application/json")
    assert body == {
        "id": "ord_1",
        "type": "order",
        "data": {"id": "ord_1", "reference": "order-1"},
        "page_info": None,
    }


async def test_a_list_gets_the_array_envelope(probe):
    # when
    status, body, _ = await probe.call("GET", "/v1/admin/orders")
    # then
    assert status == 200
    assert body["id"] is None
    assert body["type"] == "array"
    assert body["data"] == [{"id": "ord_1", "reference": "r"}]
    assert set(body["page_info"]) == {"has_previous", "has_next", "start_cursor", "end_cursor"}


# --- bad input: a 4xx naming the field, never a 500 ------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"reference": "a",}', b"\xff\xfe\x00", b"[" * 1900 + b"]" * 1900],
    ids=["syntax", "trailing comma", "not utf-8", "deeply nested"],
)
async def test_a_body_that_is_not_json_is_a_400(probe, raw):
    # when
    status, body, _ = await probe.call("POST", "/v1/admin/orders", body=raw)
    # then
    assert status == 400
    assert body["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("raw", [b"[]", b'[{"reference": "a"}]', b'"text"', b"42", b"null", b""])
async def test_a_body_that_is_not_an_object_is_a_400(probe, raw):
    # when
    status, body, _ = await probe.call("POST", "/v1/admin/orders", body=raw)
    # then
    assert status == 400
    assert body["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (order(reference=5), "parameter_invalid", "reference"),
        (order(reference=""), "parameter_invalid", "reference"),
        (order(colour="red"), "unexpected_parameter", "colour"),
        ({"lines": order()["lines"]}, "parameter_missing", "reference"),
        (order(lines=[]), "parameter_invalid", "lines"),
        (order(lines="many"), "parameter_invalid", "lines"),
        (order(rate="101"), "rate_invalid", "rate"),
        (order(rate=True), "rate_invalid", "rate"),
        (
            order(lines=[{"supplier_id": "s", "amount": {"value": 1, "currency": "XXX"}}]),
            "currency_invalid",
            "lines.0.amount.currency",
        ),
        (
            order(lines=[*order()["lines"], {"supplier_id": "s"}]),
            "parameter_missing",
            "lines.1.amount",
        ),
        (
            order(lines=[{"supplier_id": "s", "amount": {"value": 10.5, "currency": "EUR"}}]),
            "parameter_invalid",
            "lines.0.amount.value",
        ),
        (
            order(lines=[{"supplier_id": "s", "amount": {"value": -1, "currency": "EUR"}}]),
            "parameter_invalid",
            "lines.0.amount.value",
        ),
        (
            order(lines=[{"supplier_id": "s", "amount": 1000, "extra": 1}]),
            "parameter_invalid",  # the first problem is reported
            "lines.0.amount",
        ),
        (order(reference="a\u0000b"), "invalid_characters", "reference"),
        (order(reference="\ud800"), "invalid_characters", "reference"),
    ],
)
async def test_invalid_values_are_a_422_naming_the_field(probe, body, code, param):
    # when
    status, response, _ = await probe.call("POST", "/v1/admin/orders", body=body)
    # then
    assert status == 422
    assert response["error"]["code"] == code
    assert response["error"]["param"] == param
    assert response["error"]["message"]


async def test_no_bad_body_gets_a_500(probe):
    # given bodies a fuzzer would send
    bodies: list[Any] = [
        {"reference": None, "lines": None},
        {"reference": {"$gt": ""}, "lines": [None]},
        order(lines=[{"supplier_id": ["x"], "amount": {"value": "1e999", "currency": 1}}]),
        order(rate="NaN"),
        order(rate=1e308),
        order(rate="9" * 5000),
        order(reference="x" * 3000),
        {"\u0000": 1},
        {str(i): i for i in range(300)},
    ]
    # when
    statuses = [(await probe.call("POST", "/v1/admin/orders", body=b))[0] for b in bodies]
    # then
    assert all(400 <= s < 500 for s in statuses), statuses


async def test_an_unknown_route_is_a_404_envelope(probe):
    # when
    status, body, _ = await probe.call("GET", "/v1/nothing/here")
    # then
    assert status == 404
    assert body == {"error": {"code": "not_found", "message": "no such resource", "param": None}}


async def test_a_wrong_method_is_a_405_envelope(probe):
    # when
    status, body, headers = await probe.call("DELETE", "/v1/admin/orders")
    # then
    assert status == 405
    assert body["error"]["code"] == "method_not_allowed"
    assert set(headers["Allow"].split(",")) == {"GET", "POST"}


async def test_a_body_over_the_limit_is_a_413_envelope(probe):
    # when
    status, body, _ = await probe.call(
        "POST", "/v1/admin/orders", body=order(reference="x" * (BODY_LIMIT + 1))
    )
    # then
    assert status == 413
    assert body["error"]["code"] == "request_too_large"


async def test_an_unexpected_error_is_a_500_without_details(probe, logs):
    # when
    status, body, headers = await probe.call(
        "GET", "/v1/public/boom", key=None, headers={"X-Correlation-Id": "corr-boom"}
    )
    # then the client learns nothing of the internals
    assert status == 500
    assert body == {
        "error": {
            "code": "internal_server_error",
            "message": "an unexpected error has occurred",
            "param": None,
        }
    }
    assert headers["X-Correlation-Id"] == "corr-boom"
    # and the log has the traceback, redacted, under the request's correlation id
    out, lines = logs()
    (line,) = [line for line in lines if line["event"] == "unhandled error"]
    assert line["correlation_id"] == "corr-boom"
    assert "RuntimeError" in line["exception"]
    assert "4111111111111111" not in out
    assert "hunter2" not in out
    assert REDACTED in line["exception"]


# --- authentication and roles ---------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic b3BlcmF0b3I6cHc=", f"Token {OPERATOR_KEY}", OPERATOR_KEY, "Bearer test_nobody",
     "Bearer "],
)  # fmt: skip
async def test_no_or_a_wrong_credential_is_a_401(probe, authorization):
    # given
    headers = {} if authorization is None else {"Authorization": authorization}
    # when
    status, body, _ = await probe.call("GET", "/v1/admin/orders", key=None, headers=headers)
    # then
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert body["error"]["param"] == "Authorization"


@pytest.mark.parametrize(
    ("method", "path", "key", "expected"),
    [
        ("GET", "/v1/admin/orders", OPERATOR_KEY, 200),
        ("GET", "/v1/admin/orders", SUPPLIER_KEY, 200),
        ("GET", "/v1/admin/orders", STOREFRONT_KEY, 403),
        ("GET", "/v1/admin/orders", ADMIN_KEY, 403),
        ("POST", "/v1/admin/orders", SUPPLIER_KEY, 403),
        ("GET", "/v1/platform/whoami", ADMIN_KEY, 200),
        ("GET", "/v1/platform/whoami", OPERATOR_KEY, 403),
        ("GET", "/v1/platform/whoami", STOREFRONT_KEY, 403),
    ],
)
async def test_roles_decide_who_may_call_what(probe, method, path, key, expected):
    # when
    status, body, _ = await probe.call(method, path, key=key, body=order())
    # then
    assert status == expected
    if expected == 403:
        assert body["error"]["code"] == "forbidden"


async def test_the_platform_admin_key_is_the_platform_admin(probe):
    # when
    status, body, _ = await probe.call("GET", "/v1/platform/whoami", key=ADMIN_KEY)
    # then
    assert (status, body["data"]["role"]) == (200, "platform_admin")


async def test_authentication_comes_before_validation(probe):
    # when an unauthenticated client sends garbage
    status, _, _ = await probe.call("POST", "/v1/admin/orders", key=None, body=b"{garbage")
    # then it learns only that it must authenticate
    assert status == 401


# --- infrastructure routes ------------------------------------------------------------------


async def test_healthz_answers_without_credentials(probe):
    # when
    status, body, _ = await probe.call("GET", "/healthz", key=None)
    # then
    assert (status, body) == (200, {"status": "ok"})


async def test_readyz_reports_failing_checks(probe):
    # given
    status, body, _ = await probe.call("GET", "/readyz", key=None)
    assert (status, body) == (200, {"status": "ready"})

    async def database_reachable() -> None:
        raise ConnectionRefusedError("secret-host:5432")

    probe.app[READINESS].append(database_reachable)
    # when
    status, body, _ = await probe.call("GET", "/readyz", key=None)
    # then
    assert status == 503
    assert body == {
        "status": "unavailable",
        "problems": ["database_reachable: ConnectionRefusedError"],
    }


async def test_metrics_count_requests_by_route_template(probe):
    # given
    await probe.call("GET", "/v1/admin/orders/ord_1")
    await probe.call("GET", "/v1/admin/orders/ord_2")
    await probe.call("GET", "/v1/nothing/here")
    # when
    status, text, headers = await probe.call("GET", "/metrics", key=None)
    # then
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert (
        'http_requests_total{method="GET",route="/v1/admin/orders/{id}",status="200"} 2.0' in text
    )
    assert 'http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert "ord_1" not in text
    assert "http_request_duration_seconds_bucket" in text


async def test_openapi_documents_every_endpoint(probe):
    # when
    status, spec, _ = await probe.call("GET", "/openapi.json", key=None)
    # then it is a valid OpenAPI 3.1 document
    assert status == 200
    validate(spec)
    assert spec["info"] == {"title": "http-probe", "version": "0.1.0"}
    declared = {(e.method.lower(), e.path) for e in build_api().endpoints}
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert documented == declared
    schemas = spec["components"]["schemas"]

    def resolve(ref: str) -> dict[str, Any]:
        prefix = "#/components/schemas/"
        assert ref.startswith(prefix)
        return schemas[ref.removeprefix(prefix)]

    create = spec["paths"]["/v1/admin/orders"]["post"]
    body_schema = resolve(create["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert set(body_schema["required"]) == {"reference", "lines"}
    assert body_schema["additionalProperties"] is False
    assert set(create["responses"]) == {"201", "400", "401", "403", "422"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status_code, response in operation["responses"].items():
                schema = response["content"]["application/json"]["schema"]
                if int(status_code) >= 400:
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, method)
                    assert resolve(schema["$ref"])["required"] == ["error"]
    listing = spec["paths"]["/v1/admin/orders"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {
        "limit", "after_cursor", "before_cursor", "reference"
    }  # fmt: skip
    assert "422" in listing["responses"]  # cursor_invalid
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["properties"][
        "page_info"
    ] == {"$ref": "#/components/schemas/PageInfo"}
    tenants = spec["paths"]["/v1/platform/tenants"]["post"]
    assert {"name": "Idempotency-Key", "in": "header"}.items() <= tenants["parameters"][0].items()
    assert {"400", "409", "422"} <= set(tenants["responses"])
    item = spec["paths"]["/v1/admin/orders/{id}"]["get"]
    assert item["parameters"] == [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    assert "404" in item["responses"]


# --- correlation id -------------------------------------------------------------------------


async def test_a_given_correlation_id_is_echoed_and_on_the_request_log_lines(probe, logs):
    # when
    status, _, headers = await probe.call(
        "POST", "/v1/admin/orders", body=order(), headers={"X-Correlation-Id": "corr-7"}
    )
    # then
    assert status == 201
    assert headers["X-Correlation-Id"] == "corr-7"
    _, lines = logs()
    (line,) = [line for line in lines if line["event"] == "creating order"]
    assert line["correlation_id"] == "corr-7"


@pytest.mark.parametrize("given", [None, "", "has spaces", "x" * 129, "a\tb", "<script>"])
async def test_a_missing_or_invalid_correlation_id_is_replaced(probe, given):
    # given
    headers = {} if given is None else {"X-Correlation-Id": given}
    # when
    status, _, received = await probe.call("GET", "/v1/admin/orders", headers=headers)
    # then
    assert status == 200
    assert uuid.UUID(received["X-Correlation-Id"])


async def test_error_responses_carry_the_correlation_id_too(probe):
    # when
    status, _, headers = await probe.call(
        "GET", "/v1/admin/orders", key=None, headers={"X-Correlation-Id": "corr-401"}
    )
    # then
    assert status == 401
    assert headers["X-Correlation-Id"] == "corr-401"
