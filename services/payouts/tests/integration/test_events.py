"""The ledger fed by events on the real broker: captures credit the split lines, refunds and
chargebacks debit them, every refund.requested gets exactly one funding answer, and events no
retry can fix are dead-lettered with their reason."""

from __future__ import annotations

import asyncio
import json
import uuid

from common.events import Envelope
from payouts.testing import (
    PayoutsHarness,
    capture_succeeded,
    chargeback,
    new_id,
    refund_failed,
    refund_requested,
    refund_succeeded,
    return_lines,
)


async def test_a_capture_credits_its_three_lines_once(harness: PayoutsHarness) -> None:
    # given a tenant and a capture of 10000 at 2.5 % / 10 %
    tenant = await harness.new_tenant(suppliers=1)
    supplier = tenant.suppliers[0]
    capture = capture_succeeded(supplier_id=supplier, amount=10000)
    # when capture.succeeded arrives, and the same capture again under another message id
    await harness.send("capture.succeeded", capture, tenant.id)
    await harness.send("capture.succeeded", capture, tenant.id)
    # then each party is credited its line, once
    assert await harness.balances(tenant) == {
        "PLATFORM": 250,
        "MARKETPLACE": 1000,
        supplier: 8750,
        "PSP_CLEARING": -10000,
    }
    status, body = await harness.call("GET", "/v1/admin/ledger/check", tenant.operator_key)
    assert status == 200
    assert body["data"]["ok"] is True
    assert body["data"]["conflicts"] == 0


async def test_refund_with_funds_check_is_reserved_settled_or_refused(
    harness: PayoutsHarness,
) -> None:
    tenant = await harness.new_tenant(suppliers=1, funding_policy="REFUSE_REFUND")
    supplier = tenant.suppliers[0]
    capture = capture_succeeded(supplier_id=supplier, amount=999, marketplace_rate="12.5")
    await harness.send("capture.succeeded", capture, tenant.id)  # 25 / 125 / 849

    # a refund of 500 (13 / 63 / 424): covered, the supplier's share held
    lines = return_lines(capture, 13, 63, 424)
    first = await harness.request_refund(tenant, capture, lines, funds_check=True)
    [answer] = await harness.published("refund.funds_reserved", refund_id=first)
    assert answer["supplier_amount"] == {"value": 424, "currency": "EUR"}
    assert answer["supplier_share_paid_out"] is False
    assert answer["funding_transfer_id"] is None
    assert await harness.available(tenant, supplier) == 849 - 424

    # a second refund whose share exceeds what is left available: refused, nothing held
    too_big = await harness.request_refund(
        tenant, capture, return_lines(capture, 12, 0, 487), funds_check=True
    )
    [refusal] = await harness.published("refund.funds_refused", refund_id=too_big)
    assert refusal["code"] == "insufficient_supplier_balance"
    assert await harness.available(tenant, supplier) == 849 - 424

    # the first refund succeeds: its lines are debited and its hold settled
    await harness.send(
        "refund.succeeded", refund_succeeded(capture, lines, refund_id=first), tenant.id
    )
    balances = await harness.balances(tenant)
    assert balances == {"PLATFORM": 12, "MARKETPLACE": 62, supplier: 425, "PSP_CLEARING": -499}
    assert await harness.available(tenant, supplier) == 425

    # a third refund is reserved, then fails: its hold is released, nothing posted
    lines3 = return_lines(capture, 0, 0, 100)
    third = await harness.request_refund(tenant, capture, lines3, funds_check=True)
    assert await harness.available(tenant, supplier) == 325
    await harness.send("refund.failed", refund_failed(capture, lines3, refund_id=third), tenant.id)
    assert await harness.available(tenant, supplier) == 425
    assert (await harness.balances(tenant))[supplier] == 425
    # exactly one answer per refund.requested
    answered = await harness.published("refund.funds_reserved") + await harness.published(
        "refund.funds_refused"
    )
    assert sorted(a["refund_id"] for a in answered) == sorted([first, too_big, third])


async def test_marketplace_covers_a_short_supplier_with_a_funding_transfer(
    harness: PayoutsHarness,
) -> None:
    tenant = await harness.new_tenant(suppliers=2, funding_policy="MARKETPLACE_COVERS")
    supplier, other = tenant.suppliers
    capture = capture_succeeded(supplier_id=supplier, amount=1000)  # 25 / 100 / 875
    await harness.send("capture.succeeded", capture, tenant.id)
    await harness.request_refund(
        tenant, capture, return_lines(capture, 0, 0, 500), funds_check=False
    )
    # a refund of everything while 500 is already held: the marketplace advances 500
    lines = return_lines(capture, 25, 100, 875)
    refund = await harness.request_refund(tenant, capture, lines, funds_check=False)
    [answer] = await harness.published("refund.funds_reserved", refund_id=refund)
    transfer_id = answer["funding_transfer_id"]
    assert transfer_id is not None
    [created] = await harness.published("funding_transfer.created", funding_transfer_id=transfer_id)
    assert created["amount"] == {"value": 500, "currency": "EUR"}
    assert created["linked_type"] == "REFUND"
    assert created["linked_id"] == refund
    balances = await harness.balances(tenant)
    assert balances["MARKETPLACE"] == 100 - 500
    assert balances[supplier] == 875 + 500

    # ADM-PAY-503 for the operator and the supplier; another supplier's key gets 404
    path = f"/v1/payments/funding-transfers/{transfer_id}"
    status, body = await harness.call("GET", path, tenant.operator_key)
    assert status == 200
    assert body["data"]["status"] == "COMPLETED"
    assert body["data"]["amount"] == {"value": 500, "currency": "EUR"}
    assert (await harness.call("GET", path, tenant.supplier_keys[supplier]))[0] == 200
    status, body = await harness.call("GET", path, tenant.supplier_keys[other])
    assert status == 404
    assert body["error"]["code"] == "funding_transfer_not_found"
    status, body = await harness.call(
        "GET", "/v1/payments/funding-transfers", tenant.supplier_keys[other]
    )
    assert status == 200
    assert body["data"] == []


async def test_chargeback_drives_a_balance_negative_and_its_reversal_restores_it(
    harness: PayoutsHarness,
) -> None:
    tenant = await harness.new_tenant(suppliers=1, funding_policy="REFUSE_REFUND")
    supplier = tenant.suppliers[0]
    capture = capture_succeeded(supplier_id=supplier, amount=1000)  # 25 / 100 / 875
    await harness.send("capture.succeeded", capture, tenant.id)
    await harness.request_refund(
        tenant, capture, return_lines(capture, 0, 0, 800), funds_check=True
    )
    # a chargeback cannot be refused: the supplier's balance goes below its holds
    lines = return_lines(capture, 25, 100, 875)
    cb = new_id("cb")
    await harness.send(
        "chargeback.received", chargeback(capture, lines, chargeback_id=cb), tenant.id
    )
    assert (await harness.balances(tenant))[supplier] == 0
    assert await harness.available(tenant, supplier) == -800
    assert await harness.published("funding_transfer.created") == []
    await harness.send(
        "chargeback.reversed", chargeback(capture, lines, chargeback_id=cb, revision=2), tenant.id
    )
    assert await harness.balances(tenant) == {
        "PLATFORM": 25,
        "MARKETPLACE": 100,
        supplier: 875,
        "PSP_CLEARING": -1000,
    }


async def test_events_no_retry_can_fix_are_dead_lettered_with_their_reason(
    harness: PayoutsHarness,
) -> None:
    tenant = await harness.new_tenant(suppliers=1)
    supplier = tenant.suppliers[0]
    # a negative amount (the producer's model would refuse it; it comes anyway)
    negative = capture_succeeded(supplier_id=supplier, amount=1000).model_dump(mode="json")
    negative["amount"]["value"] = -1000
    await harness.publish_raw(
        "capture.succeeded",
        {
            "id": new_id("x").replace("x_", "") and "6b1a0c6e-0000-4000-8000-000000000001",
            "type": "capture.succeeded",
            "tenant_id": tenant.id,
            "correlation_id": "t",
            "data": negative,
        },
    )
    # a capture in another currency than the tenant's (its lines add up)
    foreign = capture_succeeded(supplier_id=supplier, amount=1000, currency="USD")
    await harness.publish("capture.succeeded", foreign, tenant.id)
    # a refund whose lines do not add up to its amount
    capture = capture_succeeded(supplier_id=supplier, amount=1000)
    await harness.send("capture.succeeded", capture, tenant.id)
    bad = refund_requested(
        capture, return_lines(capture, 0, 0, 10), refund_id=new_id("ref"), funds_check=True
    ).model_dump(mode="json")
    bad["amount"]["value"] = 11
    await harness.publish_raw(
        "refund.requested",
        Envelope(
            type="refund.requested", tenant_id=tenant.id, correlation_id="t", data=bad
        ).model_dump(mode="json"),
    )

    parked = await harness.dead_letters("payouts.ledger", 3)
    reasons = sorted(h["x-error"] for _, h in parked)
    assert any("amount.value" in r for r in reasons), reasons
    assert any("USD" in r and "EUR" in r for r in reasons), reasons
    assert any("lines sum to 10, not 11" in r for r in reasons), reasons
    # nothing of them reached the ledger; the good capture did
    assert (await harness.balances(tenant))[supplier] == 875
    assert json.loads(parked[0][0])  # the original body is kept


async def test_two_refunds_racing_for_one_balance_reserve_only_what_is_there(
    harness: PayoutsHarness,
) -> None:
    # given a supplier with 875 available, and two replicas' consumers deciding at once
    from payouts import service

    tenant = await harness.new_tenant(suppliers=1, funding_policy="REFUSE_REFUND")
    capture = capture_succeeded(supplier_id=tenant.suppliers[0], amount=1000)
    await harness.send("capture.succeeded", capture, tenant.id)
    refunds = [new_id("ref") for _ in range(4)]

    async def decide(refund_id: str) -> None:
        async with harness.pool.acquire() as conn, conn.transaction():
            await service.on_refund_requested(
                conn,
                tenant.id,
                refund_requested(
                    capture,
                    return_lines(capture, 0, 0, 400),
                    refund_id=refund_id,
                    funds_check=True,
                ),
            )

    await asyncio.gather(*(decide(r) for r in refunds))
    # then two shares of 400 fit in 875, the other two are refused
    assert len(await harness.published("refund.funds_reserved")) == 2
    assert len(await harness.published("refund.funds_refused")) == 2
    assert await harness.available(tenant, tenant.suppliers[0]) == 75


async def test_a_malformed_oms_event_is_dead_lettered_and_a_stale_one_changes_nothing(
    harness: PayoutsHarness,
) -> None:
    from datetime import UTC, datetime, timedelta

    from payouts.consumers import OMS_ID_NAMESPACE
    from payouts.testing import logistic_status

    tenant = await harness.new_tenant(suppliers=1)
    capture = capture_succeeded(supplier_id=tenant.suppliers[0], amount=1000)
    await harness.publish_oms({"id": "x", "tenant_id": tenant.id, "status": "shipped"})
    [(_, headers)] = await harness.dead_letters("payouts.oms", 1)
    assert "not a valid logistic_order.status_changed event" in headers["x-error"]
    # the newest status wins, whatever the order of arrival
    await harness.deliver_capture(tenant, capture, status="SHIPPED")
    stale = logistic_status(tenant.id, capture, "WAITING_SHIPMENT")
    stale["occurred_at"] = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    await harness.publish_oms(stale)
    await harness.applied(uuid.uuid5(OMS_ID_NAMESPACE, stale["id"]))
    async with harness.pool.acquire() as conn:
        status = await conn.fetchval(
            "SELECT status FROM logistic_orders WHERE tenant_id = $1 AND order_id = $2",
            tenant.id,
            capture.order_id,
        )
    assert status == "SHIPPED"
