import uuid

import pytest


def session_body(tenant, **overrides):
    body = {
        "order_id": f"ord_{uuid.uuid4().hex[:8]}",
        "amount": {"value": 15000, "currency": "EUR"},
        "buyer_account": "acc_buyer_1",
        "payment_option": "CREDIT_CARD",
        "lines": [
            {"logistic_order_id": "lo_1", "supplier_id": tenant.suppliers[0], "amount": 10000},
            {"logistic_order_id": "lo_2", "supplier_id": tenant.suppliers[1], "amount": 5000},
        ],
    }
    body.update(overrides)
    return body


async def post_session(checkout, key, body, idempotency_key=None):
    return await checkout.http.post(
        f"{checkout.url}/v1/checkout/sessions",
        json=body,
        headers={
            "Authorization": f"Bearer {key}",
            "Idempotency-Key": idempotency_key or uuid.uuid4().hex,
        },
    )


async def test_a_storefront_creates_a_session_and_the_drop_in_polls_it(checkout):
    # given
    tenant = await checkout.new_tenant()
    # when
    response = await post_session(checkout, tenant.storefront_key, session_body(tenant))
    # then
    assert response.status == 201
    created = (await response.json())["data"]
    assert created["status"] == "INIT_PAYMENT"
    assert created["client_token"].startswith("ct_")
    poll = await checkout.http.get(
        f"{checkout.url}/v1/shop/payments/{created['id']}",
        headers={"Authorization": f"Bearer {created['client_token']}"},
    )
    assert poll.status == 200
    assert (await poll.json())["data"]["status"] == "INIT_PAYMENT"
    detail = await checkout.http.get(
        f"{checkout.url}/v1/admin/payments/{created['id']}",
        headers={"Authorization": f"Bearer {tenant.operator_key}"},
    )
    payment = (await detail.json())["data"]
    assert [line["amount"] for line in payment["lines"]] == [10000, 5000]
    assert [entry["status_to"] for entry in payment["timeline"]] == ["INIT_PAYMENT"]


async def test_the_same_idempotency_key_creates_one_session(checkout):
    # given
    tenant = await checkout.new_tenant()
    body = session_body(tenant)
    # when
    first = await post_session(checkout, tenant.storefront_key, body, "key-1")
    second = await post_session(checkout, tenant.storefront_key, body, "key-1")
    # then
    assert first.status == second.status == 201
    assert (await first.json()) == (await second.json())
    listing = await checkout.http.get(
        f"{checkout.url}/v1/admin/payments?order_id={body['order_id']}",
        headers={"Authorization": f"Bearer {tenant.operator_key}"},
    )
    assert len((await listing.json())["data"]) == 1


@pytest.mark.parametrize(
    ("change", "status", "code", "param"),
    [
        ({"amount": {"value": 0, "currency": "EUR"}}, 422, "invalid_charge_amount", "amount.value"),
        ({"amount": {"value": -5, "currency": "EUR"}}, 422, "parameter_invalid", "amount.value"),
        ({"amount": {"value": 150.5, "currency": "EUR"}}, 422, "parameter_invalid", "amount.value"),
        (
            {"amount": {"value": 15000, "currency": "XYZ"}},
            422,
            "currency_invalid",
            "amount.currency",
        ),
        (
            {"amount": {"value": 10**16, "currency": "EUR"}},
            422,
            "parameter_invalid",
            "amount.value",
        ),
        ({"amount": {"value": 14999, "currency": "EUR"}}, 422, "lines_amount_mismatch", "lines"),
        ({"surprise": True}, 422, "unexpected_parameter", "surprise"),
        ({"lines": []}, 422, "parameter_invalid", "lines"),
    ],
)
async def test_bad_sessions_are_refused_with_code_and_param(checkout, change, status, code, param):
    # given
    tenant = await checkout.new_tenant()
    # when
    response = await post_session(checkout, tenant.storefront_key, session_body(tenant, **change))
    # then
    assert response.status == status
    error = (await response.json())["error"]
    assert (error["code"], error["param"]) == (code, param)
    listing = await checkout.http.get(
        f"{checkout.url}/v1/admin/payments",
        headers={"Authorization": f"Bearer {tenant.operator_key}"},
    )
    assert (await listing.json())["data"] == []


async def test_jpy_amounts_have_no_decimals(checkout):
    # given
    tenant = await checkout.new_tenant()
    body = session_body(tenant, amount={"value": 1500.5, "currency": "JPY"})
    # when
    response = await post_session(checkout, tenant.storefront_key, body)
    # then
    assert response.status == 422
    assert (await response.json())["error"]["param"] == "amount.value"


async def test_a_line_of_another_tenants_supplier_is_refused(checkout):
    # given
    tenant = await checkout.new_tenant()
    other = await checkout.new_tenant()
    body = session_body(tenant)
    body["lines"][1]["supplier_id"] = other.suppliers[0]
    # when
    response = await post_session(checkout, tenant.storefront_key, body)
    # then
    assert response.status == 422
    error = (await response.json())["error"]
    assert (error["code"], error["param"]) == ("supplier_unknown", "lines.1.supplier_id")


async def test_malformed_json_is_refused(checkout):
    tenant = await checkout.new_tenant()
    response = await checkout.http.post(
        f"{checkout.url}/v1/checkout/sessions",
        data=b'{"order_id": ',
        headers={"Authorization": f"Bearer {tenant.storefront_key}", "Idempotency-Key": "k"},
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_json"


async def test_level3_data_must_add_up(checkout):
    # given
    tenant = await checkout.new_tenant()
    level3 = {
        "customer_reference": "PO-1234",
        "tax_total": 2500,
        "freight": 500,
        "items": [
            {
                "commodity_code": "44121700",
                "description": "Pens",
                "quantity": "10",
                "unit_of_measure": "EA",
                "unit_price": 1000,
                "discount": 0,
                "total": 10000,
            },
            {
                "commodity_code": "44121600",
                "description": "Paper",
                "quantity": "2",
                "unit_of_measure": "BX",
                "unit_price": 1000,
                "total": 2000,
            },
        ],
    }
    good = session_body(tenant, payment_option="PCARD_L3", level3=level3)
    bad_level3 = {**level3, "freight": 400}
    bad = session_body(tenant, payment_option="PCARD_L3", level3=bad_level3)
    missing = session_body(tenant, payment_option="PCARD_L3")
    wrong_item = {**level3, "items": [{**level3["items"][0], "total": 9999}, level3["items"][1]]}
    # when / then
    assert (await post_session(checkout, tenant.storefront_key, good)).status == 201
    response = await post_session(checkout, tenant.storefront_key, bad)
    assert (await response.json())["error"]["code"] == "level3_total_mismatch"
    response = await post_session(checkout, tenant.storefront_key, missing)
    assert (await response.json())["error"]["param"] == "level3"
    response = await post_session(
        checkout,
        tenant.storefront_key,
        session_body(tenant, payment_option="PCARD_L3", level3=wrong_item),
    )
    assert (await response.json())["error"]["param"] == "level3.items.0.total"


async def test_tenant_isolation(checkout):
    # given a payment of tenant A
    a = await checkout.new_tenant()
    b = await checkout.new_tenant()
    created = await (await post_session(checkout, a.storefront_key, session_body(a))).json()
    payment_id = created["data"]["id"]
    other = await (await post_session(checkout, b.storefront_key, session_body(b))).json()
    # when tenant B's credentials reach for it
    admin = await checkout.http.get(
        f"{checkout.url}/v1/admin/payments/{payment_id}",
        headers={"Authorization": f"Bearer {b.operator_key}"},
    )
    poll = await checkout.http.get(
        f"{checkout.url}/v1/shop/payments/{payment_id}",
        headers={"Authorization": f"Bearer {other['data']['client_token']}"},
    )
    # then nothing shows
    assert admin.status == 404
    assert poll.status == 401
    assert (await poll.json())["error"]["code"] == "client_token_invalid"


async def test_a_supplier_sees_only_its_own_lines(checkout):
    # given
    tenant = await checkout.new_tenant()
    created = await (
        await post_session(checkout, tenant.storefront_key, session_body(tenant))
    ).json()
    supplier = tenant.suppliers[1]
    # when
    response = await checkout.http.get(
        f"{checkout.url}/v1/admin/payments/{created['data']['id']}",
        headers={"Authorization": f"Bearer {tenant.supplier_keys[supplier]}"},
    )
    # then
    lines = (await response.json())["data"]["lines"]
    assert [line["supplier_id"] for line in lines] == [supplier]


async def test_an_operator_key_cannot_create_sessions(checkout):
    tenant = await checkout.new_tenant()
    response = await post_session(checkout, tenant.operator_key, session_body(tenant))
    assert response.status == 403
