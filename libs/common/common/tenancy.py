"""Tenancy replicas for services other than `tenants`.

`tenancy_consumption(queue)` keeps `replica_tenants`, `replica_suppliers` and
`replica_api_keys` up to date from the tenants service's full-state events; each row is
replaced only by a higher `revision`, so redelivered or reordered events cannot roll a replica
back. `replica_key_lookup(pool)` authenticates API keys against that replica, so a revoked key
stops working one event's delay after its revocation.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import asyncpg
from aiohttp import web

from common.broker.consumer import Handler
from common.broker.topology import QueueSpec
from common.db.types import Conn
from common.events import (
    DOMAIN_EXCHANGE,
    ApiKeyUpserted,
    Envelope,
    EventType,
    SupplierUpserted,
    TenantUpserted,
    read_data,
)
from common.http.auth import Authenticator, KeyLookup, Principal
from common.http.routing import AUTHENTICATOR
from common.runtime import DB_POOL, Consumption


async def apply_tenant(conn: Conn, envelope: Envelope) -> None:
    event = read_data(TenantUpserted, envelope.data)
    await conn.execute(
        """
        INSERT INTO replica_tenants (tenant_id, revision, merchant_account, data)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (tenant_id) DO UPDATE
           SET revision = EXCLUDED.revision, merchant_account = EXCLUDED.merchant_account,
               data = EXCLUDED.data, updated_at = now()
         WHERE replica_tenants.revision < EXCLUDED.revision
        """,
        event.tenant_id,
        event.revision,
        event.merchant_account,
        event.model_dump(mode="json"),
    )


async def apply_supplier(conn: Conn, envelope: Envelope) -> None:
    event = read_data(SupplierUpserted, envelope.data)
    await conn.execute(
        """
        INSERT INTO replica_suppliers (tenant_id, supplier_id, revision, data)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (tenant_id, supplier_id) DO UPDATE
           SET revision = EXCLUDED.revision, data = EXCLUDED.data, updated_at = now()
         WHERE replica_suppliers.revision < EXCLUDED.revision
        """,
        event.tenant_id,
        event.supplier_id,
        event.revision,
        event.model_dump(mode="json"),
    )


async def apply_api_key(conn: Conn, envelope: Envelope) -> None:
    event = read_data(ApiKeyUpserted, envelope.data)
    await conn.execute(
        """
        INSERT INTO replica_api_keys
            (key_id, tenant_id, revision, key_hash, role, supplier_id, revoked)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (key_id) DO UPDATE
           SET revision = EXCLUDED.revision, revoked = EXCLUDED.revoked,
               role = EXCLUDED.role, supplier_id = EXCLUDED.supplier_id, updated_at = now()
         WHERE replica_api_keys.revision < EXCLUDED.revision
        """,
        event.key_id,
        event.tenant_id,
        event.revision,
        event.key_hash,
        event.role,
        event.supplier_id,
        event.revoked,
    )


TENANCY_HANDLERS: dict[str, Handler] = {
    EventType.TENANT_UPSERTED: apply_tenant,
    EventType.SUPPLIER_UPSERTED: apply_supplier,
    EventType.API_KEY_UPSERTED: apply_api_key,
}


def tenancy_consumption(queue: str) -> Consumption:
    """The consumer a service adds to keep its tenancy replica (queue e.g. `checkout.tenancy`)."""
    return Consumption(
        spec=QueueSpec(name=queue, bindings=[(DOMAIN_EXCHANGE, t) for t in TENANCY_HANDLERS]),
        handlers=TENANCY_HANDLERS,
    )


def replica_key_lookup(pool: asyncpg.Pool) -> KeyLookup:
    async def lookup(key_hash: str) -> Principal | None:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT k.key_id, k.tenant_id, k.role, k.supplier_id FROM replica_api_keys k"
                " JOIN replica_tenants t USING (tenant_id)"
                " WHERE k.key_hash = $1 AND NOT k.revoked AND t.data->>'status' = 'active'",
                key_hash,
            )
        if row is None:
            return None
        return Principal(
            role=row["role"],
            tenant_id=row["tenant_id"],
            supplier_id=row["supplier_id"],
            key_id=row["key_id"],
        )

    return lookup


def replica_authentication() -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context that authenticates API keys against the tenancy replica (every
    service but `tenants`, which holds the keys themselves). Needs `runtime.database` first."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[AUTHENTICATOR] = Authenticator(replica_key_lookup(app[DB_POOL]))
        yield

    return ctx


def tenant_settings(data: str | dict[str, object]) -> TenantUpserted:
    return TenantUpserted.model_validate(json.loads(data) if isinstance(data, str) else data)
