"""Tenancy comes from the key (DESIGN §2, invariant 6): another tenant's ids read as absent,
a supplier key sees only itself and only reads, a storefront key has no admin access."""

from __future__ import annotations

import pytest


@pytest.fixture
async def two_tenants(tenants):
    a = await tenants.new_tenant()
    b = await tenants.new_tenant()
    b_supplier = await tenants.new_supplier(b, iban="FR1420041010050500013M02606")
    await tenants.call(
        "PUT", f"/v1/admin/commissions/{b_supplier['id']}", b.operator_key, json={"rate": "9"}
    )
    return a, b, b_supplier


async def test_a_key_of_tenant_a_finds_nothing_of_tenant_b(tenants, two_tenants):
    # given
    a, b, b_supplier = two_tenants
    before = await tenants.outbox_count()

    # when
    read = await tenants.call("GET", f"/v1/admin/suppliers/{b_supplier['id']}", a.operator_key)
    patched = await tenants.call(
        "PATCH", f"/v1/admin/suppliers/{b_supplier['id']}", a.operator_key, json={"name": "x"}
    )
    commission = await tenants.call(
        "GET", f"/v1/admin/commissions/{b_supplier['id']}", a.operator_key
    )
    put = await tenants.call(
        "PUT", f"/v1/admin/commissions/{b_supplier['id']}", a.operator_key, json={"rate": "50"}
    )
    revoke = await tenants.call(
        "DELETE", f"/v1/admin/api-keys/{b.body['api_key_id']}", a.operator_key
    )
    suppliers = await tenants.call("GET", "/v1/admin/suppliers", a.operator_key)
    commissions = await tenants.call("GET", "/v1/admin/commissions", a.operator_key)
    keys = await tenants.call("GET", "/v1/admin/api-keys", a.operator_key)

    # then
    assert [r.status for r in (read, patched, commission, put, revoke)] == [404] * 5
    assert read.error["code"] == "supplier_not_found"
    assert suppliers.data == []
    assert commissions.data == []
    assert [k["id"] for k in keys.data] == [a.body["api_key_id"]]
    assert await tenants.outbox_count() == before
    still = await tenants.call("GET", f"/v1/admin/suppliers/{b_supplier['id']}", b.operator_key)
    assert still.data["name"] == "Supplier"
    assert (await tenants.call("GET", "/v1/admin/tenant", b.operator_key)).status == 200


async def test_a_supplier_key_reads_only_itself_and_changes_nothing(tenants):
    # given
    tenant = await tenants.new_tenant()
    own = await tenants.new_supplier(tenant, name="Own")
    other = await tenants.new_supplier(tenant, name="Other")
    key = await tenants.new_key(tenant, f"supplier:{own['id']}")

    # when
    read_own = await tenants.call("GET", f"/v1/admin/suppliers/{own['id']}", key)
    read_other = await tenants.call("GET", f"/v1/admin/suppliers/{other['id']}", key)
    listed = await tenants.call("GET", "/v1/admin/suppliers", key)
    patch_own = await tenants.call(
        "PATCH", f"/v1/admin/suppliers/{own['id']}", key, json={"kyc_status": "enabled"}
    )
    matrix = await tenants.call("GET", "/v1/admin/commissions", key)
    own_line = await tenants.call("GET", f"/v1/admin/commissions/{own['id']}", key)
    put = await tenants.call("PUT", f"/v1/admin/commissions/{own['id']}", key, json={"rate": "1"})
    tenant_read = await tenants.call("GET", "/v1/admin/tenant", key)
    new_key = await tenants.call("POST", "/v1/admin/api-keys", key, json={"role": "operator"})

    # then
    assert read_own.status == 200
    assert read_own.data["name"] == "Own"
    assert read_other.status == 404
    assert [s["id"] for s in listed.data] == [own["id"]]
    assert patch_own.status == 403
    assert patch_own.error["code"] == "forbidden"
    assert [matrix.status, own_line.status, put.status] == [403, 403, 403]
    assert [tenant_read.status, new_key.status] == [403, 403]
    after = await tenants.call("GET", f"/v1/admin/suppliers/{own['id']}", tenant.operator_key)
    assert after.data["kyc_status"] == "created"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/admin/tenant", None),
        ("PATCH", "/v1/admin/tenant/settings", {"default_rate": "1"}),
        ("GET", "/v1/admin/suppliers", None),
        ("POST", "/v1/admin/suppliers", {"name": "S"}),
        ("GET", "/v1/admin/commissions", None),
        ("GET", "/v1/admin/api-keys", None),
        ("POST", "/v1/admin/api-keys", {"role": "operator"}),
    ],
)
async def test_a_storefront_key_has_no_admin_access(tenants, method, path, body):
    # given
    tenant = await tenants.new_tenant()
    storefront = await tenants.new_key(tenant, "storefront")

    # when
    response = await tenants.call(method, path, storefront, json=body)

    # then
    assert response.status == 403
    assert response.error["code"] == "forbidden"


@pytest.mark.parametrize("credential", [None, "test_unknownkey", "Basic abc"])
async def test_no_key_or_an_unknown_key_gets_401(tenants, credential):
    # given
    await tenants.new_tenant()
    headers = {"Authorization": credential} if credential == "Basic abc" else {}
    if credential == "test_unknownkey":
        headers = {"Authorization": f"Bearer {credential}"}

    # when
    async with tenants.http.get(tenants.url + "/v1/admin/tenant", headers=headers) as response:
        body = await response.json()

    # then
    assert response.status == 401
    assert body["error"]["code"] == "unauthorized"


async def test_the_platform_admin_key_is_no_operator_key(tenants):
    # given
    await tenants.new_tenant()

    # when
    response = await tenants.call("GET", "/v1/admin/suppliers", tenants.admin_key)

    # then
    assert response.status == 403
