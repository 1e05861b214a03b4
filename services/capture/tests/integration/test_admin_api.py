"""The admin API: who may do what (operators; suppliers read their own; no tenant sees
another's), Idempotency-Key on ADM-PAY-101, and a clear 4xx for every bad input."""

import uuid

import pytest

from common.testing.waiting import eventually


async def captured(capture, tenant, amounts=(6000, 4000)):
    payment = await capture.authorise(tenant, list(amounts))
    status, body = await capture.capture_now(tenant, payment)
    assert status == 202, body
    await capture.until_captured(tenant, payment, count=len(amounts))
    return payment


async def test_a_supplier_key_cannot_capture_and_sees_only_its_own_captures_and_split_line(
    capture,
):
    # given a payment of two logistic orders, one per supplier, both captured
    tenant = await capture.new_tenant()
    payment = await captured(capture, tenant)
    first, second = tenant.suppliers
    key = tenant.supplier_keys[first]
    # when
    denied, denied_body = await capture.call(
        "POST", f"/v1/admin/payments/{payment.id}/capture", key, idempotency_key="k1"
    )
    status, listed = await capture.call("GET", "/v1/admin/captures", key)
    # then
    assert (denied, denied_body["error"]["code"]) == (403, "forbidden")
    assert status == 200
    [own] = listed["data"]
    assert own["supplier_id"] == first
    assert [s["party"] for s in own["splits"]] == ["SUPPLIER"]
    assert (own["platform_rate"], own["marketplace_rate"]) == (None, None)
    others = [c for c in await capture.captures(tenant, payment) if c["supplier_id"] == second]
    status, body = await capture.call("GET", f"/v1/admin/captures/{others[0]['id']}", key)
    assert (status, body["error"]["code"]) == (404, "capture_not_found")
    status, body = await capture.call("GET", f"/v1/admin/captures/{own['id']}", key)
    assert status == 200
    assert body["data"]["attempts"] is None
    for path in ("/v1/admin/interventions", "/v1/admin/logistic-order-events"):
        status, body = await capture.call("GET", path, key)
        assert (status, body["error"]["code"]) == (403, "forbidden")


async def test_no_tenant_captures_or_sees_another_tenants_payments(capture):
    # given tenant A's captured payment and a blocked one in its intervention queue
    tenant_a = await capture.new_tenant()
    tenant_b = await capture.new_tenant()
    payment = await captured(capture, tenant_a, amounts=(5000,))
    [done] = await capture.captures(tenant_a, payment)
    blocked_tenant = await capture.new_tenant(default_rate="90", commission_rate="90")
    blocked = await capture.authorise(blocked_tenant, [100])
    status, _ = await capture.capture_now(blocked_tenant, blocked)
    assert status == 422
    _, body = await capture.call("GET", "/v1/admin/interventions", blocked_tenant.operator_key)
    [intervention] = body["data"]
    # when tenant B's operator tries
    b = tenant_b.operator_key
    capture_status, capture_body = await capture.capture_now(tenant_b, payment)
    list_status, listed = await capture.call(
        "GET", f"/v1/admin/captures?payment_id={payment.id}", b
    )
    get_status, _ = await capture.call("GET", f"/v1/admin/captures/{done['id']}", b)
    retry_status, retry_body = await capture.call(
        "POST",
        f"/v1/admin/interventions/{intervention['id']}/retry",
        b,
        idempotency_key=uuid.uuid4().hex,
    )
    _, b_interventions = await capture.call("GET", "/v1/admin/interventions", b)
    # then
    assert (capture_status, capture_body["error"]["code"]) == (404, "payment_not_found")
    assert (list_status, listed["data"]) == (200, [])
    assert get_status == 404
    assert (retry_status, retry_body["error"]["code"]) == (404, "intervention_not_found")
    assert b_interventions["data"] == []
    assert len(await capture.psp_captures(payment)) == 1


async def test_adm_pay_101_replays_the_same_key_and_refuses_it_with_another_body(capture):
    # given
    tenant = await capture.new_tenant()
    payment = await capture.authorise(tenant, [6000, 4000])
    key = uuid.uuid4().hex
    # when
    first = await capture.capture_now(tenant, payment, {"logistic_order_id": "lo_1"}, key=key)
    again = await capture.capture_now(tenant, payment, {"logistic_order_id": "lo_1"}, key=key)
    other = await capture.capture_now(tenant, payment, {"logistic_order_id": "lo_2"}, key=key)
    status, missing = await capture.call(
        "POST", f"/v1/admin/payments/{payment.id}/capture", tenant.operator_key, json={}
    )
    # then
    assert first[0] == 202, first
    assert again == first
    assert (other[0], other[1]["error"]["code"]) == (422, "idempotency_params_mismatch")
    assert (status, missing["error"]["code"]) == (400, "idempotency_key_required")
    [only] = await capture.until_captured(tenant, payment)
    assert only["logistic_order_id"] == "lo_1"
    assert len(await capture.psp_captures(payment)) == 1


async def test_adm_pay_101_captures_only_what_is_left_and_says_when_nothing_is(capture):
    # given lo_1 already captured
    tenant = await capture.new_tenant()
    payment = await capture.authorise(tenant, [6000, 4000])
    status, _ = await capture.capture_now(tenant, payment, {"logistic_order_id": "lo_1"})
    assert status == 202
    # when
    status, rest = await capture.capture_now(tenant, payment)
    again_status, again = await capture.capture_now(tenant, payment)
    named_status, named = await capture.capture_now(tenant, payment, {"logistic_order_id": "lo_1"})
    # then
    assert status == 202, rest
    assert [c["logistic_order_id"] for c in rest["data"]["captures"]] == ["lo_2"]
    assert (again_status, again["error"]["code"], again["error"]["param"]) == (
        409,
        "nothing_to_capture",
        None,
    )
    assert (named_status, named["error"]["param"]) == (409, "logistic_order_id")
    await capture.until_captured(tenant, payment, count=2)


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"logistic_order_id": "lo_9"}, 404, "logistic_order_unknown", "logistic_order_id"),
        ({"logistic_order_id": ""}, 422, "parameter_invalid", "logistic_order_id"),
        ({"logistic_order_id": "lo 1"}, 422, "parameter_invalid", "logistic_order_id"),
        ({"amount": 100}, 422, "unexpected_parameter", "amount"),
        ([1], 400, "invalid_json", None),
        ({"logistic_order_id": "lo\u0000"}, 422, "invalid_characters", "logistic_order_id"),
    ],
)
async def test_bad_adm_pay_101_bodies_get_a_clear_4xx(capture, body, status, code, param):
    # given
    tenant = await capture.new_tenant()
    payment = await capture.authorise(tenant, [1000])
    # when
    got, answer = await capture.capture_now(tenant, payment, body)
    # then
    assert (got, answer["error"]["code"], answer["error"]["param"]) == (status, code, param)
    assert await capture.captures(tenant, payment) == []


async def test_payments_that_cannot_be_captured_get_a_409_or_404(capture):
    """A payment whose authorisation capture has not heard of yet gets its own code (below);
    a cancelled or a bank-transfer payment is never capturable."""
    # given
    tenant = await capture.new_tenant()
    unpaid = await capture.authorise(tenant, [1000], publish_authorised=False)
    cancelled = await capture.authorise(tenant, [1000])
    await capture.report_closed(tenant, cancelled, "CANCELLED")
    wire = await capture.authorise(
        tenant, [1000], payment_option="BANK_WIRE_ON_DUE_DATE", publish_authorised=False
    )

    async def replicated() -> bool:
        async with capture.main.pool.acquire() as conn:
            statuses = await conn.fetch(
                "SELECT status FROM payments WHERE tenant_id = $1", tenant.id
            )
        return sorted(r["status"] for r in statuses) == ["CANCELLED", "CREATED", "CREATED"]

    await eventually(replicated)
    # when / then
    for payment, code in (
        (unpaid, "payment_not_yet_capturable"),
        (cancelled, "payment_not_capturable"),
        (wire, "payment_option_not_capturable"),
    ):
        status, body = await capture.capture_now(tenant, payment)
        assert (status, body["error"]["code"]) == (409, code), body
    status, body = await capture.call(
        "POST",
        "/v1/admin/payments/pay_nope/capture",
        tenant.operator_key,
        idempotency_key=uuid.uuid4().hex,
    )
    assert (status, body["error"]["code"], body["error"]["param"]) == (
        404,
        "payment_not_found",
        "id",
    )


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/v1/admin/captures?status=DONE", "status"),
        ("/v1/admin/captures?trigger=SOON", "trigger"),
        ("/v1/admin/interventions?status=CLOSED", "status"),
        ("/v1/admin/logistic-order-events?outcome=lost", "outcome"),
        ("/v1/admin/captures?after_cursor=not-a-cursor", "after_cursor"),
    ],
)
async def test_bad_filters_get_a_422_naming_the_parameter(capture, path, param):
    # given
    tenant = await capture.new_tenant()
    # when
    status, body = await capture.call("GET", path, tenant.operator_key)
    # then
    assert status == 422
    assert body["error"]["param"] == param


async def test_captures_are_listed_a_page_at_a_time(capture):
    # given three captures
    tenant = await capture.new_tenant()
    payment = await captured(capture, tenant, amounts=(100, 200, 300))
    # when
    _, first = await capture.call("GET", "/v1/admin/captures?limit=2", tenant.operator_key)
    cursor = first["page_info"]["end_cursor"]
    _, second = await capture.call(
        "GET", f"/v1/admin/captures?limit=2&after_cursor={cursor}", tenant.operator_key
    )
    _, by_status = await capture.call(
        "GET", "/v1/admin/captures?status=SUCCEEDED&trigger=MANUAL", tenant.operator_key
    )
    # then
    assert (len(first["data"]), first["page_info"]["has_next"]) == (2, True)
    assert (len(second["data"]), second["page_info"]["has_next"]) == (1, False)
    ids = {c["id"] for c in first["data"] + second["data"]}
    assert ids == {c["id"] for c in await capture.captures(tenant, payment)}
    assert len(by_status["data"]) == 3


async def test_adm_pay_101_before_the_authorisation_says_not_yet_and_the_retry_captures(capture):
    # given a payment capture knows as created, whose authorisation has not reached it yet
    # (checkout may already show it AUTHORIZED)
    tenant = await capture.new_tenant(capture_mode="MANUAL")
    payment = await capture.authorise(tenant, [2500], publish_authorised=False)

    async def replicated() -> bool:
        async with capture.main.pool.acquire() as conn:
            status = await conn.fetchval(
                "SELECT status FROM payments WHERE tenant_id = $1 AND payment_id = $2",
                tenant.id,
                payment.id,
            )
        return status == "CREATED"

    await eventually(replicated)
    key = uuid.uuid4().hex
    path = f"/v1/admin/payments/{payment.id}/capture"
    headers = {"Authorization": f"Bearer {tenant.operator_key}", "Idempotency-Key": key}
    # when the operator captures it now
    async with capture.http.post(capture.url + path, headers=headers) as response:
        early = (response.status, response.headers.get("Retry-After"), await response.json())
    # then "not yet", distinct from a permanent refusal, with when to ask again
    status, retry_after, body = early
    assert (status, body["error"]["code"], body["error"]["param"]) == (
        409,
        "payment_not_yet_capturable",
        "id",
    )
    assert retry_after is not None
    assert int(retry_after) >= 1
    assert await capture.captures(tenant, payment) == []
    # when the authorisation arrives and the operator retries with the same key
    await capture.report_authorised(tenant, payment)
    async with capture.http.post(capture.url + path, headers=headers) as response:
        later = (response.status, response.headers.get("Idempotent-Replayed"))
    # then the retry ran again (not a replay of the 409) and captured the payment
    assert later == (202, None)
    await capture.until_captured(tenant, payment)
    assert len(await capture.psp_captures(payment)) == 1
