"""Suppliers, the commission matrix and the `supplier.upserted` events they publish."""

from __future__ import annotations

from common.events import SupplierUpserted


async def test_operator_creates_a_supplier_with_a_normalised_iban(tenants):
    # given
    tenant = await tenants.new_tenant()

    # when
    created = await tenants.call(
        "POST",
        "/v1/admin/suppliers",
        tenant.operator_key,
        json={"name": "Bolts Inc", "iban": "de89 3704 0044 0532 0130 00"},
    )

    # then
    assert created.status == 201, created.body
    supplier = created.data
    assert supplier["id"].startswith("sup_")
    assert supplier["iban"] == "DE89370400440532013000"
    assert supplier["kyc_status"] == "created"
    assert supplier["payment_due_date_delay"] == 30
    assert supplier["payment_due_date_mode"] == "SIMPLE"
    events = await tenants.events(supplier["id"])
    assert len(events) == 1
    event = SupplierUpserted.model_validate(events[0]["data"])
    assert event.revision == 1
    assert event.iban == "DE89370400440532013000"
    assert event.commission_rate is None


async def test_supplier_patch_is_partial_and_iban_can_be_cleared(tenants):
    # given
    tenant = await tenants.new_tenant()
    supplier = await tenants.new_supplier(tenant, iban="NL91ABNA0417164300")

    # when
    patched = await tenants.call(
        "PATCH",
        f"/v1/admin/suppliers/{supplier['id']}",
        tenant.operator_key,
        json={"kyc_status": "enabled", "iban": None, "payment_due_date_mode": "END_OF_MONTH"},
    )

    # then
    assert patched.status == 200, patched.body
    assert patched.data["kyc_status"] == "enabled"
    assert patched.data["iban"] is None
    assert patched.data["name"] == "Supplier"
    assert patched.data["payment_due_date_mode"] == "END_OF_MONTH"
    assert patched.data["revision"] == 2
    events = await tenants.events(supplier["id"])
    assert [e["data"]["revision"] for e in events] == [1, 2]
    assert events[-1]["data"]["kyc_status"] == "enabled"
    assert events[-1]["data"]["iban"] is None


async def test_supplier_list_is_paginated_and_filtered_by_kyc_status(tenants):
    # given
    tenant = await tenants.new_tenant()
    ids = [
        (await tenants.new_supplier(tenant, name=f"S{i}", kyc_status=status))["id"]
        for i, status in enumerate(["created", "enabled", "enabled", "enabled"])
    ]
    other = await tenants.new_tenant()
    await tenants.new_supplier(other, kyc_status="enabled")

    # when
    first = await tenants.call(
        "GET", "/v1/admin/suppliers?kyc_status=enabled&limit=2", tenant.operator_key
    )
    cursor = first.body["page_info"]["end_cursor"]
    second = await tenants.call(
        "GET",
        f"/v1/admin/suppliers?kyc_status=enabled&limit=2&after_cursor={cursor}",
        tenant.operator_key,
    )

    # then
    assert first.status == 200
    assert [s["id"] for s in first.data] == [ids[3], ids[2]]
    assert first.body["page_info"]["has_next"] is True
    assert [s["id"] for s in second.data] == [ids[1]]
    assert second.body["page_info"]["has_next"] is False
    assert second.body["page_info"]["has_previous"] is True


async def test_an_unknown_kyc_status_filter_is_refused(tenants):
    # given
    tenant = await tenants.new_tenant()

    # when
    listed = await tenants.call("GET", "/v1/admin/suppliers?kyc_status=happy", tenant.operator_key)

    # then
    assert listed.status == 422
    assert listed.error["param"] == "kyc_status"


async def test_put_commission_replaces_the_active_line_and_keeps_history(tenants):
    # given
    tenant = await tenants.new_tenant()
    supplier = await tenants.new_supplier(tenant)
    path = f"/v1/admin/commissions/{supplier['id']}"
    first = await tenants.call("PUT", path, tenant.operator_key, json={"rate": "10"})

    # when
    second = await tenants.call("PUT", path, tenant.operator_key, json={"rate": 12.5})

    # then
    assert first.status == 200, first.body
    assert second.status == 200, second.body
    assert second.data["id"].startswith("com_")
    assert second.data["rate"] == "12.5"
    assert second.data["active"] is True
    active = await tenants.call("GET", "/v1/admin/commissions", tenant.operator_key)
    assert [(c["supplier_id"], c["rate"]) for c in active.data] == [(supplier["id"], "12.5")]
    history = await tenants.call(
        "GET", "/v1/admin/commissions?include_inactive=true", tenant.operator_key
    )
    assert [(c["rate"], c["active"]) for c in history.data] == [("12.5", True), ("10", False)]
    assert history.data[1]["deactivated_at"] is not None
    one = await tenants.call("GET", path, tenant.operator_key)
    assert one.data["id"] == second.data["id"]
    events = await tenants.events(supplier["id"])
    assert [(e["data"]["revision"], e["data"]["commission_rate"]) for e in events] == [
        (1, None),
        (2, "10"),
        (3, "12.5"),
    ]


async def test_an_inactive_commission_line_leaves_the_supplier_without_a_rate(tenants):
    # given
    tenant = await tenants.new_tenant()
    supplier = await tenants.new_supplier(tenant)
    path = f"/v1/admin/commissions/{supplier['id']}"
    await tenants.call("PUT", path, tenant.operator_key, json={"rate": "10"})

    # when
    put = await tenants.call("PUT", path, tenant.operator_key, json={"rate": "10", "active": False})

    # then
    assert put.status == 200
    assert put.data["active"] is False
    missing = await tenants.call("GET", path, tenant.operator_key)
    assert missing.status == 404
    assert missing.error["code"] == "commission_not_found"
    events = await tenants.events(supplier["id"])
    assert events[-1]["data"]["commission_rate"] is None


async def test_putting_the_active_rate_again_changes_nothing(tenants):
    # given
    tenant = await tenants.new_tenant()
    supplier = await tenants.new_supplier(tenant)
    path = f"/v1/admin/commissions/{supplier['id']}"
    first = await tenants.call("PUT", path, tenant.operator_key, json={"rate": "8"})
    before = await tenants.outbox_count()

    # when
    again = await tenants.call("PUT", path, tenant.operator_key, json={"rate": "8.000"})

    # then
    assert again.status == 200
    assert again.data["id"] == first.data["id"]
    assert await tenants.outbox_count() == before


async def test_supplier_patch_carries_the_active_commission_rate_in_its_event(tenants):
    # given
    tenant = await tenants.new_tenant()
    supplier = await tenants.new_supplier(tenant)
    await tenants.call(
        "PUT", f"/v1/admin/commissions/{supplier['id']}", tenant.operator_key, json={"rate": "7"}
    )

    # when
    await tenants.call(
        "PATCH", f"/v1/admin/suppliers/{supplier['id']}", tenant.operator_key, json={"name": "N"}
    )

    # then
    events = await tenants.events(supplier["id"])
    assert events[-1]["data"]["name"] == "N"
    assert events[-1]["data"]["commission_rate"] == "7"
    assert events[-1]["data"]["revision"] == 3
