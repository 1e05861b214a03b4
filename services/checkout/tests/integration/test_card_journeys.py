"""The card journeys of the product's card-payment document, through checkout and the PSP
sandbox over HTTP: authorised, refused with the decline reason, 3-D Secure passed and failed."""

import asyncio
import uuid

from common.runtime import DB_POOL
from psp_sandbox.domain import encode_three_ds_result


async def new_session(checkout, tenant, amount=15000, **extra):
    body = {
        "order_id": f"ord_{uuid.uuid4().hex[:8]}",
        "amount": {"value": amount, "currency": "EUR"},
        "buyer_account": "acc_1",
        "return_url": "https://shop.example/return",
        "lines": [
            {"logistic_order_id": "lo_1", "supplier_id": tenant.suppliers[0], "amount": amount}
        ],
        **extra,
    }
    response = await checkout.http.post(
        f"{checkout.url}/v1/checkout/sessions",
        json=body,
        headers={
            "Authorization": f"Bearer {tenant.storefront_key}",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    assert response.status == 201, await response.text()
    return (await response.json())["data"]


async def pay(checkout, session, payment_method, key=None):
    return await checkout.http.post(
        f"{checkout.url}/v1/shop/payments",
        json={
            "payment_method": payment_method,
            "browser_info": {"userAgent": "test", "acceptHeader": "*/*"},
        },
        headers={
            "Authorization": f"Bearer {session['client_token']}",
            "Idempotency-Key": key or uuid.uuid4().hex,
        },
    )


async def admin_payment(checkout, tenant, payment_id):
    response = await checkout.http.get(
        f"{checkout.url}/v1/admin/payments/{payment_id}",
        headers={"Authorization": f"Bearer {tenant.operator_key}"},
    )
    return (await response.json())["data"]


async def outbox_types(checkout, payment_id):
    async with checkout.app[DB_POOL].acquire() as conn:
        rows = await conn.fetch(
            "SELECT envelope->>'type' AS type FROM outbox_log WHERE aggregate_id = $1 ORDER BY seq",
            payment_id,
        )
    return [r["type"] for r in rows]


async def test_a_card_payment_is_authorised(checkout):
    # given
    tenant = await checkout.new_tenant()
    session = await new_session(checkout, tenant)
    card = await checkout.tokenise("4242424242424242")
    # when
    response = await pay(checkout, session, card)
    # then
    assert response.status == 200
    result = (await response.json())["data"]
    assert (result["status"], result["result_code"]) == ("AUTHORIZED", "Authorised")
    payment = await admin_payment(checkout, tenant, session["id"])
    assert payment["psp_reference"]
    assert [e["status_to"] for e in payment["timeline"]] == [
        "INIT_PAYMENT",
        "AUTHORIZATION_PENDING",
        "AUTHORIZED",
    ]
    assert await outbox_types(checkout, session["id"]) == [
        "payment.created",
        "payment.status_changed",
        "payment.status_changed",
        "payment.authorised",
    ]
    received = await checkout.sandbox.get(f"/sandbox/payments/{payment['psp_reference']}")
    assert received["merchantReference"] == session["id"]
    assert received["merchantAccount"] == tenant.merchant_account


async def test_a_declined_card_is_refused_with_its_reason(checkout):
    # given
    tenant = await checkout.new_tenant()
    session = await new_session(checkout, tenant)
    card = await checkout.tokenise("4000000000009995")
    # when
    response = await pay(checkout, session, card)
    # then
    assert response.status == 402
    error = (await response.json())["error"]
    assert error["code"] == "insufficient_funds"
    payment = await admin_payment(checkout, tenant, session["id"])
    assert payment["status"] == "REFUSED"
    assert payment["refusal_reason"] == "Not enough balance"
    assert await outbox_types(checkout, session["id"]) == [
        "payment.created",
        "payment.status_changed",
        "payment.status_changed",
        "payment.refused",
    ]


async def test_a_3ds_challenge_passed_authorises(checkout):
    # given
    tenant = await checkout.new_tenant()
    session = await new_session(checkout, tenant)
    card = await checkout.tokenise("4000000000003220")
    # when the issuer asks for a challenge
    response = await pay(checkout, session, card)
    challenge = (await response.json())["data"]
    # then the drop-in gets the action, and the payment waits
    assert response.status == 200
    assert challenge["status"] == "AUTHORIZATION_PENDING"
    assert challenge["action"]["type"] == "threeDS2"
    # when the shopper authenticates and the drop-in sends the result
    result = encode_three_ds_result(challenge["action"]["authorisationToken"], True)
    details = await checkout.http.post(
        f"{checkout.url}/v1/shop/payments/details",
        json={"details": {"threeDSResult": result}},
        headers={
            "Authorization": f"Bearer {session['client_token']}",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    # then
    assert details.status == 200, await details.text()
    assert (await details.json())["data"]["status"] == "AUTHORIZED"
    poll = await checkout.http.get(
        f"{checkout.url}/v1/shop/payments/{session['id']}",
        headers={"Authorization": f"Bearer {session['client_token']}"},
    )
    assert (await poll.json())["data"]["status"] == "AUTHORIZED"


async def test_a_3ds_challenge_failed_refuses(checkout):
    # given
    tenant = await checkout.new_tenant()
    session = await new_session(checkout, tenant)
    card = await checkout.tokenise("4000008400001629")
    challenge = (await (await pay(checkout, session, card)).json())["data"]
    # when
    result = encode_three_ds_result(challenge["action"]["authorisationToken"], True)
    details = await checkout.http.post(
        f"{checkout.url}/v1/shop/payments/details",
        json={"details": {"threeDSResult": result}},
        headers={
            "Authorization": f"Bearer {session['client_token']}",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    # then
    assert details.status == 402
    assert (await details.json())["error"]["code"] == "not_authenticated"
    payment = await admin_payment(checkout, tenant, session["id"])
    assert payment["status"] == "REFUSED"


async def test_pay_101_retried_with_one_key_authorises_once(checkout):
    # given
    tenant = await checkout.new_tenant()
    session = await new_session(checkout, tenant)
    card = await checkout.tokenise("4242424242424242")
    # when
    first = await pay(checkout, session, card, key="retry-me")
    second = await pay(checkout, session, card, key="retry-me")
    # then
    assert first.status == second.status == 200
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert await first.json() == await second.json()
    requests = await checkout.sandbox.get(
        f"/sandbox/merchant-accounts/{tenant.merchant_account}/requests"
    )
    assert [r["path"] for r in requests["data"] if r["path"] == "/payments"] == ["/payments"]


async def test_twenty_concurrent_pay_101_with_one_key_authorise_once(checkout):
    # given
    tenant = await checkout.new_tenant()
    session = await new_session(checkout, tenant)
    card = await checkout.tokenise("4242424242424242")
    # when
    responses = await asyncio.gather(*(pay(checkout, session, card, key="k") for _ in range(20)))
    # then
    statuses = sorted(r.status for r in responses)
    assert set(statuses) <= {200, 409}
    assert 200 in statuses
    for response in responses:
        if response.status == 409:
            assert (await response.json())["error"]["code"] == "idempotency_concurrent_request"
    requests = await checkout.sandbox.get(
        f"/sandbox/merchant-accounts/{tenant.merchant_account}/requests"
    )
    assert len([r for r in requests["data"] if r["path"] == "/payments"]) == 1
    payment = await admin_payment(checkout, tenant, session["id"])
    assert payment["status"] == "AUTHORIZED"


async def test_a_used_client_token_cannot_pay_again(checkout):
    # given a paid session
    tenant = await checkout.new_tenant()
    session = await new_session(checkout, tenant)
    card = await checkout.tokenise("4242424242424242")
    assert (await pay(checkout, session, card)).status == 200
    # when the token pays again with another key
    again = await pay(checkout, session, await checkout.tokenise("4242424242424242"))
    # then
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "payment_not_payable"


async def test_an_expired_client_token_is_refused(checkout):
    # given
    tenant = await checkout.new_tenant()
    session = await new_session(checkout, tenant)
    async with checkout.app[DB_POOL].acquire() as conn:
        await conn.execute(
            "UPDATE payments SET client_token_expires_at = now() - interval '1 second'"
            " WHERE id = $1",
            session["id"],
        )
    # when
    response = await pay(checkout, session, await checkout.tokenise("4242424242424242"))
    # then
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "client_token_expired"


async def test_a_raw_card_number_is_refused_and_nothing_is_authorised(checkout):
    # given
    tenant = await checkout.new_tenant()
    session = await new_session(checkout, tenant)
    for method, param in [
        ({"type": "scheme", "number": "4242424242424242", "cvc": "737"}, "payment_method.number"),
        (
            {"type": "scheme", "encryptedCardNumber": "test_4242424242424242"},
            "payment_method.encryptedCardNumber",
        ),
        (
            {"type": "scheme", "encryptedCardNumber": "4242 4242 4242 4242"},
            "payment_method.encryptedCardNumber",
        ),
    ]:
        # when
        response = await pay(checkout, session, method)
        # then
        assert response.status == 422
        error = (await response.json())["error"]
        assert (error["code"], error["param"]) == ("raw_card_data_refused", param)
    payment = await admin_payment(checkout, tenant, session["id"])
    assert payment["status"] == "INIT_PAYMENT"
    requests = await checkout.sandbox.get(
        f"/sandbox/merchant-accounts/{tenant.merchant_account}/requests"
    )
    assert requests["data"] == []


async def test_a_psp_timeout_leaves_the_payment_pending(checkout):
    # given a PSP that does not answer in time
    tenant = await checkout.new_tenant()
    session = await new_session(checkout, tenant)
    card = await checkout.tokenise("4242424242424242")
    await checkout.sandbox.faults(tenant.merchant_account, timeout=True, hang_ms=5000)
    # when
    response = await pay(checkout, session, card)
    # then
    assert response.status == 202
    assert (await response.json())["data"]["status"] == "AUTHORIZATION_PENDING"
    payment = await admin_payment(checkout, tenant, session["id"])
    assert payment["status"] == "AUTHORIZATION_PENDING"
    assert payment["timeline"][-1]["kind"] == "psp_no_answer"


async def test_another_tenants_client_token_cannot_pay_this_payment(checkout):
    # given
    a = await checkout.new_tenant()
    b = await checkout.new_tenant()
    session_a = await new_session(checkout, a)
    session_b = await new_session(checkout, b)
    before = await admin_payment(checkout, a, session_a["id"])
    card = await checkout.tokenise("4242424242424242")
    # when B's token polls A's payment, then tries to pay and to submit 3-D Secure details
    poll = await checkout.http.get(
        f"{checkout.url}/v1/shop/payments/{session_a['id']}",
        headers={"Authorization": f"Bearer {session_b['client_token']}"},
    )
    paid = await pay(checkout, session_b, card)
    details = await checkout.http.post(
        f"{checkout.url}/v1/shop/payments/details",
        json={"details": {"threeDSResult": "x"}, "payment_id": session_a["id"]},
        headers={
            "Authorization": f"Bearer {session_b['client_token']}",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    # then
    assert poll.status == 401
    # the token pays only the payment it was issued for: B's
    assert paid.status == 200
    assert (await paid.json())["data"]["id"] == session_b["id"]
    assert details.status in (400, 409, 422)
    # and A's payment is untouched: same status, same timeline, no PSP reference, no event
    after = await admin_payment(checkout, a, session_a["id"])
    assert after["status"] == before["status"] == "INIT_PAYMENT"
    assert after["timeline"] == before["timeline"]
    assert after["psp_reference"] is None
    assert await outbox_types(checkout, session_a["id"]) == ["payment.created"]
