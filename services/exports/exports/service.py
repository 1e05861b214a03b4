"""Exports' use cases. Each takes `conn`; the transaction is opened at the edge (the API
handler, the consumer, the rebuild command)."""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg
from pydantic import ValidationError

from common.db.types import Conn
from common.events import Envelope, EventData
from common.http.errors import from_validation_error
from exports import errors, repo
from exports.domain import (
    FEED_EVENTS,
    FILTERS,
    ExportType,
    Filters,
    Scope,
    check_filters,
    may_export,
    project,
)


def parse_filters(export_type: ExportType, raw: dict[str, Any]) -> Filters:
    """The type's filters, validated; a problem is a 422 naming `filters.<field>`."""
    try:
        filters = FILTERS[export_type].model_validate(raw)
    except ValidationError as exc:
        raise from_validation_error(exc, prefix=("filters",)) from None
    problem = check_filters(filters)
    if problem is not None:
        raise errors.filter_invalid(problem.param, problem.message)
    return filters


async def create_export(
    conn: Conn,
    scope: Scope,
    export_type: ExportType,
    raw_filters: dict[str, Any],
    *,
    requested_by: str | None,
) -> asyncpg.Record:
    if not may_export(export_type, scope):
        raise errors.operators_only(export_type)
    filters = parse_filters(export_type, raw_filters)
    return await repo.insert_export(
        conn,
        export_id=f"exp_{secrets.token_hex(12)}",
        tenant_id=scope.tenant_id,
        export_type=export_type,
        filters=filters.model_dump(mode="json", exclude_none=True),
        supplier_scope=scope.supplier_id,
        requested_by=requested_by,
    )


async def apply_event(conn: Conn, envelope: Envelope, event: EventData, tenant_id: str) -> None:
    """Journal the event and apply it to the read models (the consumer's inbox makes a
    redelivery a no-op; the journal and the rows' natural keys make a republish one too)."""
    if await repo.log_event(
        conn, envelope.id, envelope.type, tenant_id, envelope.model_dump(mode="json")
    ):
        await repo.apply_projection(
            conn, project(envelope.type, event, tenant_id, envelope.occurred_at)
        )


async def rebuild_read_models(conn: Conn, batch: int = 1000) -> int:
    """Empty the read models and apply the journal again, in the order it was received.
    Run it in one transaction: readers keep the old read models until it commits."""
    await repo.truncate_read_models(conn)
    applied = 0
    last = 0
    while rows := await repo.journal_batch(conn, last, batch):
        for row in rows:
            envelope = Envelope.model_validate(row["envelope"])
            event = FEED_EVENTS[row["event_type"]].model_validate(envelope.data)
            await repo.apply_projection(
                conn, project(envelope.type, event, row["tenant_id"], envelope.occurred_at)
            )
        applied += len(rows)
        last = rows[-1]["seq"]
    return applied
