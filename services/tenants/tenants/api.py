"""The tenants service's HTTP routes. Tenancy always comes from the key: an operator key sees
its tenant, a supplier key only its own supplier (read-only), and another tenant's ids read as
absent (404), never as forbidden."""

from __future__ import annotations

from aiohttp import web

from common.http.envelope import ok, page
from common.http.routing import OPERATOR, OPERATOR_OR_SUPPLIER, PLATFORM_ADMIN, Api, Call
from common.runtime import DB_POOL
from tenants import buyer_accounts, domain, repo, service
from tenants.app import SETTINGS
from tenants.schemas import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    Commission,
    CommissionPut,
    Republished,
    SettingsPatch,
    Supplier,
    SupplierCreate,
    SupplierPatch,
    Tenant,
    TenantCreate,
    TenantCreated,
    TenantSettingsOut,
    role_label,
)

api = Api("Marketpay tenants")


def tenant_out(tenant: domain.Tenant) -> Tenant:
    settings = tenant.settings
    return Tenant(
        id=tenant.id,
        name=tenant.name,
        status=tenant.status,
        psp=tenant.psp,
        merchant_account=settings.merchant_account,
        currency=tenant.currency,
        settings=TenantSettingsOut(
            default_rate=settings.default_rate,
            capture_mode=settings.capture_mode,
            capture_delay_hours=settings.capture_delay_hours,
            allowed_logistic_statuses=list(settings.allowed_logistic_statuses),
            marketplace_banking_mode=settings.marketplace_banking_mode,
            funding_policy=settings.funding_policy,
            payout_schedule=settings.payout_schedule,
            time_zone=settings.time_zone,
            bank_transfer_iban=settings.bank_transfer_iban,
        ),
        revision=tenant.revision,
        created_at=tenant.created_at,
        updated_at=tenant.updated_at,
    )


def supplier_out(supplier: domain.Supplier) -> Supplier:
    state = supplier.state
    return Supplier(
        id=supplier.id,
        name=state.name,
        kyc_status=state.kyc_status,
        iban=state.iban,
        payment_due_date_delay=state.payment_due_date_delay,
        payment_due_date_mode=state.payment_due_date_mode,
        revision=supplier.revision,
        created_at=supplier.created_at,
        updated_at=supplier.updated_at,
    )


def commission_out(line: domain.Commission) -> Commission:
    return Commission(
        id=line.id,
        supplier_id=line.supplier_id,
        rate=line.rate,
        active=line.active,
        created_at=line.created_at,
        deactivated_at=line.deactivated_at,
    )


def api_key_out(key: domain.ApiKeyState) -> ApiKey:
    return ApiKey(
        id=key.id,
        role=role_label(key.role, key.supplier_id),
        supplier_id=key.supplier_id,
        name=key.name,
        prefix=key.prefix,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


# --- tenants ----------------------------------------------------------------------------------


@api.post(
    "/v1/platform/tenants",
    summary="Create a tenant; the response carries its first operator key, shown only once",
    roles=PLATFORM_ADMIN,
    body=TenantCreate,
    response=TenantCreated,
    status=201,
    tags=["platform"],
)
async def create_tenant(request: web.Request, call: Call[TenantCreate]) -> web.Response:
    environment = request.app[SETTINGS].api_key_environment
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        created = await service.create_tenant(conn, call.body, environment=environment)
    tenant = tenant_out(created.tenant)
    body = TenantCreated(
        **tenant.model_dump(),
        api_key=created.operator_key.key,
        api_key_id=created.operator_key.state.id,
    )
    return ok("tenant", body, status=201)


@api.get(
    "/v1/platform/tenants",
    summary="Every tenant, newest first (e.g. the tenant of a merchant account)",
    roles=PLATFORM_ADMIN,
    response=Tenant,
    list_response=True,
    query=repo.TENANT_LIST,
    tags=["platform"],
)
async def list_tenants(request: web.Request, call: Call[None]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn:
        found, info = await repo.tenant_page(conn, call.query)
    return page([tenant_out(t) for t in found], info)


@api.post(
    "/v1/platform/tenants/{id}/api-keys",
    summary="Issue an API key of a tenant, e.g. an operator key for a tenant that lost its own;"
    " the key is shown once",
    roles=PLATFORM_ADMIN,
    body=ApiKeyCreate,
    response=ApiKeyCreated,
    status=201,
    tags=["platform"],
)
async def issue_tenant_api_key(request: web.Request, call: Call[ApiKeyCreate]) -> web.Response:
    environment = request.app[SETTINGS].api_key_environment
    tenant_id = request.match_info["id"]
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        await service.get_tenant(conn, tenant_id)
        issued = await service.create_api_key(conn, tenant_id, call.body, environment=environment)
    body = ApiKeyCreated(**api_key_out(issued.state).model_dump(), key=issued.key)
    return ok("api_key", body, status=201)


@api.post(
    "/v1/platform/replicas/republish",
    summary="Publish every tenant's, supplier's and API key's full state again, for the"
    " replicas of a service added later or rebuilt",
    roles=PLATFORM_ADMIN,
    response=Republished,
    status=202,
    tags=["platform"],
)
async def republish(request: web.Request, call: Call[None]) -> web.Response:
    async with (
        request.app[DB_POOL].acquire() as conn,
        conn.transaction(isolation="repeatable_read"),
    ):
        counts = await service.republish(conn)
    return ok("republished", Republished(**counts), id_=None, status=202)


@api.get(
    "/v1/admin/tenant",
    summary="The key's tenant with its settings",
    roles=OPERATOR,
    response=Tenant,
    tags=["tenant"],
)
async def get_tenant(request: web.Request, call: Call[None]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn:
        row = await service.get_tenant(conn, call.tenant_id)
    return ok("tenant", tenant_out(row))


@api.patch(
    "/v1/admin/tenant/settings",
    summary="Change some of the tenant's settings (only the fields sent)",
    roles=OPERATOR,
    body=SettingsPatch,
    response=Tenant,
    tags=["tenant"],
)
async def patch_settings(request: web.Request, call: Call[SettingsPatch]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        row = await service.update_settings(conn, call.tenant_id, call.body)
    return ok("tenant", tenant_out(row))


# --- suppliers --------------------------------------------------------------------------------


@api.post(
    "/v1/admin/suppliers",
    summary="Create a supplier",
    roles=OPERATOR,
    body=SupplierCreate,
    response=Supplier,
    status=201,
    tags=["suppliers"],
)
async def create_supplier(request: web.Request, call: Call[SupplierCreate]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        row = await service.create_supplier(conn, call.tenant_id, call.body)
    return ok("supplier", supplier_out(row), status=201)


@api.get(
    "/v1/admin/suppliers",
    summary="The tenant's suppliers, newest first (a supplier key sees only itself)",
    roles=OPERATOR_OR_SUPPLIER,
    response=Supplier,
    list_response=True,
    query=repo.SUPPLIER_LIST,
    tags=["suppliers"],
)
async def list_suppliers(request: web.Request, call: Call[None]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn:
        rows, info = await repo.supplier_page(
            conn,
            call.tenant_id,
            call.query,
            only_id=call.principal.supplier_id if call.principal.role == "supplier" else None,
        )
    return page([supplier_out(r) for r in rows], info)


@api.get(
    "/v1/admin/suppliers/{id}",
    summary="One supplier (a supplier key reads only itself)",
    roles=OPERATOR_OR_SUPPLIER,
    response=Supplier,
    tags=["suppliers"],
)
async def get_supplier(request: web.Request, call: Call[None]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn:
        row = await service.get_supplier(conn, call.principal, request.match_info["id"])
    return ok("supplier", supplier_out(row))


@api.patch(
    "/v1/admin/suppliers/{id}",
    summary="Change some of a supplier's fields (only the fields sent)",
    roles=OPERATOR,
    body=SupplierPatch,
    response=Supplier,
    tags=["suppliers"],
)
async def patch_supplier(request: web.Request, call: Call[SupplierPatch]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        row = await service.update_supplier(
            conn, call.tenant_id, request.match_info["id"], call.body
        )
    return ok("supplier", supplier_out(row))


# --- commissions ------------------------------------------------------------------------------


@api.put(
    "/v1/admin/commissions/{supplier_id}",
    summary="Set the supplier's marketplace commission rate (the previous line becomes history)",
    roles=OPERATOR,
    body=CommissionPut,
    response=Commission,
    tags=["commissions"],
)
async def put_commission(request: web.Request, call: Call[CommissionPut]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        row = await service.put_commission(
            conn, call.tenant_id, request.match_info["supplier_id"], call.body
        )
    return ok("commission", commission_out(row))


@api.get(
    "/v1/admin/commissions",
    summary="The commission matrix: active lines, newest first",
    roles=OPERATOR,
    response=Commission,
    list_response=True,
    query=repo.COMMISSION_LIST,
    tags=["commissions"],
)
async def list_commissions(request: web.Request, call: Call[None]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn:
        rows, info = await repo.commission_page(conn, call.tenant_id, call.query)
    return page([commission_out(r) for r in rows], info)


@api.get(
    "/v1/admin/commissions/{supplier_id}",
    summary="The supplier's active commission line",
    roles=OPERATOR,
    response=Commission,
    tags=["commissions"],
)
async def get_commission(request: web.Request, call: Call[None]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn:
        row = await service.get_commission(conn, call.tenant_id, request.match_info["supplier_id"])
    return ok("commission", commission_out(row))


# --- API keys ---------------------------------------------------------------------------------


@api.post(
    "/v1/admin/api-keys",
    summary="Create an API key (operator, storefront or supplier:<id>); the key is shown once",
    roles=OPERATOR,
    body=ApiKeyCreate,
    response=ApiKeyCreated,
    status=201,
    tags=["api-keys"],
)
async def create_api_key(request: web.Request, call: Call[ApiKeyCreate]) -> web.Response:
    environment = request.app[SETTINGS].api_key_environment
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        issued = await service.create_api_key(
            conn, call.tenant_id, call.body, environment=environment
        )
    body = ApiKeyCreated(**api_key_out(issued.state).model_dump(), key=issued.key)
    return ok("api_key", body, status=201)


@api.get(
    "/v1/admin/api-keys",
    summary="The tenant's API keys (their prefixes only, never the keys)",
    roles=OPERATOR,
    response=ApiKey,
    list_response=True,
    tags=["api-keys"],
)
async def list_api_keys(request: web.Request, call: Call[None]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn:
        rows, info = await repo.api_key_page(conn, call.tenant_id, call.query)
    return page([api_key_out(r) for r in rows], info)


@api.delete(
    "/v1/admin/api-keys/{id}",
    summary="Revoke an API key (the tenant's last active operator key cannot be revoked)",
    roles=OPERATOR,
    response=ApiKey,
    tags=["api-keys"],
)
async def revoke_api_key(request: web.Request, call: Call[None]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        row = await service.revoke_api_key(conn, call.tenant_id, request.match_info["id"])
    return ok("api_key", api_key_out(row))


buyer_accounts.register(api)
