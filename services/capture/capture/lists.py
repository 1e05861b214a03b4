"""Capture's list endpoints, declared (common.http.pagination): what each lists and how it
can be filtered. The declarations document the query parameters in `/openapi.json` and build
the SQL, so the routes in `api.py` hold none."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from capture.domain import CaptureStatus
from common.db.types import Conn
from common.http.pagination import Filter, ListSpec, PageInfo, fetch_list

TRIGGERS = ("IMMEDIATE", "DELAYED", "ON_SHIPMENT", "MANUAL", "BANK_TRANSFER")
INTERVENTION_STATUSES = ("OPEN", "RETRIED", "RESOLVED")
INTERVENTION_KINDS = ("retries_exhausted", "psp_refused", "capture_failed", "blocked")
OMS_OUTCOMES = ("capture_created", "recorded", "awaiting_authorisation", "ignored")

CAPTURES = ListSpec(
    table="captures",
    filters=(
        Filter("payment_id", "payment_id = {}", "only this payment's captures"),
        Filter("logistic_order_id", "logistic_order_id = {}", "only this logistic order's"),
        Filter("status", "status = {}", "the capture's status", "choice", tuple(CaptureStatus)),
        Filter("trigger", "trigger = {}", "what started the capture", "choice", TRIGGERS),
    ),
)

INTERVENTIONS = ListSpec(
    table=(
        "(SELECT i.*, c.payment_id, c.logistic_order_id FROM interventions i"
        " JOIN captures c ON c.id = i.capture_id) AS interventions"
    ),
    filters=(
        Filter(
            "status", "status = {}", "the intervention's status", "choice", INTERVENTION_STATUSES
        ),
        Filter("kind", "kind = {}", "why it needs a person", "choice", INTERVENTION_KINDS),
        Filter("capture_id", "capture_id = {}", "only this capture's interventions"),
        Filter("payment_id", "payment_id = {}", "only this payment's interventions"),
    ),
)

LOGISTIC_ORDER_EVENTS = ListSpec(
    table="logistic_order_events",
    filters=(
        Filter("outcome", "outcome = {}", "what the event did", "choice", OMS_OUTCOMES),
        Filter("status", "status = {}", "the OMS status, e.g. SHIPPED"),
        Filter("order_id", "order_id = {}", "only this order's events"),
        Filter("logistic_order_id", "logistic_order_id = {}", "only this logistic order's"),
    ),
)


async def capture_page(
    conn: Conn, tenant_id: str, supplier_id: str | None, query: Mapping[str, str]
) -> tuple[list[asyncpg.Record], PageInfo]:
    """The tenant's captures (a supplier's: its own)."""
    scope: list[tuple[str, Any]] = [("tenant_id = {}", tenant_id)]
    if supplier_id is not None:
        scope.append(("supplier_id = {}", supplier_id))
    return await fetch_list(conn, CAPTURES, query, scope=scope)


async def intervention_page(
    conn: Conn, tenant_id: str, query: Mapping[str, str]
) -> tuple[list[asyncpg.Record], PageInfo]:
    return await fetch_list(conn, INTERVENTIONS, query, scope=[("tenant_id = {}", tenant_id)])


async def logistic_order_event_page(
    conn: Conn, tenant_id: str, query: Mapping[str, str]
) -> tuple[list[asyncpg.Record], PageInfo]:
    return await fetch_list(
        conn, LOGISTIC_ORDER_EVENTS, query, scope=[("tenant_id = {}", tenant_id)]
    )
