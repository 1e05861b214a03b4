"""Bad input (DESIGN §2, invariant 9): a 4xx with a stable code and the offending field, and
nothing stored or published."""

from __future__ import annotations

import pytest

TENANT = {"name": "Acme", "merchant_account": "AcmeBadECOM", "currency": "EUR"}


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ('{"name": "Acme", ', 400, "invalid_json", None),
        ("[1, 2]", 400, "invalid_json", None),
        ("", 400, "invalid_json", None),
        ({**TENANT, "currency": "XYZ"}, 422, "currency_invalid", "currency"),
        ({**TENANT, "currency": "eur"}, 422, "currency_invalid", "currency"),
        ({**TENANT, "currency": 978}, 422, "currency_invalid", "currency"),
        ({**TENANT, "psp": "stripe"}, 422, "parameter_invalid", "psp"),
        ({**TENANT, "name": 42}, 422, "parameter_invalid", "name"),
        ({**TENANT, "name": "   "}, 422, "parameter_invalid", "name"),
        ({**TENANT, "tenant_id": "ten_x"}, 422, "unexpected_parameter", "tenant_id"),
        ({"name": "Acme", "currency": "EUR"}, 422, "parameter_missing", "merchant_account"),
        ({**TENANT, "merchant_account": "a b"}, 422, "parameter_invalid", "merchant_account"),
        (
            {**TENANT, "settings": {"default_rate": "100.01"}},
            422,
            "rate_invalid",
            "settings.default_rate",
        ),
        (
            {**TENANT, "settings": {"capture_mode": "DELAYED"}},
            422,
            "capture_delay_hours_required",
            "settings.capture_delay_hours",
        ),
        (
            {**TENANT, "settings": {"colour": "blue"}},
            422,
            "unexpected_parameter",
            "settings.colour",
        ),
    ],
)
async def test_bad_tenant_creation_is_refused_and_stores_nothing(
    tenants, body, status, code, param
):
    # given
    before = await tenants.outbox_count()

    # when
    if isinstance(body, str):
        response = await tenants.call("POST", "/v1/platform/tenants", tenants.admin_key, data=body)
    else:
        response = await tenants.call("POST", "/v1/platform/tenants", tenants.admin_key, json=body)

    # then
    assert response.status == status, response.body
    assert response.error["code"] == code
    assert response.error["param"] == param
    assert await tenants.fetch("SELECT id FROM tenants") == []
    assert await tenants.outbox_count() == before


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"default_rate": "-1"}, "rate_invalid", "default_rate"),
        ({"default_rate": -0.5}, "rate_invalid", "default_rate"),
        ({"default_rate": "101"}, "rate_invalid", "default_rate"),
        ({"default_rate": 100.5}, "rate_invalid", "default_rate"),
        ({"default_rate": "2.12345"}, "rate_invalid", "default_rate"),
        ({"default_rate": "abc"}, "rate_invalid", "default_rate"),
        ({"default_rate": True}, "rate_invalid", "default_rate"),
        ({"capture_mode": "LATER"}, "parameter_invalid", "capture_mode"),
        ({"capture_mode": None}, "parameter_invalid", "capture_mode"),
        ({"capture_mode": "DELAYED"}, "capture_delay_hours_required", "capture_delay_hours"),
        ({"capture_delay_hours": 0}, "parameter_invalid", "capture_delay_hours"),
        ({"capture_delay_hours": 721}, "parameter_invalid", "capture_delay_hours"),
        ({"capture_delay_hours": "12"}, "parameter_invalid", "capture_delay_hours"),
        ({"allowed_logistic_statuses": []}, "parameter_invalid", "allowed_logistic_statuses"),
        (
            {"allowed_logistic_statuses": ["SHIPPED", "LOST"]},
            "parameter_invalid",
            "allowed_logistic_statuses.1",
        ),
        (
            {"allowed_logistic_statuses": "SHIPPED"},
            "parameter_invalid",
            "allowed_logistic_statuses",
        ),
        ({"marketplace_banking_mode": "MAYBE"}, "parameter_invalid", "marketplace_banking_mode"),
        ({"funding_policy": "PRAY"}, "parameter_invalid", "funding_policy"),
        (
            {"payout_schedule": {"frequency": "HOURLY"}},
            "parameter_invalid",
            "payout_schedule.frequency",
        ),
        ({"payout_schedule": {"every": 2}}, "unexpected_parameter", "payout_schedule.every"),
        ({"merchant_account": ""}, "parameter_invalid", "merchant_account"),
        ({"tenant_id": "ten_other"}, "unexpected_parameter", "tenant_id"),
        ({"default_rate": "2", "currency": "USD"}, "unexpected_parameter", "currency"),
    ],
)
async def test_bad_settings_are_refused_and_change_nothing(tenants, body, code, param):
    # given
    tenant = await tenants.new_tenant(settings={"default_rate": "2.5", "capture_mode": "MANUAL"})
    before_state = (await tenants.call("GET", "/v1/admin/tenant", tenant.operator_key)).data
    before = await tenants.outbox_count()

    # when
    response = await tenants.call(
        "PATCH", "/v1/admin/tenant/settings", tenant.operator_key, json=body
    )

    # then
    assert response.status == 422, response.body
    assert response.error["code"] == code
    assert response.error["param"] == param
    after_state = (await tenants.call("GET", "/v1/admin/tenant", tenant.operator_key)).data
    assert after_state == before_state
    assert await tenants.outbox_count() == before


async def test_malformed_json_on_a_patch_is_a_400(tenants):
    # given
    tenant = await tenants.new_tenant()
    before = await tenants.outbox_count()

    # when
    response = await tenants.call(
        "PATCH", "/v1/admin/tenant/settings", tenant.operator_key, data=b'{"default_rate": 2,,}'
    )

    # then
    assert response.status == 400
    assert response.error["code"] == "invalid_json"
    assert await tenants.outbox_count() == before


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"name": "S", "iban": "DE89370400440532013001"}, "iban_invalid", "iban"),
        ({"name": "S", "iban": "not an iban"}, "iban_invalid", "iban"),
        ({"name": "S", "iban": 12345}, "parameter_invalid", "iban"),
        ({"name": "S", "kyc_status": "approved"}, "parameter_invalid", "kyc_status"),
        (
            {"name": "S", "payment_due_date_delay": 366},
            "parameter_invalid",
            "payment_due_date_delay",
        ),
        (
            {"name": "S", "payment_due_date_delay": -1},
            "parameter_invalid",
            "payment_due_date_delay",
        ),
        (
            {"name": "S", "payment_due_date_delay": "30"},
            "parameter_invalid",
            "payment_due_date_delay",
        ),
        (
            {"name": "S", "payment_due_date_mode": "EOM"},
            "parameter_invalid",
            "payment_due_date_mode",
        ),
        ({"name": "S", "tenant_id": "ten_x"}, "unexpected_parameter", "tenant_id"),
        ({"iban": "DE89370400440532013000"}, "parameter_missing", "name"),
    ],
)
async def test_bad_supplier_creation_is_refused_and_stores_nothing(tenants, body, code, param):
    # given
    tenant = await tenants.new_tenant()
    before = await tenants.outbox_count()

    # when
    response = await tenants.call("POST", "/v1/admin/suppliers", tenant.operator_key, json=body)

    # then
    assert response.status == 422, response.body
    assert response.error["code"] == code
    assert response.error["param"] == param
    assert await tenants.fetch("SELECT id FROM suppliers") == []
    assert await tenants.outbox_count() == before


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"iban": "GB00WEST12345698765432"}, "iban_invalid", "iban"),
        ({"name": None}, "parameter_invalid", "name"),
        ({"kyc_status": None}, "parameter_invalid", "kyc_status"),
        ({"commission_rate": "5"}, "unexpected_parameter", "commission_rate"),
    ],
)
async def test_bad_supplier_patch_changes_nothing(tenants, body, code, param):
    # given
    tenant = await tenants.new_tenant()
    supplier = await tenants.new_supplier(tenant, iban="DE89370400440532013000")
    before = await tenants.outbox_count()

    # when
    response = await tenants.call(
        "PATCH", f"/v1/admin/suppliers/{supplier['id']}", tenant.operator_key, json=body
    )

    # then
    assert response.status == 422, response.body
    assert response.error["code"] == code
    assert response.error["param"] == param
    after = await tenants.call("GET", f"/v1/admin/suppliers/{supplier['id']}", tenant.operator_key)
    assert after.data == supplier
    assert await tenants.outbox_count() == before


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"rate": "-0.01"}, "rate_invalid", "rate"),
        ({"rate": 100.0001}, "rate_invalid", "rate"),
        ({"rate": "1e3"}, "rate_invalid", "rate"),
        ({"rate": "NaN"}, "rate_invalid", "rate"),
        ({"rate": None}, "rate_invalid", "rate"),
        ({}, "parameter_missing", "rate"),
        ({"rate": "5", "active": "yes"}, "parameter_invalid", "active"),
        ({"rate": "5", "supplier_id": "sup_x"}, "unexpected_parameter", "supplier_id"),
    ],
)
async def test_bad_commission_is_refused_and_changes_nothing(tenants, body, code, param):
    # given
    tenant = await tenants.new_tenant()
    supplier = await tenants.new_supplier(tenant)
    path = f"/v1/admin/commissions/{supplier['id']}"
    await tenants.call("PUT", path, tenant.operator_key, json={"rate": "10"})
    before = await tenants.outbox_count()

    # when
    response = await tenants.call("PUT", path, tenant.operator_key, json=body)

    # then
    assert response.status == 422, response.body
    assert response.error["code"] == code
    assert response.error["param"] == param
    lines = await tenants.fetch("SELECT rate, active FROM commissions")
    assert [(str(r["rate"].normalize()), r["active"]) for r in lines] == [("1E+1", True)]
    assert await tenants.outbox_count() == before


async def test_bad_list_parameters_are_refused(tenants):
    # given
    tenant = await tenants.new_tenant()

    # when
    flag = await tenants.call(
        "GET", "/v1/admin/commissions?include_inactive=maybe", tenant.operator_key
    )
    cursor = await tenants.call("GET", "/v1/admin/suppliers?after_cursor=%%%", tenant.operator_key)

    # then
    assert (flag.status, flag.error["param"]) == (422, "include_inactive")
    assert (cursor.status, cursor.error["code"]) == (422, "cursor_invalid")
