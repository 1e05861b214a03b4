"""The tenants service's SQL. Every function runs on the caller's connection (and transaction)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from common.broker import publish_event
from common.broker.outbox import enqueue_many, new_envelope
from common.db.types import Conn
from common.events import EventData, EventType
from common.http.auth import Principal
from common.http.pagination import Filter, ListSpec, PageInfo, fetch_list
from common.row import Row
from tenants.domain import (
    KYC_STATUSES,
    ApiKeyState,
    Commission,
    CommissionDecision,
    Supplier,
    SupplierDecision,
    Tenant,
    TenantDecision,
    TenantSettings,
    api_key_event,
    commission_from_row,
    supplier_event,
    supplier_from_row,
    tenant_event,
    tenant_from_row,
)

_TENANT_SETTINGS = (
    "merchant_account, default_rate, capture_mode, capture_delay_hours,"
    " allowed_logistic_statuses, marketplace_banking_mode, funding_policy, payout_schedule,"
    " time_zone, bank_transfer_iban"
)


def _settings_args(settings: TenantSettings) -> list[Any]:
    return [
        settings.merchant_account,
        settings.default_rate,
        settings.capture_mode,
        settings.capture_delay_hours,
        list(settings.allowed_logistic_statuses),
        settings.marketplace_banking_mode,
        settings.funding_policy,
        settings.payout_schedule.model_dump(mode="json"),
        settings.time_zone,
        settings.bank_transfer_iban,
    ]


# --- tenants ----------------------------------------------------------------------------------


async def _enqueue(conn: Conn, events: Sequence[tuple[EventType, EventData, str, str]]) -> None:
    """Enqueue `(type, data, tenant id, aggregate id)` events in one statement, in order."""
    await enqueue_many(
        conn,
        [
            (new_envelope(event_type, data, tenant_id=tenant_id), aggregate_id)
            for event_type, data, tenant_id, aggregate_id in events
        ],
    )


async def insert_tenant(conn: Conn, decision: TenantDecision) -> Tenant:
    """Store a new tenant and enqueue its `tenant.upserted`, in the caller's transaction."""
    row = await conn.fetchrow(
        f"INSERT INTO tenants (id, revision, name, psp, currency, {_TENANT_SETTINGS})"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING *",
        decision.tenant_id,
        decision.revision,
        decision.name,
        decision.psp,
        decision.currency,
        *_settings_args(decision.settings),
    )
    assert row is not None  # RETURNING the row just written
    await _enqueue_tenant(conn, decision)
    return tenant_from_row(row)


async def _enqueue_tenant(conn: Conn, decision: TenantDecision) -> None:
    await _enqueue(
        conn,
        [(EventType.TENANT_UPSERTED, decision.event, decision.tenant_id, decision.tenant_id)],
    )


async def tenant(conn: Conn, tenant_id: str, *, for_update: bool = False) -> Tenant | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT * FROM tenants WHERE id = $1{lock}", tenant_id)
    return None if row is None else tenant_from_row(row)


async def tenant_exists(conn: Conn, tenant_id: str, *, for_update: bool = False) -> bool:
    lock = " FOR UPDATE" if for_update else ""
    found = await conn.fetchval(f"SELECT true FROM tenants WHERE id = $1{lock}", tenant_id)
    return found is not None


async def merchant_account_taken(
    conn: Conn, merchant_account: str, *, other_than: str | None = None
) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM tenants WHERE merchant_account = $1"
            " AND id IS DISTINCT FROM $2)",
            merchant_account,
            other_than,
        )
    )


async def save_tenant_settings(conn: Conn, decision: TenantDecision) -> Tenant:
    """Write the tenant's new settings and revision and enqueue its `tenant.upserted`, in the
    caller's transaction (which holds the tenant's row lock)."""
    row = await conn.fetchrow(
        """
        UPDATE tenants
           SET merchant_account = $3, default_rate = $4, capture_mode = $5,
               capture_delay_hours = $6, allowed_logistic_statuses = $7,
               marketplace_banking_mode = $8, funding_policy = $9, payout_schedule = $10,
               time_zone = $11, bank_transfer_iban = $12,
               revision = $2, updated_at = now()
         WHERE id = $1
        RETURNING *
        """,
        decision.tenant_id,
        decision.revision,
        *_settings_args(decision.settings),
    )
    assert row is not None  # the caller holds the row's lock
    await _enqueue_tenant(conn, decision)
    return tenant_from_row(row)


# --- suppliers --------------------------------------------------------------------------------


async def insert_supplier(conn: Conn, decision: SupplierDecision) -> Supplier:
    """Store a new supplier and enqueue its `supplier.upserted`, in the caller's transaction."""
    state = decision.state
    row = await conn.fetchrow(
        """
        INSERT INTO suppliers (id, tenant_id, revision, name, kyc_status, iban,
                               payment_due_date_delay, payment_due_date_mode)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        RETURNING *
        """,
        decision.supplier_id,
        decision.tenant_id,
        decision.revision,
        state.name,
        state.kyc_status,
        state.iban,
        state.payment_due_date_delay,
        state.payment_due_date_mode,
    )
    assert row is not None  # RETURNING the row just written
    await _enqueue_supplier(conn, decision)
    return supplier_from_row(row)


async def _enqueue_supplier(conn: Conn, decision: SupplierDecision) -> None:
    await _enqueue(
        conn,
        [(EventType.SUPPLIER_UPSERTED, decision.event, decision.tenant_id, decision.supplier_id)],
    )


async def supplier(
    conn: Conn, tenant_id: str, supplier_id: str, *, for_update: bool = False
) -> Supplier | None:
    """The supplier if it belongs to `tenant_id`: another tenant's id reads as absent."""
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT * FROM suppliers WHERE id = $1 AND tenant_id = $2{lock}", supplier_id, tenant_id
    )
    return None if row is None else supplier_from_row(row)


async def save_supplier(conn: Conn, decision: SupplierDecision) -> Supplier:
    """Write the supplier's new state and revision and enqueue its `supplier.upserted`, in the
    caller's transaction (which holds the supplier's row lock)."""
    state = decision.state
    row = await conn.fetchrow(
        """
        UPDATE suppliers
           SET name = $3, kyc_status = $4, iban = $5, payment_due_date_delay = $6,
               payment_due_date_mode = $7, revision = $2, updated_at = now()
         WHERE id = $1
        RETURNING *
        """,
        decision.supplier_id,
        decision.revision,
        state.name,
        state.kyc_status,
        state.iban,
        state.payment_due_date_delay,
        state.payment_due_date_mode,
    )
    assert row is not None  # the caller holds the row's lock
    await _enqueue_supplier(conn, decision)
    return supplier_from_row(row)


TENANT_LIST = ListSpec(
    table="tenants",
    filters=(
        Filter("merchant_account", "merchant_account = {}", "only the tenant of this account"),
        Filter(
            "status", "status = {}", "only tenants in this status", "choice", ("active", "disabled")
        ),
    ),
)


async def tenant_page(conn: Conn, query: Mapping[str, str]) -> tuple[list[Tenant], PageInfo]:
    """A page of every tenant (the platform admin's view)."""
    rows, info = await fetch_list(conn, TENANT_LIST, query, scope=[])
    return [tenant_from_row(row) for row in rows], info


SUPPLIER_LIST = ListSpec(
    table="suppliers",
    filters=(
        Filter(
            "kyc_status",
            "kyc_status = {}",
            "only suppliers with this KYC status",
            "choice",
            KYC_STATUSES,
        ),
    ),
)


async def supplier_page(
    conn: Conn, tenant_id: str, query: Mapping[str, str], *, only_id: str | None
) -> tuple[list[Supplier], PageInfo]:
    """A page of the tenant's suppliers (`only_id`: a supplier key sees only itself)."""
    scope: list[tuple[str, Any]] = [("tenant_id = {}", tenant_id)]
    if only_id is not None:
        scope.append(("id = {}", only_id))
    rows, info = await fetch_list(conn, SUPPLIER_LIST, query, scope=scope)
    return [supplier_from_row(row) for row in rows], info


# --- commissions ------------------------------------------------------------------------------


async def active_commission(conn: Conn, supplier_id: str) -> Commission | None:
    row = await conn.fetchrow(
        "SELECT * FROM commissions WHERE supplier_id = $1 AND active", supplier_id
    )
    return None if row is None else commission_from_row(row)


async def save_commission(conn: Conn, decision: CommissionDecision) -> Commission:
    """Turn the active line (if any) into history, insert the new line, write the supplier's
    new revision and enqueue its `supplier.upserted`, in the caller's transaction (which holds
    the supplier's row lock)."""
    await conn.execute(
        "UPDATE commissions SET active = false, deactivated_at = now()"
        " WHERE supplier_id = $1 AND active",
        decision.supplier_id,
    )
    row = await conn.fetchrow(
        """
        INSERT INTO commissions (id, tenant_id, supplier_id, rate, active, deactivated_at)
        VALUES ($1, $2, $3, $4, $5, CASE WHEN $5 THEN NULL ELSE now() END)
        RETURNING *
        """,
        decision.commission_id,
        decision.tenant_id,
        decision.supplier_id,
        decision.rate,
        decision.active,
    )
    assert row is not None  # RETURNING the row just written
    await conn.execute(
        "UPDATE suppliers SET revision = $2, updated_at = now() WHERE id = $1",
        decision.supplier_id,
        decision.supplier.revision,
    )
    await _enqueue_supplier(conn, decision.supplier)
    return commission_from_row(row)


COMMISSION_LIST = ListSpec(
    table="commissions",
    filters=(
        Filter(
            "include_inactive",
            "({} OR active)",
            "true to include replaced lines (history); false (the default): active lines",
            "boolean",
        ),
    ),
)


async def commission_page(
    conn: Conn, tenant_id: str, query: Mapping[str, str]
) -> tuple[list[Commission], PageInfo]:
    query = {"include_inactive": "false", **query}
    rows, info = await fetch_list(
        conn, COMMISSION_LIST, query, scope=[("tenant_id = {}", tenant_id)]
    )
    return [commission_from_row(row) for row in rows], info


# --- API keys ---------------------------------------------------------------------------------


async def insert_api_key(
    conn: Conn,
    *,
    key_id: str,
    tenant_id: str,
    key_hash: str,
    prefix: str,
    role: str,
    supplier_id: str | None,
    name: str | None,
) -> ApiKeyState:
    """Store a new key and enqueue its `api_key.upserted`, in the caller's transaction."""
    row = await conn.fetchrow(
        """
        INSERT INTO api_keys (id, tenant_id, revision, key_hash, prefix, role, supplier_id, name)
        VALUES ($1, $2, 1, $3, $4, $5, $6, $7)
        RETURNING *
        """,
        key_id,
        tenant_id,
        key_hash,
        prefix,
        role,
        supplier_id,
        name,
    )
    assert row is not None  # RETURNING the row just written
    key = api_key_of(row)
    await publish_api_key(conn, key)
    return key


def api_key_of(row: Row) -> ApiKeyState:
    return ApiKeyState(
        id=row["id"],
        tenant_id=row["tenant_id"],
        revision=row["revision"],
        key_hash=row["key_hash"],
        prefix=row["prefix"],
        role=row["role"],
        supplier_id=row["supplier_id"],
        name=row["name"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def api_key(
    conn: Conn, tenant_id: str, key_id: str, *, for_update: bool = False
) -> ApiKeyState | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT * FROM api_keys WHERE id = $1 AND tenant_id = $2{lock}", key_id, tenant_id
    )
    return None if row is None else api_key_of(row)


async def active_operator_keys(conn: Conn, tenant_id: str, *, other_than: str) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND role = 'operator'"
        " AND revoked_at IS NULL AND id <> $2",
        tenant_id,
        other_than,
    )
    return count


async def revoke_api_key(conn: Conn, key_id: str) -> ApiKeyState:
    """Revoke the key and enqueue its `api_key.upserted`, in the caller's transaction."""
    row = await conn.fetchrow(
        "UPDATE api_keys SET revoked_at = now(), revision = revision + 1 WHERE id = $1 RETURNING *",
        key_id,
    )
    assert row is not None  # RETURNING the row just written
    key = api_key_of(row)
    await publish_api_key(conn, key)
    return key


async def publish_api_key(conn: Conn, key: ApiKeyState) -> None:
    await publish_event(
        conn,
        EventType.API_KEY_UPSERTED,
        api_key_event(key),
        tenant_id=key.tenant_id,
        aggregate_id=key.id,
    )


API_KEY_LIST = ListSpec(table="api_keys")


async def api_key_page(
    conn: Conn, tenant_id: str, query: Mapping[str, str]
) -> tuple[list[ApiKeyState], PageInfo]:
    rows, info = await fetch_list(conn, API_KEY_LIST, query, scope=[("tenant_id = {}", tenant_id)])
    return [api_key_of(row) for row in rows], info


async def principal_by_hash(conn: Conn, key_hash: str) -> Principal | None:
    """The principal of the active key with this hash, of an active tenant."""
    row = await conn.fetchrow(
        "SELECT k.id, k.tenant_id, k.role, k.supplier_id FROM api_keys k"
        " JOIN tenants t ON t.id = k.tenant_id"
        " WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND t.status = 'active'",
        key_hash,
    )
    if row is None:
        return None
    return Principal(
        role=row["role"],
        tenant_id=row["tenant_id"],
        supplier_id=row["supplier_id"],
        key_id=row["id"],
    )


# --- republishing -----------------------------------------------------------------------------


async def every_tenant(conn: Conn) -> list[Tenant]:
    rows = await conn.fetch("SELECT * FROM tenants ORDER BY created_at, id")
    return [tenant_from_row(row) for row in rows]


async def every_supplier(conn: Conn) -> list[tuple[Supplier, Decimal | None]]:
    """Every supplier with its active commission rate (or None), oldest first."""
    rows = await conn.fetch(
        "SELECT s.*, c.rate AS commission_rate FROM suppliers s"
        " LEFT JOIN commissions c ON c.supplier_id = s.id AND c.active"
        " ORDER BY s.created_at, s.id"
    )
    return [(supplier_from_row(row), row["commission_rate"]) for row in rows]


async def every_api_key(conn: Conn) -> list[ApiKeyState]:
    rows = await conn.fetch("SELECT * FROM api_keys ORDER BY created_at, id")
    return [api_key_of(row) for row in rows]


async def enqueue_republished(
    conn: Conn,
    tenants: Sequence[Tenant],
    suppliers: Sequence[tuple[Supplier, Decimal | None]],
    keys: Sequence[ApiKeyState],
) -> None:
    """Enqueue the full-state events of these aggregates as they are (same revisions), in one
    statement, in the caller's transaction."""
    events: list[tuple[EventType, EventData, str, str]] = [
        (EventType.TENANT_UPSERTED, tenant_event(t), t.id, t.id) for t in tenants
    ]
    events += [
        (EventType.SUPPLIER_UPSERTED, supplier_event(s, rate), s.tenant_id, s.id)
        for s, rate in suppliers
    ]
    events += [(EventType.API_KEY_UPSERTED, api_key_event(k), k.tenant_id, k.id) for k in keys]
    await _enqueue(conn, events)
