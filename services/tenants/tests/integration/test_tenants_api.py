"""Tenants, their settings and the events they publish."""

from __future__ import annotations

import pytest

from common.events import TenantUpserted
from common.http.auth import hash_key


async def test_platform_admin_creates_a_tenant_with_its_first_operator_key(tenants):
    # given
    body = {
        "name": "Acme",
        "merchant_account": "AcmeECOM",
        "psp": "adyen",
        "currency": "EUR",
        "settings": {"default_rate": "2.5", "capture_mode": "MANUAL"},
    }

    # when
    created = await tenants.call("POST", "/v1/platform/tenants", tenants.admin_key, json=body)

    # then
    assert created.status == 201, created.body
    assert created.body["type"] == "tenant"
    tenant = created.data
    assert tenant["id"].startswith("ten_")
    assert tenant["api_key"].startswith("test_")
    assert tenant["settings"]["default_rate"] == "2.5"
    assert tenant["settings"]["capture_mode"] == "MANUAL"
    assert tenant["settings"]["allowed_logistic_statuses"] == ["SHIPPED"]
    assert tenant["revision"] == 1
    read = await tenants.call("GET", "/v1/admin/tenant", tenant["api_key"])
    assert read.status == 200
    assert read.data["id"] == tenant["id"]
    assert "api_key" not in read.data
    stored = await tenants.fetch("SELECT key_hash FROM api_keys WHERE tenant_id = $1", tenant["id"])
    assert [r["key_hash"] for r in stored] == [hash_key(tenant["api_key"])]


async def test_tenant_creation_publishes_the_tenant_and_its_operator_key(tenants):
    # when
    tenant = await tenants.new_tenant(settings={"default_rate": 3})

    # then
    events = await tenants.events()
    assert [e["type"] for e in events] == ["tenant.upserted", "api_key.upserted"]
    assert all(e["tenant_id"] == tenant.id for e in events)
    upserted = TenantUpserted.model_validate(events[0]["data"])
    assert upserted.revision == 1
    assert str(upserted.default_rate) == "3"
    key_event = events[1]["data"]
    assert key_event["role"] == "operator"
    assert key_event["revoked"] is False
    assert key_event["key_hash"] == hash_key(tenant.operator_key)
    assert tenant.operator_key not in str(events)


async def test_a_duplicate_merchant_account_is_refused_and_nothing_is_stored(tenants):
    # given
    first = await tenants.new_tenant(merchant_account="DupECOM")
    before = await tenants.outbox_count()

    # when
    again = await tenants.call(
        "POST",
        "/v1/platform/tenants",
        tenants.admin_key,
        json={"name": "Other", "merchant_account": "DupECOM", "currency": "EUR"},
    )

    # then
    assert again.status == 409
    assert again.error["code"] == "merchant_account_taken"
    assert again.error["param"] == "merchant_account"
    assert await tenants.outbox_count() == before
    rows = await tenants.fetch("SELECT id FROM tenants")
    assert [r["id"] for r in rows] == [first.id]


@pytest.mark.parametrize("key", ["operator", "none", "bogus"])
async def test_only_the_platform_admin_creates_tenants(tenants, key):
    # given
    tenant = await tenants.new_tenant()
    credential = {"operator": tenant.operator_key, "none": None, "bogus": "test_nope"}[key]

    # when
    created = await tenants.call(
        "POST",
        "/v1/platform/tenants",
        credential,
        json={"name": "X", "merchant_account": "XyzECOM", "currency": "EUR"},
    )

    # then
    assert created.status == (403 if key == "operator" else 401)


async def test_settings_patch_changes_only_what_is_sent_and_publishes_the_full_state(tenants):
    # given
    tenant = await tenants.new_tenant(settings={"default_rate": "2.5", "capture_mode": "MANUAL"})

    # when
    patched = await tenants.call(
        "PATCH",
        "/v1/admin/tenant/settings",
        tenant.operator_key,
        json={
            "capture_mode": "DELAYED",
            "capture_delay_hours": 48,
            "allowed_logistic_statuses": ["SHIPPED", "COMPLETED", "SHIPPED"],
            "marketplace_banking_mode": "ENABLED",
            "funding_policy": "MARKETPLACE_COVERS",
            "payout_schedule": {"frequency": "MONTHLY", "day_of_week": None, "day_of_month": 5},
        },
    )

    # then
    assert patched.status == 200, patched.body
    settings = patched.data["settings"]
    assert settings["default_rate"] == "2.5"
    assert settings["capture_mode"] == "DELAYED"
    assert settings["capture_delay_hours"] == 48
    assert settings["allowed_logistic_statuses"] == ["SHIPPED", "COMPLETED"]
    assert settings["payout_schedule"]["frequency"] == "MONTHLY"
    assert patched.data["revision"] == 2
    events = [e for e in await tenants.events(tenant.id) if e["type"] == "tenant.upserted"]
    assert [e["data"]["revision"] for e in events] == [1, 2]
    latest = TenantUpserted.model_validate(events[-1]["data"])
    assert latest.capture_mode == "DELAYED"
    assert latest.capture_delay_hours == 48
    assert latest.marketplace_banking_mode == "ENABLED"
    assert latest.funding_policy == "MARKETPLACE_COVERS"
    assert str(latest.default_rate) == "2.5"


async def test_default_rate_can_be_cleared_with_null(tenants):
    # given
    tenant = await tenants.new_tenant(settings={"default_rate": "2.5"})

    # when
    patched = await tenants.call(
        "PATCH", "/v1/admin/tenant/settings", tenant.operator_key, json={"default_rate": None}
    )

    # then
    assert patched.status == 200
    assert patched.data["settings"]["default_rate"] is None
    events = await tenants.events(tenant.id)
    assert events[-1]["data"]["default_rate"] is None
    assert events[-1]["data"]["revision"] == 2


async def test_a_patch_that_changes_nothing_publishes_nothing(tenants):
    # given
    tenant = await tenants.new_tenant(settings={"default_rate": "2.5"})
    before = await tenants.outbox_count()

    # when
    patched = await tenants.call(
        "PATCH", "/v1/admin/tenant/settings", tenant.operator_key, json={"default_rate": "2.50"}
    )

    # then
    assert patched.status == 200
    assert patched.data["revision"] == 1
    assert await tenants.outbox_count() == before


async def test_merchant_account_change_to_another_tenants_is_refused(tenants):
    # given
    a = await tenants.new_tenant(merchant_account="AaaECOM")
    await tenants.new_tenant(merchant_account="BbbECOM")

    # when
    patched = await tenants.call(
        "PATCH", "/v1/admin/tenant/settings", a.operator_key, json={"merchant_account": "BbbECOM"}
    )

    # then
    assert patched.status == 409
    assert patched.error["code"] == "merchant_account_taken"
    read = await tenants.call("GET", "/v1/admin/tenant", a.operator_key)
    assert read.data["merchant_account"] == "AaaECOM"


async def test_the_service_publishes_its_openapi_with_the_tenants_paths(tenants):
    # when
    async with tenants.http.get(tenants.url + "/openapi.json") as response:
        spec = await response.json()

    # then
    assert {
        "/v1/platform/tenants",
        "/v1/admin/tenant",
        "/v1/admin/tenant/settings",
        "/v1/admin/suppliers",
        "/v1/admin/suppliers/{id}",
        "/v1/admin/commissions",
        "/v1/admin/commissions/{supplier_id}",
        "/v1/admin/api-keys",
        "/v1/admin/api-keys/{id}",
    } <= set(spec["paths"])
