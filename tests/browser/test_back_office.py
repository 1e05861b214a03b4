"""The back office in headless Chromium: an operator finds a payment, captures it through the
confirmation dialog (a double click and a re-sent form capture once), and watches the timeline
take the PSP's CAPTURE; a supplier sees only its own payments, because the services answer its
key so; a forged form post without the CSRF token is refused."""

from __future__ import annotations

import json
import uuid
from typing import Any

from playwright.async_api import expect

from common.testing.waiting import eventually

from .conftest import Web, shot


async def paid_payment(stack: Any, shop: Any) -> dict[str, Any]:
    session = await stack.session(shop)
    status, body = await stack.pay(session)
    assert status == 200, body
    await stack.until_status(shop, session["id"], "AUTHORIZED")
    await stack.until_capture_knows(session["id"])
    payment: dict[str, Any] = await stack.payment(shop, session["id"])
    return payment


async def session_for(stack: Any, shop: Any, supplier_id: str) -> str:
    status, body = await stack.call(
        "POST",
        f"{stack.checkout_url}/v1/checkout/sessions",
        shop.storefront_key,
        json={
            "order_id": f"ord_{uuid.uuid4().hex[:8]}",
            "amount": {"value": 4200, "currency": "EUR"},
            "buyer_account": "acc_1",
            "lines": [{"logistic_order_id": "lo_1", "supplier_id": supplier_id, "amount": 4200}],
        },
        idempotency_key=uuid.uuid4().hex,
    )
    assert status == 201, body
    payment_id: str = body["data"]["payment_id"]
    return payment_id


async def test_operator_finds_captures_once_and_sees_the_timeline(stack: Any, web_ui: Web) -> None:
    shop = web_ui.shop
    payment = await paid_payment(stack, shop)
    untouched = await paid_payment(stack, shop)
    page = await web_ui.page()

    # a forged login (no CSRF token) is refused before any key is checked
    forged = await page.request.post(
        f"{web_ui.url}/login", form={"api_key": shop.operator_key}, max_redirects=0
    )
    assert forged.status == 403

    await web_ui.login(page, shop.operator_key)
    await expect(page.locator("#payments tbody tr")).to_have_count(2)
    await shot(page, "backoffice-1-transactions")

    # a page at a time, newest first, through the API's cursors
    await page.goto(f"{web_ui.url}/payments?limit=1")
    await expect(page.locator("#payments tbody")).to_contain_text(untouched["id"])
    await page.click("text=Older →")
    await expect(page.locator("#payments tbody")).to_contain_text(payment["id"])
    await expect(page.locator("#payments tbody tr")).to_have_count(1)
    await page.click("text=← Newer")
    await expect(page.locator("#payments tbody")).to_contain_text(untouched["id"])
    await page.goto(f"{web_ui.url}/payments?created_from=not-a-date")
    await expect(page.locator(".flash.error")).to_contain_text("created_from")

    # find the payment by its order
    await page.fill("input[name=order_id]", payment["order_id"])
    await page.click(".filters button[type=submit]")
    await expect(page.locator("#payments tbody tr")).to_have_count(1)
    await page.click(f"a[href='/payments/{payment['id']}']")
    await expect(page.locator("#payment-status")).to_have_text("AUTHORIZED")
    await expect(page.locator("#timeline")).to_contain_text("PSP AUTHORISATION")

    # a forged capture post in this logged-in browser, without the token or with a wrong one
    for fields in ({}, {"csrf_token": "forged"}):
        forged = await page.request.post(
            f"{web_ui.url}/payments/{untouched['id']}/capture",
            form={**fields, "idempotency_key": uuid.uuid4().hex},
            max_redirects=0,
        )
        assert forged.status == 403
    assert "CSRF" in await forged.text()

    # capture through the confirmation dialog, with a double click
    await page.click("#capture-open")
    await expect(page.locator("#capture-dialog")).to_be_visible()
    await shot(page, "backoffice-2-capture-dialog")
    form = {
        name: await page.input_value(f"#capture-dialog input[name={name}]")
        for name in ("csrf_token", "idempotency_key")
    }
    await page.dblclick("#capture-confirm")
    # (two flashes when both clicks reached the server: the second is the first answer again)
    await expect(page.locator(".flash.ok").first).to_contain_text("Capture requested")
    # the same form sent again (a re-submitted page): the first answer again, nothing more
    again = await page.request.post(f"{web_ui.url}/payments/{payment['id']}/capture", form=form)
    assert again.status == 200
    assert "Capture requested already" in await again.text()

    # the timeline takes the capture's success by itself (htmx refresh); the PSP's CAPTURE
    # notification goes to the capture service alone, which reports it as its own event
    await expect(page.locator("#timeline")).to_contain_text("capture.succeeded", timeout=30_000)
    await expect(page.locator("#captures")).to_contain_text("SUCCEEDED", timeout=30_000)
    await expect(page.locator("#payment-status")).to_have_text("PAID", timeout=30_000)
    await shot(page, "backoffice-3-captured-timeline")

    captures = await stack.captures(shop, payment["id"])
    assert [c["status"] for c in captures] == ["SUCCEEDED"]
    at_psp = await stack.sandbox.get(f"/sandbox/payments/{payment['psp_reference']}")
    assert [m["kind"] for m in at_psp["modifications"]] == ["capture"]
    # the forged posts did nothing
    assert await stack.captures(shop, untouched["id"]) == []

    # the other screens an operator has
    await page.click("nav a[href='/suppliers']")
    await expect(page.locator("#suppliers tbody tr")).to_have_count(2)
    await page.fill("input[aria-label='rate for Other supplier']", "4.25")
    await page.click("#suppliers tr:has-text('Other supplier') button[type=submit]")
    await expect(page.locator(".flash.ok")).to_contain_text("4.25")
    await shot(page, "backoffice-4-suppliers")
    await page.click("nav a[href='/interventions']")
    await expect(page.locator("#interventions")).to_contain_text("The queue is empty.")


async def test_a_supplier_sees_only_its_own_payments(stack: Any, web_ui: Web) -> None:
    shop = web_ui.shop
    own = await session_for(stack, shop, shop.supplier_id)
    other = await session_for(stack, shop, web_ui.other_supplier_id)
    page = await web_ui.page()
    await web_ui.login(page, web_ui.supplier_keys[shop.supplier_id])
    await expect(page.locator("#payments tbody tr")).to_have_count(1)
    await expect(page.locator("#payments")).to_contain_text(own)
    await expect(page.locator("#payments")).not_to_contain_text(other)
    await expect(page.locator(".who .badge")).to_have_text("supplier")
    await shot(page, "backoffice-5-supplier")

    # what the navigation does not offer, the services refuse to this key
    answer = await page.goto(f"{web_ui.url}/payments/{other}")
    assert answer is not None
    assert answer.status == 404
    answer = await page.goto(f"{web_ui.url}/interventions")
    assert answer is not None
    assert answer.status == 403
    answer = await page.goto(f"{web_ui.url}/suppliers")
    assert answer is not None
    assert answer.status == 403
    await expect(page.locator("h1")).to_have_text("Commission matrix")

    # a capture posted by the supplier, with a valid CSRF token, is refused by capture
    await page.goto(f"{web_ui.url}/payments/{own}")
    csrf = await page.get_attribute("body", "hx-headers")
    assert csrf is not None
    token = json.loads(csrf)["X-CSRF-Token"]
    posted = await page.request.post(
        f"{web_ui.url}/payments/{own}/capture",
        form={"csrf_token": token, "idempotency_key": uuid.uuid4().hex},
    )
    assert posted.status == 200
    assert "Capture refused" in await posted.text()

    async def none_captured() -> bool:
        return await stack.captures(shop, own) == []

    await eventually(none_captured)


async def test_operator_retries_and_resolves_failed_captures_in_the_queue(
    stack: Any, web_ui: Web
) -> None:
    shop = web_ui.shop
    await stack.sandbox.faults(shop.merchant_account, fail_captures=True)
    payment = await paid_payment(stack, shop)
    given_up = await paid_payment(stack, shop)
    for failing in (payment, given_up):
        status, body = await stack.call(
            "POST",
            f"{stack.capture_url}/v1/admin/payments/{failing['id']}/capture",
            shop.operator_key,
            json={},
            idempotency_key=uuid.uuid4().hex,
        )
        assert status == 202, body

    async def queued() -> bool:
        _, found = await stack.call(
            "GET", f"{stack.capture_url}/v1/admin/interventions?status=OPEN", shop.operator_key
        )
        return len(found["data"]) == 2

    await eventually(queued, within=20)
    await stack.sandbox.faults(shop.merchant_account)

    page = await web_ui.page()
    await web_ui.login(page, shop.operator_key)
    await page.click("nav a[href='/interventions']")
    row = page.locator("#interventions tbody tr", has_text=payment["id"])
    await expect(row).to_contain_text("OPEN")
    await row.get_by_role("button", name="Retry…").click()
    await expect(row.locator("dialog[open]")).to_contain_text("Retry capture")
    await shot(page, "backoffice-6-intervention-retry")
    await row.locator("dialog[open] button.primary").click()
    await expect(page.locator(".flash.ok")).to_contain_text("sent again")
    await expect(page.locator("#interventions")).not_to_contain_text(payment["id"])

    # the other one is closed by a person, with a note: nothing is sent to the PSP
    row = page.locator("#interventions tbody tr", has_text=given_up["id"])
    await row.get_by_role("button", name="Resolve…").click()
    await row.locator("dialog[open] textarea[name=note]").fill("Buyer cancelled by phone")
    await shot(page, "backoffice-7-intervention-resolve")
    await row.locator("dialog[open] button.primary").click()
    await expect(page.locator(".flash.ok")).to_contain_text("Buyer cancelled by phone")
    await expect(page.locator("#interventions")).not_to_contain_text(given_up["id"])
    await page.click("nav.tabs a:has-text('resolved')")
    resolved = page.locator("#interventions tbody tr", has_text=given_up["id"])
    await expect(resolved).to_contain_text("RESOLVED")

    await stack.until_status(shop, payment["id"], "PAID")
    await page.goto(f"{web_ui.url}/payments/{payment['id']}")
    await expect(page.locator("#timeline")).to_contain_text("capture.failed")
    await expect(page.locator("#payment-status")).to_have_text("PAID")
    captures = await stack.captures(shop, payment["id"])
    assert [c["status"] for c in captures] == ["SUCCEEDED"]
    at_psp = await stack.sandbox.get(f"/sandbox/payments/{given_up['psp_reference']}")
    assert [m["success"] for m in at_psp["modifications"]] == [False]
