"""The demo storefront in headless Chromium: a card that is authorised, one that is declined,
and one that goes through the 3-D Secure challenge; the card number typed in the PSP's drop-in
never reaches checkout, neither in a request body nor in a log line."""

from __future__ import annotations

import json
import logging
from typing import Any

from playwright.async_api import Page, expect

from common.logging import configure_logging

from .conftest import Web, shot

SUCCESS, DECLINED, THREE_DS = "4242424242424242", "4000000000000002", "4000000000003220"


async def checkout_and_type_card(web: Web, page: Page, number: str) -> None:
    await page.goto(f"{web.url}/shop")
    await expect(page.locator("#total")).to_have_text("EUR 150.00")
    await page.click("#checkout")
    await page.wait_for_url(f"{web.url}/shop/pay/*")
    # PAY-501: the methods the PSP offers for this session
    await expect(page.locator("#methods")).to_contain_text("visa")
    await page.fill("#dropin input[name=number]", number)
    await page.fill("#dropin input[name=expiry]", "03/30")
    await page.fill("#dropin input[name=cvc]", "737")


async def test_storefront_pays_with_the_drop_in_and_checkout_never_sees_the_card(
    stack: Any, web_ui: Web, capsys: Any
) -> None:
    configure_logging("storefront-card-scan", "DEBUG")
    try:
        page = await web_ui.page()
        # an authorised card
        await checkout_and_type_card(web_ui, page, SUCCESS)
        await shot(page, "storefront-1-card-form")
        await page.click("#dropin button[type=submit]")
        await page.wait_for_url(f"{web_ui.url}/shop/result/*")
        await expect(page.locator("#result [data-status]")).to_have_attribute(
            "data-status", "AUTHORIZED"
        )
        await shot(page, "storefront-2-authorised")
        paid = await stack.payment(web_ui.shop, page.url.rsplit("/", 1)[-1])
        # two suppliers' lines, waiting for a person to capture them
        assert paid["capture_mode"] == "MANUAL"
        assert [line["amount"] for line in paid["lines"]] == [12_000, 3_000]

        # a declined card
        await checkout_and_type_card(web_ui, page, DECLINED)
        await page.click("#dropin button[type=submit]")
        await page.wait_for_url(f"{web_ui.url}/shop/result/*")
        await expect(page.locator("#result [data-status]")).to_have_attribute(
            "data-status", "REFUSED"
        )
        await expect(page.locator("#result")).to_contain_text("declined")
        await shot(page, "storefront-3-declined")

        # the 3-D Secure card: the issuer's challenge opens in its own window
        await checkout_and_type_card(web_ui, page, THREE_DS)
        async with page.expect_popup() as popup_info:
            await page.click("#dropin button[type=submit]")
        challenge = await popup_info.value
        await challenge.wait_for_load_state()
        await shot(challenge, "storefront-4-3ds-challenge")
        await challenge.click("#ok")
        await page.wait_for_url(f"{web_ui.url}/shop/result/*")
        await expect(page.locator("#result [data-status]")).to_have_attribute(
            "data-status", "AUTHORIZED"
        )
        await shot(page, "storefront-5-3ds-authorised")

        # raw card fields posted to the storefront's own endpoint stop there
        await checkout_and_type_card(web_ui, page, SUCCESS)
        headers = await page.get_attribute("body", "hx-headers")
        assert headers is not None
        refused = await page.request.post(
            page.url,
            data={"payment_method": {"type": "scheme", "number": SUCCESS, "cvc": "737"}},
            headers={"X-CSRF-Token": json.loads(headers)["X-CSRF-Token"]},
        )
        assert refused.status == 422
        assert (await refused.json())["error"]["param"] == "payment_method"
        logging.getLogger("probe").info("the scan reads this line")
        lines = capsys.readouterr().out
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_marketpay", False)]:
            root.removeHandler(handler)

    # what reached checkout: three sessions, three PAY-101 with tokens only, one PAY-102
    requests = web_ui.checkout.requests
    pays = [r for r in requests if r.method == "POST" and r.path == "/v1/shop/payments"]
    assert len(pays) == 3
    for request in pays:
        method = json.loads(request.body)["payment_method"]
        assert method["encryptedCardNumber"].startswith("sbx_tok_")
        assert method["encryptedSecurityCode"].startswith("sbx_tok_")
    assert [r.path for r in requests].count("/v1/shop/payments/details") == 1
    bodies = b"\n".join(r.body + r.path.encode() for r in requests).decode()
    # the scan read the services' log output
    assert "probe" in lines
    assert '"route": "/v1/shop/payments"' in lines
    for number in (SUCCESS, DECLINED, THREE_DS):
        spaced = " ".join(number[i : i + 4] for i in range(0, 16, 4))
        for secret in (number, spaced, number[6:]):
            assert secret not in bodies, "a card number reached checkout"
            assert secret not in lines, "a card number is in a log line"
