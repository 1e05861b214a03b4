"""Query-string filters shared by the admin lists."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from common.http.errors import Unprocessable


def datetime_param(query: Mapping[str, str], name: str) -> datetime | None:
    """An ISO 8601 date or date-time from the query; without an offset it is UTC."""
    value = query.get(name)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Unprocessable(
            f"{name}: not an ISO 8601 date or date-time", code="parameter_invalid", param=name
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
