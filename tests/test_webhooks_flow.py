"""End to end: the PSP sandbox signs its webhooks and sends them to the webhooks service, which
verifies, stores and publishes them; checkout applies them to its payments. Tenants, checkout
and webhooks share one broker namespace, as in a deployment; each has its own schema."""

from __future__ import annotations

import uuid


async def test_an_authorised_payment_also_gets_its_authorisation_webhook_once(stack):
    # given a PSP that delivers every webhook twice
    shop = await stack.new_shop()
    await stack.sandbox.faults(shop.merchant_account, duplicate_webhooks=True)
    session = await stack.session(shop)
    # when
    status, body = await stack.pay(session)
    # then the answer authorised it, and the webhook is in its timeline, once
    assert status == 200, body
    assert body["data"]["status"] == "AUTHORIZED"
    payment, entries = await stack.until(shop, session["id"], "AUTHORISATION")
    await stack.sandbox.drain_webhooks()
    payment = await stack.payment(shop, session["id"])
    entries = stack.notification_entries(payment, "AUTHORISATION")
    assert payment["status"] == "AUTHORIZED"
    assert len(entries) == 1
    assert (entries[0]["status_from"], entries[0]["status_to"]) == ("AUTHORIZED", "AUTHORIZED")
    account = shop.merchant_account
    attempts = await stack.sandbox.get(f"/sandbox/merchant-accounts/{account}/webhooks")
    assert [a["status"] for a in attempts["data"]] == [200, 200]
    _, stored = await stack.call(
        "GET",
        f"{stack.webhooks_url}/v1/admin/webhooks/notifications"
        f"?psp_reference={payment['psp_reference']}",
        shop.operator_key,
    )
    assert len(stored["data"]) == 1


async def test_a_payment_the_psp_did_not_answer_in_time_is_authorised_by_webhook(stack):
    # given a PSP slower than checkout's timeout (it still processes the payment)
    shop = await stack.new_shop()
    await stack.sandbox.faults(shop.merchant_account, latency_ms=2000)
    session = await stack.session(shop)
    # when
    status, body = await stack.pay(session)
    # then checkout gave up waiting (its retries too: by then the webhook may have settled
    # the payment already), and the AUTHORISATION webhook is what authorised it
    assert (status, body["data"]["status"]) in (
        (202, "AUTHORIZATION_PENDING"),
        (200, "AUTHORIZED"),
    ), body
    assert body["data"]["result_code"] is None
    payment, entries = await stack.until(shop, session["id"], "AUTHORISATION", status="AUTHORIZED")
    assert (entries[0]["status_from"], entries[0]["status_to"]) == (
        "AUTHORIZATION_PENDING",
        "AUTHORIZED",
    )
    assert payment["psp_reference"] == entries[0]["detail"]["psp_reference"]
    assert "psp_no_answer" in [e["kind"] for e in payment["timeline"]]


async def test_an_operator_cancel_ends_cancelled_by_the_cancellation_webhook(stack):
    # given an authorised payment
    shop = await stack.new_shop()
    session = await stack.session(shop)
    assert (await stack.pay(session))[0] == 200
    # when the operator cancels it
    status, body = await stack.call(
        "POST",
        f"{stack.checkout_url}/v1/admin/payments/{session['id']}/cancel",
        shop.operator_key,
        idempotency_key=uuid.uuid4().hex,
    )
    # then the PSP took it, and its CANCELLATION webhook cancels the payment
    assert status == 202, body
    payment, entries = await stack.until(shop, session["id"], "CANCELLATION", status="CANCELLED")
    assert (entries[0]["status_from"], entries[0]["status_to"]) == ("AUTHORIZED", "CANCELLED")
    assert payment["status"] == "CANCELLED"
