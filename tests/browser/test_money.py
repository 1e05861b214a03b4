"""The back office's money screens in headless Chromium, over the whole chain (payouts and
exports included, the sandbox as PSP and as payout provider): an operator captures a payment,
refunds part of it through the dialog (a double click refunds once at the PSP), sees the
timeline take the PSP's REFUND, reads the balances and the daily chart, runs an export and
downloads it, computes and executes a payout; a supplier sees only its own rows there."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from common.testing.waiting import eventually

from .conftest import Web, shot
from .test_back_office import paid_payment

IBAN = "FR1420041010050500013M02606"


async def captured(stack: Any, shop: Any, payment_id: str) -> None:
    status, body = await stack.call(
        "POST",
        f"{stack.capture_url}/v1/admin/payments/{payment_id}/capture",
        shop.operator_key,
        json={},
        idempotency_key=uuid.uuid4().hex,
    )
    assert status == 202, body
    await stack.until_status(shop, payment_id, "PAID")


async def paid_for(stack: Any, shop: Any, supplier_id: str) -> str:
    """A payment of one line (lo_1) for `supplier_id`, paid with the success card, captured."""
    status, body = await stack.call(
        "POST",
        f"{stack.checkout_url}/v1/checkout/sessions",
        shop.storefront_key,
        json={
            "order_id": f"ord_{uuid.uuid4().hex[:8]}",
            "amount": {"value": 4200, "currency": "EUR"},
            "buyer_account": "acc_1",
            "return_url": "https://shop.example/return",
            "lines": [{"logistic_order_id": "lo_1", "supplier_id": supplier_id, "amount": 4200}],
        },
        idempotency_key=uuid.uuid4().hex,
    )
    assert status == 201, body
    session = body["data"]
    status, body = await stack.pay(session)
    assert status == 200, body
    await stack.until_status(shop, session["id"], "AUTHORIZED")
    await stack.until_capture_knows(session["id"])
    await captured(stack, shop, session["id"])
    payment_id: str = session["id"]
    return payment_id


async def download_csv(page: Page, selector: str) -> list[dict[str, str]]:
    async with page.expect_download() as info:
        await page.click(selector)
    download = await info.value
    path = await download.path()
    text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text), delimiter=";"))


async def run_export(
    page: Page, web: Web, kind: str, name: str, types: tuple[str, ...] = ()
) -> list[dict[str, str]]:
    await page.click("nav a[href='/exports']")
    await page.select_option("#export-type", kind)
    for checked in types:
        await page.check(f"input[name=types][value={checked}]")
    await page.click("#export-ask")
    await expect(page.locator("#export-status")).to_have_text("READY", timeout=30_000)
    assert await page.get_attribute("#export-bar", "value") == "100"
    written = await page.text_content("#export-rows")
    await shot(page, name)
    rows = await download_csv(page, "#export-download")
    assert written is not None
    assert written.startswith(f"{len(rows)} / {len(rows)} rows")
    return rows


async def test_operator_refunds_exports_and_pays_out(stack: Any, money_ui: Web) -> None:
    web = money_ui
    shop = web.shop
    status, body = await stack.call(
        "PATCH",
        f"{stack.tenants_url}/v1/admin/suppliers/{shop.supplier_id}",
        shop.operator_key,
        json={"iban": IBAN},
    )
    assert status == 200, body
    payment = await paid_payment(stack, shop)  # 150.00 EUR, one line lo_1
    for_payout = await paid_payment(stack, shop)
    await captured(stack, shop, for_payout["id"])
    await stack.ship(shop, {"id": for_payout["id"]})

    page = await web.page()
    await web.login(page, shop.operator_key)
    await page.fill("input[name=order_id]", payment["order_id"])
    await page.click(".filters button[type=submit]")
    await page.click(f"a[href='/payments/{payment['id']}']")
    # no refund before anything is captured
    await expect(page.locator("#refund-open")).to_have_count(0)
    await page.click("#capture-open")
    await page.click("#capture-confirm")
    await expect(page.locator("#payment-status")).to_have_text("PAID", timeout=30_000)

    # a partial refund through the dialog; a wrong amount first: nothing sent
    await page.reload()
    await page.click("#refund-open")
    await page.fill("#refund-amount", "10.001")
    await page.click("#refund-confirm")
    await expect(page.locator(".flash.error")).to_contain_text("not an amount in EUR")
    await page.click("#refund-open")
    await page.fill("#refund-amount", "999")
    await page.click("#refund-confirm")
    await expect(page.locator(".flash.error")).to_contain_text("refund_exceeds_amount_available")
    await page.click("#refund-open")
    await page.fill("#refund-amount", "40.00")
    await page.select_option("select[name=reason]", "goods_returned")
    await shot(page, "money-1-refund-dialog")
    # every field of the dialog's form as the browser sends it
    form = await page.eval_on_selector(
        "#refund-dialog form", "f => Object.fromEntries(new FormData(f))"
    )
    await page.dblclick("#refund-confirm")
    await expect(page.locator(".flash.ok").first).to_contain_text("Refund requested")
    await expect(page.locator("#refunds")).to_contain_text("REFUNDED", timeout=30_000)
    await expect(page.locator("#refunds")).to_contain_text("EUR 40.00")
    await expect(page.locator("#timeline")).to_contain_text("refund.succeeded", timeout=30_000)
    await expect(page.locator("#payment-status")).to_have_text("PARTIALLY_REFUNDED", timeout=30_000)
    await shot(page, "money-2-refunded-timeline")
    at_psp = await stack.sandbox.get(f"/sandbox/payments/{payment['psp_reference']}")
    refunds_at_psp = [m for m in at_psp["modifications"] if m["kind"] == "refund"]
    assert len(refunds_at_psp) == 1, at_psp
    assert refunds_at_psp[0]["amount"] == {"value": 4000, "currency": "EUR"}
    # the same form sent again (a re-submitted page): the first answer again, nothing more
    again = await page.request.post(f"{web.url}/payments/{payment['id']}/refunds", form=form)
    assert "Refund requested already" in await again.text()
    await page.reload()
    await expect(page.locator("#refunds tbody tr")).to_have_count(1)

    # balances: every account, summing to zero; yesterday, nothing had happened yet
    await page.click("nav a[href='/balances']")
    await expect(page.locator("#balances")).to_contain_text("PSP_CLEARING")
    await expect(page.locator("#sum-EUR")).to_have_text("EUR 0.00")
    await shot(page, "money-3-balances")
    assert await page.locator("#balances tbody tr").count() >= 4
    await page.fill("#as-of", "2020-01-01")
    await page.click(".filters button[type=submit]")
    await expect(page.locator("#as-of")).to_have_value("2020-01-01")
    then = await page.locator("#balances tbody tr td:nth-child(3)").all_text_contents()
    assert set(then) <= {"EUR 0.00"}, then

    # the daily chart: today's bars are the two captures (300.00) and the refund (40.00)
    await page.click("nav a[href='/chart']")
    await expect(page.locator("#total-EUR-captured")).to_have_text("EUR 300.00")
    await expect(page.locator("#total-EUR-refunded")).to_have_text("EUR 40.00")
    await expect(page.locator("#total-EUR-paid_out")).to_have_text("EUR 0.00")
    await shot(page, "money-4-chart")

    # an export of the transactions, followed to READY, downloaded and read
    rows = await run_export(
        page, web, "transactions", "money-5-export", types=("CAPTURE", "REFUND")
    )
    mine = [r for r in rows if r["payment_id"] == payment["id"]]
    assert sorted(r["transaction_type"] for r in mine) == ["CAPTURE", "REFUND"]
    assert {r["transaction_type"] for r in rows} == {"CAPTURE", "REFUND"}
    refund_row = next(r for r in mine if r["transaction_type"] == "REFUND")
    assert (refund_row["amount"], refund_row["direction"]) == ("4000", "DEBIT")

    # payouts: compute (a double click computes once), open, execute through the dialog
    await page.click("nav a[href='/payouts']")
    await page.click("#compute-open")
    await page.dblclick("#compute-confirm")
    await expect(page.locator(".flash.ok").first).to_contain_text("Computed")
    row = page.locator("#payouts tbody tr", has_text="COMPUTED")
    await expect(row).to_have_count(1)
    await row.locator("a").click()
    await expect(page.locator("#payout-lines")).to_contain_text("lo_1")
    await page.click("#payout-open")
    await shot(page, "money-6-payout-execute")
    await page.dblclick("#payout-confirm")
    await expect(page.locator(".flash.ok").first).to_contain_text("Execution requested")

    async def settled() -> bool:
        await page.reload()
        return await page.text_content("#payout-status") == "SETTLED"

    await eventually(settled, within=30)
    orders = await stack.sandbox.get("/sandbox/payout-orders")
    assert len(orders["data"] if isinstance(orders, dict) else orders) == 1
    await page.click("nav a[href='/chart']")
    await expect(page.locator("#total-EUR-paid_out")).not_to_have_text("EUR 0.00")
    await shot(page, "money-7-chart-paid-out")
    await page.click("nav a[href='/funding-transfers']")
    await expect(page.locator("#funding-transfers")).to_be_visible()
    await page.goto(f"{web.url}/funding-transfers?status=DONE")
    await expect(page.locator(".flash.error")).to_contain_text("status")
    await page.click("nav a[href='/refund-interventions']")
    await expect(page.locator("#refund-interventions")).to_contain_text("The queue is empty.")


async def test_a_supplier_sees_only_its_own_money(stack: Any, money_ui: Web) -> None:
    web = money_ui
    shop = web.shop
    own = await paid_for(stack, shop, shop.supplier_id)
    other = await paid_for(stack, shop, web.other_supplier_id)

    page = await web.page()
    await web.login(page, web.supplier_keys[shop.supplier_id])
    await page.click("nav a[href='/balances']")
    await expect(page.locator("#balances tbody tr")).to_have_count(1)
    await expect(page.locator("#balances")).to_contain_text(shop.supplier_id)
    await expect(page.locator("#balances")).not_to_contain_text(web.other_supplier_id)
    await shot(page, "money-8-supplier-balances")

    await page.click("nav a[href='/chart']")
    await expect(page.locator("#total-EUR-captured")).not_to_have_text("EUR 0.00")

    rows = await run_export(page, web, "transactions", "money-9-supplier-export")
    assert rows
    assert {r["supplier_id"] for r in rows} == {shop.supplier_id}
    assert {r["payment_id"] for r in rows} == {own}

    # no refund form for a supplier, and a posted refund is refused by capture
    await page.goto(f"{web.url}/payments/{own}")
    await expect(page.locator("#refund-open")).to_have_count(0)
    token = await page.input_value("input[name=csrf_token]")
    posted = await page.request.post(
        f"{web.url}/payments/{own}/refunds",
        form={"csrf_token": token, "idempotency_key": uuid.uuid4().hex, "currency": "EUR"},
    )
    assert "Refund refused" in await posted.text()
    # payouts: no compute button, and a compute posted anyway is refused by payouts
    await page.click("nav a[href='/payouts']")
    await expect(page.locator("#payouts")).to_be_visible()
    await expect(page.locator("#compute-open")).to_have_count(0)
    posted = await page.request.post(
        f"{web.url}/payouts/compute",
        form={"csrf_token": token, "idempotency_key": uuid.uuid4().hex, "kind": "SUPPLIER"},
    )
    assert "Compute refused" in await posted.text()
    await page.click("nav a[href='/funding-transfers']")
    await expect(page.locator("#funding-transfers")).to_contain_text("No funding transfer.")
    answer = await page.goto(f"{web.url}/refund-interventions")
    assert answer is not None
    assert answer.status == 403
    answer = await page.goto(f"{web.url}/payments/{other}")
    assert answer is not None
    assert answer.status == 404


@pytest.mark.parametrize(
    "stack",
    [{"capture": {"unconfirmed_after_s": 2.0, "unconfirmed_check_interval_s": 0.3}}],
    indirect=True,
)
async def test_operator_retries_and_resolves_unconfirmed_refunds(stack: Any, money_ui: Web) -> None:
    """Two refunds the PSP takes but never confirms (the sandbox drops their webhooks): the
    refund queue lists them; one is retried (the same PSP key again: the PSP still refunds
    once), the other resolved with a note."""
    web = money_ui
    shop = web.shop
    payment_id = await paid_for(stack, shop, shop.supplier_id)
    await stack.sandbox.faults(shop.merchant_account, drop_webhooks=True)
    for value in (1000, 500):
        status, body = await stack.call(
            "POST",
            f"{stack.capture_url}/v1/admin/payments/{payment_id}/refunds",
            shop.operator_key,
            json={"amount": {"value": value, "currency": "EUR"}},
            idempotency_key=uuid.uuid4().hex,
        )
        assert status == 201, body

    async def flagged() -> bool:
        _, body = await stack.call(
            "GET",
            f"{stack.capture_url}/v1/admin/refund-interventions?payment_id={payment_id}",
            shop.operator_key,
        )
        return len(body["data"]) == 2

    await eventually(flagged, within=30)
    page = await web.page()
    await web.login(page, shop.operator_key)
    await page.click("nav a[href='/refund-interventions']")
    rows = page.locator("#refund-interventions tbody tr", has_text=payment_id)
    await expect(rows).to_have_count(2)
    await shot(page, "money-10-refund-queue")
    first, second = rows.nth(0), rows.nth(1)
    retried = await first.locator("td").nth(2).text_content()
    resolved = await second.locator("td").nth(2).text_content()
    assert retried
    assert resolved
    await first.get_by_role("button", name="Retry…").click()
    await first.locator("dialog[open] button.primary").dblclick()
    await expect(page.locator(".flash.ok").first).to_contain_text("sent to the PSP again")
    row = page.locator("#refund-interventions tbody tr", has_text=resolved)
    await row.get_by_role("button", name="Resolve…").click()
    await row.locator("dialog[open] textarea[name=note]").fill("Refunded by bank transfer")
    await row.locator("dialog[open] button.primary").click()
    await expect(page.locator(".flash.ok")).to_contain_text("Refunded by bank transfer")
    # (a refund still unconfirmed after its retry may be queued again later: never failed)
    await page.click("nav.tabs a:has-text('retried')")
    await expect(page.locator("#refund-interventions")).to_contain_text(retried.strip())
    await page.click("nav.tabs a:has-text('resolved')")
    await expect(page.locator("#refund-interventions")).to_contain_text(resolved.strip())
    await expect(page.locator("#refund-interventions")).to_contain_text("Refunded by bank")

    # the PSP took each refund once, whatever was sent again
    payment = await stack.payment(shop, payment_id)
    at_psp = await stack.sandbox.get(f"/sandbox/payments/{payment['psp_reference']}")
    refunds = [m["amount"]["value"] for m in at_psp["modifications"] if m["kind"] == "refund"]
    assert sorted(refunds) == [500, 1000]
