"""End to end: the PSP sandbox signs its webhooks and sends them to the webhooks service, which
verifies, stores and publishes them; checkout applies them to its payments. Tenants, checkout
and webhooks share one broker namespace, as in a deployment; each has its own schema."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import uuid

import pytest

from common.testing.waiting import eventually
from webhooks.testing import batch, signed

AMOUNT = 15000


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
    # and the card's expiry, which the PSP puts in an AUTHORISATION's reason, is kept nowhere
    assert stored["data"][0]["item"]["reason"].endswith(":4242")
    assert "2030" not in json.dumps(stored) + json.dumps(payment)


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


def _item(shop, payment_id: str, event_code: str, success: bool, amount: int) -> dict:
    return signed(
        {
            "eventCode": event_code,
            "success": "true" if success else "false",
            "eventDate": "2026-01-01T10:00:00+01:00",
            "merchantAccountCode": shop.merchant_account,
            "pspReference": secrets.token_hex(8).upper(),
            "merchantReference": payment_id,
            "amount": {"value": amount, "currency": "EUR"},
            "reason": "" if success else "Refused",
            "additionalData": {},
        },
        shop.hmac_key,
    )


async def _sessions(stack, shop, count: int) -> list[str]:
    limit = asyncio.Semaphore(8)

    async def one() -> str:
        async with limit:
            return (await stack.session(shop, amount=AMOUNT))["id"]

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def _notify(stack, body: dict) -> tuple[int, str]:
    async with stack.http.post(
        f"{stack.webhooks_url}/v1/webhooks/psp/adyen", json=body
    ) as response:
        return response.status, await response.text()


async def _applied(stack, shop, payment_ids: list[str], per_payment: int) -> list[dict]:
    """Each payment once its timeline shows `per_payment` notifications."""
    found: dict[str, dict] = {}
    pending = set(payment_ids)

    async def all_in() -> bool:
        for payment_id in list(pending):
            found[payment_id] = await stack.payment(shop, payment_id)
            if _notified(found[payment_id]) >= per_payment:
                pending.discard(payment_id)
        return not pending

    await eventually(all_in, within=90)
    return [found[p] for p in payment_ids]


def _notified(payment: dict) -> int:
    return sum("notification_id" in e["detail"] for e in payment["timeline"])


async def test_the_same_hundred_shuffled_items_five_times_apply_each_effect_once(stack):
    # given 50 payments and 100 notifications about them: 30 authorised then cancelled, 10
    # refused (with a refused cancellation), 10 authorised (with an authorisation
    # adjustment, which checkout only records)
    shop = await stack.new_shop()
    payments = await _sessions(stack, shop, 50)
    plan = (
        [("AUTHORISATION", True), ("CANCELLATION", True)] * 30
        + [("AUTHORISATION", False), ("CANCELLATION", False)] * 10
        + [("AUTHORISATION", True), ("AUTHORISATION_ADJUSTMENT", True)] * 10
    )
    items = [
        _item(shop, payments[i // 2], code, success, AMOUNT)
        for i, (code, success) in enumerate(plan)
    ]
    rng = random.Random(20261124)
    # when they arrive shuffled, in batches of 10 sent at once, and the whole lot five times
    answers = []
    for _ in range(5):
        rng.shuffle(items)
        batches = [batch(*items[i : i + 10]) for i in range(0, len(items), 10)]
        answers += await asyncio.gather(*(_notify(stack, b) for b in batches))
    # then every delivery is acknowledged, each notification is applied once, and every
    # payment ends where its notifications lead, whatever their order
    assert set(answers) == {(200, "[accepted]")}
    await _applied(stack, shop, payments, 2)
    await asyncio.sleep(1)  # anything extra would arrive now
    final = [await stack.payment(shop, p) for p in payments]
    assert [_notified(p) for p in final] == [2] * 50
    assert [p["status"] for p in final] == (
        ["CANCELLED"] * 30 + ["REFUSED"] * 10 + ["AUTHORIZED"] * 10
    )
    _, stored = await stack.call(
        "GET", f"{stack.webhooks_url}/v1/admin/webhooks/notifications?limit=100", shop.operator_key
    )
    assert len(stored["data"]) == 100


@pytest.mark.slow
async def test_two_thousand_notifications_from_fifty_clients_are_all_applied(stack):
    # given 500 payments, each with four notifications to come
    shop = await stack.new_shop()
    payments = await _sessions(stack, shop, 500)
    items = [
        _item(shop, payment_id, code, True, AMOUNT)
        for payment_id in payments
        for code in ("AUTHORISATION", "AUTHORISATION_ADJUSTMENT", "CANCELLATION", "OFFER_CLOSED")
    ]
    random.Random(7).shuffle(items)
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for one in items:
        queue.put_nowait(one)
    answers: list[int] = []

    async def client() -> None:
        while not queue.empty():
            one = queue.get_nowait()
            answers.append((await _notify(stack, batch(one)))[0])

    # when 50 clients send them, one notification per request
    await asyncio.gather(*(client() for _ in range(50)))
    # then every one was accepted, and every one reached its payment: none lost
    assert answers == [200] * 2000
    final = await _applied(stack, shop, payments, 4)
    assert sum(_notified(p) for p in final) == 2000
    assert {p["status"] for p in final} == {"CANCELLED"}
