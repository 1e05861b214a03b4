"""The tenants service's HTTP routes. Tenancy always comes from the key: an operator key sees
its tenant, a supplier key only its own supplier (read-only), and another tenant's ids read as
absent (404), never as forbidden."""

from __future__ import annotations

from aiohttp import web

from common.http.envelope import ok, page
from common.http.errors import Unprocessable
from common.http.pagination import PageRequest
from common.http.routing import OPERATOR, OPERATOR_OR_SUPPLIER, PLATFORM_ADMIN, Api, Call
from common.runtime import DB_POOL
from tenants import domain, repo, service
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
from tenants.settings import Settings

api = Api("Marketpay tenants")
SETTINGS = web.AppKey("settings", Settings)


def tenant_out(row: repo.Row) -> Tenant:
    settings = domain.settings_from_row(row)
    return Tenant(
        id=row["id"],
        name=row["name"],
        status=row["status"],
        psp=row["psp"],
        merchant_account=row["merchant_account"],
        currency=row["currency"],
        settings=TenantSettingsOut(
            default_rate=settings.default_rate,
            capture_mode=settings.capture_mode,
            capture_delay_hours=settings.capture_delay_hours,
            allowed_logistic_statuses=list(settings.allowed_logistic_statuses),
            marketplace_banking_mode=settings.marketplace_banking_mode,
            funding_policy=settings.funding_policy,
            payout_schedule=settings.payout_schedule,
        ),
        revision=row["revision"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def supplier_out(row: repo.Row) -> Supplier:
    return Supplier.model_validate(dict(row))


def commission_out(row: repo.Row) -> Commission:
    return Commission.model_validate(dict(row))


def api_key_out(row: repo.Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        role=role_label(row["role"], row["supplier_id"]),
        supplier_id=row["supplier_id"],
        name=row["name"],
        prefix=row["prefix"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def _flag(query: dict[str, str], name: str) -> bool:
    value = query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise Unprocessable(f"{name} is true or false", code="parameter_invalid", param=name)
    return value == "true"


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
    async with request.app[DB_POOL].acquire() as conn:
        created = await service.create_tenant(conn, call.body, environment=environment)
    tenant = tenant_out(created.row)
    body = TenantCreated(
        **tenant.model_dump(),
        api_key=created.operator_key.key,
        api_key_id=created.operator_key.row["id"],
    )
    return ok("tenant", body, status=201)


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
    async with request.app[DB_POOL].acquire() as conn:
        await service.get_tenant(conn, tenant_id)
        issued = await service.create_api_key(conn, tenant_id, call.body, environment=environment)
    body = ApiKeyCreated(**api_key_out(issued.row).model_dump(), key=issued.key)
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
    async with request.app[DB_POOL].acquire() as conn:
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
    async with request.app[DB_POOL].acquire() as conn:
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
    async with request.app[DB_POOL].acquire() as conn:
        row = await service.create_supplier(conn, call.tenant_id, call.body)
    return ok("supplier", supplier_out(row), status=201)


@api.get(
    "/v1/admin/suppliers",
    summary="The tenant's suppliers, newest first (a supplier key sees only itself)",
    roles=OPERATOR_OR_SUPPLIER,
    response=Supplier,
    list_response=True,
    query=[("kyc_status", "only suppliers with this KYC status")],
    tags=["suppliers"],
)
async def list_suppliers(request: web.Request, call: Call[None]) -> web.Response:
    kyc_status = call.query.get("kyc_status")
    if kyc_status is not None and kyc_status not in domain.KYC_STATUSES:
        raise Unprocessable(
            "kyc_status is one of " + ", ".join(domain.KYC_STATUSES),
            code="parameter_invalid",
            param="kyc_status",
        )
    async with request.app[DB_POOL].acquire() as conn:
        rows, info = await repo.supplier_page(
            conn,
            call.tenant_id,
            PageRequest.from_query(call.query),
            kyc_status=kyc_status,
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
    async with request.app[DB_POOL].acquire() as conn:
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
    async with request.app[DB_POOL].acquire() as conn:
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
    query=[("include_inactive", "true to include replaced lines (history)")],
    tags=["commissions"],
)
async def list_commissions(request: web.Request, call: Call[None]) -> web.Response:
    include_inactive = _flag(call.query, "include_inactive")
    async with request.app[DB_POOL].acquire() as conn:
        rows, info = await repo.commission_page(
            conn,
            call.tenant_id,
            PageRequest.from_query(call.query),
            include_inactive=include_inactive,
        )
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
    async with request.app[DB_POOL].acquire() as conn:
        issued = await service.create_api_key(
            conn, call.tenant_id, call.body, environment=environment
        )
    body = ApiKeyCreated(**api_key_out(issued.row).model_dump(), key=issued.key)
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
        rows, info = await repo.api_key_page(
            conn, call.tenant_id, PageRequest.from_query(call.query)
        )
    return page([api_key_out(r) for r in rows], info)


@api.delete(
    "/v1/admin/api-keys/{id}",
    summary="Revoke an API key (the tenant's last active operator key cannot be revoked)",
    roles=OPERATOR,
    response=ApiKey,
    tags=["api-keys"],
)
async def revoke_api_key(request: web.Request, call: Call[None]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn:
        row = await service.revoke_api_key(conn, call.tenant_id, request.match_info["id"])
    return ok("api_key", api_key_out(row))
