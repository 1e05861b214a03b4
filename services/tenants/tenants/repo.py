"""The tenants service's SQL. Every function runs on the caller's connection (and transaction)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asyncpg import Record as Row

from common.broker import publish_event
from common.db.types import Conn
from common.events import EventType
from common.http.pagination import Filter, ListSpec, PageInfo, fetch_list
from tenants.domain import (
    KYC_STATUSES,
    ApiKeyState,
    SupplierState,
    TenantSettings,
    api_key_event,
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


async def insert_tenant(
    conn: Conn,
    *,
    tenant_id: str,
    name: str,
    psp: str,
    currency: str,
    settings: TenantSettings,
) -> Row:
    row = await conn.fetchrow(
        f"INSERT INTO tenants (id, revision, name, psp, currency, {_TENANT_SETTINGS})"
        " VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING *",
        tenant_id,
        name,
        psp,
        currency,
        *_settings_args(settings),
    )
    assert row is not None  # RETURNING the row just written
    return row


async def tenant(conn: Conn, tenant_id: str, *, for_update: bool = False) -> Row | None:
    lock = " FOR UPDATE" if for_update else ""
    row: Row | None = await conn.fetchrow(f"SELECT * FROM tenants WHERE id = $1{lock}", tenant_id)
    return row


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


async def update_tenant_settings(conn: Conn, tenant_id: str, settings: TenantSettings) -> Row:
    row = await conn.fetchrow(
        """
        UPDATE tenants
           SET merchant_account = $2, default_rate = $3, capture_mode = $4,
               capture_delay_hours = $5, allowed_logistic_statuses = $6,
               marketplace_banking_mode = $7, funding_policy = $8, payout_schedule = $9,
               time_zone = $10, bank_transfer_iban = $11,
               revision = revision + 1, updated_at = now()
         WHERE id = $1
        RETURNING *
        """,
        tenant_id,
        *_settings_args(settings),
    )
    assert row is not None  # RETURNING the row just written
    return row


# --- suppliers --------------------------------------------------------------------------------


async def insert_supplier(
    conn: Conn, *, supplier_id: str, tenant_id: str, state: SupplierState
) -> Row:
    row = await conn.fetchrow(
        """
        INSERT INTO suppliers (id, tenant_id, revision, name, kyc_status, iban,
                               payment_due_date_delay, payment_due_date_mode)
        VALUES ($1, $2, 1, $3, $4, $5, $6, $7)
        RETURNING *
        """,
        supplier_id,
        tenant_id,
        state.name,
        state.kyc_status,
        state.iban,
        state.payment_due_date_delay,
        state.payment_due_date_mode,
    )
    assert row is not None  # RETURNING the row just written
    return row


async def supplier(
    conn: Conn, tenant_id: str, supplier_id: str, *, for_update: bool = False
) -> Row | None:
    """The supplier if it belongs to `tenant_id`: another tenant's id reads as absent."""
    lock = " FOR UPDATE" if for_update else ""
    row: Row | None = await conn.fetchrow(
        f"SELECT * FROM suppliers WHERE id = $1 AND tenant_id = $2{lock}", supplier_id, tenant_id
    )
    return row


async def update_supplier(conn: Conn, supplier_id: str, state: SupplierState) -> Row:
    row = await conn.fetchrow(
        """
        UPDATE suppliers
           SET name = $2, kyc_status = $3, iban = $4, payment_due_date_delay = $5,
               payment_due_date_mode = $6, revision = revision + 1, updated_at = now()
         WHERE id = $1
        RETURNING *
        """,
        supplier_id,
        state.name,
        state.kyc_status,
        state.iban,
        state.payment_due_date_delay,
        state.payment_due_date_mode,
    )
    assert row is not None  # RETURNING the row just written
    return row


async def bump_supplier(conn: Conn, supplier_id: str) -> Row:
    row = await conn.fetchrow(
        "UPDATE suppliers SET revision = revision + 1, updated_at = now() WHERE id = $1"
        " RETURNING *",
        supplier_id,
    )
    assert row is not None  # RETURNING the row just written
    return row


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
) -> tuple[list[Row], PageInfo]:
    """A page of the tenant's suppliers (`only_id`: a supplier key sees only itself)."""
    scope: list[tuple[str, Any]] = [("tenant_id = {}", tenant_id)]
    if only_id is not None:
        scope.append(("id = {}", only_id))
    return await fetch_list(conn, SUPPLIER_LIST, query, scope=scope)


# --- commissions ------------------------------------------------------------------------------


async def active_commission(conn: Conn, supplier_id: str) -> Row | None:
    row: Row | None = await conn.fetchrow(
        "SELECT * FROM commissions WHERE supplier_id = $1 AND active", supplier_id
    )
    return row


async def deactivate_commission(conn: Conn, supplier_id: str) -> None:
    await conn.execute(
        "UPDATE commissions SET active = false, deactivated_at = now()"
        " WHERE supplier_id = $1 AND active",
        supplier_id,
    )


async def insert_commission(
    conn: Conn,
    *,
    commission_id: str,
    tenant_id: str,
    supplier_id: str,
    rate: Any,
    active: bool,
) -> Row:
    row = await conn.fetchrow(
        """
        INSERT INTO commissions (id, tenant_id, supplier_id, rate, active, deactivated_at)
        VALUES ($1, $2, $3, $4, $5, CASE WHEN $5 THEN NULL ELSE now() END)
        RETURNING *
        """,
        commission_id,
        tenant_id,
        supplier_id,
        rate,
        active,
    )
    assert row is not None  # RETURNING the row just written
    return row


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
) -> tuple[list[Row], PageInfo]:
    query = {"include_inactive": "false", **query}
    return await fetch_list(conn, COMMISSION_LIST, query, scope=[("tenant_id = {}", tenant_id)])


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


async def principal_by_hash(conn: Conn, key_hash: str) -> Row | None:
    """The active key with this hash, of an active tenant."""
    row: Row | None = await conn.fetchrow(
        "SELECT k.id, k.tenant_id, k.role, k.supplier_id FROM api_keys k"
        " JOIN tenants t ON t.id = k.tenant_id"
        " WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND t.status = 'active'",
        key_hash,
    )
    return row


# --- republishing -----------------------------------------------------------------------------


async def every(conn: Conn, table: str) -> list[Row]:
    """Every row of `tenants`, `suppliers` or `api_keys`, oldest first."""
    if table not in ("tenants", "suppliers", "api_keys"):
        raise ValueError(table)
    return list(await conn.fetch(f"SELECT * FROM {table} ORDER BY created_at, id"))
