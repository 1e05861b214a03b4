"""The tenants service's use cases. Each change runs in the caller's transaction (opened at the
edge: the API handler), locks the aggregate's row, bumps its `revision` and writes the
aggregate's full-state event to the outbox, so the state and its event commit together and
concurrent changes get consecutive revisions."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import asyncpg

from common.db.types import Conn
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
    tenant: domain.Tenant
    operator_key: IssuedKey


# --- tenants ----------------------------------------------------------------------------------


async def create_tenant(
    conn: Conn, body: TenantCreate, *, environment: Environment
) -> CreatedTenant:
    """Decide (`domain.new_tenant`), check the merchant account is free, save the tenant with
    its event, then issue its first operator key."""
    try:
        decision = domain.new_tenant(
            tenant_id=new_id("ten"),
            name=body.name,
            psp=body.psp,
            currency=body.currency,
            merchant_account=body.merchant_account,
            settings_changes=body.settings.changes() if body.settings is not None else None,
        )
    except domain.RuleViolation as exc:
        raise errors.rule_violated(exc) from None
    if await repo.merchant_account_taken(conn, body.merchant_account):
        raise errors.merchant_account_taken()
    try:
        tenant = await repo.insert_tenant(conn, decision)
    except asyncpg.UniqueViolationError:
        raise errors.merchant_account_taken() from None
    key = await _issue_key(
        conn,
        tenant.id,
        domain.KeyRole(role="operator"),
        name="first operator key",
        environment=environment,
    )
    return CreatedTenant(tenant=tenant, operator_key=key)


async def get_tenant(conn: Conn, tenant_id: str) -> domain.Tenant:
    tenant = await repo.tenant(conn, tenant_id)
    if tenant is None:
        raise errors.tenant_not_found()
    return tenant


async def update_settings(conn: Conn, tenant_id: str, body: SettingsPatch) -> domain.Tenant:
    """Load (the tenant, locked), decide (`domain.decide_settings`), save (settings, revision
    and `tenant.upserted`)."""
    current = await repo.tenant(conn, tenant_id, for_update=True)
    if current is None:
        raise errors.tenant_not_found()
    try:
        decision = domain.decide_settings(current, body.changes())
    except domain.RuleViolation as exc:
        raise errors.rule_violated(exc) from None
    if decision is None:
        return current
    merchant_account = decision.settings.merchant_account
    if merchant_account != current.settings.merchant_account and (
        await repo.merchant_account_taken(conn, merchant_account, other_than=tenant_id)
    ):
        raise errors.merchant_account_taken()
    try:
        return await repo.save_tenant_settings(conn, decision)
    except asyncpg.UniqueViolationError:
        raise errors.merchant_account_taken() from None


# --- suppliers --------------------------------------------------------------------------------


async def create_supplier(conn: Conn, tenant_id: str, body: SupplierCreate) -> domain.Supplier:
    state = domain.SupplierState(
        name=body.name,
        kyc_status=body.kyc_status,
        iban=body.iban,
        payment_due_date_delay=body.payment_due_date_delay,
        payment_due_date_mode=body.payment_due_date_mode,
    )
    decision = domain.new_supplier(supplier_id=new_id("sup"), tenant_id=tenant_id, state=state)
    return await repo.insert_supplier(conn, decision)


async def get_supplier(conn: Conn, principal: Principal, supplier_id: str) -> domain.Supplier:
    """A supplier key reads only itself; any other id reads as absent, as another tenant's."""
    assert principal.tenant_id is not None
    if principal.role == "supplier" and principal.supplier_id != supplier_id:
        raise errors.supplier_not_found()
    supplier = await repo.supplier(conn, principal.tenant_id, supplier_id)
    if supplier is None:
        raise errors.supplier_not_found()
    return supplier


async def update_supplier(
    conn: Conn, tenant_id: str, supplier_id: str, body: SupplierPatch
) -> domain.Supplier:
    """Load (the supplier, locked, and its active commission), decide
    (`domain.decide_supplier_change`), save (state, revision and `supplier.upserted`)."""
    current = await repo.supplier(conn, tenant_id, supplier_id, for_update=True)
    if current is None:
        raise errors.supplier_not_found()
    commission = await repo.active_commission(conn, supplier_id)
    decision = domain.decide_supplier_change(
        current, body.changes(), commission.rate if commission is not None else None
    )
    if decision is None:
        return current
    return await repo.save_supplier(conn, decision)


# --- commissions ------------------------------------------------------------------------------


async def put_commission(
    conn: Conn, tenant_id: str, supplier_id: str, body: CommissionPut
) -> domain.Commission:
    """Record a commission line for the supplier. The previous active line is kept as inactive
    history; `active: false` records the line inactive, leaving the supplier without one.
    Putting the rate that is already active changes nothing (`domain.decide_commission`)."""
    supplier = await repo.supplier(conn, tenant_id, supplier_id, for_update=True)
    if supplier is None:
        raise errors.supplier_not_found(param="supplier_id")
    current = await repo.active_commission(conn, supplier_id)
    decision = domain.decide_commission(
        supplier, current, commission_id=new_id("com"), rate=body.rate, active=body.active
    )
    if decision is None:
        assert current is not None  # only the active rate again changes nothing
        return current
    return await repo.save_commission(conn, decision)


async def get_commission(conn: Conn, tenant_id: str, supplier_id: str) -> domain.Commission:
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
    if not await repo.tenant_exists(conn, tenant_id, for_update=True):
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


async def principal_for(conn: Conn, key_hash: str) -> Principal | None:
    return await repo.principal_by_hash(conn, key_hash)


# --- republishing -----------------------------------------------------------------------------


async def republish(conn: Conn) -> dict[str, int]:
    """Publish the full state of every tenant, supplier and API key again, as they are now
    (same revisions): a replica that has them ignores them, one that lacks them (a service
    added later, a replica rebuilt) fills in. Revoked keys too, so revocations reach it. Runs in
    the caller's repeatable-read transaction: one consistent snapshot."""
    tenants = await repo.every_tenant(conn)
    suppliers = await repo.every_supplier(conn)
    keys = await repo.every_api_key(conn)
    await repo.enqueue_republished(conn, tenants, suppliers, keys)
    buyers = await buyer_accounts.republish(conn)
    return {
        "tenants": len(tenants),
        "suppliers": len(suppliers),
        "api_keys": len(keys),
        "buyer_accounts": buyers,
    }
