"""The operator's API: HMAC keys (write-only, encrypted, two active at most) and the stored
notifications (listed, shown, replayed)."""

from __future__ import annotations

import secrets
from urllib.parse import quote

import pytest

from common.runtime import DB_POOL
from webhooks.testing import batch, item, signed


async def test_an_hmac_key_is_write_only_encrypted_and_never_logged_or_published(webhooks, capsys):
    # given
    tenant = await webhooks.new_tenant(with_key=False)
    key = secrets.token_hex(32)
    # when
    status, body = await webhooks.put_key(tenant, tenant.merchant_account, key)
    # then
    assert status == 201
    assert set(body["data"]) == {"id", "merchant_account", "created_at", "revoked_at"}
    assert key not in str(body)
    async with webhooks.app[DB_POOL].acquire() as conn:
        dump = await conn.fetchval("SELECT string_agg(t::text, '|') FROM hmac_keys t")
        outbox = await conn.fetchval(
            "SELECT coalesce(string_agg(o::text, '|'), '') FROM outbox_log o"
        )
    assert key not in dump
    assert key.encode().hex() not in dump
    assert key not in outbox
    assert key not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"key": "zz" * 32}, 422, "parameter_invalid"),
        ({"key": "ab" * 31}, 422, "parameter_invalid"),
        ({"merchant_account": "SomeoneElseECOM"}, 422, "merchant_account_invalid"),
        ({"extra": 1}, 422, "unexpected_parameter"),
    ],
)
async def test_a_bad_hmac_key_request_is_refused(webhooks, change, status, code):
    # given
    tenant = await webhooks.new_tenant(with_key=False)
    body = {"merchant_account": tenant.merchant_account, "key": secrets.token_hex(32)} | change
    # when
    answer = await webhooks.call(
        "PUT", "/v1/admin/webhooks/hmac-keys", key=tenant.operator_key, json_body=body
    )
    # then
    assert answer[0] == status
    assert answer[1]["error"]["code"] == code
    if "key" in change:
        assert change["key"] not in str(answer[1])


async def test_another_tenants_merchant_account_cannot_get_a_key(webhooks):
    # given
    tenant = await webhooks.new_tenant()
    other = await webhooks.new_tenant()
    # when
    status, body = await webhooks.put_key(tenant, other.merchant_account, secrets.token_hex(32))
    # then
    assert status == 422
    assert body["error"]["code"] == "merchant_account_invalid"


async def test_a_third_active_key_is_refused_until_one_is_revoked(webhooks):
    # given two active keys
    tenant = await webhooks.new_tenant()
    status, second = await webhooks.put_key(tenant, tenant.merchant_account, secrets.token_hex(32))
    assert status == 201
    # when
    third = await webhooks.put_key(tenant, tenant.merchant_account, secrets.token_hex(32))
    revoked = await webhooks.call(
        "DELETE",
        f"/v1/admin/webhooks/hmac-keys/{second['data']['id']}",
        key=tenant.operator_key,
    )
    fourth = await webhooks.put_key(tenant, tenant.merchant_account, secrets.token_hex(32))
    # then
    assert third[0] == 409
    assert third[1]["error"]["code"] == "hmac_key_limit"
    assert revoked[0] == 200
    assert revoked[1]["data"]["revoked_at"] is not None
    assert fourth[0] == 201


async def test_putting_an_active_key_again_changes_nothing(webhooks):
    # given a tenant with its key, and both active slots taken
    tenant = await webhooks.new_tenant()
    other_key = secrets.token_hex(32)
    assert (await webhooks.put_key(tenant, tenant.merchant_account, other_key))[0] == 201
    # when the same keys are put again (in upper case too, as PSPs show them)
    again = await webhooks.put_key(tenant, tenant.merchant_account, tenant.hmac_key.upper())
    other_again = await webhooks.put_key(tenant, tenant.merchant_account, other_key)
    # then they are found, not added: still two active keys, and no 409
    assert again[0] == 200
    assert other_again[0] == 200
    async with webhooks.app[DB_POOL].acquire() as conn:
        active = await conn.fetchval(
            "SELECT count(*) FROM hmac_keys WHERE tenant_id = $1 AND revoked_at IS NULL", tenant.id
        )
    assert active == 2


async def test_another_tenants_key_cannot_be_revoked(webhooks):
    # given
    tenant = await webhooks.new_tenant()
    other = await webhooks.new_tenant(with_key=False)
    async with webhooks.app[DB_POOL].acquire() as conn:
        key_id = await conn.fetchval("SELECT id FROM hmac_keys WHERE tenant_id = $1", tenant.id)
    # when
    status, body = await webhooks.call(
        "DELETE", f"/v1/admin/webhooks/hmac-keys/{key_id}", key=other.operator_key
    )
    # then
    assert status == 404
    assert body["error"]["code"] == "hmac_key_not_found"
    assert (await webhooks.notify(batch(signed(item(tenant), tenant.hmac_key))))[0] == 200


async def test_the_admin_api_needs_an_operator_key(webhooks):
    # given
    await webhooks.new_tenant()
    # when
    anonymous = await webhooks.call("GET", "/v1/admin/webhooks/notifications")
    unknown = await webhooks.call("GET", "/v1/admin/webhooks/notifications", key="test_" + "x" * 40)
    # then
    assert anonymous[0] == 401
    assert unknown[0] == 401


async def test_notifications_are_listed_filtered_paged_and_shown_per_tenant(webhooks):
    # given
    tenant = await webhooks.new_tenant()
    other = await webhooks.new_tenant()
    items = [signed(item(tenant), tenant.hmac_key) for _ in range(3)]
    cancel = signed(item(tenant, event_code="CANCELLATION"), tenant.hmac_key)
    for one in [*items, cancel]:
        assert (await webhooks.notify(batch(one)))[0] == 200
    assert (await webhooks.notify(batch(signed(item(other), other.hmac_key))))[0] == 200
    path = "/v1/admin/webhooks/notifications"
    # when
    _, everything = await webhooks.call("GET", path, key=tenant.operator_key)
    _, first_page = await webhooks.call("GET", f"{path}?limit=2", key=tenant.operator_key)
    cursor = first_page["page_info"]["end_cursor"]
    _, second_page = await webhooks.call(
        "GET", f"{path}?limit=2&after_cursor={cursor}", key=tenant.operator_key
    )
    _, cancels = await webhooks.call(
        "GET", f"{path}?event_code=CANCELLATION", key=tenant.operator_key
    )
    _, by_reference = await webhooks.call(
        "GET", f"{path}?psp_reference={items[1]['pspReference']}", key=tenant.operator_key
    )
    one_id = by_reference["data"][0]["id"]
    _, shown = await webhooks.call("GET", f"{path}/{one_id}", key=tenant.operator_key)
    hidden = await webhooks.call("GET", f"{path}/{one_id}", key=other.operator_key)
    # then
    assert len(everything["data"]) == 4
    assert first_page["page_info"]["has_next"] is True
    assert len(second_page["data"]) == 2
    assert {n["id"] for n in first_page["data"] + second_page["data"]} == {
        n["id"] for n in everything["data"]
    }
    assert [n["event_code"] for n in cancels["data"]] == ["CANCELLATION"]
    assert len(by_reference["data"]) == 1
    assert shown["data"]["item"]["pspReference"] == items[1]["pspReference"]
    assert shown["data"]["accepted"] is True
    assert shown["data"]["amount"] == {"value": 1000, "currency": "EUR"}
    assert hidden[0] == 404


async def test_a_bad_accepted_filter_is_a_422(webhooks):
    tenant = await webhooks.new_tenant()
    status, body = await webhooks.call(
        "GET", "/v1/admin/webhooks/notifications?accepted=maybe", key=tenant.operator_key
    )
    assert status == 422
    assert body["error"]["param"] == "accepted"


async def test_a_replay_publishes_the_stored_notifications_again(webhooks):
    # given
    tenant = await webhooks.new_tenant()
    one = signed(item(tenant), tenant.hmac_key)
    await webhooks.notify(batch(one))
    await webhooks.bus.settle(1)
    _, listed = await webhooks.call(
        "GET", "/v1/admin/webhooks/notifications", key=tenant.operator_key
    )
    notification_id = listed["data"][0]["id"]
    # when
    status, body = await webhooks.call(
        "POST",
        "/v1/admin/webhooks/notifications/replay",
        key=tenant.operator_key,
        json_body={"ids": [notification_id]},
    )
    unknown = await webhooks.call(
        "POST",
        "/v1/admin/webhooks/notifications/replay",
        key=tenant.operator_key,
        json_body={"ids": ["ntf_nope"]},
    )
    # then
    assert status == 200
    assert body["data"]["replayed"] == [notification_id]
    assert unknown[0] == 404
    await webhooks.bus.settle(2)
    assert len(webhooks.bus.received) == 2
    first, again = webhooks.bus.received
    assert again["data"] == first["data"]
    assert again["id"] != first["id"]


async def _received_at(webhooks, tenant, psp_reference: str) -> str:
    _, found = await webhooks.call(
        "GET",
        f"/v1/admin/webhooks/notifications?psp_reference={psp_reference}",
        key=tenant.operator_key,
    )
    return found["data"][0]["received_at"]


async def test_notifications_are_filtered_by_reception_time(webhooks):
    # given three notifications received one after the other
    tenant = await webhooks.new_tenant()
    sent = [signed(item(tenant), tenant.hmac_key) for _ in range(3)]
    for one in sent:
        assert (await webhooks.notify(batch(one)))[0] == 200
    times = [await _received_at(webhooks, tenant, one["pspReference"]) for one in sent]
    path = "/v1/admin/webhooks/notifications"
    # when
    _, middle = await webhooks.call(
        "GET",
        f"{path}?received_from={quote(times[1])}&received_to={quote(times[1])}",
        key=tenant.operator_key,
    )
    _, since = await webhooks.call(
        "GET", f"{path}?received_from={quote(times[1])}", key=tenant.operator_key
    )
    bad = await webhooks.call("GET", f"{path}?received_to=yesterday", key=tenant.operator_key)
    # then
    assert [n["psp_reference"] for n in middle["data"]] == [sent[1]["pspReference"]]
    assert {n["psp_reference"] for n in since["data"]} == {o["pspReference"] for o in sent[1:]}
    assert bad[0] == 422
    assert bad[1]["error"]["param"] == "received_to"


async def test_a_range_replay_publishes_what_was_received_then_oldest_first(webhooks):
    # given three AUTHORISATIONs and a CANCELLATION, published once each
    tenant = await webhooks.new_tenant()
    sent = [signed(item(tenant), tenant.hmac_key) for _ in range(3)]
    sent.append(signed(item(tenant, event_code="CANCELLATION"), tenant.hmac_key))
    for one in sent:
        assert (await webhooks.notify(batch(one)))[0] == 200
    await webhooks.bus.settle(4)
    times = [await _received_at(webhooks, tenant, one["pspReference"]) for one in sent]
    # when the AUTHORISATIONs from the second on are replayed
    status, body = await webhooks.call(
        "POST",
        "/v1/admin/webhooks/notifications/replay",
        key=tenant.operator_key,
        json_body={
            "received_from": times[1],
            "received_to": times[3],
            "event_code": "AUTHORISATION",
        },
    )
    # then those two are published again, in the order they were received
    assert status == 200, body
    assert len(body["data"]["replayed"]) == 2
    await webhooks.bus.settle(6)
    again = [e["data"]["psp_reference"] for e in webhooks.bus.received[4:]]
    assert again == [sent[1]["pspReference"], sent[2]["pspReference"]]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": []},
        {"received_from": "2026-01-01T00:00:00Z"},
        {"ids": ["ntf_1"], "received_from": "2026-01-01T00:00:00Z"},
        {"received_from": "2026-01-02T00:00:00Z", "received_to": "2026-01-01T00:00:00Z"},
        {"received_from": "2026-01-01T00:00:00", "received_to": "2026-01-02T00:00:00Z"},
        {"ids": "ntf_1"},
    ],
)
async def test_a_bad_replay_request_is_a_422_and_publishes_nothing(webhooks, body):
    # given
    tenant = await webhooks.new_tenant()
    assert (await webhooks.notify(batch(signed(item(tenant), tenant.hmac_key))))[0] == 200
    await webhooks.bus.settle(1)
    # when
    status, answer = await webhooks.call(
        "POST", "/v1/admin/webhooks/notifications/replay", key=tenant.operator_key, json_body=body
    )
    # then
    assert status == 422, answer
    assert answer["error"]["code"] in ("replay_selection_invalid", "parameter_invalid")
    await webhooks.bus.settle(1, quiet_s=0.3)
    assert len(webhooks.bus.received) == 1
