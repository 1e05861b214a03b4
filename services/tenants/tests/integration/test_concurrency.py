"""Concurrent changes of one aggregate serialise on its row lock: none is lost, revisions are
consecutive, and a supplier never has two active commission lines."""

from __future__ import annotations

import asyncio


async def test_concurrent_settings_patches_both_apply_with_consecutive_revisions(tenants):
    # given
    tenant = await tenants.new_tenant()
    patches = [
        {"default_rate": "1.5"},
        {"capture_mode": "IMMEDIATE"},
        {"funding_policy": "MARKETPLACE_COVERS"},
        {"marketplace_banking_mode": "ENABLED"},
    ]

    # when
    responses = await asyncio.gather(
        *(
            tenants.call("PATCH", "/v1/admin/tenant/settings", tenant.operator_key, json=p)
            for p in patches
        )
    )

    # then
    assert [r.status for r in responses] == [200] * 4
    assert sorted(r.data["revision"] for r in responses) == [2, 3, 4, 5]
    final = (await tenants.call("GET", "/v1/admin/tenant", tenant.operator_key)).data
    assert final["revision"] == 5
    assert final["settings"]["default_rate"] == "1.5"
    assert final["settings"]["capture_mode"] == "IMMEDIATE"
    assert final["settings"]["funding_policy"] == "MARKETPLACE_COVERS"
    assert final["settings"]["marketplace_banking_mode"] == "ENABLED"
    events = [e for e in await tenants.events(tenant.id) if e["type"] == "tenant.upserted"]
    assert [e["data"]["revision"] for e in events] == [1, 2, 3, 4, 5]
    assert events[-1]["data"]["default_rate"] == "1.5"
    assert events[-1]["data"]["capture_mode"] == "IMMEDIATE"


async def test_concurrent_commission_puts_leave_exactly_one_active_line(tenants):
    # given
    tenant = await tenants.new_tenant()
    supplier = await tenants.new_supplier(tenant)
    path = f"/v1/admin/commissions/{supplier['id']}"

    # when
    responses = await asyncio.gather(
        *(
            tenants.call("PUT", path, tenant.operator_key, json={"rate": str(rate)})
            for rate in (5, 6, 7, 8)
        )
    )

    # then
    assert [r.status for r in responses] == [200] * 4
    lines = await tenants.fetch(
        "SELECT rate, active FROM commissions WHERE supplier_id = $1", supplier["id"]
    )
    assert len(lines) == 4
    active = [r for r in lines if r["active"]]
    assert len(active) == 1
    events = await tenants.events(supplier["id"])
    assert [e["data"]["revision"] for e in events] == [1, 2, 3, 4, 5]
    assert events[-1]["data"]["commission_rate"] == str(active[0]["rate"].normalize())


async def test_concurrent_revocations_never_leave_a_tenant_without_an_operator_key(tenants):
    # given
    tenant = await tenants.new_tenant()
    second = await tenants.call(
        "POST", "/v1/admin/api-keys", tenant.operator_key, json={"role": "operator"}
    )

    # when: each operator key revokes the other at once
    responses = await asyncio.gather(
        tenants.call("DELETE", f"/v1/admin/api-keys/{second.data['id']}", tenant.operator_key),
        tenants.call(
            "DELETE", f"/v1/admin/api-keys/{tenant.body['api_key_id']}", second.data["key"]
        ),
    )

    # then
    statuses = sorted(r.status for r in responses)
    assert statuses in ([200, 401], [200, 409])
    active = await tenants.fetch(
        "SELECT id FROM api_keys WHERE role = 'operator' AND revoked_at IS NULL"
    )
    assert len(active) == 1
