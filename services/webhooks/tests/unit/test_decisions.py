"""The webhooks service's decisions, pure: HMAC key rotation, acceptance of an item, dedupe
of a stored batch, replay selection."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.psp.hmac import sign_item
from webhooks import domain

KEY_A = "a" * 64
KEY_B = "b" * 64
KEY_C = "c" * 64
NOW = datetime(2026, 1, 1, tzinfo=UTC)

ITEM = {
    "eventCode": "AUTHORISATION",
    "success": "true",
    "merchantAccountCode": "ShopECOM",
    "pspReference": "PSP1",
    "merchantReference": "pay_1",
    "amount": {"value": 1500, "currency": "EUR"},
    "additionalData": {},
}


def stored_key(key_id: str) -> domain.HmacKeyState:
    return domain.HmacKeyState(
        id=key_id,
        tenant_id="ten_1",
        merchant_account="ShopECOM",
        nonce=b"n",
        ciphertext=b"c",
        encryption_key_id="k1",
        created_at=NOW,
        revoked_at=None,
    )


def put(key: str, active: list[tuple[str, str]], *, owned: str | None = "ShopECOM"):
    return domain.decide_key_put(
        tenant_merchant_account=owned,
        merchant_account="ShopECOM",
        key=key,
        active=[(stored_key(key_id), opened) for key_id, opened in active],
    )


def test_a_new_key_is_added_beside_one_active_key():
    assert put(KEY_B, [("hk_a", KEY_A)]) is None
    assert put(KEY_A, []) is None


def test_putting_an_active_key_again_is_a_no_op_that_names_it():
    # when
    existing = put(KEY_B, [("hk_a", KEY_A), ("hk_b", KEY_B)])

    # then
    assert existing is not None
    assert existing.id == "hk_b"


def test_a_third_active_key_is_refused():
    with pytest.raises(domain.KeyRefused) as caught:
        put(KEY_C, [("hk_a", KEY_A), ("hk_b", KEY_B)])
    assert caught.value.code == "hmac_key_limit"


@pytest.mark.parametrize("owned", [None, "OtherECOM"])
def test_a_key_of_another_merchant_account_is_refused(owned):
    with pytest.raises(domain.KeyRefused) as caught:
        put(KEY_A, [], owned=owned)
    assert caught.value.code == "merchant_account_not_yours"


def test_an_item_signed_with_an_active_key_is_accepted():
    item = domain.parse_item(sign_item(ITEM, KEY_B))
    assert domain.refusal(item, (KEY_A, KEY_B)) is None


def test_an_item_is_refused_with_its_reason():
    signed = domain.parse_item(sign_item(ITEM, KEY_C))
    unsigned = domain.parse_item(ITEM)
    assert domain.refusal(signed, None) == "merchant_account_unknown"
    assert domain.refusal(signed, (KEY_A,)) == "hmac_signature_invalid"
    assert domain.refusal(unsigned, (KEY_A,)) == "hmac_signature_missing"
    assert domain.refusal(signed, ()) == "hmac_signature_invalid"


def original(notification_id: str, amount: int | None) -> domain.StoredOriginal:
    return domain.StoredOriginal(
        id=notification_id,
        tenant_id="ten_1",
        psp_reference="PSP1",
        amount=amount,
        currency="EUR" if amount is not None else None,
    )


def test_a_batch_is_stored_duplicate_or_anomaly_item_by_item():
    # given
    item = domain.parse_item(ITEM)
    batch = [("ntf_1", item), ("ntf_2", item), ("ntf_3", item)]
    originals = {"ntf_2": original("ntf_0", 1500), "ntf_3": original("ntf_0", 999)}

    # when
    decided = domain.dedupe(batch, {"ntf_1"}, originals)

    # then
    assert decided.outcomes == ["stored", "duplicate", "anomaly"]
    assert [(a.original.id, a.kind, a.item) for a in decided.anomalies] == [
        ("ntf_0", "amount_mismatch", item)
    ]


def test_a_duplicate_without_amount_of_an_original_without_amount_is_no_anomaly():
    item = domain.parse_item({k: v for k, v in ITEM.items() if k != "amount"})
    decided = domain.dedupe([("ntf_1", item)], set(), {"ntf_1": original("ntf_0", None)})
    assert decided.outcomes == ["duplicate"]
    assert decided.anomalies == []


def stored(notification_id: str, reference: str) -> domain.StoredNotification:
    return domain.StoredNotification(
        id=notification_id,
        tenant_id="ten_1",
        psp="adyen",
        raw={**ITEM, "merchantReference": reference},
    )


def test_a_replay_by_id_needs_every_id_stored():
    found = [stored("ntf_1", "pay_1")]
    with pytest.raises(domain.ReplayRefused) as caught:
        domain.replay_selection(found, wanted=["ntf_1", "ntf_2"], limit=10)
    assert caught.value.code == "notification_not_found"
    assert domain.replay_selection(found, wanted=["ntf_1", "ntf_1"], limit=10) == found


def test_a_replay_by_range_is_bounded():
    found = [stored(f"ntf_{n}", "pay_1") for n in range(3)]
    assert domain.replay_selection(found, wanted=None, limit=3) == found
    with pytest.raises(domain.ReplayRefused) as caught:
        domain.replay_selection(found, wanted=None, limit=2)
    assert caught.value.code == "replay_range_too_large"


def test_replayed_events_carry_the_stored_payload_in_order_by_merchant_reference():
    # when
    events = domain.replay_events([stored("ntf_2", "pay_b"), stored("ntf_1", "pay_a")])

    # then
    assert [(data.notification_id, ref) for data, ref in events] == [
        ("ntf_2", "pay_b"),
        ("ntf_1", "pay_a"),
    ]
    assert events[0][0].amount is not None
    assert events[0][0].amount.value == 1500
