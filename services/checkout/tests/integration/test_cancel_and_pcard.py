"""Cancel of an authorised payment; purchasing cards with Level 2/3 data."""

import uuid

from .test_card_journeys import admin_payment, new_session, pay

LEVEL3 = {
    "customer_reference": "PO-4711",
    "tax_total": 2000,
    "freight": 500,
    "duty": 0,
    "items": [
        {
            "commodity_code": "44121700",
            "description": "Ballpoint pens",
            "quantity": "10",
            "unit_of_measure": "EA",
            "unit_price": 1000,
            "discount": 0,
            "total": 10000,
        },
    ],
}


async def cancel(checkout, tenant, payment_id, key=None):
    return await checkout.http.post(
        f"{checkout.url}/v1/admin/payments/{payment_id}/cancel",
        headers={
            "Authorization": f"Bearer {tenant.operator_key}",
            "Idempotency-Key": key or uuid.uuid4().hex,
        },
    )


async def test_an_operator_cancels_an_authorised_payment_at_the_psp(checkout):
    # given an authorised payment
    tenant = await checkout.new_tenant()
    session = await new_session(checkout, tenant)
    assert (await pay(checkout, session, await checkout.tokenise("4242424242424242"))).status == 200
    payment = await admin_payment(checkout, tenant, session["id"])
    # when the operator cancels it, twice with one key
    first = await cancel(checkout, tenant, session["id"], key="cancel-1")
    again = await cancel(checkout, tenant, session["id"], key="cancel-1")
    # then the PSP got one cancellation and the timeline says it was asked
    assert first.status == again.status == 202
    received = await checkout.sandbox.get(f"/sandbox/payments/{payment['psp_reference']}")
    assert [m["kind"] for m in received["modifications"]] == ["cancel"]
    timeline = (await first.json())["data"]["timeline"]
    assert timeline[-1]["kind"] == "cancel_requested"


async def test_only_an_authorised_payment_can_be_cancelled(checkout):
    # given a payment nobody paid yet, and another tenant's operator
    tenant = await checkout.new_tenant()
    other = await checkout.new_tenant()
    session = await new_session(checkout, tenant)
    # when
    response = await cancel(checkout, tenant, session["id"])
    foreign = await cancel(checkout, other, session["id"])
    # then
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "payment_not_cancellable"
    assert foreign.status == 404


async def test_a_purchasing_card_payment_sends_level3_data_and_is_seen_as_a_business_card(
    checkout,
):
    # given a PCARD_L3 session whose Level 3 lines add up (10000 + 2000 tax + 500 freight)
    tenant = await checkout.new_tenant()
    session = await new_session(
        checkout, tenant, amount=12500, payment_option="PCARD_L3", level3=LEVEL3
    )
    # when paid with a commercial card
    response = await pay(checkout, session, await checkout.tokenise("4000000000004004"))
    # then the PSP received the data as enhancedSchemeData and the card is known as business
    assert response.status == 200
    assert (await response.json())["data"]["business_card"] is True
    payment = await admin_payment(checkout, tenant, session["id"])
    received = await checkout.sandbox.get(f"/sandbox/payments/{payment['psp_reference']}")
    data = received["additionalData"]
    assert data["enhancedSchemeData.customerReference"] == "PO-4711"
    assert data["enhancedSchemeData.totalTaxAmount"] == "2000"
    assert data["enhancedSchemeData.freightAmount"] == "500"
    assert data["enhancedSchemeData.itemDetailLine1.commodityCode"] == "44121700"
    assert data["enhancedSchemeData.itemDetailLine1.quantity"] == "10"
    assert data["enhancedSchemeData.itemDetailLine1.totalAmount"] == "10000"
    assert payment["business_card"] is True
