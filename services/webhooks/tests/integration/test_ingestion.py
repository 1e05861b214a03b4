"""The PSP's endpoint: a verified batch is stored and published once, after the commit; a bad
one is refused, logged and never published (DESIGN §2 invariant 4, §11)."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from Adyen import util

from common.psp.hmac import compute_signature
from webhooks.testing import batch, item, signed


async def test_a_signed_batch_is_accepted_stored_and_published_once(webhooks):
    # given
    tenant = await webhooks.new_tenant()
    first = signed(item(tenant, value=1999), tenant.hmac_key)
    second = signed(item(tenant, event_code="CANCELLATION"), tenant.hmac_key)
    # when
    status, body = await webhooks.notify(batch(first, second))
    # then
    assert (status, body) == (200, "[accepted]")
    await webhooks.bus.settle(2)
    assert len(webhooks.bus.received) == 2
    envelope = next(
        e for e in webhooks.bus.received if e["data"]["psp_reference"] == first["pspReference"]
    )
    assert envelope["type"] == "psp.notification.received"
    assert envelope["tenant_id"] == tenant.id
    assert envelope["data"]["event_code"] == "AUTHORISATION"
    assert envelope["data"]["success"] is True
    assert envelope["data"]["merchant_reference"] == first["merchantReference"]
    assert envelope["data"]["amount"] == {"value": 1999, "currency": "EUR"}
    assert "hmac" not in str(envelope).lower()
    assert await webhooks.count("notifications") == 2


async def test_each_notification_is_routed_under_its_event_code(webhooks):
    # given notifications of three codes, one of which is not a plain word
    tenant = await webhooks.new_tenant()
    codes = ["AUTHORISATION", "CAPTURE", "odd.code"]
    body = batch(*(signed(item(tenant, event_code=c), tenant.hmac_key) for c in codes))
    # when
    assert await webhooks.notify(body) == (200, "[accepted]")
    # then each is published under `psp.notification.received.<code>`, so a queue bound to
    # the codes its service acts on receives only those; the odd one keeps the bare type,
    # which every notification queue binds
    await webhooks.bus.settle(3)
    by_code = {
        e["data"]["event_code"]: key
        for e, key in zip(webhooks.bus.received, webhooks.bus.routing_keys, strict=True)
    }
    assert by_code == {
        "AUTHORISATION": "psp.notification.received.AUTHORISATION",
        "CAPTURE": "psp.notification.received.CAPTURE",
        "odd.code": "psp.notification.received",
    }


async def test_the_same_batch_five_times_is_published_once(webhooks):
    # given
    tenant = await webhooks.new_tenant()
    body = batch(*(signed(item(tenant), tenant.hmac_key) for _ in range(3)))
    # when
    answers = [await webhooks.notify(body) for _ in range(5)]
    # then
    assert answers == [(200, "[accepted]")] * 5
    await webhooks.bus.settle(3)
    assert len(webhooks.bus.received) == 3
    assert len({e["data"]["notification_id"] for e in webhooks.bus.received}) == 3
    assert await webhooks.count("notifications") == 3


async def test_the_same_batch_sent_concurrently_is_stored_once(webhooks):
    # given
    tenant = await webhooks.new_tenant()
    body = batch(signed(item(tenant), tenant.hmac_key))
    # when
    answers = await asyncio.gather(*(webhooks.notify(body) for _ in range(5)))
    # then
    assert answers == [(200, "[accepted]")] * 5
    await webhooks.bus.settle(1)
    assert len(webhooks.bus.received) == 1
    assert await webhooks.count("notifications") == 1


async def test_a_duplicate_with_another_amount_is_an_anomaly_not_republished(webhooks):
    # given
    tenant = await webhooks.new_tenant()
    original = item(tenant, value=1000)
    await webhooks.notify(batch(signed(original, tenant.hmac_key)))
    # when the PSP sends the same notification with another amount
    changed = signed({**original, "amount": {"value": 5, "currency": "EUR"}}, tenant.hmac_key)
    status, body = await webhooks.notify(batch(changed))
    # then
    assert (status, body) == (200, "[accepted]")
    await webhooks.bus.settle(1)
    assert len(webhooks.bus.received) == 1
    assert webhooks.bus.received[0]["data"]["amount"]["value"] == 1000
    assert await webhooks.count("anomalies") == 1


async def test_two_active_keys_during_a_rotation_are_both_accepted(webhooks):
    # given a second key added next to the first
    tenant = await webhooks.new_tenant()
    new_key = secrets.token_hex(32)
    status, _ = await webhooks.put_key(tenant, tenant.merchant_account, new_key)
    assert status == 201
    # when
    old = await webhooks.notify(batch(signed(item(tenant), tenant.hmac_key)))
    new = await webhooks.notify(batch(signed(item(tenant), new_key)))
    # then
    assert old == (200, "[accepted]")
    assert new == (200, "[accepted]")
    await webhooks.bus.settle(2)
    assert len(webhooks.bus.received) == 2


async def test_a_revoked_key_no_longer_verifies(webhooks):
    # given
    tenant = await webhooks.new_tenant()
    new_key = secrets.token_hex(32)
    _, added = await webhooks.put_key(tenant, tenant.merchant_account, new_key)
    old_id = await _key_id_other_than(webhooks, tenant, added["data"]["id"])
    # when the old key is revoked
    status, _ = await webhooks.call(
        "DELETE", f"/v1/admin/webhooks/hmac-keys/{old_id}", key=tenant.operator_key
    )
    # then
    assert status == 200
    assert (await webhooks.notify(batch(signed(item(tenant), tenant.hmac_key))))[0] == 401
    assert (await webhooks.notify(batch(signed(item(tenant), new_key))))[0] == 200


async def _key_id_other_than(webhooks, tenant, key_id: str) -> str:
    from common.runtime import DB_POOL

    async with webhooks.app[DB_POOL].acquire() as conn:
        return await conn.fetchval(
            "SELECT id FROM hmac_keys WHERE tenant_id = $1 AND id <> $2", tenant.id, key_id
        )


async def test_signatures_made_by_the_official_adyen_library_are_accepted(webhooks):
    # given an item signed by Adyen's own Python library
    tenant = await webhooks.new_tenant()
    raw = item(tenant, value=4321, original_reference="ORIGINAL1", event_code="CAPTURE")
    signature = util.generate_notification_sig(raw, tenant.hmac_key).decode()
    raw["additionalData"] = {"hmacSignature": signature}
    assert util.is_valid_hmac_notification(raw, tenant.hmac_key)
    # when
    status, body = await webhooks.notify(batch(raw))
    # then
    assert (status, body) == (200, "[accepted]")
    await webhooks.bus.settle(1)
    assert webhooks.bus.received[0]["data"]["original_reference"] == "ORIGINAL1"


# --- refusals ---------------------------------------------------------------------------------


async def assert_nothing_stored_or_published(webhooks, tenant) -> None:
    await webhooks.bus.settle(0, quiet_s=0.8)
    assert webhooks.bus.received == []
    assert await webhooks.count("notifications") == 0
    # and the service still answers a good batch
    assert await webhooks.notify(batch(signed(item(tenant), tenant.hmac_key))) == (
        200,
        "[accepted]",
    )


async def security_events(webhooks) -> float:
    async with webhooks.http.get(webhooks.url + "/metrics") as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("security_events_total")
    )


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("bad_hmac", "hmac_signature_invalid"),
        ("other_tenants_key", "hmac_signature_invalid"),
        ("missing_signature", "hmac_signature_missing"),
        ("tampered_amount", "hmac_signature_invalid"),
    ],
)
async def test_a_bad_signature_is_a_401_logged_and_never_published(webhooks, case, reason):
    # given
    tenant = await webhooks.new_tenant()
    other = await webhooks.new_tenant()
    raw = item(tenant)
    if case == "bad_hmac":
        body = batch(signed(raw, secrets.token_hex(32)))
    elif case == "other_tenants_key":
        body = batch(signed(raw, other.hmac_key))
    elif case == "missing_signature":
        body = batch(raw)
    else:
        body = batch({**signed(raw, tenant.hmac_key), "amount": {"value": 1, "currency": "EUR"}})
    before = await security_events(webhooks)
    # when
    status, answer = await webhooks.notify(body)
    # then
    assert status == 401
    assert answer["error"]["code"] == "hmac_signature_invalid"
    assert await security_events(webhooks) == before + 1
    _, refused = await webhooks.call(
        "GET", "/v1/admin/webhooks/notifications?accepted=false", key=tenant.operator_key
    )
    assert [r["refusal_reason"] for r in refused["data"]] == [reason]
    assert refused["data"][0]["psp_reference"] == raw["pspReference"]
    await assert_nothing_stored_or_published(webhooks, tenant)


async def test_one_bad_item_refuses_the_whole_batch(webhooks):
    # given
    tenant = await webhooks.new_tenant()
    good = signed(item(tenant), tenant.hmac_key)
    bad = signed(item(tenant), secrets.token_hex(32))
    # when
    status, _ = await webhooks.notify(batch(good, bad))
    # then
    assert status == 401
    await assert_nothing_stored_or_published(webhooks, tenant)


async def test_an_unknown_merchant_account_is_a_404_logged(webhooks):
    # given
    tenant = await webhooks.new_tenant()
    stranger = item(tenant) | {"merchantAccountCode": "NobodysAccountECOM"}
    before = await security_events(webhooks)
    # when
    status, answer = await webhooks.notify(batch(signed(stranger, tenant.hmac_key)))
    # then
    assert status == 404
    assert answer["error"]["code"] == "merchant_account_unknown"
    assert await security_events(webhooks) == before + 1
    assert await webhooks.count("security_log") == 1
    await assert_nothing_stored_or_published(webhooks, tenant)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[]",
        b'{"live": "false"}',
        b'{"notificationItems": [{"NotificationRequestItem": "x"}]}',
        b'{"notificationItems": [1]}',
        b"\xff\xfe",
        b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,
    ],
    ids=["syntax", "empty", "array", "no-items", "item-string", "item-int", "bytes", "deep"],
)
async def test_malformed_json_is_a_400(webhooks, body):
    # given
    tenant = await webhooks.new_tenant()
    # when
    status, answer = await webhooks.notify(body)
    # then
    assert status == 400
    assert answer["error"]["code"] in ("invalid_json", "invalid_notification")
    await assert_nothing_stored_or_published(webhooks, tenant)


@pytest.mark.parametrize(
    "change",
    [
        {"success": "yes"},
        {"amount": {"value": "10", "currency": "EUR"}},
        {"amount": {"value": 10, "currency": "euro"}},
        {"pspReference": None},
        {"merchantReference": "x\u0000y"},
        {"eventCode": 7},
        {"additionalData": "x"},
    ],
)
async def test_an_invalid_item_is_a_400_naming_the_field(webhooks, change):
    # given
    tenant = await webhooks.new_tenant()
    raw = signed(item(tenant), tenant.hmac_key) | change
    # when
    status, answer = await webhooks.notify(batch(raw))
    # then
    assert status == 400
    assert answer["error"]["param"].startswith("notificationItems.0.NotificationRequestItem")
    await assert_nothing_stored_or_published(webhooks, tenant)


async def test_a_ten_megabyte_body_is_a_413(webhooks):
    # given
    tenant = await webhooks.new_tenant()
    raw = signed(item(tenant) | {"reason": "x" * (10 * 1024 * 1024)}, tenant.hmac_key)
    # when
    status, answer = await webhooks.notify(batch(raw))
    # then
    assert status == 413
    assert answer["error"]["code"] == "request_too_large"
    await assert_nothing_stored_or_published(webhooks, tenant)


async def test_a_value_with_a_colon_is_accepted_only_in_the_merchant_reference(webhooks):
    # given a notification whose merchant reference holds a ':'
    tenant = await webhooks.new_tenant()
    genuine = signed(item(tenant, merchant_reference="order:42"), tenant.hmac_key)
    # when
    answer = await webhooks.notify(batch(genuine))
    # then
    assert answer == (200, "[accepted]")
    await webhooks.bus.settle(1)
    assert webhooks.bus.received[0]["data"]["merchant_reference"] == "order:42"


async def test_a_colon_moved_between_signed_fields_is_refused(webhooks):
    """The signed string does not escape ':', so `P:Q` + `R` and `P` + `Q:R` sign alike: a ':'
    anywhere but in merchantReference is refused, signed or not."""
    # given a signed item with a ':' in its PSP reference, and the same signature on a copy
    # whose ':' moved into the original reference
    tenant = await webhooks.new_tenant()
    shifted = signed(item(tenant, psp_reference="P:Q", original_reference="R"), tenant.hmac_key)
    moved = {**shifted, "pspReference": "P", "originalReference": "Q:R"}
    assert compute_signature(moved, tenant.hmac_key) == shifted["additionalData"]["hmacSignature"]
    # when
    first = await webhooks.notify(batch(shifted))
    second = await webhooks.notify(batch(moved))
    # then
    assert first[0] == 400
    assert first[1]["error"]["param"].endswith("pspReference")
    assert second[0] == 400
    assert second[1]["error"]["param"].endswith("originalReference")
    await assert_nothing_stored_or_published(webhooks, tenant)
