"""A month of orders for three suppliers, under both (banking mode, funding policy) set-ups,
ending with ledger balances, payouts and funding transfers that match the table worked out by
hand below, to the cent.

Rates: platform 2.5 %; marketplace 10 % (A), 12.5 % (B), 5 % (C).
Week 1: a1 10000 → 250 / 1000 / 8750; b1 999 → 25 / 125 / 849; c1 20000 → 500 / 1000 /
18500; b1 partially refunded 500 → 13 / 63 / 424. Payout run 1: A 8750 (fails at the
provider, retried), B 425, C 18500.
Week 2: a2 4000 → 100 / 400 / 3500; a1 refunded in full (250 / 1000 / 8750) while A has only
3500 available; c1 charged back in full and the chargeback reversed; c2 2000 → 50 / 100 /
1850; b2 5000 → 125 / 625 / 4250 captured but its payment not PAID (not eligible).
Payout run 2.

DISABLED + REFUSE_REFUND: the a1 refund is refused; C's balance goes to -18500 and back.
Run 2 pays A 3500 and C 1850.
ENABLED + MARKETPLACE_COVERS: the a1 refund is reserved with an advance of 8750 − 3500 = 5250
(FT1, REFUND); the chargeback finds C at 0 and the marketplace advances 18500 (FT2,
CHARGEBACK); the reversal credits C 18500 back. Run 2: A has 0 available, the marketplace
advances its 3500 (FT3, PAYOUT); C has 20350 available: FT2 is recovered (18500) and C is paid
1850.
"""

from __future__ import annotations

from typing import Any

import pytest

from payouts.testing import (
    PayoutsHarness,
    Tenant,
    capture_succeeded,
    chargeback,
    new_id,
    refund_succeeded,
    return_lines,
)

EXPECTED: dict[str, dict[str, Any]] = {
    "DISABLED": {
        "balances": {
            "PLATFORM": 1037,
            "MARKETPLACE": 3187,
            "A": 0,
            "B": 4250,
            "C": 0,
            "PSP_CLEARING": -41499,
            "BANK_CLEARING": 33025,
        },
        "run2": {"A": 3500, "C": 1850},
        "transfers": [],  # (linked type, supplier, amount, recovered), oldest first
    },
    "ENABLED": {
        "balances": {
            "PLATFORM": 787,
            "MARKETPLACE": -6563,
            "A": 0,
            "B": 4250,
            "C": 0,
            "PSP_CLEARING": -31499,
            "BANK_CLEARING": 33025,
        },
        "run2": {"A": 3500, "C": 1850},
        "transfers": [
            ("REFUND", "A", 5250, 0),
            ("CHARGEBACK", "C", 18500, 18500),
            ("PAYOUT", "A", 3500, 0),
        ],
    },
}


async def _refund(
    harness: PayoutsHarness, tenant: Tenant, capture: Any, lines: Any, funds_check: bool
) -> bool:
    refund = await harness.request_refund(tenant, capture, lines, funds_check=funds_check)
    if await harness.published("refund.funds_refused", refund_id=refund):
        return False
    await harness.send(
        "refund.succeeded", refund_succeeded(capture, lines, refund_id=refund), tenant.id
    )
    return True


async def _run(harness: PayoutsHarness, tenant: Tenant, names: dict[str, str]) -> dict[str, Any]:
    payouts = {names[p["supplier_id"]]: p for p in await harness.compute(tenant)}
    for payout in payouts.values():
        await harness.execute(tenant, payout["id"])
    for payout in payouts.values():
        await harness.until_payout(tenant, payout["id"], "SETTLED")
    return payouts


@pytest.mark.parametrize("mode", ["DISABLED", "ENABLED"])
async def test_a_month_of_orders(harness: PayoutsHarness, mode: str) -> None:
    covers = mode == "ENABLED"
    tenant = await harness.new_tenant(
        suppliers=3,
        banking_mode=mode,
        funding_policy="MARKETPLACE_COVERS" if covers else "REFUSE_REFUND",
    )
    a, b, c = tenant.suppliers
    names = {a: "A", b: "B", c: "C"}
    rate = {a: "10", b: "12.5", c: "5"}

    def cap(supplier: str, amount: int) -> Any:
        return capture_succeeded(
            supplier_id=supplier, amount=amount, marketplace_rate=rate[supplier]
        )

    # -- week 1 -----------------------------------------------------------------------------
    a1, b1, c1 = cap(a, 10000), cap(b, 999), cap(c, 20000)
    for capture in (a1, b1, c1):
        await harness.deliver_capture(tenant, capture)
    assert await _refund(harness, tenant, b1, return_lines(b1, 13, 63, 424), not covers)

    run1 = {names[p["supplier_id"]]: p for p in await harness.compute(tenant)}
    assert {k: p["amount"]["value"] for k, p in run1.items()} == {"A": 8750, "B": 425, "C": 18500}
    # A's payout fails at the provider, and is retried
    await harness.provider_faults(fail_attempts=5, max_attempts=1)
    await harness.execute(tenant, run1["A"]["id"])
    await harness.until_payout(tenant, run1["A"]["id"], "FAILED")
    await harness.provider_faults()
    await harness.execute(tenant, run1["A"]["id"], action="retry")
    for key in ("B", "C"):
        await harness.execute(tenant, run1[key]["id"])
    for payout in run1.values():
        await harness.until_payout(tenant, payout["id"], "SETTLED")

    # -- week 2 -----------------------------------------------------------------------------
    a2 = cap(a, 4000)
    await harness.deliver_capture(tenant, a2)
    refunded = await _refund(harness, tenant, a1, return_lines(a1, 250, 1000, 8750), not covers)
    assert refunded is covers
    lines = return_lines(c1, 500, 1000, 18500)
    cb = new_id("cb")
    await harness.send("chargeback.received", chargeback(c1, lines, chargeback_id=cb), tenant.id)
    await harness.send(
        "chargeback.reversed", chargeback(c1, lines, chargeback_id=cb, revision=2), tenant.id
    )
    c2 = cap(c, 2000)
    await harness.deliver_capture(tenant, c2)
    await harness.send("capture.succeeded", cap(b, 5000), tenant.id)  # payment not PAID

    run2 = await _run(harness, tenant, names)
    expected = EXPECTED[mode]
    assert {k: p["amount"]["value"] for k, p in run2.items()} == expected["run2"]

    # -- the books at the end of the month ------------------------------------------------------
    balances = await harness.balances(tenant)
    assert {names.get(k, k): v for k, v in balances.items()} == expected["balances"]
    status, body = await harness.call(
        "GET", "/v1/payments/funding-transfers?limit=100", tenant.operator_key
    )
    assert status == 200
    transfers = [
        (t["linked_type"], names[t["supplier_id"]], t["amount"]["value"], t["recovered"])
        for t in reversed(body["data"])
    ]
    assert transfers == expected["transfers"]
    status, body = await harness.call("GET", "/v1/admin/payouts?limit=100", tenant.operator_key)
    settled = sorted(
        (names[p["supplier_id"]], p["amount"]["value"], p["status"]) for p in body["data"]
    )
    assert settled == sorted(
        [("A", 8750, "SETTLED"), ("B", 425, "SETTLED"), ("C", 18500, "SETTLED")]
        + [(k, v, "SETTLED") for k, v in expected["run2"].items()]
    )
    orders = await harness.provider_orders()
    assert sorted(o["status"] for o in orders["data"]).count("FULFILLMENTS_FAILURE") == 1
    status, body = await harness.call("GET", "/v1/admin/ledger/check", tenant.operator_key)
    assert body["data"]["ok"] is True
