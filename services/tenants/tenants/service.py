"""The tenants service's use cases. Each change runs in the caller's transaction (opened at the
edge: the API handler), locks the aggregate's row, bumps its `revision` and writes the
aggregate's full-state event to the outbox, so the state and its event commit together and
concurrent changes get consecutive revisions."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import asyncpg
from asyncpg import Record as Row

from common.broker import publish_event
from common.db.types import Conn
from common.events import EventType
from common.http.auth import Environment, Principal, generate_key, hash_key
from tenants import buyer_accounts, domain, errors, repo
from tenants.schemas import (
    ApiKeyCreate,
    CommissionPut,
    SettingsPatch,
    SupplierCreate,
    SupplierPatch,
    TenantCreate,
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass(frozen=True)
class IssuedKey:
    key: str
    state: domain.ApiKeyState


@dataclass(frozen=True)
class CreatedTenant:
    row: Row
    operator_key: IssuedKey


# --- tenants ----------------------------------------------------------------------------------


async def create_tenant(
    conn: Conn, body: TenantCreate, *, environment: Environment
) -> CreatedTenant:
    settings = domain.TenantSettings(merchant_account=body.merchant_account)
    if body.settings is not None:
        try:
            settings = domain.apply_settings(settings, body.settings.changes())
        except domain.RuleViolation as exc:
            exc.param = f"settings.{exc.param}" if exc.param else "settings"
            raise errors.rule_violated(exc) from None
    tenant_id = new_id("ten")
    if await repo.merchant_account_taken(conn, body.merchant_account):
        raise errors.merchant_account_taken()
    try:
        row = await repo.insert_tenant(
            conn,
            tenant_id=tenant_id,
            name=body.name,
            psp=body.psp,
            currency=body.currency,
            settings=settings,
        )
    except asyncpg.UniqueViolationError:
        raise errors.merchant_account_taken() from None
    await _publish_tenant(conn, row)
    key = await _issue_key(
        conn,
        tenant_id,
        domain.KeyRole(role="operator"),
        name="first operator key",
        environment=environment,
    )
    return CreatedTenant(row=row, operator_key=key)


async def get_tenant(conn: Conn, tenant_id: str) -> Row:
    row = await repo.tenant(conn, tenant_id)
    if row is None:
        raise errors.tenant_not_found()
    return row


async def update_settings(conn: Conn, tenant_id: str, body: SettingsPatch) -> Row:
    row = await repo.tenant(conn, tenant_id, for_update=True)
    if row is None:
        raise errors.tenant_not_found()
    current = domain.settings_from_row(row)
    try:
        updated = domain.apply_settings(current, body.changes())
    except domain.RuleViolation as exc:
        raise errors.rule_violated(exc) from None
    if updated == current:
        return row
    if updated.merchant_account != current.merchant_account and (
        await repo.merchant_account_taken(conn, updated.merchant_account, other_than=tenant_id)
    ):
        raise errors.merchant_account_taken()
    try:
        row = await repo.update_tenant_settings(conn, tenant_id, updated)
    except asyncpg.UniqueViolationError:
        raise errors.merchant_account_taken() from None
    await _publish_tenant(conn, row)
    return row


async def _publish_tenant(conn: Conn, row: Row) -> None:
    await publish_event(
        conn,
        EventType.TENANT_UPSERTED,
        domain.tenant_event(row),
        tenant_id=row["id"],
        aggregate_id=row["id"],
    )


# --- suppliers --------------------------------------------------------------------------------


async def create_supplier(conn: Conn, tenant_id: str, body: SupplierCreate) -> Row:
    state = domain.SupplierState(
        name=body.name,
        kyc_status=body.kyc_status,
        iban=body.iban,
        payment_due_date_delay=body.payment_due_date_delay,
        payment_due_date_mode=body.payment_due_date_mode,
    )
    row = await repo.insert_supplier(
        conn, supplier_id=new_id("sup"), tenant_id=tenant_id, state=state
    )
    await _publish_supplier(conn, row)
    return row


async def get_supplier(conn: Conn, principal: Principal, supplier_id: str) -> Row:
    """A supplier key reads only itself; any other id reads as absent, as another tenant's."""
    assert principal.tenant_id is not None
    if principal.role == "supplier" and principal.supplier_id != supplier_id:
        raise errors.supplier_not_found()
    row = await repo.supplier(conn, principal.tenant_id, supplier_id)
    if row is None:
        raise errors.supplier_not_found()
    return row


async def update_supplier(conn: Conn, tenant_id: str, supplier_id: str, body: SupplierPatch) -> Row:
    row = await repo.supplier(conn, tenant_id, supplier_id, for_update=True)
    if row is None:
        raise errors.supplier_not_found()
    current = domain.supplier_from_row(row)
    updated = domain.apply_supplier_changes(current, body.changes())
    if updated == current:
        return row
    row = await repo.update_supplier(conn, supplier_id, updated)
    await _publish_supplier(conn, row)
    return row


async def _publish_supplier(conn: Conn, row: Row) -> None:
    commission = await repo.active_commission(conn, row["id"])
    await publish_event(
        conn,
        EventType.SUPPLIER_UPSERTED,
        domain.supplier_event(row, commission["rate"] if commission is not None else None),
        tenant_id=row["tenant_id"],
        aggregate_id=row["id"],
    )


# --- commissions ------------------------------------------------------------------------------


async def put_commission(conn: Conn, tenant_id: str, supplier_id: str, body: CommissionPut) -> Row:
    """Record a commission line for the supplier. The previous active line is kept as inactive
    history; `active: false` records the line inactive, leaving the supplier without one.
    Putting the rate that is already active changes nothing."""
    supplier = await repo.supplier(conn, tenant_id, supplier_id, for_update=True)
    if supplier is None:
        raise errors.supplier_not_found(param="supplier_id")
    current = await repo.active_commission(conn, supplier_id)
    if body.active and current is not None and current["rate"] == body.rate:
        return current
    await repo.deactivate_commission(conn, supplier_id)
    line = await repo.insert_commission(
        conn,
        commission_id=new_id("com"),
        tenant_id=tenant_id,
        supplier_id=supplier_id,
        rate=body.rate,
        active=body.active,
    )
    supplier = await repo.bump_supplier(conn, supplier_id)
    await _publish_supplier(conn, supplier)
    return line


async def get_commission(conn: Conn, tenant_id: str, supplier_id: str) -> Row:
    if await repo.supplier(conn, tenant_id, supplier_id) is None:
        raise errors.supplier_not_found(param="supplier_id")
    line = await repo.active_commission(conn, supplier_id)
    if line is None:
        raise errors.commission_not_found()
    return line


# --- API keys ---------------------------------------------------------------------------------


async def create_api_key(
    conn: Conn, tenant_id: str, body: ApiKeyCreate, *, environment: Environment
) -> IssuedKey:
    try:
        role = domain.parse_role(body.role)
    except domain.RuleViolation as exc:
        raise errors.rule_violated(exc) from None
    if role.supplier_id is not None and (
        await repo.supplier(conn, tenant_id, role.supplier_id) is None
    ):
        raise errors.supplier_unknown()
    return await _issue_key(conn, tenant_id, role, name=body.name, environment=environment)


async def _issue_key(
    conn: Conn,
    tenant_id: str,
    role: domain.KeyRole,
    *,
    name: str | None,
    environment: Environment,
) -> IssuedKey:
    key = generate_key(environment)
    state = await repo.insert_api_key(
        conn,
        key_id=new_id("key"),
        tenant_id=tenant_id,
        key_hash=hash_key(key),
        prefix=domain.key_prefix(key),
        role=role.role,
        supplier_id=role.supplier_id,
        name=name,
    )
    return IssuedKey(key=key, state=state)


async def revoke_api_key(conn: Conn, tenant_id: str, key_id: str) -> domain.ApiKeyState:
    """Load the key (after the tenant's row: revocations of one tenant are serialised, so two
    operators revoking each other's keys cannot leave the tenant without one), decide
    (`domain.check_revocation`), save (revoke and enqueue the event)."""
    if await repo.tenant(conn, tenant_id, for_update=True) is None:
        raise errors.tenant_not_found()
    key = await repo.api_key(conn, tenant_id, key_id, for_update=True)
    if key is None:
        raise errors.api_key_not_found()
    others = await repo.active_operator_keys(conn, tenant_id, other_than=key_id)
    try:
        changes = domain.check_revocation(
            key_role=key.role,
            already_revoked=key.revoked_at is not None,
            other_active_operators=others,
        )
    except domain.RuleViolation as exc:
        raise errors.rule_violated(exc) from None
    if not changes:
        return key
    return await repo.revoke_api_key(conn, key_id)


async def _republish_api_key(conn: Conn, row: Row) -> None:
    await repo.publish_api_key(conn, repo.api_key_of(row))


async def principal_for(conn: Conn, key_hash: str) -> Principal | None:
    row = await repo.principal_by_hash(conn, key_hash)
    if row is None:
        return None
    return Principal(
        role=row["role"],
        tenant_id=row["tenant_id"],
        supplier_id=row["supplier_id"],
        key_id=row["id"],
    )


# --- republishing -----------------------------------------------------------------------------


async def republish(conn: Conn) -> dict[str, int]:
    """Publish the full state of every tenant, supplier and API key again, as they are now
    (same revisions): a replica that has them ignores them, one that lacks them (a service
    added later, a replica rebuilt) fills in. Revoked keys too, so revocations reach it. Runs in
    the caller's repeatable-read transaction: one consistent snapshot."""
    counts: dict[str, int] = {}
    for table, publish in (
        ("tenants", _publish_tenant),
        ("suppliers", _publish_supplier),
        ("api_keys", _republish_api_key),
    ):
        rows = await repo.every(conn, table)
        for row in rows:
            await publish(conn, row)
        counts[table] = len(rows)
    counts["buyer_accounts"] = await buyer_accounts.republish(conn)
    return counts
