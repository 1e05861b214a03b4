"""Logging in to the back office: the key stays on the server behind an HttpOnly, SameSite
cookie; storefront and unknown keys are refused; logging out ends the session for whoever
holds the old cookie; the login form redirects only within the site."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from .conftest import Web

COOKIE = "marketpay_backoffice"


async def test_login_keeps_the_key_server_side_and_logout_ends_the_session(
    stack: Any, web_ui: Web
) -> None:
    shop = web_ui.shop
    page = await web_ui.page()

    # keys that are not an operator's or a supplier's
    for key in (shop.storefront_key, "mp_test_unknown_key", "x" * 500):
        await page.goto(f"{web_ui.url}/login")
        await page.fill("input[name=api_key]", key)
        async with page.expect_response(f"{web_ui.url}/login") as answer:
            await page.click("button[type=submit]")
        assert (await answer.value).status == 401
        await expect(page.locator(".flash.error")).to_contain_text("not an operator or supplier")

    # a login asked to go elsewhere stays on this site
    await page.goto(f"{web_ui.url}/login?next=//evil.example/x")
    await page.fill("input[name=api_key]", shop.operator_key)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{web_ui.url}/payments")

    cookies = await page.context.cookies()
    assert [c["name"] for c in cookies] == [COOKIE]
    cookie = cookies[0]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert shop.operator_key not in cookie["value"]
    assert shop.operator_key not in await page.content()

    # logging out forgets the visit: the old cookie, replayed elsewhere, opens nothing
    await page.click(".who button[type=submit]")
    await page.wait_for_url(f"{web_ui.url}/login")
    thief = await web_ui.page()
    await thief.context.add_cookies([{**cookie}])
    await thief.goto(f"{web_ui.url}/payments")
    assert thief.url.startswith(f"{web_ui.url}/login")

    # a page asked for before login comes back after it
    await page.goto(f"{web_ui.url}/suppliers")
    assert page.url.startswith(f"{web_ui.url}/login?next=/suppliers")
    await page.fill("input[name=api_key]", shop.operator_key)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{web_ui.url}/suppliers")
