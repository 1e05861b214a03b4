"""End to end: the funding contract between refunds (capture) and the ledger (payouts), with
both services running, as deployed. A tenant whose funding policy is `REFUSE_REFUND` (the
default) refunds only what the supplier's balance still covers: capture waits for the payouts
service's answer before it asks the PSP anything. Every figure is computed by hand.

Order of 15000 at 2.5 % (platform) and 10 % (marketplace): captured 375 / 1500 / 13125.
A refund of 5000 takes back (DESIGN §7, commission kept so far on the 10000 left):
platform 375 - 250 = 125, marketplace 1500 - 1000 = 500, supplier 5000 - 625 = 4375.
"""

from __future__ import annotations

import uuid
from typing import Any

from common.testing.waiting import eventually

IBAN = "DE89370400440532013000"


async def paid_and_shipped(stack: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    shop = await stack.new_shop(capture_mode="IMMEDIATE", commission_rate="10")
    status, body = await stack.call(
        "PATCH",
        f"{stack.tenants_url}/v1/admin/suppliers/{shop.supplier_id}",
        shop.operator_key,
        json={"iban": IBAN},
    )
    assert status == 200, body
    session = await stack.session(shop, 15000)
    status, body = await stack.pay(session)
    assert status == 200, body
    payment = await stack.until_status(shop, session["id"], "PAID")
    await stack.ship(shop, session)
    return shop, session, payment


async def balances(stack: Any, shop: Any) -> dict[str, int]:
    status, body = await stack.call(
        "GET", f"{stack.payouts_url}/v1/admin/balances", shop.operator_key
    )
    assert status == 200, body
    return {(a["supplier_id"] or a["type"]): a["balance"] for a in body["data"]}


async def until_balances(stack: Any, shop: Any, **expected: int) -> dict[str, int]:
    seen: dict[str, int] = {}

    async def reached() -> bool:
        seen.clear()
        seen.update(await balances(stack, shop))
        wanted = {shop.supplier_id if k == "SUPPLIER" else k: v for k, v in expected.items()}
        return all(seen.get(k) == v for k, v in wanted.items())

    await eventually(reached, within=20)
    return seen


async def refund(stack: Any, shop: Any, payment_id: str, value: int) -> dict[str, Any]:
    status, body = await stack.call(
        "POST",
        f"{stack.capture_url}/v1/admin/payments/{payment_id}/refunds",
        shop.operator_key,
        json={"amount": {"value": value, "currency": "EUR"}},
        idempotency_key=uuid.uuid4().hex,
    )
    assert status == 201, body
    made: dict[str, Any] = body["data"]["refunds"][0]
    return made


async def until_refund(stack: Any, shop: Any, refund_id: str, status: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        code, body = await stack.call(
            "GET", f"{stack.capture_url}/v1/admin/refunds/{refund_id}", shop.operator_key
        )
        assert code == 200, body
        seen.update(body["data"])
        return bool(seen["status"] == status)

    await eventually(reached, within=20)
    return seen


async def test_a_refund_the_supplier_balance_covers_is_reserved_by_payouts_then_refunded(stack):
    # given a paid order whose capture the ledger has credited
    shop, _, payment = await paid_and_shipped(stack)
    await until_balances(stack, shop, PLATFORM=375, MARKETPLACE=1500, SUPPLIER=13125)
    # when 5000 is refunded under the default REFUSE_REFUND policy
    made = await refund(stack, shop, payment["id"], 5000)
    assert made["funds_check"] is True
    assert {line["party"]: line["amount"] for line in made["lines"]} == {
        "PLATFORM": 125,
        "MARKETPLACE": 500,
        "SUPPLIER": 4375,
    }
    # then payouts reserves the supplier's share, the PSP refunds, and the ledger gives back
    done = await until_refund(stack, shop, made["id"], "REFUNDED")
    assert done["supplier_share_paid_out"] is False
    await until_balances(stack, shop, PLATFORM=250, MARKETPLACE=1000, SUPPLIER=8750)
    held = await stack.sandbox.get(f"/sandbox/payments/{payment['psp_reference']}")
    assert held["refunded"] == 5000
    await stack.until_status(shop, payment["id"], "PARTIALLY_REFUNDED")


async def test_a_refund_of_a_share_already_paid_out_is_refused_before_the_psp(stack):
    # given a paid, shipped order whose supplier share has been paid out
    shop, _, payment = await paid_and_shipped(stack)
    await until_balances(stack, shop, SUPPLIER=13125)

    async def computed() -> list[dict[str, Any]]:
        status, body = await stack.call(
            "POST",
            f"{stack.payouts_url}/v1/admin/payouts/compute",
            shop.operator_key,
            json={},
            idempotency_key=uuid.uuid4().hex,
        )
        assert status == 201, body
        found: list[dict[str, Any]] = body["data"]
        return found

    payouts: list[dict[str, Any]] = []

    async def eligible() -> bool:  # once payouts has seen the payment PAID and shipped
        payouts.extend(await computed())
        return bool(payouts)

    await eventually(eligible, within=20)
    (payout,) = payouts
    assert (payout["supplier_id"], payout["amount"]["value"]) == (shop.supplier_id, 13125)
    status, body = await stack.call(
        "POST",
        f"{stack.payouts_url}/v1/admin/payouts/{payout['id']}/execute",
        shop.operator_key,
        idempotency_key=uuid.uuid4().hex,
    )
    assert status == 202, body

    async def settled() -> bool:
        code, found = await stack.call(
            "GET", f"{stack.payouts_url}/v1/admin/payouts/{payout['id']}", shop.operator_key
        )
        assert code == 200, found
        return bool(found["data"]["status"] == "SETTLED")

    await eventually(settled, within=30)
    await until_balances(stack, shop, SUPPLIER=0, PLATFORM=375, MARKETPLACE=1500)
    # when the buyer is refunded 5000
    made = await refund(stack, shop, payment["id"], 5000)
    # then payouts refuses it (the supplier's balance is empty) and nothing reaches the PSP
    failed = await until_refund(stack, shop, made["id"], "FAILED")
    assert failed["failure_code"] == "insufficient_supplier_balance"
    assert failed["supplier_share_paid_out"] is True
    held = await stack.sandbox.get(f"/sandbox/payments/{payment['psp_reference']}")
    assert held["refunded"] == 0
    assert (await balances(stack, shop))[shop.supplier_id] == 0
    # and the reservation is released: the payment is PAID again, all of it refundable
    await stack.until_status(shop, payment["id"], "PAID")
