"""When the PSP does not answer, refuses, or fails a capture; blocked splits and Level 3 data;
the manual-intervention queue and its retry."""

import asyncio
import secrets
import uuid

from common.events import PspNotificationReceived
from common.testing.waiting import eventually


async def detail(capture, tenant, capture_id):
    status, body = await capture.call(
        "GET", f"/v1/admin/captures/{capture_id}", tenant.operator_key
    )
    assert status == 200, body
    return body["data"]


async def open_interventions(capture, tenant, payment):
    status, body = await capture.call(
        "GET", f"/v1/admin/interventions?status=OPEN&payment_id={payment.id}", tenant.operator_key
    )
    assert status == 200, body
    return body["data"]


async def test_psp_errors_are_retried_under_the_same_key_until_it_answers(capture):
    # given a PSP that answers 500 to the next two calls
    tenant = await capture.new_tenant()
    payment = await capture.authorise(tenant, [10000])
    await capture.sandbox.faults(tenant.merchant_account, fail_next=2)
    # when
    status, body = await capture.capture_now(tenant, payment)
    # then
    assert status == 202, body
    [done] = await capture.until_captured(tenant, payment)
    attempts = (await detail(capture, tenant, done["id"]))["attempts"]
    assert [(a["outcome"], a["code"]) for a in attempts] == [
        ("unknown", "psp_unavailable"),
        ("unknown", "psp_unavailable"),
        ("received", None),
    ]
    assert {a["idempotency_key"] for a in attempts} == {f"capture:{done['id']}:1"}
    assert len(await capture.psp_captures(payment)) == 1


async def test_a_psp_timeout_is_retried_under_the_same_key(capture):
    # given a PSP that hangs longer than the capture service waits (1 s), once
    tenant = await capture.new_tenant()
    payment = await capture.authorise(tenant, [10000])
    await capture.sandbox.faults(tenant.merchant_account, timeout_next=1, hang_ms=3000)
    # when
    status, body = await capture.capture_now(tenant, payment)
    # then
    assert status == 202, body
    [done] = await capture.until_captured(tenant, payment)
    attempts = (await detail(capture, tenant, done["id"]))["attempts"]
    assert [a["outcome"] for a in attempts] == ["unknown", "received"]
    assert attempts[0]["code"] == "gateway_timeout_error"
    assert len(await capture.psp_captures(payment)) == 1


async def test_when_retries_run_out_the_capture_fails_into_the_intervention_queue(capture):
    # given a PSP that is down
    tenant = await capture.new_tenant()
    payment = await capture.authorise(tenant, [10000])
    await capture.sandbox.faults(tenant.merchant_account, error_rate=1.0)
    # when
    status, body = await capture.capture_now(tenant, payment)
    assert status == 202, body
    [failed] = await capture.until_captured(tenant, payment, status="FAILED")
    # then
    assert (failed["failure_code"], failed["outcome_known"]) == ("psp_unavailable", False)
    assert failed["attempt_count"] == 3  # the first attempt and two retries
    [event] = await capture.events("capture.failed", payment)
    assert (event["retries_exhausted"], event["outcome_known"]) == (True, False)
    [intervention] = await open_interventions(capture, tenant, payment)
    assert (intervention["kind"], intervention["capture_id"]) == ("retries_exhausted", failed["id"])
    assert event["intervention_id"] == intervention["id"]
    # and when the PSP is back and an operator retries
    await capture.sandbox.faults(tenant.merchant_account)
    status, body = await capture.call(
        "POST",
        f"/v1/admin/interventions/{intervention['id']}/retry",
        tenant.operator_key,
        idempotency_key=uuid.uuid4().hex,
    )
    # then it is sent again under the same key (the PSP may have taken the first one)
    assert status == 202, body
    assert body["data"]["status"] == "RETRIED"
    assert body["data"]["capture"]["status"] == "PENDING"
    [done] = await capture.until_captured(tenant, payment)
    [psp] = await capture.psp_captures(payment)
    assert psp["idempotencyKey"] == f"capture:{done['id']}:1"
    assert await open_interventions(capture, tenant, payment) == []
    assert len(await capture.events("capture.succeeded", payment)) == 1


async def test_a_capture_failed_notification_fails_it_and_a_retry_is_a_new_request(capture):
    # given a PSP that takes the capture, then reports CAPTURE_FAILED
    tenant = await capture.new_tenant()
    payment = await capture.authorise(tenant, [10000])
    await capture.sandbox.faults(tenant.merchant_account, fail_captures=True)
    status, body = await capture.capture_now(tenant, payment)
    assert status == 202, body
    # when
    [failed] = await capture.until_captured(tenant, payment, status="FAILED")
    # then
    assert (failed["failure_code"], failed["outcome_known"]) == ("capture_failed", True)
    [event] = await capture.events("capture.failed", payment)
    assert (event["retries_exhausted"], event["outcome_known"]) == (False, True)
    [intervention] = await open_interventions(capture, tenant, payment)
    assert intervention["kind"] == "capture_failed"
    # and when the operator captures again (ADM-PAY-101 reopens a failed line)
    await capture.sandbox.faults(tenant.merchant_account)
    status, body = await capture.capture_now(tenant, payment)
    assert status == 202, body
    [done] = await capture.until_captured(tenant, payment)
    # then a new PSP request (the first certainly captured nothing) made the one capture
    first, second = await capture.psp_captures(payment)
    assert (first["eventCode"], first["idempotencyKey"]) == (
        "CAPTURE_FAILED",
        f"capture:{done['id']}:1",
    )
    assert (second["eventCode"], second["success"], second["idempotencyKey"]) == (
        "CAPTURE",
        True,
        f"capture:{done['id']}:2",
    )
    assert len(await capture.events("capture.succeeded", payment)) == 1
    assert await open_interventions(capture, tenant, payment) == []


async def test_a_request_the_psp_refuses_fails_at_once(capture):
    # given an authorisation the PSP does not know (a wrong PSP reference)
    tenant = await capture.new_tenant()
    payment = await capture.authorise(tenant, [10000], publish_authorised=False)
    payment.psp_reference = "UNKNOWNPSPREF000"
    await capture.report_authorised(tenant, payment)
    # when
    status, body = await capture.capture_now(tenant, payment)
    assert status == 202, body
    # then
    [failed] = await capture.until_captured(tenant, payment, status="FAILED")
    assert (failed["failure_code"], failed["outcome_known"], failed["attempt_count"]) == (
        "resource_not_found",
        True,
        1,
    )
    [intervention] = await open_interventions(capture, tenant, payment)
    assert intervention["kind"] == "psp_refused"


async def test_a_blocked_split_never_reaches_the_psp_until_the_rates_are_fixed(capture):
    # given a platform rate of 60 % and a supplier commission of 50 %
    tenant = await capture.new_tenant(default_rate="60", commission_rate="50", suppliers=1)
    payment = await capture.authorise(tenant, [100])
    # when
    status, body = await capture.capture_now(tenant, payment)
    # then
    assert status == 422, body
    assert body["error"]["code"] == "split_invalid"
    [blocked] = await capture.captures(tenant, payment)
    assert (blocked["status"], blocked["block_code"], blocked["splits"]) == (
        "BLOCKED",
        "split_invalid",
        [],
    )
    [event] = await capture.events("capture.blocked", payment)
    assert event["code"] == "split_invalid"
    assert "platform 60, marketplace 50, supplier -10" in event["message"]
    assert await capture.psp_capture_requests(tenant) == []
    [intervention] = await open_interventions(capture, tenant, payment)
    assert intervention["kind"] == "blocked"
    # and a second try with the same rates is blocked again
    status, body = await capture.capture_now(tenant, payment)
    assert (status, body["error"]["code"]) == (422, "split_invalid")
    # when the supplier's commission is fixed and the operator retries
    await capture.set_supplier(tenant, tenant.suppliers[0], "10", revision=2)

    async def fixed() -> bool:
        async with capture.main.pool.acquire() as conn:
            rate = await conn.fetchval(
                "SELECT data->>'commission_rate' FROM replica_suppliers WHERE supplier_id = $1",
                tenant.suppliers[0],
            )
        return rate == "10"

    await eventually(fixed)
    status, body = await capture.call(
        "POST",
        f"/v1/admin/interventions/{intervention['id']}/retry",
        tenant.operator_key,
        idempotency_key=uuid.uuid4().hex,
    )
    # then it is captured with the split of the rates now in force, frozen on the capture
    assert status == 202, body
    [done] = await capture.until_captured(tenant, payment)
    assert [(s["party"], s["amount"]) for s in done["splits"]] == [
        ("PLATFORM", 60),
        ("MARKETPLACE", 10),
        ("SUPPLIER", 30),
    ]
    assert (done["marketplace_rate"], done["generation"]) == ("10", 2)


def level3(total_items=9500, freight=300):
    return {
        "customer_reference": "PO-778",
        "tax_total": 200,
        "freight": freight,
        "duty": 0,
        "items": [
            {
                "commodity_code": "44121",
                "description": "Bolts",
                "quantity": "2",
                "unit_of_measure": "EA",
                "unit_price": 5000,
                "discount": 500,
                "total": total_items,
            }
        ],
    }


async def test_a_pcard_capture_sends_its_level3_data(capture):
    # given
    tenant = await capture.new_tenant(capture_mode="IMMEDIATE")
    # when
    payment = await capture.authorise(tenant, [10000], payment_option="PCARD_L3", level3=level3())
    # then
    await capture.until_captured(tenant, payment)
    [sent] = await capture.psp_captures(payment)
    assert sent["additionalData"]["enhancedSchemeData.customerReference"] == "PO-778"
    assert sent["additionalData"]["enhancedSchemeData.itemDetailLine1.totalAmount"] == "9500"
    assert sent["additionalData"]["enhancedSchemeData.freightAmount"] == "300"


async def test_inconsistent_or_partial_level3_data_blocks_the_capture(capture):
    # given
    tenant = await capture.new_tenant(capture_mode="IMMEDIATE")
    # when: items + tax + freight make 10100, not 10000; and a payment of two logistic orders
    wrong = await capture.authorise(
        tenant, [10000], payment_option="PCARD_L3", level3=level3(freight=400)
    )
    split_up = await capture.authorise(
        tenant, [6000, 4000], payment_option="PCARD_L3", level3=level3()
    )
    # then
    [blocked] = await capture.until_captured(tenant, wrong, status="BLOCKED")
    assert blocked["block_code"] == "level3_inconsistent"
    both = await capture.until_captured(tenant, split_up, status="BLOCKED", count=2)
    assert {c["block_code"] for c in both} == {"level3_partial_capture"}
    assert await capture.psp_capture_requests(tenant) == []


async def test_a_zero_amount_line_is_captured_without_asking_the_psp(capture):
    # given
    tenant = await capture.new_tenant(capture_mode="IMMEDIATE")
    # when
    payment = await capture.authorise(tenant, [5000, 0])
    # then
    done = await capture.until_captured(tenant, payment, count=2)
    assert sorted((c["logistic_order_id"], c["psp_reference"] is None) for c in done) == [
        ("lo_1", False),
        ("lo_2", True),
    ]
    [psp] = await capture.psp_captures(payment)
    assert psp["amount"]["value"] == 5000


async def test_notifications_taken_in_one_batch_settle_each_capture_once(capture):
    # given captures sent to the PSP, whose own webhooks come much later
    tenant = await capture.new_tenant()
    await capture.sandbox.faults(tenant.merchant_account, webhook_delay_ms=60_000)
    payments = [await capture.authorise(tenant, [1000 * (n + 1)]) for n in range(3)]
    sent = []
    for payment in payments:
        status, body = await capture.capture_now(tenant, payment)
        assert status == 202, body
        [one] = await capture.until_captured(tenant, payment, status="SENT")
        sent.append(one)

    def notification(one: dict[str, object], code: str) -> PspNotificationReceived:
        amount = one["amount"]
        assert isinstance(amount, dict)
        return PspNotificationReceived(
            notification_id=f"ntf_{secrets.token_hex(8)}",
            psp="adyen",
            merchant_account=tenant.merchant_account,
            event_code=code,
            success=True,
            psp_reference=f"PSP{secrets.token_hex(6).upper()}",
            merchant_reference=str(one["id"]),
            amount=amount,
        )

    # when the PSP's notifications arrive while the first capture is held, so that the
    # consumer's first transaction waits and the rest gather behind it: each capture's, and
    # the second capture's twice (two notification ids)
    async with capture.main.pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM captures WHERE id = $1 FOR UPDATE", sent[0]["id"])
        for one in (*sent, sent[1]):
            await capture.publish(
                "psp.notification.received", notification(one, "CAPTURE"), tenant.id
            )
        await asyncio.sleep(0.5)

    # then each capture succeeded once, with one capture.succeeded each; the second
    # notification of the second capture found it succeeded and changed nothing
    for payment, one in zip(payments, sent, strict=True):
        [done] = await capture.until_captured(tenant, payment)
        assert done["id"] == one["id"]
        assert len(await capture.events("capture.succeeded", payment)) == 1
    status, body = await capture.call(
        "GET", f"/v1/admin/captures/{sent[1]['id']}", tenant.operator_key
    )
    assert status == 200, body
    moves = [(h["status_from"], h["status_to"]) for h in body["data"]["history"]]
    assert moves.count(("SENT", "SUCCEEDED")) == 1
