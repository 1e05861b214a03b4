"""Declared endpoints: one place that authenticates, validates, applies Idempotency-Key and
documents (`/openapi.json` is generated from the same pydantic models that parse requests).

    api = Api("tenants")

    @api.post("/v1/admin/suppliers", body=SupplierCreate, response=Supplier, roles=OPERATOR,
              status=201, summary="Create a supplier")
    async def create_supplier(request: web.Request, call: Call[SupplierCreate]) -> web.Response:
        ...
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from common.http.auth import ANONYMOUS, Authenticator, Principal, RoleName
from common.http.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    Unauthorized,
    Unprocessable,
    from_validation_error,
)
from common.http.idempotency import (
    IdempotencyStore,
    StoredResponse,
    request_fingerprint,
    validate_key,
)
from common.http.pagination import PAGE_PARAMS, Filter, ListSpec

B = TypeVar("B", bound=BaseModel | None)

AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
IDEMPOTENCY = web.AppKey("idempotency", IdempotencyStore)

PLATFORM_ADMIN: frozenset[RoleName] = frozenset({"platform_admin"})
OPERATOR: frozenset[RoleName] = frozenset({"operator"})
OPERATOR_OR_SUPPLIER: frozenset[RoleName] = frozenset({"operator", "supplier"})
STOREFRONT: frozenset[RoleName] = frozenset({"storefront"})


@dataclass(frozen=True)
class Call(Generic[B]):
    """What the endpoint wrapper established before the handler runs."""

    principal: Principal
    body: B
    query: dict[str, str]

    @property
    def tenant_id(self) -> str:
        tenant_id: str | None = self.principal.tenant_id
        assert tenant_id is not None
        return tenant_id


Handler = Callable[[web.Request, Call[Any]], Awaitable[web.StreamResponse]]
CustomAuth = Callable[[web.Request], Awaitable[Principal]]
"""Authenticates a request by other means than an API key (a drop-in's client token)."""


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    roles: frozenset[RoleName] | None  # None: no API key (public, or `auth` decides)
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    list_response: bool = False
    status: int = 200
    idempotent: bool = False
    query: tuple[tuple[str, str] | Filter, ...] = ()
    tags: tuple[str, ...] = ()
    auth: CustomAuth | None = None
    body_required: bool = True  # False: an empty body means the model's defaults
    errors: tuple[int, ...] = ()  # error statuses the handler answers beyond the declared ones
    media_type: str = "application/json"  # of the success response

    @property
    def query_names(self) -> frozenset[str]:
        """The query parameters the endpoint takes (its published ones)."""
        names = {q.param if isinstance(q, Filter) else q[0] for q in self.query}
        if self.list_response:
            names.update(name for name, _, _ in PAGE_PARAMS)
        return frozenset(names)


class Api:
    def __init__(self, title: str, version: str = "1.0.0") -> None:
        self.title = title
        self.version = version
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        roles: Collection[RoleName] | None = None,
        body: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        list_response: bool = False,
        status: int = 200,
        idempotent: bool = False,
        query: Collection[tuple[str, str] | Filter] | ListSpec = (),
        tags: Collection[str] = (),
        auth: CustomAuth | None = None,
        body_required: bool = True,
        errors: Collection[int] = (),
        media_type: str = "application/json",
    ) -> Callable[[Handler], Handler]:
        if roles is not None and auth is not None:
            raise ValueError("an endpoint takes API-key roles or a custom auth, not both")
        if idempotent and roles is None and auth is None:
            raise ValueError("an idempotent endpoint needs a credential to scope its keys")

        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method=method.upper(),
                    path=path,
                    handler=handler,
                    summary=summary,
                    roles=frozenset(roles) if roles is not None else None,
                    body=body,
                    response=response,
                    list_response=list_response,
                    status=status,
                    idempotent=idempotent,
                    query=query.filters if isinstance(query, ListSpec) else tuple(query),
                    tags=tuple(tags),
                    auth=auth,
                    body_required=body_required,
                    errors=tuple(errors),
                    media_type=media_type,
                )
            )
            return handler

        return register

    def get(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kwargs)

    def install(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, _wrap(endpoint))


async def authenticate(request: web.Request, roles: frozenset[RoleName]) -> Principal:
    principal = await request.app[AUTHENTICATOR].authenticate(request.headers.get("Authorization"))
    if principal is None:
        raise Unauthorized(
            "a valid API key is required", code="unauthorized", param="Authorization"
        )
    if principal.role not in roles:
        raise Forbidden(f"a {principal.role} key may not do this", code="forbidden")
    return principal


async def parse_body(
    request: web.Request, model: type[BaseModel], *, required: bool = True
) -> BaseModel:
    raw = await request.read()
    if not required and not raw.strip():
        return model()
    try:
        payload = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("the body is not valid JSON", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_json")
    _refuse_unstorable_text(payload, ())
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def _refuse_unstorable_text(value: object, loc: tuple[str, ...]) -> None:
    """NUL characters and lone surrogates are valid JSON but no PostgreSQL text can hold them:
    refuse them here, naming the field, rather than fail with a 500 when they are stored."""
    if isinstance(value, str):
        if "\x00" in value or not _encodable(value):
            param = ".".join(loc) or None
            raise Unprocessable(
                f"{param or 'the body'}: contains characters that are not allowed",
                code="invalid_characters",
                param=param,
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_unstorable_text(key, loc)
            _refuse_unstorable_text(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_unstorable_text(item, (*loc, str(index)))


def refuse_unknown_params(request: web.Request, known: frozenset[str]) -> None:
    """A query parameter the endpoint does not take is a 422 `parameter_unknown` naming it:
    a misspelt filter must not silently list everything."""
    for name in request.query:
        if name not in known:
            takes = ", ".join(sorted(known)) or "no query parameters"
            raise Unprocessable(
                f"{name}: not a parameter of this endpoint (it takes {takes})",
                code="parameter_unknown",
                param=name,
            )


def check_storable_params(request: web.Request) -> None:
    """Path ids and query values that no PostgreSQL text can hold (a NUL byte, a lone
    surrogate) are a 422 `invalid_characters` naming the parameter, not a 500 when a query
    binds them."""
    for name, value in request.match_info.items():
        _refuse_unstorable_param(name, value)
    for name, value in request.query.items():
        _refuse_unstorable_param(name, value)


def _refuse_unstorable_param(name: str, value: str) -> None:
    if "\x00" in value or "\x00" in name or not _encodable(value) or not _encodable(name):
        raise Unprocessable(
            f"{name}: contains characters that are not allowed",
            code="invalid_characters",
            param=name,
        )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _wrap(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    known = endpoint.query_names

    async def handle(request: web.Request) -> web.StreamResponse:
        if endpoint.roles is not None:
            principal = await authenticate(request, endpoint.roles)
        elif endpoint.auth is not None:
            principal = await endpoint.auth(request)
        else:
            principal = ANONYMOUS
        check_storable_params(request)
        refuse_unknown_params(request, known)
        body = (
            await parse_body(request, endpoint.body, required=endpoint.body_required)
            if endpoint.body is not None
            else None
        )
        call: Call[Any] = Call(principal=principal, body=body, query=dict(request.query))
        if not endpoint.idempotent:
            return await endpoint.handler(request, call)
        return await _idempotent(request, endpoint, call)

    handle.__name__ = endpoint.handler.__name__
    return handle


async def _idempotent(
    request: web.Request, endpoint: Endpoint, call: Call[Any]
) -> web.StreamResponse:
    key = validate_key(request.headers.get("Idempotency-Key"))
    store = request.app[IDEMPOTENCY]
    scope = call.principal.scope
    fingerprint = request_fingerprint(request.method, request.path, await request.read())
    stored = await store.begin(
        scope=scope, key=key, method=request.method, path=request.path, fingerprint=fingerprint
    )
    if stored is not None:
        return web.Response(
            status=stored.status,
            body=stored.body,
            content_type=stored.content_type,
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        response = await endpoint.handler(request, call)
    except ApiError as exc:
        if exc.status >= 500 or exc.retry_after is not None:
            await store.release(scope=scope, key=key)  # "ask again later": run it again then
        else:  # a refusal is the answer to this request: replay it, as the PSP API does
            await _store(store, scope, key, exc.response())
        raise
    except BaseException:
        # a crash, an aiohttp HTTPException or a cancelled request: nothing to replay, so the
        # client's retry runs again (shielded: a cancelled handler must still free its key)
        await asyncio.shield(store.release(scope=scope, key=key))
        raise
    if response.status >= 500 or not isinstance(response, web.Response):
        await store.release(scope=scope, key=key)
        return response
    await _store(store, scope, key, response)
    return response


async def _store(store: IdempotencyStore, scope: str, key: str, response: web.Response) -> None:
    body = response.body
    await store.complete(
        scope=scope,
        key=key,
        response=StoredResponse(
            status=response.status,
            body=body if isinstance(body, bytes) else b"",
            content_type=response.content_type,
        ),
    )
