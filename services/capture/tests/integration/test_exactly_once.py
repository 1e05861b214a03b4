"""Exactly once (DESIGN §2, invariant 5): whatever races or repeats, one PSP capture per
logistic order and one `capture.succeeded`."""

import asyncio
import uuid

import pytest

from common.http.app import METRICS
from common.testing.waiting import eventually


async def assert_captured_once(capture, tenant, payment):
    [done] = await capture.until_captured(tenant, payment)
    await capture.sandbox.drain_webhooks()
    [psp] = await capture.psp_captures(payment)
    assert psp["success"] is True
    assert psp["idempotencyKey"] == f"capture:{done['id']}:1"
    [succeeded] = await capture.events("capture.succeeded", payment)
    assert succeeded["capture_id"] == done["id"]
    return done


async def test_a_shipped_event_delivered_three_times_captures_once(capture):
    # given
    tenant = await capture.new_tenant(capture_mode="ON_SHIPMENT")
    payment = await capture.authorise(tenant, [10000])
    # when the OMS delivers the same SHIPPED event three times
    event_id = str(uuid.uuid4())
    for _ in range(3):
        await capture.ship(tenant, payment, event_id=event_id)
    # then
    await assert_captured_once(capture, tenant, payment)
    [recorded] = await capture.logistic_order_events(tenant, order_id=payment.order_id)
    assert recorded["oms_event_id"] == event_id


async def test_three_shipped_events_for_one_logistic_order_capture_once(capture):
    # given
    tenant = await capture.new_tenant(capture_mode="ON_SHIPMENT")
    payment = await capture.authorise(tenant, [10000])
    # when the OMS reports it shipped three times, each with its own event id
    for _ in range(3):
        await capture.ship(tenant, payment)

    async def all_recorded() -> bool:
        found = await capture.logistic_order_events(tenant, order_id=payment.order_id)
        return len(found) == 3

    await eventually(all_recorded)
    # then
    done = await assert_captured_once(capture, tenant, payment)
    events = await capture.logistic_order_events(tenant, order_id=payment.order_id)
    assert sorted((e["outcome"], e["reason"]) for e in events) == [
        ("capture_created", None),
        ("ignored", "capture_exists"),
        ("ignored", "capture_exists"),
    ]
    assert {e["capture_id"] for e in events} == {done["id"]}


async def test_a_shipped_event_racing_a_manual_capture_captures_once(capture):
    # given
    tenant = await capture.new_tenant(capture_mode="ON_SHIPMENT")
    payment = await capture.authorise(tenant, [10000])
    # when the SHIPPED event and an operator's ADM-PAY-101 arrive together
    (status, body), _ = await asyncio.gather(
        capture.capture_now(tenant, payment), capture.ship(tenant, payment)
    )
    # then one of them made the capture; the operator either made it or was told why not
    assert status in (202, 409), body
    if status == 409:
        assert body["error"]["code"] == "nothing_to_capture"
    done = await assert_captured_once(capture, tenant, payment)
    assert done["trigger"] == ("MANUAL" if status == 202 else "ON_SHIPMENT")


async def test_two_manual_captures_at_once_capture_once(capture):
    # given
    tenant = await capture.new_tenant(capture_mode="MANUAL")
    payment = await capture.authorise(tenant, [10000])
    # when two operators click at once (each with their own Idempotency-Key)
    answers = await asyncio.gather(
        capture.capture_now(tenant, payment), capture.capture_now(tenant, payment)
    )
    # then
    assert sorted(status for status, _ in answers) == [202, 409], answers
    loser = next(body for status, body in answers if status == 409)
    assert loser["error"]["code"] == "nothing_to_capture"
    winner = next(body for status, body in answers if status == 202)
    assert winner["data"]["captures"][0]["id"] in loser["error"]["message"]
    await assert_captured_once(capture, tenant, payment)


async def test_the_same_manual_capture_sent_twice_at_once_runs_once(capture):
    # given
    tenant = await capture.new_tenant(capture_mode="MANUAL")
    payment = await capture.authorise(tenant, [10000])
    key = uuid.uuid4().hex
    # when the same request (same Idempotency-Key) arrives twice at once
    answers = await asyncio.gather(
        capture.capture_now(tenant, payment, key=key),
        capture.capture_now(tenant, payment, key=key),
    )
    # then one ran; the other waited its turn (409) or got the same answer replayed
    statuses = sorted(status for status, _ in answers)
    assert statuses in ([202, 202], [202, 409]), answers
    if statuses == [202, 409]:
        refused = next(body for status, body in answers if status == 409)
        assert refused["error"]["code"] == "idempotency_concurrent_request"
    await assert_captured_once(capture, tenant, payment)


@pytest.mark.parametrize("capture", [{"proxied": True, "psp_timeout_s": 2.5}], indirect=True)
async def test_a_replica_that_dies_after_the_psp_call_leaves_one_capture(capture):
    # given replica A (cut off from PostgreSQL on demand, waiting up to 2.5 s for the PSP) and
    # a PSP that takes 1.5 s per call and sends its webhooks late, so that the re-sent request
    # is what settles the capture
    a = capture.main
    tenant = await capture.new_tenant(capture_mode="MANUAL")
    payment = await capture.authorise(tenant, [10000])
    await capture.sandbox.faults(tenant.merchant_account, latency_ms=1500, webhook_delay_ms=4000)
    status, body = await capture.capture_now(tenant, payment)
    assert status == 202, body
    capture_id = body["data"]["captures"][0]["id"]

    async def psp_holds_the_call() -> bool:
        return len(await capture.psp_capture_requests(tenant)) == 1

    await eventually(psp_holds_the_call)
    # when A loses its database while the PSP works on its call (A gets the PSP's answer but
    # cannot commit it), then is stopped for good
    await a.proxy.sever()
    b = await capture.start()
    await capture.sandbox.faults(tenant.merchant_account, webhook_delay_ms=4000)

    async def psp_captured() -> bool:
        return len(await capture.psp_captures(payment)) == 1

    await eventually(psp_captured)

    async def a_has_the_answer() -> bool:
        registry = a.app[METRICS].registry
        return registry.get_sample_value("capture_psp_calls_total", {"outcome": "received"}) == 1

    await eventually(a_has_the_answer)
    await a.stop()

    # then B, once A's lease expired, sent the same request again under the same key: the PSP
    # answered it with its first answer, and one capture was made
    async def resent() -> bool:
        return len(await capture.psp_capture_requests(tenant)) == 2

    await eventually(resent, within=15)
    first, second = await capture.psp_capture_requests(tenant)
    assert first["idempotencyKey"] == second["idempotencyKey"] == f"capture:{capture_id}:1"
    assert second.get("replayed") is True
    [done] = await capture.until_captured(tenant, payment)
    assert done["id"] == capture_id
    assert len(await capture.psp_captures(payment)) == 1
    await capture.sandbox.drain_webhooks()
    assert len(await capture.events("capture.succeeded", payment)) == 1
    status, body = await capture.call(
        "GET", f"/v1/admin/captures/{capture_id}", tenant.operator_key, url=b.url
    )
    attempts = body["data"]["attempts"]
    assert [(x["outcome"], x["idempotency_key"]) for x in attempts] == [
        (None, f"capture:{capture_id}:1"),  # A's: the answer never recorded
        ("received", f"capture:{capture_id}:1"),  # B's
    ]


async def test_shipped_events_taken_in_one_batch_capture_each_line_once(capture):
    # given payments of two lines and one of one line, ON_SHIPMENT
    tenant = await capture.new_tenant(capture_mode="ON_SHIPMENT")
    held = await capture.authorise(tenant, [1000])
    payments = [await capture.authorise(tenant, [6000, 4000]) for _ in range(3)]
    # when their SHIPPED events arrive while the first payment is held, so that the consumer's
    # first transaction waits and the rest gather behind it, to be taken together: each line
    # once, the first line of the first payment a second time (its own event id), and the
    # line of a payment not authorised yet
    async with capture.main.pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM payments WHERE payment_id = $1 FOR UPDATE", held.id)
        await capture.ship(tenant, held)
        for payment in payments:
            await capture.ship(tenant, payment, "lo_1")
        await capture.ship(tenant, payments[0], "lo_1")
        for payment in payments:
            await capture.ship(tenant, payment, "lo_2")
        unknown = await capture.authorise(tenant, [500], publish_authorised=False)
        await capture.ship(tenant, unknown)
        await asyncio.sleep(0.5)

    # then each line is captured once, with the amount of its line, and the repeated event
    # is recorded as finding the capture made
    await capture.until_captured(tenant, held)
    for payment in payments:
        done = await capture.until_captured(tenant, payment, count=2)
        assert sorted((c["logistic_order_id"], c["amount"]["value"]) for c in done) == [
            ("lo_1", 6000),
            ("lo_2", 4000),
        ]
        assert len(await capture.psp_captures(payment)) == 2
    first = await capture.logistic_order_events(tenant, order_id=payments[0].order_id)
    assert sorted((e["logistic_order_id"], e["outcome"], e["reason"]) for e in first) == [
        ("lo_1", "capture_created", None),
        ("lo_1", "ignored", "capture_exists"),
        ("lo_2", "capture_created", None),
    ]
    [waiting] = await capture.logistic_order_events(tenant, order_id=unknown.order_id)
    assert waiting["outcome"] == "awaiting_authorisation"
