"""End to end, each capture mode: a checkout session, PAY-101 with a sandbox test card, the
authorisation, the capture (by the mode's trigger), the sandbox's signed CAPTURE webhook through
the webhooks service, capture.succeeded, and checkout showing the payment PAID; the capture
admin API shows the split lines."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from common.testing.waiting import eventually

PUBLISHER = Path(__file__).resolve().parent.parent / "scripts" / "publish_oms_event.py"


async def paid_and_split(stack, shop, session, trigger, lines=1):
    payment = await stack.until_status(shop, session["id"], "PAID")
    assert all(line["status"] == "CAPTURED" for line in payment["lines"])
    captures = await stack.captures(shop, session["id"])
    assert len(captures) == lines
    assert {c["trigger"] for c in captures} == {trigger}
    assert {c["status"] for c in captures} == {"SUCCEEDED"}
    assert {line["capture_id"] for line in payment["lines"]} == {c["id"] for c in captures}
    held = await stack.sandbox.get(f"/sandbox/payments/{payment['psp_reference']}")
    assert [m["kind"] for m in held["modifications"]] == ["capture"] * lines
    return payment, captures


async def test_immediate_capture_ends_paid_with_its_split(stack):
    # given a tenant capturing right after authorisation, 2.5 % platform, 10 % marketplace
    shop = await stack.new_shop(capture_mode="IMMEDIATE", commission_rate="10")
    session = await stack.session(shop, 15000)
    # when the buyer pays
    status, body = await stack.pay(session)
    assert status == 200, body
    # then
    payment, [capture] = await paid_and_split(stack, shop, session, "IMMEDIATE")
    assert [(s["party"], s["amount"], s["rate"]) for s in capture["splits"]] == [
        ("PLATFORM", 375, "2.5"),
        ("MARKETPLACE", 1500, "10"),
        ("SUPPLIER", 13125, None),
    ]
    statuses = [e["status_to"] for e in payment["timeline"] if e["kind"] == "capture"]
    assert statuses == ["CAPTURE_PENDING", "PAID"]
    # the PSP's CAPTURE webhook reached the capture service only (the broker routes a
    # notification by its code): checkout's timeline has the capture's own event, which names
    # the PSP's reference of the capture
    assert not stack.notification_entries(payment, "CAPTURE")
    paid = next(e for e in payment["timeline"] if e["status_to"] == "PAID")
    assert paid["detail"]["psp_reference"] == capture["psp_reference"]


async def test_delayed_capture_ends_paid_when_the_delay_has_passed(stack):
    # given a tenant capturing 24 hours after authorisation
    shop = await stack.new_shop(capture_mode="DELAYED", capture_delay_hours=24)
    session = await stack.session(shop, 15000)
    assert (await stack.pay(session))[0] == 200

    async def scheduled() -> bool:
        payment = await stack.payment(shop, session["id"])
        return any(e["detail"].get("event") == "capture.scheduled" for e in payment["timeline"])

    await eventually(scheduled)
    assert (await stack.payment(shop, session["id"]))["status"] == "AUTHORIZED"
    # when a day passes on capture's clock
    stack.clock.advance(timedelta(hours=24, seconds=1))
    # then
    await paid_and_split(stack, shop, session, "DELAYED")


async def test_on_shipment_capture_goes_partially_paid_then_paid(stack):
    # given a payment of two logistic orders
    shop = await stack.new_shop(capture_mode="ON_SHIPMENT", commission_rate="12.5")
    session = await stack.session(shop, lines=[999, 5001])
    assert (await stack.pay(session))[0] == 200
    # when the OMS reports the first SHIPPED
    await stack.ship(shop, session, "lo_1")
    # then
    partly = await stack.until_status(shop, session["id"], "PARTIALLY_PAID")
    assert {x["logistic_order_id"]: x["status"] for x in partly["lines"]} == {
        "lo_1": "CAPTURED",
        "lo_2": "PENDING",
    }
    # when the second ships
    await stack.ship(shop, session, "lo_2")
    # then
    _, captures = await paid_and_split(stack, shop, session, "ON_SHIPMENT", lines=2)
    first = next(c for c in captures if c["logistic_order_id"] == "lo_1")
    assert [s["amount"] for s in first["splits"]] == [25, 125, 849]  # DESIGN's worked example


async def test_manual_capture_by_adm_pay_101_ends_paid(stack):
    # given
    shop = await stack.new_shop(capture_mode="MANUAL")
    session = await stack.session(shop, 15000)
    assert (await stack.pay(session))[0] == 200
    await stack.until_capture_knows(session["id"])
    # when the operator captures
    status, body = await stack.call(
        "POST",
        f"{stack.capture_url}/v1/admin/payments/{session['id']}/capture",
        shop.operator_key,
        idempotency_key=uuid.uuid4().hex,
    )
    # then
    assert status == 202, body
    _, [capture] = await paid_and_split(stack, shop, session, "MANUAL")
    # no commission configured for the supplier: no marketplace line
    assert [(s["party"], s["amount"]) for s in capture["splits"]] == [
        ("PLATFORM", 375),
        ("SUPPLIER", 14625),
    ]


async def test_a_failed_capture_sends_the_payment_back_until_the_operator_retries(stack):
    # given a PSP that ends captures in CAPTURE_FAILED
    shop = await stack.new_shop(capture_mode="IMMEDIATE")
    await stack.sandbox.faults(shop.merchant_account, fail_captures=True)
    session = await stack.session(shop, 15000)
    assert (await stack.pay(session))[0] == 200
    # when the capture fails
    interventions = []

    async def queued() -> bool:
        _, body = await stack.call(
            "GET", f"{stack.capture_url}/v1/admin/interventions?status=OPEN", shop.operator_key
        )
        interventions[:] = body["data"]
        return bool(interventions)

    await eventually(queued, within=20)
    # then checkout (once capture.failed reached it: the queue is capture's, checkout follows)
    # has the payment authorised again, the line's capture failed
    seen: dict[str, Any] = {}

    async def followed() -> bool:
        seen.update(await stack.payment(shop, session["id"]))
        return bool(seen["lines"][0]["status"] == "CAPTURE_FAILED")

    await eventually(followed, within=20)
    assert seen["status"] == "AUTHORIZED"
    # when the PSP is fixed and the operator retries
    await stack.sandbox.faults(shop.merchant_account)
    status, body = await stack.call(
        "POST",
        f"{stack.capture_url}/v1/admin/interventions/{interventions[0]['id']}/retry",
        shop.operator_key,
        idempotency_key=uuid.uuid4().hex,
    )
    assert status == 202, body
    # then
    payment = await stack.until_status(shop, session["id"], "PAID")
    moves = [e["status_to"] for e in payment["timeline"] if e["kind"] == "capture"]
    assert moves == ["CAPTURE_PENDING", "AUTHORIZED", "CAPTURE_PENDING", "PAID"]


async def test_the_example_oms_publisher_script_triggers_the_capture(stack):
    # given an ON_SHIPMENT tenant's authorised payment
    shop = await stack.new_shop(capture_mode="ON_SHIPMENT")
    session = await stack.session(shop, 15000)
    assert (await stack.pay(session))[0] == 200
    payment = await stack.payment(shop, session["id"])
    # when the documented publisher script reports the logistic order SHIPPED, on the broker
    # namespace the services were given (their MARKETPAY_BROKER_NAMESPACE)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PUBLISHER),
        "--tenant",
        shop.tenant_id,
        "--order",
        payment["order_id"],
        "--logistic-order",
        "lo_1",
        "--supplier",
        shop.supplier_id,
        "--amqp-url",
        stack.amqp_url,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "MARKETPAY_BROKER_NAMESPACE": stack.names.namespace},
    )
    output, _ = await process.communicate()
    # then
    assert process.returncode == 0
    assert b'"status": "SHIPPED"' in output
    await paid_and_split(stack, shop, session, "ON_SHIPMENT")
