"""Exactly once under faults: whatever happens between us and the payout provider, one order
at the provider and one settled payout (one ledger posting)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from common.testing.waiting import eventually
from payouts.api import EXECUTOR
from payouts.app import SCHEDULER
from payouts.testing import PayoutsHarness, Tenant, capture_succeeded


async def _computed(harness: PayoutsHarness, **tenant_args: Any) -> tuple[Tenant, dict[str, Any]]:
    tenant = await harness.new_tenant(suppliers=1, **tenant_args)
    await harness.deliver_capture(
        tenant, capture_succeeded(supplier_id=tenant.suppliers[0], amount=4000)
    )
    [payout] = await harness.compute(tenant)
    return tenant, payout


async def _until_in_interventions(harness: PayoutsHarness, tenant: Tenant, payout_id: str) -> None:
    """Until the intervention queue holds this payout, and only it."""

    async def queued() -> bool:
        status, body = await harness.call(
            "GET", "/v1/admin/payouts-interventions", tenant.operator_key
        )
        return status == 200 and [i["payout_id"] for i in body["data"]] == [payout_id]

    await eventually(queued)


async def _settled_once(harness: PayoutsHarness, tenant: Tenant, payout: dict[str, Any]) -> None:
    orders = await harness.provider_orders()
    assert [o["orderId"] for o in orders["data"]] == [payout["id"]]
    assert len(await harness.published("payout.settled", payout_id=payout["id"])) == 1
    async with harness.pool.acquire() as conn:
        postings = await conn.fetchval(
            "SELECT count(*) FROM ledger_transactions WHERE kind = 'PAYOUT' AND ref_id = $1",
            payout["id"],
        )
    assert postings == 1
    assert (await harness.balances(tenant))["BANK_CLEARING"] == payout["amount"]["value"]


async def test_provider_timeout_on_create_is_unknown_then_settles_once(
    harness: PayoutsHarness,
) -> None:
    # the provider creates the order but answers after our 1 s timeout
    await harness.provider_faults(create_delay_s=1.5, attempt_delay_s=2.5)
    tenant, payout = await _computed(harness)
    await harness.execute(tenant, payout["id"])
    await harness.until_payout(tenant, payout["id"], "UNKNOWN")
    assert await harness.published("payout.unknown", payout_id=payout["id"])
    await harness.until_payout(tenant, payout["id"], "SETTLED")
    await _settled_once(harness, tenant, payout)


async def test_a_5xx_on_create_then_a_lost_callback_settle_once_by_polling(
    harness: PayoutsHarness,
) -> None:
    await harness.provider_faults(create_5xx=2, lose_callback=True)
    tenant, payout = await _computed(harness)
    await harness.execute(tenant, payout["id"])
    await harness.until_payout(tenant, payout["id"], "SETTLED")
    await _settled_once(harness, tenant, payout)
    orders = await harness.provider_orders()
    assert orders["create_requests"] == 3  # two 503s, then the order
    assert orders["data"][0]["callbacks"] == []


async def test_callback_and_polls_racing_settle_once(harness: PayoutsHarness) -> None:
    # no callback from the provider itself, and our own poller far away: we race by hand
    await harness.provider_faults(lose_callback=True)
    tenant, payout = await _computed(harness)
    async with harness.pool.acquire() as conn:
        await conn.execute(
            "UPDATE payouts SET status = 'PENDING', next_poll_at = now() + "
            "interval '1 hour' WHERE id = $1",
            payout["id"],
        )
    executor = harness.app[EXECUTOR]
    await executor.step(payout["id"], payout["id"])  # creates the order
    await asyncio.sleep(0.5)  # the provider fulfils it

    async def callback() -> None:
        status, _ = await harness.call_raw(
            "/v1/provider/payouts/callback", {"orderId": payout["id"]}
        )
        assert status == 200

    await asyncio.gather(
        callback(), callback(), *(executor.step(payout["id"], payout["id"]) for _ in range(4))
    )
    await harness.until_payout(tenant, payout["id"], "SETTLED")
    await _settled_once(harness, tenant, payout)


@pytest.mark.parametrize(
    "harness",
    [{"unknown_max_age_h": 1.0, "provider_base_url": "http://127.0.0.1:9/payout"}],
    indirect=True,
)
async def test_an_unknown_payout_is_never_failed_and_goes_to_a_person_after_its_max_age(
    harness: PayoutsHarness,
) -> None:
    # the provider is unreachable: every call is a connection error
    tenant, payout = await _computed(harness)
    await harness.execute(tenant, payout["id"])
    await harness.until_payout(tenant, payout["id"], "UNKNOWN")
    await asyncio.sleep(1.5)  # several polls on the backoff, all unanswered
    assert (await harness.payout(tenant, payout["id"]))["status"] == "UNKNOWN"
    harness.clock.advance(timedelta(hours=2))
    await _until_in_interventions(harness, tenant, payout["id"])
    assert (await harness.payout(tenant, payout["id"]))["status"] == "UNKNOWN"
    assert await harness.available(tenant, tenant.suppliers[0]) == 0  # still held


async def test_two_scheduler_replicas_run_each_slot_once(harness: PayoutsHarness) -> None:
    tenant = await harness.new_tenant(suppliers=2)
    for supplier in tenant.suppliers:
        await harness.deliver_capture(tenant, capture_succeeded(supplier_id=supplier, amount=1000))
    await harness.set_schedule(tenant, frequency="DAILY", hour_utc=0)
    harness.clock.advance(timedelta(days=1))  # the next slot (midnight) is past
    other = await harness.start_replica()  # its scheduler passes once at start
    # both replicas' schedulers pass at once, several times
    await asyncio.gather(
        *(app[SCHEDULER].run_due() for app in (harness.app, other) for _ in range(3))
    )
    async with harness.pool.acquire() as conn:
        runs = await conn.fetch(
            "SELECT kind, payouts FROM schedule_runs WHERE tenant_id = $1 ORDER BY kind",
            tenant.id,
        )
    # one run per slot: the suppliers' daily one and the marketplace's weekly one
    assert [(r["kind"], r["payouts"]) for r in runs] == [("MARKETPLACE", 1), ("SUPPLIER", 2)]
    status, body = await harness.call("GET", "/v1/admin/payouts?kind=SUPPLIER", tenant.operator_key)
    assert status == 200
    payouts = body["data"]
    assert sorted(p["supplier_id"] for p in payouts) == sorted(tenant.suppliers)
    for payout in payouts:
        await harness.until_payout(tenant, payout["id"], "SETTLED")
    orders = await harness.provider_orders()
    assert sorted(o["orderId"] for o in orders["data"]) == sorted(p["id"] for p in payouts)


@pytest.mark.parametrize("harness", [{"unknown_max_age_h": 1.0}], indirect=True)
async def test_a_payout_pending_at_the_provider_for_too_long_goes_to_a_person(
    harness: PayoutsHarness,
) -> None:
    # the provider accepts the order and never gets to fulfil it (within the test)
    await harness.provider_faults(attempt_delay_s=60.0)
    tenant, payout = await _computed(harness)
    await harness.execute(tenant, payout["id"])
    await harness.until_payout(tenant, payout["id"], "PENDING")
    harness.clock.advance(timedelta(hours=2))
    await _until_in_interventions(harness, tenant, payout["id"])
    assert (await harness.payout(tenant, payout["id"]))["status"] == "PENDING"
