"""OpenAPI 3.1 document built from an `Api`'s endpoints and their pydantic models."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from common.http.pagination import PAGE_PARAMS, Filter
from common.http.routing import Api, Endpoint

_REF = "#/components/schemas/{model}"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "param": {"type": ["string", "null"]},
            },
        }
    },
}
PAGE_INFO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "has_previous": {"type": "boolean"},
        "has_next": {"type": "boolean"},
        "start_cursor": {"type": ["string", "null"]},
        "end_cursor": {"type": ["string", "null"]},
    },
}


def build_openapi(api: Api) -> dict[str, Any]:
    models: set[type[BaseModel]] = set()
    for e in api.endpoints:
        models.update(m for m in (e.body, e.response) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    keys, schema = models_json_schema([(m, "validation") for m in ordered], ref_template=_REF)
    components = dict(schema.get("$defs", {}))
    components["Error"] = ERROR_SCHEMA
    components["PageInfo"] = PAGE_INFO_SCHEMA

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return dict(keys[(model, "validation")])

    paths: dict[str, dict[str, Any]] = {}
    for endpoint in api.endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, ref)
    return {
        "openapi": "3.1.0",
        "info": {"title": api.title, "version": api.version},
        "components": {
            "schemas": components,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "paths": paths,
    }


def _operation(
    endpoint: Endpoint, ref: Callable[[type[BaseModel]], dict[str, Any]]
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "operationId": endpoint.handler.__name__,
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", endpoint.path)
        ],
        "responses": {},
    }
    if endpoint.tags:
        operation["tags"] = list(endpoint.tags)
    if endpoint.roles is not None:
        operation["security"] = [{"apiKey": []}]
        operation["description"] = "Roles: " + ", ".join(sorted(endpoint.roles))
    elif endpoint.auth is not None:
        operation["security"] = [{"apiKey": []}]
        operation["description"] = (endpoint.auth.__doc__ or "A client token.").strip()
    for item in endpoint.query:
        name, description, schema = (
            (item.param, item.description, item.schema())
            if isinstance(item, Filter)
            else (item[0], item[1], {"type": "string"})
        )
        operation["parameters"].append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": schema,
                "description": description,
            }
        )
    if endpoint.list_response:
        for name, type_, description in PAGE_PARAMS:
            operation["parameters"].append(
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "schema": {"type": type_},
                    "description": description,
                }
            )
    if endpoint.idempotent:
        operation["parameters"].append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        )
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": endpoint.body_required,
            "content": {"application/json": {"schema": ref(endpoint.body)}},
        }
    operation["responses"][str(endpoint.status)] = {
        "description": "success",
        "content": (
            {"application/json": {"schema": _success(endpoint, ref)}}
            if endpoint.media_type == "application/json"
            else {endpoint.media_type: {"schema": {"type": "string"}}}
        ),
    }
    error_statuses = _error_statuses(endpoint)
    for status in sorted(set(error_statuses)):
        operation["responses"][status] = {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
        }
    return operation


def _error_statuses(endpoint: Endpoint) -> list[str]:
    """Every error status the endpoint's declaration implies (handlers add their own)."""
    error_statuses: list[str] = ["400", "422"] if endpoint.body is not None else []
    if endpoint.list_response or endpoint.query or "{" in endpoint.path:
        # cursor_invalid, parameter_invalid, invalid_characters (a NUL byte in a path id or
        # a query value)
        error_statuses.append("422")
    if endpoint.idempotent:
        error_statuses += ["400", "422"]  # idempotency_key_required, idempotency_params_mismatch
    if endpoint.roles is not None:
        error_statuses += ["401", "403"]
    elif endpoint.auth is not None:
        error_statuses.append("401")
    if "{" in endpoint.path:
        error_statuses.append("404")
    if endpoint.idempotent:
        error_statuses.append("409")
    error_statuses += [str(status) for status in endpoint.errors]
    return error_statuses


def _success(
    endpoint: Endpoint, ref: Callable[[type[BaseModel]], dict[str, Any]]
) -> dict[str, Any]:
    data: dict[str, Any] = ref(endpoint.response) if endpoint.response else {"type": "object"}
    if endpoint.list_response:
        return {
            "type": "object",
            "properties": {
                "id": {"type": "null"},
                "type": {"const": "array"},
                "data": {"type": "array", "items": data},
                "page_info": {"$ref": _REF.format(model="PageInfo")},
            },
        }
    return {
        "type": "object",
        "properties": {
            "id": {"type": ["string", "null"]},
            "type": {"type": "string"},
            "data": data,
            "page_info": {"type": "null"},
        },
    }
