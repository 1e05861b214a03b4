"""Supplier payouts end to end: eligibility from the events, computation, execution at the
sandbox's payout provider (its fulfil-only order flow), settlement in the ledger, skips that
never reach the provider, a failed payout retried."""

from __future__ import annotations

import asyncio

import pytest

from common.testing.waiting import eventually
from payouts.testing import (
    PayoutsHarness,
    capture_succeeded,
    new_id,
    return_lines,
)


async def test_an_eligible_order_is_paid_out_once_and_settles_in_the_ledger(
    harness: PayoutsHarness,
) -> None:
    # given two suppliers: one order shipped and paid, one order still waiting for shipment
    tenant = await harness.new_tenant(suppliers=2)
    paid, waiting = tenant.suppliers
    shipped = capture_succeeded(supplier_id=paid, amount=10000)  # supplier 8750
    await harness.deliver_capture(tenant, shipped)
    await harness.deliver_capture(
        tenant, capture_succeeded(supplier_id=waiting, amount=5000), status="WAITING_SHIPMENT"
    )
    # when the operator computes the payouts
    [payout] = await harness.compute(tenant)
    # then only the eligible supplier gets one, held on its account
    assert payout["supplier_id"] == paid
    assert payout["status"] == "COMPUTED"
    assert payout["amount"] == {"value": 8750, "currency": "EUR"}
    assert await harness.available(tenant, paid) == 0
    status, lines = await harness.call(
        "GET", f"/v1/admin/payouts/{payout['id']}/lines", tenant.operator_key
    )
    assert status == 200
    assert lines["data"] == [
        {
            "capture_id": shipped.capture_id,
            "logistic_order_id": shipped.logistic_order_id,
            "amount": 8750,
        }
    ]
    # computing again finds nothing new
    assert await harness.compute(tenant) == []

    # when it is executed: the provider fulfils it asynchronously and calls back
    await harness.execute(tenant, payout["id"])
    settled = await harness.until_payout(tenant, payout["id"], "SETTLED")
    assert settled["provider_reference"] == payout["id"]
    balances = await harness.balances(tenant)
    assert balances[paid] == 0
    assert balances["BANK_CLEARING"] == 8750
    orders = await harness.provider_orders()
    assert [o["orderId"] for o in orders["data"]] == [payout["id"]]
    assert orders["data"][0]["status"] == "FULFILLMENTS_SUCCESSFUL"
    events = await harness.published("payout.settled", payout_id=payout["id"])
    assert len(events) == 1
    assert events[0]["logistic_order_ids"] == [shipped.logistic_order_id]
    # executing again changes nothing
    assert (await harness.execute(tenant, payout["id"]))["status"] == "SETTLED"

    # a refund requested after the payout learns that the share was paid out
    refund = await harness.request_refund(
        tenant, shipped, return_lines(shipped, 0, 0, 100), funds_check=True
    )
    [refusal] = await harness.published("refund.funds_refused", refund_id=refund)
    assert refusal["supplier_share_paid_out"] is True
    # a supplier key sees its own payout; another supplier's key gets 404
    path = f"/v1/admin/payouts/{payout['id']}"
    assert (await harness.call("GET", path, tenant.supplier_keys[paid]))[0] == 200
    status, body = await harness.call("GET", path, tenant.supplier_keys[waiting])
    assert status == 404
    assert body["error"]["code"] == "payout_not_found"
    status, body = await harness.call("GET", "/v1/admin/ledger/check", tenant.operator_key)
    assert body["data"]["ok"] is True


async def test_kyc_not_enabled_or_no_valid_iban_is_skipped_and_never_sent(
    harness: PayoutsHarness,
) -> None:
    for kyc, iban, code in (
        ("submitted", "DE89370400440532013000", "supplier_kyc_not_enabled"),
        ("enabled", None, "supplier_iban_invalid"),
        ("enabled", "DE00370400440532013000", "supplier_iban_invalid"),
    ):
        tenant = await harness.new_tenant(suppliers=1, kyc=kyc, iban=iban)
        await harness.deliver_capture(
            tenant, capture_succeeded(supplier_id=tenant.suppliers[0], amount=1000)
        )
        [payout] = await harness.compute(tenant)
        assert payout["status"] == "SKIPPED"
        assert payout["code"] == code
        status, body = await harness.call(
            "POST",
            f"/v1/admin/payouts/{payout['id']}/execute",
            tenant.operator_key,
            idempotency_key=new_id("k"),
        )
        assert status == 409
        assert body["error"]["code"] == "payout_not_executable"
        # the orders stay eligible: once the supplier is fixed, they are paid
        assert await harness.available(tenant, tenant.suppliers[0]) == 875
    assert (await harness.provider_orders())["create_requests"] == 0


async def test_a_failed_payout_releases_its_hold_and_is_retried_as_a_new_order(
    harness: PayoutsHarness,
) -> None:
    tenant = await harness.new_tenant(suppliers=1)
    supplier = tenant.suppliers[0]
    await harness.deliver_capture(tenant, capture_succeeded(supplier_id=supplier, amount=2000))
    # every fulfilment attempt fails (the provider retries twice, then gives up)
    await harness.provider_faults(fail_attempts=10, max_attempts=2)
    [payout] = await harness.compute(tenant)
    await harness.execute(tenant, payout["id"])
    failed = await harness.until_payout(tenant, payout["id"], "FAILED")
    assert failed["code"] == "provider_fulfilment_failed"
    assert await harness.available(tenant, supplier) == 1750  # the hold is released
    # the provider works again; the operator retries
    await harness.provider_faults(fail_attempts=0, max_attempts=3)
    await harness.execute(tenant, payout["id"], action="retry")
    settled = await harness.until_payout(tenant, payout["id"], "SETTLED")
    assert settled["provider_reference"] == f"{payout['id']}-1"
    orders = {o["orderId"]: o["status"] for o in (await harness.provider_orders())["data"]}
    assert orders == {
        payout["id"]: "FULFILLMENTS_FAILURE",
        f"{payout['id']}-1": "FULFILLMENTS_SUCCESSFUL",
    }
    balances = await harness.balances(tenant)
    assert balances[supplier] == 0
    assert balances["BANK_CLEARING"] == 1750


async def test_short_supplier_balance_under_both_banking_modes(harness: PayoutsHarness) -> None:
    results = {}
    for mode in ("DISABLED", "ENABLED"):
        tenant = await harness.new_tenant(suppliers=1, banking_mode=mode)
        supplier = tenant.suppliers[0]
        first = capture_succeeded(supplier_id=supplier, amount=2000)  # supplier 1750
        await harness.deliver_capture(tenant, first)
        [payout] = await harness.compute(tenant)
        await harness.execute(tenant, payout["id"])
        await harness.until_payout(tenant, payout["id"], "SETTLED")
        # a chargeback of the paid order leaves the supplier owing 1750
        from payouts.testing import chargeback

        await harness.send(
            "chargeback.received",
            chargeback(first, return_lines(first, 50, 200, 1750), chargeback_id=new_id("cb")),
            tenant.id,
        )
        # a new order of 1000 (supplier 875) is eligible, but the balance is -875
        await harness.deliver_capture(tenant, capture_succeeded(supplier_id=supplier, amount=1000))
        [second] = await harness.compute(tenant)
        results[mode] = (second["status"], second["amount"]["value"], second["funding_transfer_id"])
        if mode == "ENABLED":
            status, body = await harness.call(
                "GET",
                f"/v1/payments/funding-transfers/{second['funding_transfer_id']}",
                tenant.operator_key,
            )
            assert status == 200
            assert body["data"]["linked_type"] == "PAYOUT"
            assert body["data"]["linked_id"] == second["id"]
            assert body["data"]["amount"]["value"] == 875
    assert results["DISABLED"] == ("INSUFFICIENT_FUNDS", 0, None)
    assert results["ENABLED"][:2] == ("COMPUTED", 875)


@pytest.mark.parametrize("harness", [{"payout_retry_delay_s": 0.2}], indirect=True)
async def test_a_failed_payout_is_retried_per_the_tenants_retry_policy(
    harness: PayoutsHarness,
) -> None:
    # given a tenant whose policy retries a failed payout once
    tenant = await harness.new_tenant(suppliers=1)
    await harness.set_schedule(tenant, retry_attempts=1)
    await harness.deliver_capture(
        tenant, capture_succeeded(supplier_id=tenant.suppliers[0], amount=2000)
    )
    # the provider fails the first order, and the retry's first attempt too
    await harness.provider_faults(fail_attempts=2, max_attempts=1)
    [payout] = await harness.compute(tenant)
    await harness.execute(tenant, payout["id"])

    async def retried_and_failed() -> bool:
        found = await harness.payout(tenant, payout["id"])
        return bool(found["status"] == "FAILED" and found["provider_reference"].endswith("-1"))

    await eventually(retried_and_failed, within=20)
    # then the retry is spent: it stays FAILED for an operator, whose retry settles it
    await asyncio.sleep(1.0)
    assert (await harness.payout(tenant, payout["id"]))["status"] == "FAILED"
    await harness.provider_faults()
    await harness.execute(tenant, payout["id"], action="retry")
    settled = await harness.until_payout(tenant, payout["id"], "SETTLED")
    assert settled["provider_reference"] == f"{payout['id']}-2"
    assert len((await harness.provider_orders())["data"]) == 3


async def test_two_operators_computing_at_once_make_one_payout_per_supplier(
    harness: PayoutsHarness,
) -> None:
    tenant = await harness.new_tenant(suppliers=2)
    for supplier in tenant.suppliers:
        await harness.deliver_capture(tenant, capture_succeeded(supplier_id=supplier, amount=1000))
    runs = await asyncio.gather(*(harness.compute(tenant) for _ in range(4)))
    made = [p for run in runs for p in run]
    assert sorted(p["supplier_id"] for p in made) == sorted(tenant.suppliers)
    for supplier in tenant.suppliers:
        assert await harness.available(tenant, supplier) == 0  # held once, not twice
