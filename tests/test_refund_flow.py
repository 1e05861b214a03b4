"""End to end: a paid order refunded in two parts and a paid order charged back and reversed,
through the whole chain: checkout (PAY-101), capture, the sandbox's signed REFUND and dispute
webhooks through the webhooks service, capture's refund.* and chargeback.* events, and
checkout's status machine and timeline."""

from __future__ import annotations

import uuid

from common.runtime import DB_POOL
from common.testing.waiting import eventually


async def paid(stack, **shop_args):
    shop = await stack.new_shop(capture_mode="IMMEDIATE", commission_rate="10", **shop_args)
    session = await stack.session(shop, 15000)
    status, body = await stack.pay(session)
    assert status == 200, body
    payment = await stack.until_status(shop, session["id"], "PAID")
    return shop, payment


async def refund(stack, shop, payment_id, body=None):
    return await stack.call(
        "POST",
        f"{stack.capture_url}/v1/admin/payments/{payment_id}/refunds",
        shop.operator_key,
        json=body,
        idempotency_key=uuid.uuid4().hex,
    )


async def test_a_paid_order_refunded_in_two_parts_ends_refunded(stack):
    # given a paid order of a tenant whose marketplace covers short refunds
    shop, payment = await paid(stack)
    status, body = await stack.call(
        "PATCH",
        f"{stack.tenants_url}/v1/admin/tenant/settings",
        shop.operator_key,
        json={"funding_policy": "MARKETPLACE_COVERS"},
    )
    assert status == 200, body

    async def covers() -> bool:
        async with stack.capture_app[DB_POOL].acquire() as conn:
            policy = await conn.fetchval(
                "SELECT data->>'funding_policy' FROM replica_tenants WHERE tenant_id = $1",
                shop.tenant_id,
            )
        return bool(policy == "MARKETPLACE_COVERS")

    await eventually(covers)
    # when 5000 is refunded
    status, body = await refund(
        stack, shop, payment["id"], {"amount": {"value": 5000, "currency": "EUR"}}
    )
    assert status == 201, body
    # then the PSP confirms it and checkout shows it
    now = await stack.until_status(shop, payment["id"], "PARTIALLY_REFUNDED")
    assert not stack.notification_entries(now, "REFUND")  # the capture service applies it
    # when the rest is refunded
    status, body = await refund(stack, shop, payment["id"])
    assert status == 201, body
    assert body["data"]["refunds"][0]["amount"]["value"] == 10000
    now = await stack.until_status(shop, payment["id"], "REFUNDED")
    moves = [(e["status_from"], e["status_to"]) for e in now["timeline"] if e["kind"] == "refund"]
    assert moves == [
        ("PAID", "WAITING_REFUND"),
        ("WAITING_REFUND", "PARTIALLY_REFUNDED"),
        ("PARTIALLY_REFUNDED", "WAITING_REFUND"),
        ("WAITING_REFUND", "REFUNDED"),
    ]
    held = await stack.sandbox.get(f"/sandbox/payments/{payment['psp_reference']}")
    assert held["refunded"] == 15000
    # and nothing more can be refunded
    status, body = await refund(stack, shop, payment["id"])
    assert (status, body["error"]["code"]) == (409, "payment_fully_refunded")


async def test_a_paid_order_charged_back_then_reversed(stack):
    shop, payment = await paid(stack)
    # when the issuer's chargeback comes through the PSP's webhook
    async with stack.http.post(
        f"{stack.sandbox.url}/sandbox/merchant-accounts/{shop.merchant_account}/chargebacks",
        json={"psp_reference": payment["psp_reference"], "stage": "CHARGEBACK"},
    ) as response:
        assert response.status == 201
    # then checkout shows CHARGEBACK and refunds are refused
    await stack.until_status(shop, payment["id"], "CHARGEBACK")
    status, body = await refund(stack, shop, payment["id"])
    assert (status, body["error"]["code"]) == (409, "payment_charged_back")
    # when it is reversed
    async with stack.http.post(
        f"{stack.sandbox.url}/sandbox/merchant-accounts/{shop.merchant_account}/chargebacks",
        json={"psp_reference": payment["psp_reference"], "stage": "CHARGEBACK_REVERSED"},
    ) as response:
        assert response.status == 201
    now = await stack.until_status(shop, payment["id"], "PAID")
    moves = [(e["status_from"], e["status_to"]) for e in now["timeline"] if e["kind"] == "refund"]
    assert moves == [("PAID", "CHARGEBACK"), ("CHARGEBACK", "PAID")]
