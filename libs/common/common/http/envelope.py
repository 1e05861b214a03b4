"""Success and list envelopes (DESIGN §4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from common.http.pagination import PageInfo


def _data(value: BaseModel | dict[str, Any]) -> dict[str, Any]:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def ok(
    type_: str,
    data: BaseModel | dict[str, Any],
    *,
    id_: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = _data(data)
    return web.json_response(
        {
            "id": id_ if id_ is not None else body.get("id"),
            "type": type_,
            "data": body,
            "page_info": None,
        },
        status=status,
        headers=headers,
    )


def page(items: Sequence[BaseModel | dict[str, Any]], info: PageInfo) -> web.Response:
    return web.json_response(
        {
            "id": None,
            "type": "array",
            "data": [_data(i) for i in items],
            "page_info": info.model_dump(),
        }
    )
