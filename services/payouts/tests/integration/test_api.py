"""The admin API: ADM-PAY-553 filters (each applied, each validated), balances as_of, an
account's transactions, the marketplace payout, scope of supplier keys."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from payouts.testing import (
    PayoutsHarness,
    Tenant,
    capture_succeeded,
    return_lines,
)


async def _transfers(harness: PayoutsHarness) -> tuple[Tenant, list[str]]:
    """Three advances of 100, 500, 875 to two suppliers."""
    tenant = await harness.new_tenant(suppliers=2, funding_policy="MARKETPLACE_COVERS")
    a, b = tenant.suppliers
    made = []
    for supplier, share in ((a, 100), (a, 500), (b, 875)):
        capture = capture_succeeded(supplier_id=supplier, amount=1000)  # supplier 875
        await harness.send("capture.succeeded", capture, tenant.id)
        # hold everything first, so that the next refund is short by its whole share
        await harness.request_refund(
            tenant, capture, return_lines(capture, 0, 0, 875), funds_check=False
        )
        refund = await harness.request_refund(
            tenant, capture, return_lines(capture, 0, 0, share), funds_check=False
        )
        [answer] = await harness.published("refund.funds_reserved", refund_id=refund)
        made.append(answer["funding_transfer_id"])
    return tenant, made


async def test_adm_pay_553_filters(harness: PayoutsHarness) -> None:
    tenant, (t100, t500, t875) = await _transfers(harness)
    a, b = tenant.suppliers
    today = datetime.now(UTC).date().isoformat()

    async def ids(query: str, key: str | None = None) -> list[str]:
        status, body = await harness.call(
            "GET", f"/v1/payments/funding-transfers?{query}", key or tenant.operator_key
        )
        assert status == 200, body
        return [t["id"] for t in body["data"]]

    assert await ids("") == [t875, t500, t100]  # newest first
    assert await ids("amount_min=500") == [t875, t500]
    assert await ids("amount_max=500") == [t500, t100]
    assert await ids("amount_min=100&amount_max=100") == [t100]
    assert await ids(f"supplier_ids={b}") == [t875]
    assert await ids(f"supplier_ids={a},{b}") == [t875, t500, t100]
    assert await ids("status=COMPLETED") == [t875, t500, t100]
    assert await ids("status=FAILED") == []
    assert await ids("source_account_type=MARKETPLACE&target_account_type=SUPPLIER") == [
        t875,
        t500,
        t100,
    ]
    assert await ids("source_account_type=SUPPLIER") == []
    assert await ids(f"created_from={today}&created_to={today}") == [t875, t500, t100]
    assert await ids("created_to=2020-01-01") == []
    assert await ids("limit=2") == [t875, t500]
    assert await ids("", key=tenant.supplier_keys[b]) == [t875]
    assert await ids(f"supplier_ids={a}", key=tenant.supplier_keys[b]) == []


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("created_from=yesterday", "created_from"),
        ("created_to=2026-13-01", "created_to"),
        ("created_from=2026-02-02&created_to=2026-02-01", "created_to"),
        ("status=DONE", "status"),
        ("supplier_ids=a%00b", "supplier_ids"),
        ("supplier_ids=", "supplier_ids"),
        ("amount_min=-1", "amount_min"),
        ("amount_max=1.5", "amount_max"),
        ("amount_max=99999999999999999999", "amount_max"),
        ("amount_min=10&amount_max=9", "amount_max"),
        ("source_account_type=BANK", "source_account_type"),
        ("target_account_type=supplier", "target_account_type"),
        ("colour=blue", "colour"),
        ("after_cursor=nonsense", "after_cursor"),
    ],
)
async def test_adm_pay_553_refuses_each_bad_filter_naming_it(
    harness: PayoutsHarness, query: str, param: str
) -> None:
    tenant = await harness.new_tenant(suppliers=1)
    status, body = await harness.call(
        "GET", f"/v1/payments/funding-transfers?{query}", tenant.operator_key
    )
    assert status == 422, body
    assert body["error"]["param"] == param


async def test_balances_as_of_and_an_accounts_transactions(harness: PayoutsHarness) -> None:
    tenant = await harness.new_tenant(suppliers=2)
    a, b = tenant.suppliers
    await harness.send(
        "capture.succeeded", capture_succeeded(supplier_id=a, amount=1000), tenant.id
    )
    async with harness.pool.acquire() as conn:
        between = await conn.fetchval("SELECT clock_timestamp()")
    await harness.send(
        "capture.succeeded", capture_succeeded(supplier_id=a, amount=2000), tenant.id
    )
    past = await harness.balances(tenant, as_of=between.isoformat().replace("+00:00", "Z"))
    assert past[a] == 875
    assert (await harness.balances(tenant))[a] == 875 + 1750
    status, body = await harness.call(
        "GET", f"/v1/admin/balances?supplier_id={a}", tenant.supplier_keys[b]
    )
    assert status == 200
    assert body["data"] == []  # another supplier's key sees only its own account
    status, body = await harness.call("GET", "/v1/admin/balances", tenant.supplier_keys[a])
    [own] = body["data"]
    assert own["supplier_id"] == a
    status, body = await harness.call(
        "GET", f"/v1/admin/accounts/{own['id']}/transactions", tenant.supplier_keys[a]
    )
    assert status == 200
    assert [p["signed_amount"] for p in body["data"]] == [1750, 875]
    status, _ = await harness.call(
        "GET", f"/v1/admin/accounts/{own['id']}/transactions", tenant.supplier_keys[b]
    )
    assert status == 404


async def test_a_marketplace_payout_pays_the_marketplace_account(harness: PayoutsHarness) -> None:
    tenant = await harness.new_tenant(suppliers=1)
    await harness.send(
        "capture.succeeded",
        capture_succeeded(supplier_id=tenant.suppliers[0], amount=10000),
        tenant.id,
    )
    [skipped] = await harness.compute(tenant, kind="MARKETPLACE")
    assert skipped["code"] == "marketplace_iban_invalid"
    status, body = await harness.call(
        "PUT",
        "/v1/admin/marketplace-bank-account",
        tenant.operator_key,
        json={"iban": "DE00370400440532013000", "holder": "M"},
    )
    assert status == 422
    assert body["error"]["param"] == "iban"
    status, _ = await harness.call(
        "PUT",
        "/v1/admin/marketplace-bank-account",
        tenant.operator_key,
        json={"iban": "FR1420041010050500013M02606", "holder": "The Marketplace"},
    )
    assert status == 200
    [payout] = await harness.compute(tenant, kind="MARKETPLACE")
    assert payout["status"] == "COMPUTED"
    assert payout["amount"]["value"] == 1000
    await harness.execute(tenant, payout["id"])
    await harness.until_payout(tenant, payout["id"], "SETTLED")
    balances = await harness.balances(tenant)
    assert balances["MARKETPLACE"] == 0
    assert balances["BANK_CLEARING"] == 1000
