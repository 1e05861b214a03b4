"""End to end, bank transfer on due date: a BANK_WIRE_* checkout session waits for money with
its transfer instructions; the PSP sandbox makes transfers arrive to the reference and sends
its signed BANK_TRANSFER_RECEIVED notifications to the webhooks service, which stores and
publishes them; checkout reconciles them by reference. Shipment (OMS SHIPPED) fixes the due
date."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
from stdnum import iso11649

from capture.testing import logistic_order_event, publish_oms
from common.events import DOMAIN_EXCHANGE, OMS_EXCHANGE, OMS_STATUS_CHANGED
from common.runtime import DB_POOL
from common.testing.waiting import eventually
from webhooks.testing import batch, signed


async def pays_on_due_date(stack: Any, shop: Any, buyer_account: str = "acc_1") -> None:
    """The operator lets the buyer account pay on due date; wait until checkout knows."""
    status, body = await stack.call(
        "PUT",
        f"{stack.tenants_url}/v1/admin/buyer-accounts/{buyer_account}",
        shop.operator_key,
        json={"payment_option": "BANK_WIRE_ON_DUE_DATE"},
    )
    assert status == 200, body

    async def known() -> bool:
        status, _ = await open_session(stack, shop, 100, "BANK_WIRE_ON_DUE_DATE", buyer_account)
        return bool(status == 201)

    await eventually(known, within=20)


async def open_session(
    stack: Any, shop: Any, amount: int, option: str, buyer_account: str = "acc_1"
) -> tuple[int, Any]:
    return await stack.call(
        "POST",
        f"{stack.checkout_url}/v1/checkout/sessions",
        shop.storefront_key,
        json={
            "order_id": f"ord_{uuid.uuid4().hex[:8]}",
            "amount": {"value": amount, "currency": "EUR"},
            "buyer_account": buyer_account,
            "payment_option": option,
            "lines": [
                {"logistic_order_id": "lo_1", "supplier_id": shop.supplier_id, "amount": amount}
            ],
        },
        idempotency_key=uuid.uuid4().hex,
    )


async def bank_session(
    stack: Any, shop: Any, amount: int = 10000, option: str = "BANK_WIRE_ON_ACCEPTANCE"
) -> dict[str, Any]:
    status, body = await open_session(stack, shop, amount, option)
    assert status == 201, body
    session: dict[str, Any] = body["data"]
    return session


async def transfer(
    stack: Any,
    shop: Any,
    reference: str,
    value: int,
    currency: str = "EUR",
    psp_reference: str | None = None,
) -> str:
    amount = {"value": value, "currency": currency}
    body: dict[str, Any] = {"reference": reference, "amount": amount}
    if psp_reference is not None:
        body["psp_reference"] = psp_reference
    async with stack.http.post(
        f"{stack.sandbox.url}/sandbox/merchant-accounts/{shop.merchant_account}/incoming-transfers",
        json=body,
    ) as response:
        assert response.status == 201, await response.text()
        sent: str = (await response.json())["pspReference"]
    return sent


async def supplier_api_key(stack: Any, shop: Any) -> str:
    status, body = await stack.call(
        "POST",
        f"{stack.tenants_url}/v1/admin/api-keys",
        shop.operator_key,
        json={"role": f"supplier:{shop.supplier_id}"},
    )
    assert status == 201, body
    key: str = body["data"]["key"]

    async def known_to_tenants() -> bool:
        status, _ = await stack.call(
            "GET", f"{stack.tenants_url}/v1/admin/suppliers/{shop.supplier_id}", key
        )
        return bool(status == 200)

    await eventually(known_to_tenants)
    return key


async def until_transfer(stack: Any, shop: Any, psp_reference: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def arrived() -> bool:
        rows = await incoming(stack, shop)
        found["rows"] = [r for r in rows if r["psp_reference"] == psp_reference]
        return bool(found["rows"])

    await eventually(arrived, within=20)
    assert len(found["rows"]) == 1
    row: dict[str, Any] = found["rows"][0]
    return row


async def incoming(stack: Any, shop: Any, query: str = "") -> list[dict[str, Any]]:
    status, body = await stack.call(
        "GET", f"{stack.checkout_url}/v1/admin/bank-transfers/incoming{query}", shop.operator_key
    )
    assert status == 200, body
    rows: list[dict[str, Any]] = body["data"]
    return rows


async def test_a_bank_wire_session_waits_with_instructions_and_the_three_outcomes(stack):
    # given a tenant whose buyers pay into its own account (a bad IBAN is refused)
    shop = await stack.new_shop()
    settings_url = f"{stack.tenants_url}/v1/admin/tenant/settings"
    bad_iban = {"bank_transfer_iban": "NL00ABNA0417164300"}
    status, body = await stack.call("PATCH", settings_url, shop.operator_key, json=bad_iban)
    assert status == 422, body
    assert body["error"]["param"] == "bank_transfer_iban"
    iban = {"bank_transfer_iban": "NL91 ABNA 0417 1643 00"}
    status, body = await stack.call("PATCH", settings_url, shop.operator_key, json=iban)
    assert status == 200, body

    async def checkout_knows_the_iban() -> bool:
        async with stack.checkout_app[DB_POOL].acquire() as conn:
            found = await conn.fetchval(
                "SELECT data->>'bank_transfer_iban' FROM replica_tenants WHERE tenant_id = $1",
                shop.tenant_id,
            )
        return bool(found == "NL91ABNA0417164300")

    await eventually(checkout_knows_the_iban)
    # and a buyer account that pays on acceptance (the default): due-date sessions refused
    status, body = await open_session(stack, shop, 10000, "BANK_WIRE_ON_DUE_DATE")
    assert status == 422, body
    assert body["error"]["code"] == "payment_option_not_allowed"
    assert body["error"]["param"] == "payment_option"
    # when the operator (and only the operator) lets it pay on due date
    supplier_key = await supplier_api_key(stack, shop)
    status, body = await stack.call(
        "PUT",
        f"{stack.tenants_url}/v1/admin/buyer-accounts/acc_1",
        supplier_key,
        json={"payment_option": "BANK_WIRE_ON_DUE_DATE"},
    )
    assert status == 403, body
    await pays_on_due_date(stack, shop)
    # then on-acceptance sessions are refused and a due-date payment waits for the money
    status, body = await open_session(stack, shop, 10000, "BANK_WIRE_ON_ACCEPTANCE")
    assert status == 422, body
    session = await bank_session(stack, shop, 10000, option="BANK_WIRE_ON_DUE_DATE")
    # then it waits for the money with its instructions, on the admin and the shop APIs
    assert session["status"] == "WAITING_PAYMENT"
    instructions = session["bank_transfer"]
    reference = instructions["reference"]
    assert reference.startswith("RF")
    assert iso11649.is_valid(reference)
    assert instructions["amount"] == {"value": 10000, "currency": "EUR"}
    assert instructions["iban"] == "NL91ABNA0417164300"
    assert instructions["due_date"] is None
    status, shop_view = await stack.call(
        "GET", f"{stack.checkout_url}/v1/shop/payments/{session['id']}", session["client_token"]
    )
    assert status == 200
    assert shop_view["data"]["bank_transfer"]["reference"] == reference
    # when 4000 arrive: PARTIALLY_PAID with 6000 still due
    await transfer(stack, shop, reference, 4000)
    payment = await stack.until_status(shop, session["id"], "PARTIALLY_PAID")
    assert payment["bank_transfer"]["received"]["value"] == 4000
    assert payment["bank_transfer"]["remaining"]["value"] == 6000
    # when the rest arrives (typed with spaces and in lower case): PAID
    await transfer(stack, shop, iso11649.format(reference).lower(), 6000)
    payment = await stack.until_status(shop, session["id"], "PAID")
    assert payment["bank_transfer"]["remaining"]["value"] == 0
    assert payment["bank_transfer"]["excess"]["value"] == 0
    # and another payment over-paid: the excess is recorded for refund
    other = await bank_session(stack, shop, 10000, option="BANK_WIRE_ON_DUE_DATE")
    await transfer(stack, shop, other["bank_transfer"]["reference"], 12500)
    payment = await stack.until_status(shop, other["id"], "OVER_PAID")
    assert payment["bank_transfer"]["excess"] == {"value": 2500, "currency": "EUR"}
    # a card payment cannot be attempted on a bank-transfer session
    status, body = await stack.pay(other)
    assert status == 409, body


async def test_a_transfer_delivered_twice_counts_once(stack):
    # given a PSP that delivers every webhook twice, and the same transfer sent again
    shop = await stack.new_shop()
    await stack.sandbox.faults(shop.merchant_account, duplicate_webhooks=True)
    session = await bank_session(stack, shop, 10000)
    reference = session["bank_transfer"]["reference"]
    psp_reference = f"TRF{secrets.token_hex(6).upper()}"
    # when
    await transfer(stack, shop, reference, 3000, psp_reference=psp_reference)
    await transfer(stack, shop, reference, 3000, psp_reference=psp_reference)
    await stack.until_status(shop, session["id"], "PARTIALLY_PAID")
    await stack.sandbox.drain_webhooks()
    # then it was applied once
    payment = await stack.payment(shop, session["id"])
    assert payment["bank_transfer"]["received"]["value"] == 3000
    assert len(await incoming(stack, shop, f"?reference={reference}")) == 1
    applied = [e for e in payment["timeline"] if e["kind"] == "bank_transfer"]
    assert [e["status_to"] for e in applied] == ["WAITING_PAYMENT", "PARTIALLY_PAID"]


async def test_a_transfer_before_shipment_is_applied_and_shipment_sets_the_due_date(stack):
    # given a tenant in Athens (UTC+2 in winter); an unknown time zone is refused
    shop = await stack.new_shop()
    settings_url = f"{stack.tenants_url}/v1/admin/tenant/settings"
    status, body = await stack.call(
        "PATCH", settings_url, shop.operator_key, json={"time_zone": "Mars/Olympus"}
    )
    assert status == 422, body
    assert body["error"]["param"] == "time_zone"
    status, body = await stack.call(
        "PATCH", settings_url, shop.operator_key, json={"time_zone": "Europe/Athens"}
    )
    assert status == 200, body
    assert body["data"]["settings"]["time_zone"] == "Europe/Athens"

    async def checkout_knows_the_time_zone() -> bool:
        async with stack.checkout_app[DB_POOL].acquire() as conn:
            found = await conn.fetchval(
                "SELECT data->>'time_zone' FROM replica_tenants WHERE tenant_id = $1",
                shop.tenant_id,
            )
        return bool(found == "Europe/Athens")

    await eventually(checkout_knows_the_time_zone)
    # and a payment on due date paid before its order shipped, and one not paid yet
    await pays_on_due_date(stack, shop)
    paid = await bank_session(stack, shop, 5000, option="BANK_WIRE_ON_DUE_DATE")
    await transfer(stack, shop, paid["bank_transfer"]["reference"], 5000)
    await stack.until_status(shop, paid["id"], "PAID")
    waiting = await bank_session(stack, shop, 5000, option="BANK_WIRE_ON_DUE_DATE")
    # when both ship at 23:30 UTC on 31 January, 1 February in Athens (terms: 30 days, SIMPLE),
    # with an order checkout doesn't know between them, the last two taken by checkout in one
    # batch (the first payment is held meanwhile, so they gather behind it)
    shipped_at = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
    orders = [(await stack.payment(shop, s["id"]))["order_id"] for s in (paid, waiting)]
    async with stack.checkout_app[DB_POOL].acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM payments WHERE id = $1 FOR UPDATE", paid["id"])
        for order_id in (orders[0], "ord_unknown", orders[1]):
            event = logistic_order_event(
                tenant_id=shop.tenant_id,
                order_id=order_id,
                logistic_order_id="lo_1",
                supplier_id=shop.supplier_id,
            )
            # (the unknown order's shipment later: a mix-up would show in a due date)
            at = shipped_at if order_id != "ord_unknown" else datetime(2026, 6, 1, tzinfo=UTC)
            event["occurred_at"] = at.isoformat()
            await publish_oms(
                stack.amqp_url, stack.names.exchange(OMS_EXCHANGE), event, OMS_STATUS_CHANGED
            )
        await asyncio.sleep(0.5)

    # then each has its due date, 1 February + 30 days; the paid one stays PAID
    async def due_dates_known() -> bool:
        views = [await stack.payment(shop, s["id"]) for s in (paid, waiting)]
        return all(v["bank_transfer"]["due_date"] for v in views)

    await eventually(due_dates_known, within=20)
    for session, status in ((paid, "PAID"), (waiting, "WAITING_PAYMENT")):
        payment = await stack.payment(shop, session["id"])
        assert payment["status"] == status
        assert payment["bank_transfer"]["due_date"] == "2026-03-03"


async def test_unmatched_transfers_are_parked_then_assigned_or_returned(stack):
    # given a payment, a transfer to an unknown reference and one in another currency
    shop = await stack.new_shop()
    session = await bank_session(stack, shop, 8000)
    reference = session["bank_transfer"]["reference"]
    unknown = await transfer(stack, shop, "RF18539007547034", 8000)
    wrong_currency = await transfer(stack, shop, reference, 8000, currency="USD")
    # then both are parked, and the payment still waits
    parked_unknown = await until_transfer(stack, shop, unknown)
    parked_currency = await until_transfer(stack, shop, wrong_currency)
    assert (parked_unknown["status"], parked_unknown["reason"]) == (
        "UNMATCHED",
        "unknown_reference",
    )
    assert (parked_currency["status"], parked_currency["reason"]) == (
        "UNMATCHED",
        "currency_mismatch",
    )
    unmatched = await incoming(stack, shop, "?status=UNMATCHED")
    assert {r["id"] for r in unmatched} == {parked_unknown["id"], parked_currency["id"]}
    payment = await stack.payment(shop, session["id"])
    assert payment["status"] == "WAITING_PAYMENT"
    assert payment["bank_transfer"]["received"]["value"] == 0
    # when the operator tries the USD one on the EUR payment: refused, nothing changes
    base = f"{stack.checkout_url}/v1/admin/bank-transfers/incoming"
    status, body = await stack.call(
        "POST",
        f"{base}/{parked_currency['id']}/assign",
        shop.operator_key,
        json={"payment_id": session["id"]},
        idempotency_key=uuid.uuid4().hex,
    )
    assert status == 422, body
    assert body["error"]["code"] == "currency_mismatch", body
    # and assigns the unknown-reference one, returns the other
    status, body = await stack.call(
        "POST",
        f"{base}/{parked_unknown['id']}/assign",
        shop.operator_key,
        json={"payment_id": session["id"]},
        idempotency_key=uuid.uuid4().hex,
    )
    assert status == 200, body
    assert body["data"]["status"] == "ASSIGNED", body
    status, body = await stack.call(
        "POST",
        f"{base}/{parked_currency['id']}/return",
        shop.operator_key,
        json={"note": "sent back to the buyer's bank"},
        idempotency_key=uuid.uuid4().hex,
    )
    assert status == 200, body
    assert body["data"]["status"] == "RETURNED", body
    # then the payment is paid by the assigned transfer, and neither can be resolved again
    payment = await stack.payment(shop, session["id"])
    assert payment["status"] == "PAID"
    assert payment["bank_transfer"]["received"]["value"] == 8000
    for transfer_id in (parked_unknown["id"], parked_currency["id"]):
        status, body = await stack.call(
            "POST",
            f"{base}/{transfer_id}/assign",
            shop.operator_key,
            json={"payment_id": session["id"]},
            idempotency_key=uuid.uuid4().hex,
        )
        assert status == 409, body
        assert body["error"]["code"] == "transfer_not_unmatched", body
    assert await incoming(stack, shop, "?status=UNMATCHED") == []


async def test_a_negative_amount_and_a_forged_signature_are_recorded_never_applied(stack):
    # given a waiting payment
    shop = await stack.new_shop()
    session = await bank_session(stack, shop, 8000)
    reference = session["bank_transfer"]["reference"]
    # when the PSP reports a negative transfer to it
    await transfer(stack, shop, reference, -500)
    await stack.sandbox.drain_webhooks()
    # then the webhooks service refused it (400, the PSP keeps it) and recorded the refusal
    attempts = await stack.sandbox.get(
        f"/sandbox/merchant-accounts/{shop.merchant_account}/webhooks"
    )
    assert attempts["data"]
    assert all(a["status"] == 400 for a in attempts["data"])
    # when someone forges a notification paying it in full
    forged = signed(
        {
            "eventCode": "BANK_TRANSFER_RECEIVED",
            "success": "true",
            "merchantAccountCode": shop.merchant_account,
            "pspReference": "FORGED0001",
            "merchantReference": reference,
            "amount": {"value": 8000, "currency": "EUR"},
            "eventDate": datetime.now(UTC).isoformat(),
        },
        secrets.token_hex(32),
    )
    async with stack.http.post(
        f"{stack.webhooks_url}/v1/webhooks/psp/adyen", json=batch(forged)
    ) as response:
        assert response.status == 401, await response.text()
    # then both refusals are recorded for the operator, and the payment never saw either
    status, body = await stack.call(
        "GET", f"{stack.webhooks_url}/v1/admin/webhooks/notifications", shop.operator_key
    )
    assert status == 200
    assert body["data"] == []
    status, body = await stack.call(
        "GET",
        f"{stack.webhooks_url}/v1/admin/webhooks/notifications?accepted=false",
        shop.operator_key,
    )
    assert status == 200, body
    refused = {(r["event_code"], r["refusal_reason"]) for r in body["data"]}
    assert ("BANK_TRANSFER_RECEIVED", "invalid_notification") in refused
    assert ("BANK_TRANSFER_RECEIVED", "hmac_signature_invalid") in refused
    payment = await stack.payment(shop, session["id"])
    assert payment["status"] == "WAITING_PAYMENT"
    assert payment["bank_transfer"]["received"]["value"] == 0
    assert await incoming(stack, shop) == []


async def test_a_paid_bank_transfer_order_is_split_and_published_as_capture_succeeded(stack):
    # given a shop with a 2.5 % platform rate and a 10 % supplier commission, listening to
    # capture.succeeded on the broker as the payouts ledger does
    shop = await stack.new_shop(commission_rate="10")
    received: list[dict[str, Any]] = []
    amqp = await aio_pika.connect_robust(stack.amqp_url)
    try:
        channel = await amqp.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(stack.names.exchange(DOMAIN_EXCHANGE), routing_key="capture.succeeded")

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                received.append(json.loads(message.body))

        await queue.consume(on_message)
        exact = await bank_session(stack, shop, 10000)
        over = await bank_session(stack, shop, 999)
        # when both are paid (one over-paid by 1 cent: the excess is not split)
        await transfer(stack, shop, exact["bank_transfer"]["reference"], 10000)
        await transfer(stack, shop, over["bank_transfer"]["reference"], 1000)

        # then each logistic order has a capture, SUCCEEDED without a PSP call, split as
        # card money is, and published as capture.succeeded
        async def published() -> bool:
            return len(received) >= 2

        await eventually(published, within=30)
        by_payment = {m["data"]["payment_id"]: m["data"] for m in received}
        splits = {
            pid: {s["party"]: s["amount"] for s in data["splits"]}
            for pid, data in by_payment.items()
        }
        assert splits[exact["id"]] == {"PLATFORM": 250, "MARKETPLACE": 1000, "SUPPLIER": 8750}
        assert splits[over["id"]] == {"PLATFORM": 25, "MARKETPLACE": 100, "SUPPLIER": 874}
        for pid, amount in ((exact["id"], 10000), (over["id"], 999)):
            assert by_payment[pid]["trigger"] == "BANK_TRANSFER"
            assert by_payment[pid]["amount"] == {"value": amount, "currency": "EUR"}
            captures = await stack.captures(shop, pid)
            assert [(c["trigger"], c["status"]) for c in captures] == [
                ("BANK_TRANSFER", "SUCCEEDED")
            ]
        attempts = await stack.sandbox.get(
            f"/sandbox/merchant-accounts/{shop.merchant_account}/requests"
        )
        assert attempts["data"] == []  # nothing was asked of the PSP

        # and checkout shows the lines captured, its payments still PAID and OVER_PAID
        async def lines_captured() -> bool:
            views = [await stack.payment(shop, s["id"]) for s in (exact, over)]
            return all(v["lines"][0]["status"] == "CAPTURED" for v in views)

        await eventually(lines_captured, within=20)
        assert (await stack.payment(shop, exact["id"]))["status"] == "PAID"
        over_view = await stack.payment(shop, over["id"])
        assert over_view["status"] == "OVER_PAID"
        assert not [e for e in over_view["timeline"] if e["kind"] == "refused_transition"]
        await asyncio.sleep(0.5)
        assert len(received) == 2
    finally:
        await asyncio.wait_for(amqp.close(), 10)


async def test_two_operators_assigning_the_same_parked_transfer_at_once_apply_it_once(stack):
    # given a parked transfer and a waiting payment
    shop = await stack.new_shop()
    session = await bank_session(stack, shop, 9000)
    parked = await until_transfer(
        stack, shop, await transfer(stack, shop, "RF18539007547034", 3000)
    )
    url = f"{stack.checkout_url}/v1/admin/bank-transfers/incoming/{parked['id']}/assign"

    # when two operators assign it at the same moment (each with their own Idempotency-Key)
    async def assign() -> tuple[int, Any]:
        return await stack.call(
            "POST",
            url,
            shop.operator_key,
            json={"payment_id": session["id"]},
            idempotency_key=uuid.uuid4().hex,
        )

    answers = await asyncio.gather(*(assign() for _ in range(4)))
    # then exactly one wins, the others are told it is no longer unmatched
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 409, 409, 409], answers
    payment = await stack.payment(shop, session["id"])
    assert payment["status"] == "PARTIALLY_PAID"
    assert payment["bank_transfer"]["received"]["value"] == 3000
    assert payment["bank_transfer"]["remaining"]["value"] == 6000


async def test_a_paid_bank_transfer_order_enters_the_ledger_like_captured_card_money(stack):
    # given a shop with a 2.5 % platform rate and a 10 % supplier commission
    shop = await stack.new_shop(commission_rate="10")
    session = await bank_session(stack, shop, 10000)
    # when the buyer's transfer pays it
    await transfer(stack, shop, session["bank_transfer"]["reference"], 10000)
    # then the payouts ledger credits the split exactly as for a card capture
    found: dict[str, int] = {}

    async def credited() -> bool:
        status, body = await stack.call(
            "GET", f"{stack.payouts_url}/v1/admin/balances", shop.operator_key
        )
        assert status == 200, body
        found.clear()
        found.update({(a["supplier_id"] or a["type"]): a["balance"] for a in body["data"]})
        return found.get(shop.supplier_id) == 8750

    await eventually(credited, within=30)
    assert (found["PLATFORM"], found["MARKETPLACE"]) == (250, 1000)
    # the PSP received the transfer: it holds the money, as it does a card capture's
    assert found["PSP_CLEARING"] == -10000
    status, body = await stack.call(
        "GET", f"{stack.payouts_url}/v1/admin/ledger/check", shop.operator_key
    )
    assert status == 200, body
    assert body["data"]["ok"] is True


async def test_a_bank_transfer_payment_is_refused_a_refund_with_its_reason(stack):
    # given an order paid by bank transfer
    shop = await stack.new_shop(commission_rate="10")
    session = await bank_session(stack, shop, 10000)
    await transfer(stack, shop, session["bank_transfer"]["reference"], 10000)
    await stack.until_status(shop, session["id"], "PAID")

    # when an operator asks capture for a refund
    answer: dict[str, Any] = {}

    async def refused() -> bool:
        status, body = await stack.call(
            "POST",
            f"{stack.capture_url}/v1/admin/payments/{session['id']}/refunds",
            shop.operator_key,
            json={"reason": "customer_request"},
            idempotency_key=uuid.uuid4().hex,
        )
        if status == 404:  # capture has not heard of the payment yet
            return False
        assert status == 409, body
        answer.update(body["error"])
        return True

    await eventually(refused, within=30)
    error = answer
    # then it is refused for what it is: there is no card payment at the PSP to refund
    assert (error["code"], error["param"]) == ("payment_not_refundable", "id")
    assert "bank-transfer" in error["message"]
    status, body = await stack.call(
        "GET", f"{stack.capture_url}/v1/admin/payments/{session['id']}/refunds", shop.operator_key
    )
    assert (status, body["data"]["refunds"]) == (200, [])
